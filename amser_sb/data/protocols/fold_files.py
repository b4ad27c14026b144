"""Folds on disk: checked, written as CSVs, found again.

:func:`write_folds` writes ``<folder>/fold_<k>/{train,valid,test}.csv``
(``k`` from 1, in the order the protocol lists its folds) and a
``folds.csv`` summary, after :func:`check_fold` passed for each;
:func:`fold_paths` lists what a folder holds.

Authors
 * amser-sb contributors
"""

import os
import re
import shutil

from amser_sb.data.manifest import write_csv, write_manifest
from amser_sb.data.protocols.splits import Fold, is_ambiguous  # noqa: F401


def check_fold(fold, speaker_key="spk_id"):
    """Raise ValueError if a fold breaks a cleanliness rule.

    Arguments
    ---------
    fold : Fold
        The fold to check.
    speaker_key : str or None
        Speaker column; None skips the speaker check (unknown speakers).

    Example
    -------
    >>> row = {"ID": "a", "spk_id": "s1", "ambiguous": 0}
    >>> check_fold(Fold(["s1"], train=[row], test=[row]))
    Traceback (most recent call last):
     ...
    ValueError: fold ['s1']: 1 rows in both train and test, e.g. ['a']
    """
    name = f"fold {fold.test_groups}"
    splits = fold.splits()
    for split in ("valid", "test"):
        amb = [r["ID"] for r in splits[split] if is_ambiguous(r)]
        if amb:
            raise ValueError(
                f"{name}: ambiguous rows in {split}, e.g. {amb[:3]}"
            )
    ids = {s: {r["ID"] for r in rows} for s, rows in splits.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        both = sorted(ids[a] & ids[b])
        if both:
            raise ValueError(
                f"{name}: {len(both)} rows in both {a} and {b}, "
                f"e.g. {both[:3]}"
            )
    if speaker_key is not None:
        test_spk = {r[speaker_key] for r in fold.test}
        for split in ("train", "valid"):
            leak = sorted(test_spk & {r[speaker_key] for r in splits[split]})
            if leak:
                raise ValueError(
                    f"{name}: test speakers {leak} also in {split}"
                )


def write_folds(folds, folder, class_set, speaker_key="spk_id"):
    """Check and write folds as ``fold_<k>/{train,valid,test}.csv``.

    Old ``fold_*`` folders in ``folder`` are removed first, so no stale
    fold survives a rebuild with fewer folds. A ``folds.csv`` summary
    (``fold, test_groups, train, valid, test`` row counts) is written too.

    Arguments
    ---------
    folds : list of Fold
        Folds in order; the first is ``fold_1``.
    folder : str
        Protocol folder, e.g. ``<save_folder>/speaker``.
    class_set : amser_sb.core.labels.ClassSet
        Decides the ``soft_*`` columns.
    speaker_key : str or None
        Passed to :func:`check_fold`.

    Returns
    -------
    list of dict
        Per fold, the paths of its ``train``, ``valid`` and ``test`` CSVs.
    """
    for fold in folds:
        check_fold(fold, speaker_key)
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("fold_") and os.path.isdir(path):
            shutil.rmtree(path)
    paths, summary = [], []
    for k, fold in enumerate(folds, start=1):
        fold_dir = os.path.join(folder, f"fold_{k}")
        entry = {}
        for split, rows in fold.splits().items():
            entry[split] = os.path.join(fold_dir, f"{split}.csv")
            write_manifest(
                entry[split], sorted(rows, key=lambda r: r["ID"]), class_set
            )
        paths.append(entry)
        summary.append(
            {
                "fold": f"fold_{k}",
                "test_groups": " ".join(str(g) for g in fold.test_groups),
                "train": len(fold.train),
                "valid": len(fold.valid),
                "test": len(fold.test),
            }
        )
    write_csv(
        os.path.join(folder, "folds.csv"),
        summary,
        ["fold", "test_groups", "train", "valid", "test"],
    )
    return paths


def fold_paths(protocol_folder):
    """Paths of the existing ``fold_<k>`` CSVs, in fold order.

    Arguments
    ---------
    protocol_folder : str
        A folder :func:`write_folds` wrote.

    Returns
    -------
    list of dict
        Per fold, its ``train``, ``valid`` and ``test`` CSV paths (empty if
        the folder does not exist).

    Example
    -------
    >>> fold_paths("/no/such/folder")
    []
    """
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
