"""Rows of the file-name corpora: audio files found, names parsed, checked.

:func:`find_audio_files` lists a corpus folder's audio (and what else it
holds), :func:`utterance_ids` makes unique utterance ids from relative
paths, and :func:`build_rows` turns parsed names into manifest rows (audio
analysed, classes selected), logging every skipped file with its reason
and count (:func:`amser_sb.data.corpora.named_files.prepare_corpus` runs
them).

Authors
 * amser-sb contributors
"""


import collections
import logging
import os
import shutil

import torch

from amser_sb.data import manifest as mf
from amser_sb.data.audio_prep import (
    SAMPLE_RATE,
    WAV16K_FOLDER,
    analyse_audio,
)

logger = logging.getLogger(__name__)


def find_audio_files(data_folder, extensions, prune=()):
    """Files under ``data_folder``: audio candidates and other files.

    Arguments
    ---------
    data_folder : str
        Root folder (walked recursively, symbolic links followed).
    extensions : tuple of str
        Lower-case audio extensions with the dot.
    prune : sequence of str
        Absolute folders not to enter (the save folder, if inside).

    Returns
    -------
    candidates : list of (str, str)
        ``(absolute path, relative path with '/')``, sorted.
    others : collections.Counter
        Extension -> count of files that are not candidates.
    """
    prune = {os.path.realpath(p) for p in prune}
    candidates, others = [], collections.Counter()
    for root, dirs, files in os.walk(data_folder, followlinks=True):
        dirs[:] = sorted(
            d for d in dirs
            if os.path.realpath(os.path.join(root, d)) not in prune
        )
        for name in sorted(files):
            path = os.path.join(root, name)
            ext = os.path.splitext(name)[1].lower()
            if ext in extensions:
                rel = os.path.relpath(path, data_folder).replace(os.sep, "/")
                candidates.append((os.path.abspath(path), rel))
            else:
                others[ext or "(none)"] += 1
    candidates.sort(key=lambda c: c[1])
    return candidates, others


def utterance_ids(relpaths):
    """Utterance IDs: the shortest path suffixes that are all unique.

    File stems when they are unique, else the last folder and the stem
    joined with ``_`` (SAVEE's ``DC/a01.wav`` -> ``DC_a01``), and so on.

    Example
    -------
    >>> utterance_ids(["wav/03a01Fa.wav", "wav/03a01Wa.wav"])
    ['03a01Fa', '03a01Wa']
    >>> utterance_ids(["AudioData/DC/a01.wav", "AudioData/JE/a01.wav"])
    ['DC_a01', 'JE_a01']
    """
    parts = [os.path.splitext(r)[0].split("/") for r in relpaths]
    depth = max((len(p) for p in parts), default=1)
    for d in range(1, depth + 1):
        ids = ["_".join(p[-d:]) for p in parts]
        if len(set(ids)) == len(ids):
            return ids
    return ids  # identical paths cannot happen; duplicates are skipped



_EXPECTED_REASONS = ("excluded class", "excluded folder", "hidden file",
                     "field value not used")


def build_rows(naming, parsed, skipped, class_set, code_map, lacking, out,
           save_folder, min_sample_rate, madd_options, others, n_files):
    """Analyse audio, write all.csv, skipped.csv and the label encoder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # short files: threads only contend
    try:
        return _checked_rows(naming, parsed, skipped, class_set, code_map,
                           lacking, out, save_folder, min_sample_rate,
                           madd_options, others, n_files)
    finally:
        torch.set_num_threads(threads)


def _checked_rows(naming, parsed, skipped, class_set, code_map, lacking, out,
                save_folder, min_sample_rate, madd_options, others, n_files):
    """:func:`_build`'s work, at one torch thread."""
    from tqdm import tqdm

    wav16k = os.path.join(save_folder, WAV16K_FOLDER)
    if os.path.isdir(wav16k):
        shutil.rmtree(wav16k)  # no orphan copy survives a rebuild
    ids = utterance_ids([rel for _, rel, _ in parsed])
    zeros = [0.0] * len(class_set)
    all_rows, used, seen = [], [], {}
    converted = {"resampled": 0, "downmixed": 0, "source_rates": {},
                 "unexpected_rate": 0}
    for uid, (path, rel, fields) in zip(
        tqdm(ids, desc=f"prepare {naming.name}", unit="file", disable=None),
        parsed,
    ):
        code = fields["label"]
        speaker = fields["speaker"] if naming.speakers_known else None
        cls = code_map[code]
        group = fields["group"] or speaker or uid
        row = {
            "ID": uid, "duration": "", "wav": path,
            "spk_id": speaker or "unknown", "group": group, "emo": "",
            "ambiguous": 0, "voiced": "", "code": code, "status": "used",
        }
        row.update(zip(class_set.soft_columns, zeros))
        reason, detail = None, ""
        if uid in seen:
            reason, detail = "duplicate ID", (
                f"{rel}: ID {uid!r} already used by {seen[uid]}"
            )
        elif cls not in class_set.names:
            reason, detail = "excluded class", (
                f"{rel}: code {code!r} -> {cls!r}, not in the class set "
                f"{list(class_set.names)}"
            )
        else:
            seen[uid] = rel
            info = analyse_audio(
                path, os.path.join(wav16k, os.path.splitext(rel)[0] + ".wav"),
                min_sample_rate, madd_options,
            )
            if info["rate"] is not None:
                rates = converted["source_rates"]
                rates[str(info["rate"])] = rates.get(str(info["rate"]), 0) + 1
                if naming.sample_rate and info["rate"] != naming.sample_rate:
                    converted["unexpected_rate"] += 1
            if info["status"] != "ok":
                reason, detail = info["status"], info["detail"]
            else:
                converted["resampled"] += info["rate"] != SAMPLE_RATE
                converted["downmixed"] += info["channels"] > 1
                row.update(
                    duration=info["num_samples"] / SAMPLE_RATE,
                    wav=info["wav"], emo=cls, voiced=info["voiced"],
                )
                row.update(zip(class_set.soft_columns, class_set.one_hot(cls)))
        if reason is not None:
            row["status"] = reason
            skipped.append(mf.skipped_row(path, reason, detail, uid,
                                         row["spk_id"], group, code))
        else:
            used.append(row)
        all_rows.append(row)

    mf.write_manifest(out["all"], all_rows, class_set, mf.ALL_EXTRA_COLUMNS)
    mf.write_skipped(out["skipped"], skipped)
    class_set.write_label_encoder(out["label_encoder"])

    counts = collections.Counter(r["emo"] for r in used)
    by_reason = collections.Counter(s["reason"] for s in skipped)
    speakers = (sorted({r["spk_id"] for r in used})
                if naming.speakers_known else None)
    summary = {
        "preset": naming.name,
        "title": naming.title,
        "classes": list(class_set.names),
        "lacking": list(lacking),
        "class_counts": {c: counts.get(c, 0) for c in class_set.names},
        "speakers": speakers,
        "n_groups": len({r["group"] for r in used}),
        "n_files": n_files,
        "n_used": len(used),
        "n_skipped": len(skipped),
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "converted": converted,
        "ignored_extensions": dict(sorted(others.items())),
    }
    _log_summary(naming, summary, skipped, out["skipped"])
    if not used:
        raise ValueError(
            f"{naming.name}: no usable file under the data folder "
            f"({len(skipped)} skipped, see {out['skipped']}); is it the "
            "right corpus and preset?"
        )
    return used, summary


def _log_summary(naming, summary, skipped, skipped_csv):
    """Log what was used, converted and skipped (never silent)."""
    logger.info(
        "%s: %d of %d files used (%s)%s", naming.name, summary["n_used"],
        summary["n_files"],
        ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items()),
        f"; lacks {summary['lacking']} of IEMOCAP's classes"
        if summary["lacking"] else "",
    )
    empty = [c for c, n in summary["class_counts"].items() if n == 0]
    if empty:
        logger.warning(
            "%s: no usable file of the classes %s (the class set comes from "
            "the preset's map, not the data); choose classes= to drop them",
            naming.name, empty,
        )
    conv = summary["converted"]
    if conv["resampled"] or conv["downmixed"]:
        logger.info(
            "%s: converted once to %d Hz mono under %s/: %d resampled "
            "(source rates %s), %d downmixed from several channels",
            naming.name, SAMPLE_RATE, WAV16K_FOLDER, conv["resampled"],
            conv["source_rates"], conv["downmixed"],
        )
    if conv["unexpected_rate"]:
        logger.warning(
            "%s: %d files are not at the corpus's documented %d Hz "
            "(converted anyway; rates %s)", naming.name,
            conv["unexpected_rate"], naming.sample_rate,
            conv["source_rates"],
        )
    for reason, n in summary["skipped_by_reason"].items():
        example = next(s for s in skipped if s["reason"] == reason)
        log = logger.info if reason in _EXPECTED_REASONS else logger.warning
        log("%s: skipped %d files: %s (e.g. %s)", naming.name, n, reason,
            example["detail"])
    if skipped:
        logger.info("%s: every skipped file is listed in %s", naming.name,
                    skipped_csv)


