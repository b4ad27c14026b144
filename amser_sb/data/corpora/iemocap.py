"""IEMOCAP preparation: annotations, audio checks, MADD intervals, folds.

Reads the ``IEMOCAP_full_release`` layout::

    <data_folder>/SessionN/dialog/EmoEvaluation/<dialog>.txt
    <data_folder>/SessionN/sentences/wav/<dialog>/<utt>.wav

(the annotations and their labels: :mod:`amser_sb.data.corpora.iemocap_annotations`)
and writes, under ``save_folder``:

* ``all.csv``: every parsed utterance (manifest columns plus ``code``, the
  consensus code, and ``status``: ``used`` or why it is skipped); its
  ``group`` column holds the utterance's session (``Ses01``);
* ``skipped.csv``: every utterance not used, with its reason (``missing
  wav``, ``unreadable audio``, ``truncated audio``, ``shorter than
  annotated``, ``not 16 kHz mono``, ``excluded class``, ``ambiguous below
  threshold``, ``ambiguous not used``);
* ``label_encoder.txt``: the classes in their fixed order;
* ``<protocol>/fold_<k>/{train,valid,test}.csv`` and
  ``<protocol>/folds.csv`` (see :mod:`amser_sb.data.protocols`).

Audio is read only where it matters (through :mod:`amser_sb.core.audio`): every
wav's header gives its ``duration`` (the annotated turn length where the
wav is missing or unreadable), and only utterances the labels keep are
read whole and run through MADD (``voiced`` is empty for the others). A
truncated wav (its header announces more frames than the file holds) and a
wav far shorter than its annotated turn (below
:data:`MIN_DURATION_SHARE` of ``end - start``) are skipped, never used as a
shorter utterance. A skip reason from the labels comes first: an excluded
utterance whose wav is also missing is ``excluded class``.

The preparation is registered as the ``iemocap`` corpus
(:class:`IemocapCorpus`, :mod:`amser_sb.data.corpora.registry`).

Authors
 * amser-sb contributors
"""

import logging
import os
import time

from amser_sb.data.audio_prep import (
    SAMPLE_RATE,
    madd_options as make_madd_options,
)
from amser_sb.data.corpora.iemocap_audio import analyse_all
from amser_sb.data.protocols.fold_files import fold_paths, write_folds
from amser_sb.data.protocols.registry import get_protocol
from amser_sb.data.corpora.iemocap_annotations import (
    SESSIONS,
    AnnotationError,
    find_emo_evaluation_files,
    label_utterance,
    parse_emo_evaluation,
)
from amser_sb.data.manifest import (
    ALL_EXTRA_COLUMNS,
    file_fingerprint,
    is_up_to_date,
    make_stamp,
    read_manifest,
    remove_stale_protocols,
    remove_stamp,
    write_manifest,
    write_skipped,
    write_stamp,
)
from amser_sb.data.corpora.registry import Corpus
from amser_sb.core.labels import IEMOCAP_4
from amser_sb.core.madd import DEFAULT_FACTOR, DEFAULT_WINDOW

logger = logging.getLogger(__name__)

PROTOCOLS = ("speaker", "session")

#: A wav shorter than this share of its annotated turn (``end - start``)
#: is skipped (``shorter than annotated``): a cut copy, not the utterance.
MIN_DURATION_SHARE = 0.5

#: Bumped when a change here changes the outputs (part of the stamp; 2:
#: ``group`` column, truncated and cut wavs skipped).
IEMOCAP_VERSION = 2

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



def prepare_iemocap(
    data_folder,
    save_folder,
    protocol="speaker",
    class_set=IEMOCAP_4,
    ambiguous_min_mass=0.5,
    include_self_evaluation=False,
    use_ambiguous=True,
    madd_window=DEFAULT_WINDOW,
    madd_factor=DEFAULT_FACTOR,
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
    class_set : amser_sb.core.labels.ClassSet
        Classes (default ``neu, hap, sad, ang`` with ``exc`` -> ``hap``).
    ambiguous_min_mass : float
        Keep an ambiguous utterance iff at least this share of its votes
        is on the classes (default 0.5).
    include_self_evaluation : bool
        Count the actors' self-evaluations as votes (default False).
    use_ambiguous : bool
        Put kept ambiguous utterances in train (default True).
    madd_window, madd_factor : int, float
        MADD window (samples) and factor (see ``amser_sb.core.madd.madd``).
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
    madd_options = make_madd_options(madd_window, madd_factor)
    manifest_options = {
        "iemocap_version": IEMOCAP_VERSION,
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
        folds_found = fold_paths(protocol_folder)
        if folds_found and is_up_to_date(
            protocol_folder, protocol_stamp,
            [p for f in folds_found for p in f.values()],
        ):
            logger.info(
                "IEMOCAP preparation up to date in %s (%s protocol); "
                "skipping", save_folder, protocol,
            )
            return dict(out, folder=protocol_folder, folds=folds_found,
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
        remove_stale_protocols(save_folder, manifest_stamp["digest"],
                               PROTOCOLS)

    os.makedirs(protocol_folder, exist_ok=True)
    remove_stamp(protocol_folder)
    if protocol == "speaker":
        # Test one speaker, validate on the other speaker of its session
        # (the group column holds the session).
        options = {"block_key": "group"}
    else:
        options = {"valid_ratio": valid_ratio, "seed": seed}
    folds = get_protocol(protocol).split(rows, use_ambiguous=use_ambiguous,
                                         **options)
    written = write_folds(folds, protocol_folder, class_set, "spk_id")
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
    return dict(out, folder=protocol_folder, folds=written,
                skipped_prep=False)



def _read_used_rows(all_csv, class_set):
    """Rows of ``all.csv`` whose status is ``used``."""
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
    audio = analyse_all(jobs, num_workers)

    all_rows, used_rows, skipped_rows = [], [], []
    for utt, wav, lab, info in zip(utterances, wavs, labels, audio):
        reason, detail = lab["reason"], lab["detail"]
        if reason is None and info["status"] != "ok":
            reason, detail = info["status"], info["detail"]
        if reason is None:
            reason, detail = _duration_check(utt, wav, info["num_samples"])
        if info["num_samples"] is not None:
            duration = info["num_samples"] / SAMPLE_RATE
        else:
            duration = round(max(utt.end - utt.start, 0.0), 4)
        row = {
            "ID": utt.id,
            "duration": duration,
            "wav": wav,
            "spk_id": utt.spk_id,
            "group": f"Ses{utt.session:02d}",  # IEMOCAP's session
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


def _duration_check(utt, wav, num_samples):
    """``("shorter than annotated", detail)`` for a cut wav, else None's."""
    annotated = utt.end - utt.start
    seconds = num_samples / SAMPLE_RATE
    if annotated > 0 and seconds < MIN_DURATION_SHARE * annotated:
        return "shorter than annotated", (
            f"{wav}: {seconds:.2f} s of audio for a {annotated:.2f} s turn "
            f"({utt.source}: [{utt.start} - {utt.end}]); the wav is cut or "
            "the annotation is of another file: restore the wav from the "
            "release"
        )
    return None, ""


def _check_classes(classes):
    """IEMOCAP is prepared with its four classes: refuse another choice
    (it would otherwise be ignored without a word)."""
    from amser_sb.data.classes import ClassChoiceError, select_classes

    if classes is None:
        return
    four = list(IEMOCAP_4.names)
    names, _ = select_classes(four, classes, "IEMOCAP")
    if list(names) != four:
        raise ClassChoiceError(
            f"classes {names}: IEMOCAP is prepared with its four classes "
            f"{four}; leave --classes unset for it"
        )


class IemocapCorpus(Corpus):
    """IEMOCAP, labels from the EmoEvaluation files (:func:`prepare_iemocap`).

    Example
    -------
    >>> from amser_sb.data.corpora.registry import get_corpus
    >>> corpus = get_corpus("iemocap")
    >>> corpus.protocols, corpus.default_protocol
    (('speaker', 'session'), 'speaker')
    """

    name = "iemocap"
    title = ("IEMOCAP (Busso et al., Language Resources and Evaluation "
             "2008), IEMOCAP_full_release")
    protocols = PROTOCOLS
    default_protocol = "speaker"
    options = ("class_set", "ambiguous_min_mass", "include_self_evaluation",
               "use_ambiguous", "madd_window", "madd_factor", "seed",
               "valid_ratio", "sessions", "num_workers")

    def prepare(self, data_folder, save_folder, protocol=None, **options):
        """Prepare IEMOCAP (see :func:`prepare_iemocap`).

        Arguments
        ---------
        data_folder : str
            The ``IEMOCAP_full_release`` folder.
        save_folder : str
            Output folder.
        protocol : str, optional
            ``speaker`` (default) or ``session``.
        **options
            Keyword arguments of :func:`prepare_iemocap` named in
            :attr:`options`.

        Returns
        -------
        dict
            As :func:`prepare_iemocap`.
        """
        self.check_protocol(protocol)
        self.check_options(options)
        return prepare_iemocap(data_folder, save_folder,
                               protocol=protocol or self.default_protocol,
                               **options)

    def known_counts(self, hparams):
        """Two speakers and one session (group) per prepared session.

        Arguments
        ---------
        hparams : dict
            ``prepare_sessions``.

        Returns
        -------
        dict

        Example
        -------
        >>> IemocapCorpus().known_counts({"prepare_sessions": [1, 2]})
        {'speakers': 4, 'groups': 2, 'scope': 'sessions [1, 2]'}
        """
        sessions = list(hparams.get("prepare_sessions") or SESSIONS)
        return {"speakers": 2 * len(sessions), "groups": len(sessions),
                "scope": f"sessions {sessions}"}

    def options_from_hparams(self, hparams):
        """:func:`prepare_iemocap` options from recipe hparams.

        Arguments
        ---------
        hparams : dict
            Loaded recipe hparams (``use_ambiguous``,
            ``ambiguous_min_mass``, ``madd_window``, ``madd_factor``,
            ``prepare_seed``, ``prepare_sessions``,
            ``prepare_num_workers``).

        Returns
        -------
        dict
        """
        _check_classes(hparams.get("classes"))
        return {
            "use_ambiguous": hparams["use_ambiguous"],
            "ambiguous_min_mass": hparams["ambiguous_min_mass"],
            "madd_window": hparams["madd_window"],
            "madd_factor": hparams["madd_factor"],
            "seed": hparams["prepare_seed"],
            "sessions": hparams["prepare_sessions"],
            "num_workers": hparams["prepare_num_workers"],
        }
