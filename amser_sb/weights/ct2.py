"""CTranslate2 Whisper models -> Hugging Face ``transformers`` Whisper folders.

CTranslate2 (faster-whisper) keeps a model in one ``model.bin`` (binary
version 6) plus ``config.json`` / ``tokenizer.json`` / ``vocabulary.txt``.
:func:`read_ct2_model` parses that file (also when it is split into
``model.bin.part1``, ``model.bin.part2``, ...), :func:`convert_ct2_whisper`
writes a folder that ``transformers.WhisperModel.from_pretrained`` loads, and
:func:`verify_hf_whisper` checks the written folder tensor by tensor.

The name mapping is the inverse of CTranslate2's own
``ctranslate2/converters/transformers.py`` (``WhisperLoader``): per layer
``self_attention/linear_0`` is q, k, v fused along the output axis (k has no
bias: its part of the fused bias is zero), ``linear_1`` the output
projection; in the decoder ``attention/linear_0`` is the cross-attention q,
``attention/linear_1`` k and v fused, ``attention/linear_2`` the output
projection; ``ffn/linear_0|1`` are fc1/fc2; layer norms are ``gamma`` /
``beta``; ``decoder/projection/weight`` is an alias of the token embeddings.

Authors
 * amser-sb contributors
"""

import json
import logging
import os
import shutil
import struct

import numpy as np
from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)

BINARY_VERSION = 6
DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: "bfloat16",  # stored as uint16, widened to float32 on read
}
# d_model -> attention heads of the OpenAI Whisper sizes (used only when the
# spec does not store ``encoder/num_heads``)
HEADS_BY_D_MODEL = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}
# CTranslate2's ``Activation`` enum -> transformers' ``activation_function``
ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu", 5: "tanh"}
COPIED_FILES = ("tokenizer.json", "vocabulary.txt")


class CT2FormatError(AmserUserError, ValueError):
    """A file is not the CTranslate2 Whisper model it should be."""


class CT2Model:
    """The parsed content of a CTranslate2 ``model.bin``.

    Arguments
    ---------
    path : str
        The file it was read from (for messages).
    spec : str
        The spec name, e.g. ``"WhisperSpec"``.
    revision : int
        The spec revision.
    variables : dict of str -> numpy.ndarray
        Every stored array, as stored (int8 weights not dequantized).
    aliases : dict of str -> str
        Alias name -> name of the variable it shares.

    Example
    -------
    >>> m = CT2Model("x/model.bin", "WhisperSpec", 3,
    ...              {"a/weight": np.ones((2, 3), "f4")}, {"b/weight": "a/weight"})
    >>> m["b/weight"].shape
    (2, 3)
    """

    def __init__(self, path, spec, revision, variables, aliases):
        self.path = path
        self.spec = spec
        self.revision = revision
        self.variables = variables
        self.aliases = aliases

    def __contains__(self, name):
        return name in self.variables or name in self.aliases

    def __getitem__(self, name):
        return self.variables[self.aliases.get(name, name)]

    def float32(self, name):
        """The array ``name`` as float32, int8 weights dequantized.

        Arguments
        ---------
        name : str
            Variable or alias name.

        Returns
        -------
        numpy.ndarray
            ``q / scale`` for int8 weights stored with a ``<name>_scale``
            (one scale per output row), else the values widened to float32.

        Example
        -------
        >>> m = CT2Model("model.bin", "WhisperSpec", 3, {
        ...     "w": np.array([[127, -64], [10, 20]], "i1"),
        ...     "w_scale": np.array([127.0, 10.0], "f4")}, {})
        >>> m.float32("w").tolist()
        [[1.0, -0.50393700...], [1.0, 2.0]]
        """
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise CT2FormatError(
                f"{self.path}: array {name!r} missing; the file is "
                "incomplete or not a Whisper model, convert it again with "
                "ct2-transformers-converter"
            )
        value = self.variables[target]
        scale_name = target + "_scale"
        if value.dtype == np.int8 and scale_name in self.variables:
            scale = self.variables[scale_name].astype(np.float32)
            scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            return value.astype(np.float32) / scale
        return value.astype(np.float32)


class _Cursor:
    """Sequential reader over the bytes of one model file."""

    def __init__(self, data, path):
        self.data = data
        self.path = path
        self.pos = 0

    def take(self, nbytes, what):
        end = self.pos + nbytes
        if end > len(self.data):
            raise _Truncated(
                f"{what} needs bytes {self.pos}..{end} but the file has "
                f"{len(self.data)}"
            )
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        n = self.unpack("<H", what)
        raw = bytes(self.take(n, what))
        if not raw.endswith(b"\0"):
            raise CT2FormatError(
                f"{self.path}: {what} is not NUL-terminated at byte "
                f"{self.pos}; not a CTranslate2 model.bin, use the model.bin "
                "written by ct2-transformers-converter"
            )
        return raw[:-1].decode("utf-8")


class _Truncated(Exception):
    """Internal: the data ended before the layout did."""


def _model_bytes(path):
    """The bytes of ``path`` (a model.bin, its folder, or split parts).

    Returns ``(data, shown_path, parts)`` where ``parts`` lists the part
    files joined (empty for a single file).
    """
    if os.path.isdir(path):
        path = os.path.join(path, "model.bin")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read(), path, []
    parts = []
    while os.path.isfile(f"{path}.part{len(parts) + 1}"):
        parts.append(f"{path}.part{len(parts) + 1}")
    if not parts:
        raise CT2FormatError(
            f"{path}: no such file (nor {os.path.basename(path)}.part1); "
            "point at a CTranslate2 model folder holding model.bin"
        )
    chunks = []
    for part in parts:
        with open(part, "rb") as f:
            chunks.append(f.read())
    return b"".join(chunks), path, parts


def read_ct2_model(path):
    """Parse a CTranslate2 ``model.bin`` (binary version 6).

    Arguments
    ---------
    path : str
        ``model.bin``, the folder holding it, or the path of a split model
        whose ``model.bin.part1``, ``model.bin.part2``, ... are joined in
        order.

    Returns
    -------
    CT2Model

    Raises
    ------
    CT2FormatError
        Not a model.bin, another binary version, truncated (an array runs
        past the end of the file), a split model with a part missing, or
        bytes left after the aliases.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_ct2_model(os.path.join(d, "model.bin"), "WhisperSpec", 3,
    ...                 {"w": np.eye(2, dtype="f2")}, {"v": "w"})
    >>> m = read_ct2_model(d)
    >>> m.spec, m["v"].dtype.name, m.float32("v").tolist()
    ('WhisperSpec', 'float16', [[1.0, 0.0], [0.0, 1.0]])
    """
    data, shown, parts = _model_bytes(path)
    data = memoryview(data)
    cur = _Cursor(data, shown)
    try:
        version = cur.unpack("<I", "binary version")
        if version != BINARY_VERSION:
            if version > 1000 or version == 0:
                raise CT2FormatError(
                    f"{shown}: not a CTranslate2 model.bin (first word "
                    f"{version}); use the model.bin written by "
                    "ct2-transformers-converter"
                )
            raise CT2FormatError(
                f"{shown}: CTranslate2 binary version {version}, this reader "
                f"knows version {BINARY_VERSION}; convert the model again "
                "with ctranslate2 4.x (ct2-transformers-converter)"
            )
        spec = cur.string("spec name")
        revision = cur.unpack("<I", "spec revision")
        n_vars = cur.unpack("<I", "variable count")
        variables = {}
        for _ in range(n_vars):
            name = cur.string("variable name")
            rank = cur.unpack("<B", f"rank of {name}")
            dims = [cur.unpack("<I", f"shape of {name}") for _ in range(rank)]
            code = cur.unpack("<B", f"dtype of {name}")
            if code not in DTYPES:
                raise CT2FormatError(
                    f"{shown}: array {name!r} has unknown dtype code {code}; "
                    "not a CTranslate2 version-6 model.bin, convert it again"
                )
            nbytes = cur.unpack("<I", f"size of {name}")
            raw = cur.take(nbytes, f"array {name!r}")
            dtype = DTYPES[code]
            if dtype == "bfloat16":
                bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
                value = bits.view(np.float32)
            else:
                value = np.frombuffer(raw, dtype)
            if value.size != int(np.prod(dims, dtype=np.int64)):
                raise CT2FormatError(
                    f"{shown}: array {name!r} holds {value.size} values for "
                    f"shape {dims}; the file is corrupt, convert it again"
                )
            variables[name] = value.reshape(dims)
        n_aliases = cur.unpack("<I", "alias count")
        aliases = {}
        for _ in range(n_aliases):
            alias = cur.string("alias name")
            aliases[alias] = cur.string(f"target of alias {alias!r}")
    except _Truncated as err:
        if parts:
            nxt = f"{shown}.part{len(parts) + 1}"
            raise CT2FormatError(
                f"{parts[-1]}: split model ends early ({err}); "
                f"{os.path.basename(nxt)} is missing: put every part next to "
                "it (the parts concatenate to model.bin)"
            ) from None
        raise CT2FormatError(
            f"{shown}: truncated ({err}); download or convert the model "
            "again"
        ) from None
    if cur.pos != len(data):
        raise CT2FormatError(
            f"{shown}: {len(data) - cur.pos} bytes after the aliases; "
            "not one CTranslate2 model.bin (parts joined twice?), convert "
            "or download it again"
        )
    for alias, target in aliases.items():
        if target not in variables:
            raise CT2FormatError(
                f"{shown}: alias {alias!r} points at missing array "
                f"{target!r}; the file is corrupt, convert it again"
            )
    return CT2Model(shown, spec, revision, variables, aliases)


def write_ct2_model(path, spec, revision, variables, aliases=None):
    """Write arrays in the CTranslate2 binary version 6 layout.

    Used by tests (and to patch files); the converter itself only reads.

    Arguments
    ---------
    path : str
        File to write.
    spec : str
        Spec name.
    revision : int
        Spec revision.
    variables : dict of str -> numpy.ndarray
        float32 / int8 / int16 / int32 / float16 arrays.
    aliases : dict of str -> str, optional
        Alias name -> target name.

    Example
    -------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "model.bin")
    >>> write_ct2_model(p, "WhisperSpec", 3, {"n": np.int16(8)})
    >>> int(read_ct2_model(p)["n"])
    8
    """
    codes = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}

    def string(s):
        raw = s.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", BINARY_VERSION), string(spec),
           struct.pack("<II", revision, len(variables))]
    for name, value in variables.items():
        value = np.asarray(value)  # keeps 0-d scalars 0-d
        out.append(string(name))
        out.append(struct.pack("<B", value.ndim))
        out.append(struct.pack(f"<{value.ndim}I", *value.shape))
        if value.dtype.name not in codes:
            raise ValueError(f"{path}: cannot store dtype {value.dtype} "
                             f"({name}); use one of {sorted(codes)}")
        value = value.astype(value.dtype.newbyteorder("<"))
        out.append(struct.pack("<BI", codes[value.dtype.name], value.nbytes))
        out.append(value.tobytes())
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out.append(string(alias) + string(target))
    with open(path, "wb") as f:
        f.write(b"".join(out))


def _count_layers(model, prefix):
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in model:
        n += 1
    return n


def _heads(model, side, d_model):
    key = f"{side}/num_heads"
    if key in model:
        return int(model[key].item())
    if d_model in HEADS_BY_D_MODEL:
        return HEADS_BY_D_MODEL[d_model]
    raise CT2FormatError(
        f"{model.path}: no {key} and d_model {d_model} is not a known "
        "Whisper size; convert the model again with ctranslate2 4.x, which "
        "stores the head count"
    )


def _read_json(path):
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _vocabulary(ct2_dir):
    """Token strings by id from vocabulary.txt / vocabulary.json, or None."""
    txt = os.path.join(ct2_dir, "vocabulary.txt")
    if os.path.isfile(txt):
        with open(txt, encoding="utf-8") as f:
            return f.read().split("\n")
    js = os.path.join(ct2_dir, "vocabulary.json")
    if os.path.isfile(js):
        with open(js, encoding="utf-8") as f:
            return json.load(f)
    return None


def whisper_config_dict(model, ct2_dir):
    """``transformers.WhisperConfig`` arguments inferred from a CT2 model.

    Sizes come from the arrays' shapes, head counts from ``num_heads``
    (else the known Whisper sizes), special token ids from the vocabulary,
    suppressed tokens from the CT2 ``config.json``.

    Arguments
    ---------
    model : CT2Model
        A parsed ``WhisperSpec`` model.
    ct2_dir : str
        Its folder (for ``config.json`` and ``vocabulary.txt``).

    Returns
    -------
    dict

    Example
    -------
    >>> m = CT2Model("model.bin", "WhisperSpec", 3, {
    ...     "encoder/conv1/weight": np.zeros((384, 80, 3), "f2"),
    ...     "encoder/position_encodings/encodings": np.zeros((1500, 384)),
    ...     "encoder/layer_0/ffn/linear_0/weight": np.zeros((1536, 384)),
    ...     "decoder/layer_0/ffn/linear_0/weight": np.zeros((1536, 384)),
    ...     "decoder/embeddings/weight": np.zeros((51864, 384)),
    ...     "decoder/position_encodings/encodings": np.zeros((448, 384))}, {})
    >>> c = whisper_config_dict(m, "/nonexistent")
    >>> c["d_model"], c["encoder_attention_heads"], c["vocab_size"]
    (384, 6, 51864)
    """
    _require(model, [
        "encoder/conv1/weight", "encoder/position_encodings/encodings",
        "decoder/embeddings/weight", "decoder/position_encodings/encodings",
    ])
    d_model, n_mels, _ = model["encoder/conv1/weight"].shape
    vocab_size = model["decoder/embeddings/weight"].shape[0]
    enc_layers = _count_layers(model, "encoder")
    dec_layers = _count_layers(model, "decoder")
    if not enc_layers or not dec_layers:
        raise CT2FormatError(
            f"{model.path}: array 'encoder/layer_0/ffn/linear_0/weight' or "
            "'decoder/layer_0/...' missing; the file is incomplete, convert "
            "it again"
        )
    activation = 3
    if "decoder/activation" in model:
        activation = int(model["decoder/activation"].item())
    cfg = {
        "vocab_size": int(vocab_size),
        "num_mel_bins": int(n_mels),
        "d_model": int(d_model),
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "encoder_attention_heads": _heads(model, "encoder", d_model),
        "decoder_attention_heads": _heads(model, "decoder", d_model),
        "encoder_ffn_dim": int(
            model["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(
            model["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(
            model["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(
            model["decoder/position_encodings/encodings"].shape[0]),
        "activation_function": ACTIVATIONS.get(activation, "gelu"),
        "scale_embedding": bool(
            int(model["decoder/scale_embeddings"].item())
            if "decoder/scale_embeddings" in model else False),
        "tie_word_embeddings": True,
    }
    tokens = _vocabulary(ct2_dir) or []
    ids = {t: i for i, t in enumerate(tokens)}
    # without a vocabulary: OpenAI's ids (English-only 51864 tokens, else
    # multilingual), None for other vocabularies
    eot = ids.get("<|endoftext|>", {51864: 50256}.get(
        vocab_size, 50257 if vocab_size >= 51865 else None))
    sot = ids.get("<|startoftranscript|>",
                  None if eot is None or tokens else eot + 1)
    if sot is None:
        logger.warning("%s: no vocabulary and not an OpenAI vocabulary size "
                       "(%d); special token ids unknown, decoder start set "
                       "to 0 (the encoder is unaffected)", model.path,
                       vocab_size)
    cfg.update(pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
               decoder_start_token_id=0 if sot is None else sot)
    ct2_cfg = _read_json(os.path.join(ct2_dir, "config.json"))
    if ct2_cfg.get("suppress_ids") is not None:
        cfg["suppress_tokens"] = list(ct2_cfg["suppress_ids"])
    if ct2_cfg.get("suppress_ids_begin") is not None:
        cfg["begin_suppress_tokens"] = list(ct2_cfg["suppress_ids_begin"])
    return cfg


def _require(model, names):
    missing = [n for n in names if n not in model]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CT2FormatError(
            f"{model.path}: array {missing[0]!r} missing{more}; the file is "
            "incomplete or not a Whisper model, convert it again with "
            "ct2-transformers-converter"
        )


def _attention(model, src, dst, d_model, out, cross=False):
    """Split one CT2 attention block into HF q/k/v/out projections."""
    if cross:
        q_w, q_b = f"{src}/linear_0/weight", f"{src}/linear_0/bias"
        kv_w, kv_b = f"{src}/linear_1/weight", f"{src}/linear_1/bias"
        o_w, o_b = f"{src}/linear_2/weight", f"{src}/linear_2/bias"
        _require(model, [q_w, q_b, kv_w, kv_b, o_w, o_b])
        kv_weight, kv_bias = model.float32(kv_w), model.float32(kv_b)
        out[f"{dst}.q_proj.weight"] = model.float32(q_w)
        out[f"{dst}.q_proj.bias"] = model.float32(q_b)
        out[f"{dst}.k_proj.weight"] = kv_weight[:d_model]
        out[f"{dst}.v_proj.weight"] = kv_weight[d_model:]
        out[f"{dst}.v_proj.bias"] = kv_bias[d_model:]
    else:
        w, b = f"{src}/linear_0/weight", f"{src}/linear_0/bias"
        o_w, o_b = f"{src}/linear_1/weight", f"{src}/linear_1/bias"
        _require(model, [w, b, o_w, o_b])
        weight, bias = model.float32(w), model.float32(b)
        out[f"{dst}.q_proj.weight"] = weight[:d_model]
        out[f"{dst}.k_proj.weight"] = weight[d_model:2 * d_model]
        out[f"{dst}.v_proj.weight"] = weight[2 * d_model:]
        out[f"{dst}.q_proj.bias"] = bias[:d_model]
        out[f"{dst}.v_proj.bias"] = bias[2 * d_model:]
    out[f"{dst}.out_proj.weight"] = model.float32(o_w)
    out[f"{dst}.out_proj.bias"] = model.float32(o_b)


def _layer_norm(model, src, dst, out):
    _require(model, [f"{src}/gamma", f"{src}/beta"])
    out[f"{dst}.weight"] = model.float32(f"{src}/gamma")
    out[f"{dst}.bias"] = model.float32(f"{src}/beta")


def _linear(model, src, dst, out):
    _require(model, [f"{src}/weight", f"{src}/bias"])
    out[f"{dst}.weight"] = model.float32(f"{src}/weight")
    out[f"{dst}.bias"] = model.float32(f"{src}/bias")


def whisper_state_dict(model, cfg):
    """HF ``WhisperForConditionalGeneration`` weights from a CT2 model.

    Arguments
    ---------
    model : CT2Model
        A parsed ``WhisperSpec`` model.
    cfg : dict
        From :func:`whisper_config_dict`.

    Returns
    -------
    dict of str -> numpy.ndarray
        float32 arrays under HF names (``proj_out.weight`` included, equal
        to ``model.decoder.embed_tokens.weight``).

    Example
    -------
    >>> m = CT2Model("model.bin", "WhisperSpec", 3, {}, {})
    >>> whisper_state_dict(m, {"d_model": 4, "encoder_layers": 1,
    ...                        "decoder_layers": 1})
    Traceback (most recent call last):
    ...
    amser_sb.weights.ct2.CT2FormatError: model.bin: array 'encoder/conv1/weight' missing...
    """
    d = cfg["d_model"]
    out = {}
    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        if side == "encoder":
            for conv in ("conv1", "conv2"):
                _linear(model, f"encoder/{conv}", f"{hf}.{conv}", out)
        else:
            _require(model, ["decoder/embeddings/weight"])
            out[f"{hf}.embed_tokens.weight"] = model.float32(
                "decoder/embeddings/weight")
        pos = f"{side}/position_encodings/encodings"
        _require(model, [pos])
        out[f"{hf}.embed_positions.weight"] = model.float32(pos)
        for i in range(cfg[f"{side}_layers"]):
            src, dst = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            _attention(model, f"{src}/self_attention", f"{dst}.self_attn", d,
                       out)
            _layer_norm(model, f"{src}/self_attention/layer_norm",
                        f"{dst}.self_attn_layer_norm", out)
            if side == "decoder":
                _attention(model, f"{src}/attention", f"{dst}.encoder_attn",
                           d, out, cross=True)
                _layer_norm(model, f"{src}/attention/layer_norm",
                            f"{dst}.encoder_attn_layer_norm", out)
            _linear(model, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
            _linear(model, f"{src}/ffn/linear_1", f"{dst}.fc2", out)
            _layer_norm(model, f"{src}/ffn/layer_norm",
                        f"{dst}.final_layer_norm", out)
        _layer_norm(model, f"{side}/layer_norm", f"{hf}.layer_norm", out)
    proj = ("decoder/projection/weight" if "decoder/projection/weight" in model
            else "decoder/embeddings/weight")
    out["proj_out.weight"] = model.float32(proj)
    if not np.array_equal(out["proj_out.weight"],
                          out["model.decoder.embed_tokens.weight"]):
        logger.warning(
            "%s: decoder/projection/weight differs from the token "
            "embeddings; transformers ties them, the embeddings are kept",
            model.path)
    return out


def _check_whisper(model):
    if model.spec != "WhisperSpec":
        raise CT2FormatError(
            f"{model.path}: spec {model.spec!r}, not 'WhisperSpec'; this "
            "converter handles CTranslate2 Whisper models only "
            "(faster-whisper folders)"
        )


def convert_ct2_whisper(ct2_dir, out_dir, verify=True):
    """Write a ``transformers`` Whisper folder from a CTranslate2 one.

    Arguments
    ---------
    ct2_dir : str
        CTranslate2 folder: ``model.bin`` (or ``model.bin.part1``, ...),
        optionally ``config.json``, ``tokenizer.json``, ``vocabulary.txt``.
    out_dir : str
        Folder to write: ``config.json``, ``model.safetensors`` (float32),
        ``preprocessor_config.json`` and the copied tokenizer files.
    verify : bool
        Reload the folder with transformers and compare every tensor
        (:func:`verify_hf_whisper`).

    Returns
    -------
    str
        ``out_dir``.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_ct2_model(os.path.join(d, "model.bin"), "TransformerSpec", 1,
    ...                 {"w": np.zeros(1, "f4")})
    >>> convert_ct2_whisper(d, d + "/hf")
    Traceback (most recent call last):
    ...
    amser_sb.weights.ct2.CT2FormatError: .../model.bin: spec 'TransformerSpec', not 'WhisperSpec'; ...
    """
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    model = read_ct2_model(ct2_dir)
    _check_whisper(model)
    cfg = whisper_config_dict(model, ct2_dir)
    weights = whisper_state_dict(model, cfg)
    config = WhisperConfig(**cfg)
    with torch.device("meta"):
        hf = WhisperForConditionalGeneration(config)
    expected = set(hf.state_dict().keys())
    _check_keys(expected, set(weights), model.path)
    hf = hf.to_empty(device="cpu")
    state = {k: torch.from_numpy(np.ascontiguousarray(v))
             for k, v in weights.items()}
    hf.load_state_dict(state, strict=True, assign=True)
    hf.tie_weights()
    hf.eval()
    os.makedirs(out_dir, exist_ok=True)
    hf.save_pretrained(out_dir, safe_serialization=True)
    WhisperFeatureExtractor(feature_size=cfg["num_mel_bins"]).save_pretrained(
        out_dir)
    for name in COPIED_FILES:
        src = os.path.join(ct2_dir, name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(out_dir, name))
    if verify:
        verify_hf_whisper(out_dir, weights)
    return out_dir


def _check_keys(expected, filled, path):
    missing = sorted(expected - filled)
    extra = sorted(filled - expected)
    if missing or extra:
        raise CT2FormatError(
            f"{path}: HF parameters left uninitialised {missing[:3]} / "
            f"unknown {extra[:3]}; the CTranslate2 spec does not match "
            "transformers' Whisper, report the model and transformers "
            "version"
        )


def verify_hf_whisper(hf_dir, weights):
    """Reload a written folder and compare it with the source arrays.

    Arguments
    ---------
    hf_dir : str
        Folder written by :func:`convert_ct2_whisper`.
    weights : dict of str -> numpy.ndarray
        The float32 arrays it was written from.

    Returns
    -------
    int
        Number of tensors compared.

    Raises
    ------
    CT2FormatError
        A parameter is missing, extra or differs.

    Example
    -------
    >>> verify_hf_whisper("/nonexistent", {})
    Traceback (most recent call last):
    ...
    amser_sb.weights.ct2.CT2FormatError: /nonexistent: no config.json; ...
    """
    if not os.path.isfile(os.path.join(hf_dir, "config.json")):
        raise CT2FormatError(
            f"{hf_dir}: no config.json; not a converted Whisper folder, run "
            "convert_ct2_whisper (amser-sb convert-ct2) again"
        )
    from transformers import WhisperForConditionalGeneration

    hf, info = WhisperForConditionalGeneration.from_pretrained(
        hf_dir, output_loading_info=True)
    state = hf.state_dict()
    bad = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys")
           if info.get(k)]
    if bad:
        raise CT2FormatError(
            f"{hf_dir}: transformers reports {bad[0]} "
            f"{list(info[bad[0]])[:3]}; convert the model again"
        )
    _check_keys(set(state), set(weights), hf_dir)
    for name, value in weights.items():
        got = state[name].detach().cpu().numpy()
        if got.shape != value.shape or not np.array_equal(got, value):
            raise CT2FormatError(
                f"{hf_dir}: tensor {name} differs from the CTranslate2 "
                "array; the folder is corrupt, convert it again"
            )
    return len(weights)
