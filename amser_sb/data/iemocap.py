"""IEMOCAP preparation: annotations, audio checks, MADD intervals, folds.

Reads the ``IEMOCAP_full_release`` layout::

    <data_folder>/SessionN/dialog/EmoEvaluation/<dialog>.txt
    <data_folder>/SessionN/sentences/wav/<dialog>/<utt>.wav

and writes, under ``save_folder``:

* ``all.csv``: every parsed utterance (manifest columns plus ``code``, the
  consensus code, and ``status``: ``used`` or why it is skipped);
* ``skipped.csv``: every utterance not used, with its reason (``missing
  wav``, ``unreadable audio``, ``not 16 kHz mono``, ``excluded class``,
  ``ambiguous below threshold``, ``ambiguous not used``);
* ``label_encoder.txt``: the classes in their fixed order;
* ``<protocol>/fold_<k>/{train,valid,test}.csv`` and
  ``<protocol>/folds.csv`` (see :mod:`amser_sb.data.folds`).

Labels (the paper's multi-label learning, :mod:`amser_sb.labels`): a clear
utterance has a consensus code of the class set (``exc`` merges into
``hap``); an ambiguous one has ``xxx`` and is kept iff at least
``ambiguous_min_mass`` of its vote mass is on the classes. Soft targets
come from the ``C-E*`` votes (self-evaluations ``C-F*``/``C-M*`` only with
``include_self_evaluation``); a clear utterance without in-set votes gets
its consensus one-hot.

Files that are not annotations are ignored: macOS AppleDouble ``._*``
files and the ``Categorical/``, ``Attribute/``, ``Self-evaluation/``
subfolders. A malformed annotation line is an error naming the file and
line; a missing or bad wav is a logged skip naming the file.

Audio is read only where it matters: every wav's header gives its
``duration`` (the annotated turn length where the wav is missing or
unreadable), and only utterances the labels keep are read whole and run
through MADD (``voiced`` is empty for the others). A skip reason from the
labels comes first: an excluded utterance whose wav is also missing is
``excluded class``.

Authors
 * amser-sb contributors
"""

import logging
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from amser_sb.data.folds import (
    leave_one_group_out,
    partner_valid_folds,
    write_folds,
)
from amser_sb.data.manifest import (
    ALL_EXTRA_COLUMNS,
    file_fingerprint,
    is_up_to_date,
    make_stamp,
    read_stamp,
    remove_stamp,
    write_manifest,
    write_skipped,
    write_stamp,
)
from amser_sb.labels import IEMOCAP_4, soft_targets, vote_mass

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SESSIONS = (1, 2, 3, 4, 5)
PROTOCOLS = ("speaker", "session")

_HEADER = re.compile(
    r"^\[\s*(?P<start>[-+0-9.eE]+)\s*-\s*(?P<end>[-+0-9.eE]+)\s*\]\s+"
    r"(?P<utt>\S+)\s+(?P<code>\S+)\s+\[(?P<vad>[^\]]*)\]\s*$"
)
_CAT_KEY = re.compile(r"^C-(?P<who>[A-Za-z]+)(?P<num>\d*)$")
_UTT_ID = re.compile(r"^(?P<ses>Ses\d\d)[FM]_.+_(?P<gender>[FM])[A-Za-z]*\d+$")


class AnnotationError(ValueError):
    """A malformed line in an EmoEvaluation file (names file and line)."""


@dataclass
class Utterance:
    """One annotated utterance of an EmoEvaluation file.

    Arguments
    ---------
    id : str
        Utterance ID, e.g. ``Ses01F_impro01_F000``.
    session : int
        Session number.
    spk_id : str
        Speaker, e.g. ``Ses01F`` (session and the gender letter of the
        utterance ID's last part, the person speaking).
    dialog : str
        Dialog (the wav subfolder), e.g. ``Ses01F_impro01``.
    start, end : float
        Turn times in the dialog, seconds.
    code : str
        Consensus code (``neu``, ``exc``, ``xxx``, ...).
    vad : str
        The ``[V, A, D]`` text as written.
    votes : list of (str, list of str)
        External evaluators' ``(name, categories)``.
    self_votes : list of (str, list of str)
        Self-evaluations (``C-F1``, ``C-M1``, ...).
    source : str
        ``<file>:<line>`` of the header line.
    """

    id: str
    session: int
    spk_id: str
    dialog: str
    start: float
    end: float
    code: str
    vad: str = ""
    votes: list = field(default_factory=list)
    self_votes: list = field(default_factory=list)
    source: str = ""


def parse_emo_evaluation(path, session):
    """Parse one EmoEvaluation file.

    Arguments
    ---------
    path : str
        ``SessionN/dialog/EmoEvaluation/<dialog>.txt``.
    session : int
        Its session number.

    Returns
    -------
    list of Utterance
        In file order.

    Raises
    ------
    AnnotationError
        On a line that is neither a header, a ``C-``/``A-`` line, a ``%``
        comment nor blank, or on a malformed header or ``C-`` line; the
        message names ``file:line`` and the fix.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "Ses01F_impro01.txt")
    >>> _ = open(p, "w").write(
    ...     "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\\n\\n"
    ...     "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t"
    ...     "[2.5000, 2.5000, 2.5000]\\n"
    ...     "C-E2:\\tNeutral;\\t()\\n"
    ...     "C-E3:\\tNeutral; Frustration\\t(curious)\\n"
    ...     "C-F1:\\tNeutral;\\t()\\n"
    ...     "A-E3:\\tval 3; act 2; dom  2;\\t()\\n\\n")
    >>> (u,) = parse_emo_evaluation(p, 1)
    >>> u.id, u.spk_id, u.code, u.votes
    ('Ses01F_impro01_F000', 'Ses01F', 'neu', [('C-E2', ['Neutral']), \
('C-E3', ['Neutral', 'Frustration'])])
    >>> u.self_votes
    [('C-F1', ['Neutral'])]
    """
    utterances = []
    current = None
    with open(path, encoding="utf-8", errors="replace") as fin:
        for lineno, raw in enumerate(fin, start=1):
            line = raw.rstrip("\r\n")
            text = line.strip()
            where = f"{path}:{lineno}"
            if not text:
                current = None
                continue
            if text.startswith("%"):
                continue
            if text.startswith("["):
                current = _parse_header(text, where, session)
                utterances.append(current)
                continue
            if current is None:
                raise AnnotationError(
                    f"{where}: line outside an utterance block: {text!r}. "
                    "Each block must start with '[start - end]<TAB>utt_id"
                    "<TAB>code<TAB>[V, A, D]'; fix or delete the line."
                )
            if text.startswith("C-"):
                name, categories = _parse_categorical(text, where)
                who = _CAT_KEY.match(name).group("who")
                if who.upper() == "E":
                    current.votes.append((name, categories))
                else:
                    current.self_votes.append((name, categories))
            elif text.startswith("A-"):
                continue  # dimensional ratings: not used
            else:
                raise AnnotationError(
                    f"{where}: unexpected line {text!r} in the block of "
                    f"{current.id}: expected a 'C-' or 'A-' evaluation "
                    "line or a blank line; fix or delete the line."
                )
    return utterances


def _parse_header(text, where, session):
    """Parse ``[start - end]<TAB>utt<TAB>code<TAB>[V, A, D]``."""
    match = _HEADER.match(text)
    if match is None:
        raise AnnotationError(
            f"{where}: malformed utterance header {text!r}; expected "
            "'[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>"
            "[2.5000, 2.5000, 2.5000]'. Fix the line or restore the file "
            "from the release."
        )
    utt = match.group("utt")
    id_match = _UTT_ID.match(utt)
    if id_match is None or id_match.group("ses") != f"Ses{session:02d}":
        raise AnnotationError(
            f"{where}: utterance ID {utt!r} is not an IEMOCAP ID of "
            f"Session{session} (like 'Ses{session:02d}F_impro01_F000'); "
            "is the file in the right SessionN folder?"
        )
    try:
        start, end = float(match.group("start")), float(match.group("end"))
    except ValueError:
        raise AnnotationError(
            f"{where}: unreadable turn times in {text!r}"
        ) from None
    return Utterance(
        id=utt,
        session=session,
        spk_id=id_match.group("ses") + id_match.group("gender"),
        dialog=utt.rsplit("_", 1)[0],
        start=start,
        end=end,
        code=match.group("code").lower(),
        vad=match.group("vad").strip(),
        source=where,
    )


def _parse_categorical(text, where):
    """Parse ``C-E2:<TAB>Cat1; Cat2;<TAB>(comment)`` -> (name, cats)."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or _CAT_KEY.match(name) is None:
        raise AnnotationError(
            f"{where}: malformed categorical line {text!r}; expected "
            "'C-E2:<TAB>Neutral;<TAB>()'. Fix the line or restore the file "
            "from the release."
        )
    if "\t" in rest:
        # Release form: categories, then "(comment)", tab-separated.
        fields = [f.strip() for f in rest.split("\t") if f.strip()]
        cats_text = fields[0] if fields else ""
        if cats_text.startswith("("):
            cats_text = ""  # only a comment: no category listed
    else:
        # Space-separated variant: drop a trailing "(comment)".
        cats_text = re.sub(r"\([^()]*\)\s*$", "", rest)
    categories = [c.strip() for c in cats_text.split(";") if c.strip()]
    return name, categories


def find_emo_evaluation_files(data_folder, sessions=SESSIONS):
    """The annotation files of each session, checking the layout.

    Only ``SessionN/dialog/EmoEvaluation/*.txt`` count: AppleDouble
    ``._*`` files and the evaluator subfolders are ignored.

    Arguments
    ---------
    data_folder : str
        The ``IEMOCAP_full_release`` folder.
    sessions : sequence of int
        Sessions to read.

    Returns
    -------
    list of (int, str)
        ``(session, path)`` sorted.

    Raises
    ------
    FileNotFoundError
        If a session's ``dialog/EmoEvaluation`` folder is missing or holds
        no annotation file (naming the folder and the expected layout).
    """
    found = []
    for session in sessions:
        folder = os.path.join(
            data_folder, f"Session{session}", "dialog", "EmoEvaluation"
        )
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"IEMOCAP: {folder} not found. --data_folder must be the "
                "IEMOCAP_full_release folder holding Session1 ... Session5 "
                "(each with dialog/EmoEvaluation/*.txt and "
                f"sentences/wav/<dialog>/*.wav); sessions asked: "
                f"{list(sessions)}."
            )
        files = sorted(
            os.path.join(folder, name)
            for name in os.listdir(folder)
            if name.endswith(".txt")
            and not name.startswith("._")
            and os.path.isfile(os.path.join(folder, name))
        )
        if not files:
            raise FileNotFoundError(
                f"IEMOCAP: no annotation file (<dialog>.txt) in {folder}; "
                "is the release complete?"
            )
        found.extend((session, path) for path in files)
    return found


def wav_path(data_folder, utterance):
    """Expected wav of an utterance: ``SessionN/sentences/wav/<dialog>/``."""
    return os.path.join(
        os.path.abspath(data_folder),
        f"Session{utterance.session}",
        "sentences",
        "wav",
        utterance.dialog,
        utterance.id + ".wav",
    )


def list_wavs(data_folder, sessions=SESSIONS):
    """Every ``SessionN/sentences/wav/*/*.wav`` (AppleDouble excluded)."""
    wavs = []
    for session in sessions:
        root = os.path.join(
            data_folder, f"Session{session}", "sentences", "wav"
        )
        if not os.path.isdir(root):
            continue
        with os.scandir(root) as dialogs:
            for dialog in dialogs:
                if not dialog.is_dir() or dialog.name.startswith("._"):
                    continue
                with os.scandir(dialog.path) as entries:
                    wavs.extend(
                        e.path for e in entries
                        if e.name.endswith(".wav")
                        and not e.name.startswith("._")
                    )
    return wavs


def analyse_wav(path, need_voiced=True, sample_rate=SAMPLE_RATE,
                madd_options=None):
    """Check one wav and compute its MADD voiced intervals.

    Arguments
    ---------
    path : str
        The wav file.
    need_voiced : bool
        Read the samples and run MADD (else only the header is read).
    sample_rate : int
        Required sample rate.
    madd_options : dict, optional
        Keyword arguments of ``amser_sb.silence.madd``.

    Returns
    -------
    dict
        ``status`` (``ok``, ``missing wav``, ``unreadable audio`` or
        ``not 16 kHz mono``), ``detail``, ``num_samples``, ``voiced``
        (formatted intervals, or None).
    """
    out = {"status": "ok", "detail": "", "num_samples": None, "voiced": None}
    if not os.path.isfile(path):
        out.update(status="missing wav", detail=f"{path} does not exist")
        return out
    try:
        # One open: header checks, then (if needed) the samples.
        with sf.SoundFile(path) as audio:
            rate, channels = audio.samplerate, audio.channels
            out["num_samples"] = int(audio.frames)
            wav = None
            if need_voiced and rate == sample_rate and channels == 1:
                wav = audio.read(dtype="float32", always_2d=False)
    except Exception as err:  # soundfile raises several types
        out.update(status="unreadable audio", detail=f"{path}: {err}",
                   num_samples=None)
        return out
    if rate != sample_rate or channels != 1:
        out.update(
            status="not 16 kHz mono",
            num_samples=None,
            detail=(
                f"{path}: {rate} Hz, {channels} channels; "
                f"convert to {sample_rate} Hz mono, e.g. sox in.wav -r "
                f"{sample_rate} -c 1 out.wav"
            ),
        )
        return out
    if not need_voiced:
        return out
    if wav.size == 0:
        out.update(status="unreadable audio", detail=f"{path}: no samples")
        return out
    out["num_samples"] = int(wav.shape[0])
    try:
        out["voiced"] = _voiced_intervals(wav, madd_options or {})
    except Exception as err:
        raise RuntimeError(f"{path}: MADD failed: {err}") from err
    return out


def _voiced_intervals(wav, madd_options):
    """MADD on one waveform -> formatted kept intervals."""
    import torch

    from amser_sb.silence import format_intervals, madd, mask_to_intervals

    _, mask = madd(torch.from_numpy(np.ascontiguousarray(wav)), **madd_options)
    return format_intervals(mask_to_intervals(mask))


def _analyse_job(job):
    """Worker entry point: ``(path, need_voiced, sr, madd_options)``."""
    return analyse_wav(*job)


def _init_worker():
    """Worker start-up: one intra-op thread per process."""
    import torch

    torch.set_num_threads(1)


def _analyse_all(jobs, num_workers):
    """Run :func:`analyse_wav` over jobs, in processes if asked."""
    if num_workers <= 1 or len(jobs) < 2 * num_workers:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [_analyse_job(job) for job in jobs]
        finally:
            torch.set_num_threads(threads)
    import multiprocessing

    # fork: workers start at once (no re-import of torch per worker).
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    chunk = max(1, min(64, len(jobs) // (8 * num_workers)))
    with ProcessPoolExecutor(
        num_workers, mp_context=ctx, initializer=_init_worker
    ) as pool:
        return list(pool.map(_analyse_job, jobs, chunksize=chunk))


def label_utterance(
    utt,
    class_set=IEMOCAP_4,
    ambiguous_min_mass=0.5,
    include_self_evaluation=False,
    use_ambiguous=True,
):
    """Decide an utterance's label, soft target and whether it is used.

    Arguments
    ---------
    utt : Utterance
        A parsed utterance.
    class_set : amser_sb.labels.ClassSet
        Classes and label maps.
    ambiguous_min_mass : float
        Keep an ambiguous utterance iff its in-set vote mass is at least
        this share of its total vote mass.
    include_self_evaluation : bool
        Count the actors' self-evaluations as votes.
    use_ambiguous : bool
        Use kept ambiguous utterances (in train).

    Returns
    -------
    dict
        ``emo`` (class or ""), ``ambiguous`` (0/1), ``soft`` (list of
        floats, zeros if undefined), ``reason`` (None if used, else the
        skip reason) and ``detail``.

    Example
    -------
    >>> u = Utterance("Ses01F_impro01_F000", 1, "Ses01F", "Ses01F_impro01",
    ...               0.0, 1.0, "xxx",
    ...               votes=[("C-E1", ["Anger"]), ("C-E2", ["Sadness"]),
    ...                      ("C-E3", ["Frustration"])])
    >>> lab = label_utterance(u)
    >>> lab["emo"], lab["ambiguous"], lab["soft"], lab["reason"]
    ('', 1, [0.0, 0.0, 0.5, 0.5], None)
    """
    votes = [cats for _, cats in utt.votes]
    if include_self_evaluation:
        votes += [cats for _, cats in utt.self_votes]
    mass, total = vote_mass(votes, class_set)
    in_set = float(sum(mass))
    soft = soft_targets(mass)
    out = {"emo": "", "ambiguous": 0, "reason": None, "detail": ""}
    cls = class_set.code_to_class(utt.code)
    if cls is not None:
        out["emo"] = cls
        out["soft"] = soft or class_set.one_hot(cls)
        return out
    out["soft"] = soft or [0.0] * len(class_set)
    if class_set.is_ambiguous(utt.code):
        out["ambiguous"] = 1
        share = in_set / total if total > 0 else 0.0
        if share < ambiguous_min_mass:
            out["reason"] = "ambiguous below threshold"
            out["detail"] = (
                f"{share:.3f} of the vote mass on {list(class_set.names)} "
                f"< ambiguous_min_mass={ambiguous_min_mass}"
            )
        elif not use_ambiguous:
            out["reason"] = "ambiguous not used"
            out["detail"] = "use_ambiguous=False"
        return out
    out["reason"] = "excluded class"
    out["detail"] = f"consensus {utt.code!r} not in {list(class_set.names)}"
    return out


def prepare_iemocap(
    data_folder,
    save_folder,
    protocol="speaker",
    class_set=IEMOCAP_4,
    ambiguous_min_mass=0.5,
    include_self_evaluation=False,
    use_ambiguous=True,
    madd_window=400,
    madd_factor=3.0,
    seed=1234,
    valid_ratio=0.1,
    sessions=SESSIONS,
    num_workers=2,
):
    """Prepare IEMOCAP manifests, skipped list, label encoder and folds.

    Idempotent: the outputs carry a stamp of every option here (but
    ``num_workers``) and a fingerprint of the annotation and wav files
    (paths, sizes, modification times). A rerun with the same stamp does
    nothing; any change rebuilds, and protocol folders built from older
    manifests are removed.

    Arguments
    ---------
    data_folder : str
        The ``IEMOCAP_full_release`` folder (``Session1`` ... ``Session5``).
    save_folder : str
        Output folder.
    protocol : str
        ``"speaker"`` (10 folds: test one speaker, valid the other speaker
        of the session, train the other sessions) or ``"session"`` (5
        folds: test one session, valid a seeded class-stratified
        ``valid_ratio`` of the other sessions' clear utterances).
    class_set : amser_sb.labels.ClassSet
        Classes (default ``neu, hap, sad, ang`` with ``exc`` -> ``hap``).
    ambiguous_min_mass : float
        Keep an ambiguous utterance iff at least this share of its votes
        is on the classes (default 0.5).
    include_self_evaluation : bool
        Count the actors' self-evaluations as votes (default False).
    use_ambiguous : bool
        Put kept ambiguous utterances in train (default True).
    madd_window, madd_factor : int, float
        MADD window (samples) and factor (see ``amser_sb.silence.madd``).
    seed : int
        Seed of the valid draws.
    valid_ratio : float
        Valid share for the ``session`` protocol.
    sessions : sequence of int
        Sessions to use (default all five).
    num_workers : int
        Processes reading audio (default 2).

    Returns
    -------
    dict
        ``all``, ``skipped``, ``label_encoder`` (paths), ``folder`` (the
        protocol folder), ``folds`` (per fold, in order, a dict of
        ``train``/``valid``/``test`` CSV paths; ``folds[k - 1]`` is
        ``fold_<k>``), ``skipped_prep`` (True if everything was up to
        date).

    Example
    -------
    >>> import tempfile, os
    >>> from amser_sb.data.synthetic import make_iemocap_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> _ = make_iemocap_corpus(os.path.join(tmp, "IEMOCAP"), sessions=(1, 2))
    >>> out = prepare_iemocap(os.path.join(tmp, "IEMOCAP"),
    ...                       os.path.join(tmp, "prep"), sessions=(1, 2),
    ...                       num_workers=1)
    >>> len(out["folds"]), os.path.basename(out["folds"][0]["train"])
    (4, 'train.csv')
    """
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}"
        )
    t0 = time.time()
    data_folder = os.path.abspath(data_folder)
    save_folder = os.path.abspath(save_folder)
    sessions = tuple(sorted(int(s) for s in sessions))
    annotation_files = find_emo_evaluation_files(data_folder, sessions)
    wav_files = list_wavs(data_folder, sessions)
    fingerprint = file_fingerprint(
        [p for _, p in annotation_files] + wav_files, data_folder
    )
    madd_options = _madd_options(madd_window, madd_factor)
    manifest_options = {
        "data_folder": data_folder,
        "sessions": list(sessions),
        "class_set": class_set.describe(),
        "ambiguous_min_mass": ambiguous_min_mass,
        "include_self_evaluation": include_self_evaluation,
        "use_ambiguous": use_ambiguous,
        "madd": madd_options,
        "sample_rate": SAMPLE_RATE,
    }
    manifest_stamp = make_stamp(manifest_options, fingerprint)
    protocol_folder = os.path.join(save_folder, protocol)
    protocol_options = {"protocol": protocol, "seed": seed,
                        "valid_ratio": valid_ratio}
    if protocol != "session":
        protocol_options.pop("valid_ratio")
    protocol_stamp = make_stamp(protocol_options, manifest_stamp["digest"])
    out = {
        "all": os.path.join(save_folder, "all.csv"),
        "skipped": os.path.join(save_folder, "skipped.csv"),
        "label_encoder": os.path.join(save_folder, "label_encoder.txt"),
    }
    manifest_ok = is_up_to_date(
        save_folder, manifest_stamp,
        [out["all"], out["skipped"], out["label_encoder"]],
    )
    if manifest_ok:
        fold_paths = _fold_paths(protocol_folder)
        if fold_paths and is_up_to_date(
            protocol_folder, protocol_stamp,
            [p for f in fold_paths for p in f.values()],
        ):
            logger.info(
                "IEMOCAP preparation up to date in %s (%s protocol); "
                "skipping", save_folder, protocol,
            )
            return dict(out, folder=protocol_folder, folds=fold_paths,
                        skipped_prep=True)
        rows = _read_used_rows(out["all"], class_set)
    else:
        os.makedirs(save_folder, exist_ok=True)
        remove_stamp(save_folder)
        rows = _build_manifests(
            annotation_files, data_folder, out, class_set,
            dict(ambiguous_min_mass=ambiguous_min_mass,
                 include_self_evaluation=include_self_evaluation,
                 use_ambiguous=use_ambiguous),
            madd_options,
            num_workers,
        )
        write_stamp(save_folder, manifest_stamp)
        _remove_stale_protocols(save_folder, manifest_stamp["digest"])

    os.makedirs(protocol_folder, exist_ok=True)
    remove_stamp(protocol_folder)
    if protocol == "speaker":
        folds = partner_valid_folds(
            rows, "spk_id", "session", use_ambiguous=use_ambiguous
        )
    else:
        folds = leave_one_group_out(
            rows, "session", valid_ratio=valid_ratio, seed=seed,
            use_ambiguous=use_ambiguous,
        )
    fold_paths = write_folds(folds, protocol_folder, class_set, "spk_id")
    write_stamp(protocol_folder, protocol_stamp)
    for k, fold in enumerate(folds, start=1):
        logger.info(
            "%s fold_%d (test %s): train %d, valid %d, test %d", protocol,
            k, " ".join(fold.test_groups), len(fold.train), len(fold.valid),
            len(fold.test),
        )
    logger.info(
        "IEMOCAP preparation done in %.1f s -> %s", time.time() - t0,
        save_folder,
    )
    return dict(out, folder=protocol_folder, folds=fold_paths,
                skipped_prep=False)


def _madd_options(window, factor):
    """Every MADD keyword argument: the two given, the rest at defaults.

    Defaults are recorded too, so that a change of them in
    ``amser_sb.silence`` invalidates the stamp.
    """
    import inspect

    from amser_sb.silence import madd

    options = {
        name: p.default
        for name, p in inspect.signature(madd).parameters.items()
        if p.default is not inspect.Parameter.empty and name != "wav_lens"
    }
    options.update(window=int(window), factor=float(factor))
    return options


def _fold_paths(protocol_folder):
    """Paths of the existing ``fold_<k>`` CSVs, in fold order."""
    if not os.path.isdir(protocol_folder):
        return []
    ks = sorted(
        int(name[5:]) for name in os.listdir(protocol_folder)
        if re.fullmatch(r"fold_\d+", name)
    )
    return [
        {s: os.path.join(protocol_folder, f"fold_{k}", f"{s}.csv")
         for s in ("train", "valid", "test")}
        for k in ks
    ]


def _remove_stale_protocols(save_folder, manifest_digest):
    """Delete protocol folders built from another manifest."""
    import shutil

    for protocol in PROTOCOLS:
        folder = os.path.join(save_folder, protocol)
        stamp = read_stamp(folder)
        if stamp is not None and stamp.get("fingerprint") != manifest_digest:
            logger.info("removing stale folds in %s", folder)
            shutil.rmtree(folder)


def _read_used_rows(all_csv, class_set):
    """Rows of ``all.csv`` whose status is ``used``."""
    from amser_sb.data.manifest import read_manifest

    return [
        r for r in read_manifest(all_csv, class_set) if r["status"] == "used"
    ]


def _build_manifests(annotation_files, data_folder, out, class_set,
                     label_options, madd_options, num_workers):
    """Parse, label, analyse audio; write all.csv, skipped.csv, encoder."""
    utterances = []
    seen = {}
    for session, path in annotation_files:
        for utt in parse_emo_evaluation(path, session):
            if utt.id in seen:
                raise AnnotationError(
                    f"{utt.source}: utterance {utt.id} already annotated at "
                    f"{seen[utt.id]}; remove the duplicate block"
                )
            seen[utt.id] = utt.source
            utterances.append(utt)
    logger.info(
        "IEMOCAP: parsed %d utterances from %d annotation files",
        len(utterances), len(annotation_files),
    )
    labels = [label_utterance(u, class_set, **label_options)
              for u in utterances]
    wavs = [wav_path(data_folder, u) for u in utterances]
    jobs = [
        (w, lab["reason"] is None, SAMPLE_RATE, madd_options)
        for w, lab in zip(wavs, labels)
    ]
    audio = _analyse_all(jobs, num_workers)

    all_rows, used_rows, skipped_rows = [], [], []
    for utt, wav, lab, info in zip(utterances, wavs, labels, audio):
        reason, detail = lab["reason"], lab["detail"]
        if reason is None and info["status"] != "ok":
            reason, detail = info["status"], info["detail"]
        if info["num_samples"] is not None:
            duration = info["num_samples"] / SAMPLE_RATE
        else:
            duration = round(max(utt.end - utt.start, 0.0), 4)
        row = {
            "ID": utt.id,
            "duration": duration,
            "wav": wav,
            "spk_id": utt.spk_id,
            "session": f"Ses{utt.session:02d}",
            "emo": lab["emo"],
            "ambiguous": lab["ambiguous"],
            "voiced": info["voiced"] or "",
            "code": utt.code,
            "status": reason or "used",
        }
        for col, value in zip(class_set.soft_columns, lab["soft"]):
            row[col] = float(value)
        all_rows.append(row)
        if reason is None:
            used_rows.append(row)
        else:
            skipped_rows.append(dict(row, reason=reason, detail=detail))

    write_manifest(out["all"], all_rows, class_set, ALL_EXTRA_COLUMNS)
    write_skipped(out["skipped"], skipped_rows)
    class_set.write_label_encoder(out["label_encoder"])
    _log_counts(used_rows, skipped_rows, class_set)
    return used_rows


def _log_counts(used_rows, skipped_rows, class_set):
    """Log used utterances per class and skipped ones per reason."""
    per_class = {name: 0 for name in class_set.names}
    n_amb = 0
    for row in used_rows:
        if row["ambiguous"]:
            n_amb += 1
        else:
            per_class[row["emo"]] += 1
    logger.info(
        "IEMOCAP used: %d clear (%s) + %d ambiguous",
        sum(per_class.values()),
        ", ".join(f"{k} {v}" for k, v in per_class.items()), n_amb,
    )
    silent = [row["ID"] for row in used_rows if not row["voiced"]]
    if silent:
        logger.warning(
            "IEMOCAP: %d used utterances are all silence for MADD (empty "
            "voiced), e.g. %s; they are kept", len(silent), silent[:3],
        )
    per_reason = {}
    for row in skipped_rows:
        per_reason.setdefault(row["reason"], []).append(row)
    for reason, rows in sorted(per_reason.items()):
        log = logger.info
        if reason not in ("excluded class", "ambiguous below threshold",
                          "ambiguous not used"):
            log = logger.warning
        log(
            "IEMOCAP skipped %d utterances: %s (e.g. %s)", len(rows), reason,
            rows[0]["detail"] or rows[0]["ID"],
        )
    if per_reason:
        logger.info("IEMOCAP: every skipped utterance is in skipped.csv")
