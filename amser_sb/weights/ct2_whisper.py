"""CTranslate2 Whisper models -> Hugging Face ``transformers`` Whisper folders.

:func:`convert_ct2_whisper` turns a parsed CTranslate2 Whisper model
(:mod:`amser_sb.weights.ct2_format`) into a folder that
``transformers.WhisperModel.from_pretrained`` loads, and
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

import numpy as np

from amser_sb.weights.ct2_format import CT2FormatError, read_ct2_model

logger = logging.getLogger(__name__)

# d_model -> attention heads of the OpenAI Whisper sizes (used only when the
# spec does not store ``encoder/num_heads``)
HEADS_BY_D_MODEL = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}
# CTranslate2's ``Activation`` enum -> transformers' ``activation_function``
ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu", 5: "tanh"}
COPIED_FILES = ("tokenizer.json", "vocabulary.txt")



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
    >>> from amser_sb.weights.ct2_format import CT2Model
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
    >>> from amser_sb.weights.ct2_format import CT2Model
    >>> m = CT2Model("model.bin", "WhisperSpec", 3, {}, {})
    >>> whisper_state_dict(m, {"d_model": 4, "encoder_layers": 1,
    ...                        "decoder_layers": 1})
    Traceback (most recent call last):
    ...
    amser_sb.weights.ct2_format.CT2FormatError: model.bin: array 'encoder/conv1/weight' missing...
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
    >>> from amser_sb.weights.ct2_format import write_ct2_model
    >>> d = tempfile.mkdtemp()
    >>> write_ct2_model(os.path.join(d, "model.bin"), "TransformerSpec", 1,
    ...                 {"w": np.zeros(1, "f4")})
    >>> convert_ct2_whisper(d, d + "/hf")
    Traceback (most recent call last):
    ...
    amser_sb.weights.ct2_format.CT2FormatError: .../model.bin: spec 'TransformerSpec', not 'WhisperSpec'; ...
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
    amser_sb.weights.ct2_format.CT2FormatError: /nonexistent: no config.json; ...
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
