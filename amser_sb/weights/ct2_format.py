"""The CTranslate2 ``model.bin`` format (binary version 6): read and write.

CTranslate2 (faster-whisper) keeps a model in one ``model.bin`` plus
``config.json`` / ``tokenizer.json`` / ``vocabulary.txt``.
:func:`read_ct2_model` parses that file (also when it is split into
``model.bin.part1``, ``model.bin.part2``, ...) into a :class:`CT2Model`;
:func:`write_ct2_model` writes one (tests, tools). What the variables mean
for Whisper is :mod:`amser_sb.weights.ct2_whisper`'s business.

Authors
 * amser-sb contributors
"""

import logging
import os
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


