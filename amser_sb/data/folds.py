"""Cross-validation protocols over manifest rows.

Every protocol returns a list of :class:`Fold` (train / valid / test rows)
and obeys the same cleanliness rules, checked by :func:`check_fold`:

* valid and test hold clear rows only; ambiguous rows only ever go to
  train (``use_ambiguous=False`` leaves them out);
* no test speaker appears in train or valid;
* no row is in two splits, and no row is lost: every clear row of the
  protocol's pool is in exactly one split.

Protocols (all generic over the grouping column):

* :func:`partner_valid_folds`: leave one group out for test, validate on
  the other groups of the same block, train on the other blocks. IEMOCAP's
  ``speaker`` protocol (the paper's 10 folds): group = speaker, block =
  session.
* :func:`leave_one_group_out`: leave one group out for test; valid is a
  seeded, class-stratified share of the rest's clear rows (or whole groups
  of another column). IEMOCAP's ``session`` protocol (5 folds,
  SUPERB/emotion2vec); leave-one-speaker-out on corpora with known
  speakers.
* :func:`grouped_k_folds`: ``k`` folds of whole groups (e.g. recordings,
  so that segments of one recording stay together) when speakers are
  unknown.
* :func:`stratified_grouped_folds`: as :func:`grouped_k_folds`, but the
  groups are dealt class by class so that every fold tests every class
  (the ``grouped`` protocol of the file-name corpora).

:func:`choose_protocol` and :func:`corpus_folds` decide between
leave-one-speaker-out and grouped folds for a corpus that may or may not
name its speakers (the file-name presets).

:func:`write_folds` writes ``<folder>/fold_<k>/{train,valid,test}.csv``
(``k`` from 1, in the order the protocol lists its folds) and a
``folds.csv`` summary.

Authors
 * amser-sb contributors
"""

import collections
import os
import random
import re
import shutil
from dataclasses import dataclass, field

from amser_sb.data.manifest import write_csv, write_manifest


@dataclass
class Fold:
    """One cross-validation fold.

    Arguments
    ---------
    test_groups : list of str
        The group values held out for test (e.g. ``["Ses01F"]``).
    train, valid, test : list of dict
        Manifest rows of each split.
    """

    test_groups: list
    train: list = field(default_factory=list)
    valid: list = field(default_factory=list)
    test: list = field(default_factory=list)

    def splits(self):
        """``{"train": rows, "valid": rows, "test": rows}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}


def is_ambiguous(row):
    """True for an ambiguous row (``ambiguous`` column 1)."""
    return int(row["ambiguous"]) == 1


def stratified_holdout(rows, ratio, rng, label_key="emo"):
    """Split rows into (kept, held out), class by class.

    Within each class (rows sorted by ID, then shuffled by ``rng``), the
    first ``round(ratio * n)`` rows are held out, at least one when the
    class has two rows or more, so that a small corpus still validates on
    every class.

    Arguments
    ---------
    rows : list of dict
        Rows with ``ID`` and ``label_key``.
    ratio : float
        Share held out, in [0, 1).
    rng : random.Random
        Seeded generator.
    label_key : str
        Column to stratify on.

    Returns
    -------
    kept, held : list of dict
        Both sorted by ID.

    Example
    -------
    >>> rows = [{"ID": f"u{i}", "emo": "ab"[i % 2]} for i in range(20)]
    >>> kept, held = stratified_holdout(rows, 0.1, random.Random(0))
    >>> len(kept), sorted(r["emo"] for r in held)
    (18, ['a', 'b'])
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"holdout ratio must be in [0, 1), got {ratio}")
    by_class = {}
    for row in sorted(rows, key=lambda r: r["ID"]):
        by_class.setdefault(row[label_key], []).append(row)
    held_ids = set()
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        n = len(members)
        n_held = int(ratio * n + 0.5)
        if ratio > 0 and n >= 2:
            n_held = max(n_held, 1)
        held_ids.update(r["ID"] for r in members[:n_held])
    ordered = sorted(rows, key=lambda r: r["ID"])
    kept = [r for r in ordered if r["ID"] not in held_ids]
    held = [r for r in ordered if r["ID"] in held_ids]
    return kept, held


def grouped_holdout(rows, group_key, ratio, rng):
    """Split rows into (kept, held out) by whole groups.

    Groups are shuffled by ``rng`` (after sorting) and held out until at
    least ``ratio`` of the rows are; at least one group is held out when
    there are two or more.

    Arguments
    ---------
    rows : list of dict
    group_key : str
        Column whose groups stay together.
    ratio : float
        Share of rows held out, in [0, 1).
    rng : random.Random

    Returns
    -------
    kept, held : list of dict
    """
    groups = sorted({r[group_key] for r in rows})
    rng.shuffle(groups)
    sizes = {}
    for r in rows:
        sizes[r[group_key]] = sizes.get(r[group_key], 0) + 1
    held_groups, n_held = set(), 0
    for g in groups:
        if n_held >= ratio * len(rows) or len(held_groups) + 1 >= len(groups):
            break
        held_groups.add(g)
        n_held += sizes[g]
    kept = [r for r in rows if r[group_key] not in held_groups]
    held = [r for r in rows if r[group_key] in held_groups]
    return kept, held


def _clear(rows):
    return [r for r in rows if not is_ambiguous(r)]


def _train_rows(rows, use_ambiguous):
    return [r for r in rows if use_ambiguous or not is_ambiguous(r)]


def _train_minus_valid(rest, valid, use_ambiguous, valid_group_key=None):
    """Train rows: ``rest`` minus valid rows (minus whole valid groups).

    With ``valid_group_key``, the ambiguous rows of a validation group are
    left out of train too, so that no group straddles train and valid.
    """
    valid_ids = {r["ID"] for r in valid}
    valid_groups = set()
    if valid_group_key is not None:
        valid_groups = {r[valid_group_key] for r in valid}
    return [
        r for r in _train_rows(rest, use_ambiguous)
        if r["ID"] not in valid_ids
        and (valid_group_key is None or r[valid_group_key] not in valid_groups)
    ]


def partner_valid_folds(
    rows, group_key="spk_id", block_key="group", use_ambiguous=True
):
    """Leave one group out; validate on its block partners.

    For each group ``g`` (sorted): test = clear rows of ``g``; valid =
    clear rows of the other groups in ``g``'s block; train = every row of
    the other blocks (ambiguous ones included if ``use_ambiguous``).

    Arguments
    ---------
    rows : list of dict
        Manifest rows (``ambiguous`` column 0/1).
    group_key : str
        Test unit (IEMOCAP: ``spk_id``).
    block_key : str
        Unit excluded from train (IEMOCAP: ``group``, its session).
    use_ambiguous : bool
        Put ambiguous rows in train.

    Returns
    -------
    list of Fold

    Example
    -------
    >>> rows = [{"ID": f"{s}{g}{i}", "spk_id": f"{s}{g}", "group": s,
    ...          "emo": "a", "ambiguous": 0}
    ...         for s in ("S1", "S2") for g in "FM" for i in range(2)]
    >>> folds = partner_valid_folds(rows)
    >>> [f.test_groups[0] for f in folds]
    ['S1F', 'S1M', 'S2F', 'S2M']
    >>> [r["ID"] for r in folds[0].valid], len(folds[0].train)
    (['S1M0', 'S1M1'], 4)
    """
    folds = []
    for group in sorted({r[group_key] for r in rows}):
        block = {r[block_key] for r in rows if r[group_key] == group}
        if len(block) != 1:
            raise ValueError(
                f"{group_key} {group!r} spans several {block_key}s "
                f"{sorted(block)}; partner folds need one {block_key} per "
                f"{group_key}"
            )
        (block,) = block
        in_block = [r for r in rows if r[block_key] == block]
        folds.append(
            Fold(
                test_groups=[group],
                test=_clear([r for r in in_block if r[group_key] == group]),
                valid=_clear([r for r in in_block if r[group_key] != group]),
                train=_train_rows(
                    [r for r in rows if r[block_key] != block], use_ambiguous
                ),
            )
        )
    return folds


def leave_one_group_out(
    rows,
    group_key="group",
    valid_ratio=0.1,
    seed=1234,
    label_key="emo",
    valid_group_key=None,
    use_ambiguous=True,
):
    """Leave one group out for test; hold out a seeded share for valid.

    For each group ``g`` (sorted): test = clear rows of ``g``; from the
    other groups' clear rows, valid = a ``valid_ratio`` share, stratified
    by ``label_key`` (or whole groups of ``valid_group_key``, e.g.
    recordings); train = the rest, plus their ambiguous rows if
    ``use_ambiguous`` (with ``valid_group_key``, ambiguous rows of a
    validation group are left out of that fold). The valid draw of a fold
    depends only on ``seed`` and ``g``.

    Arguments
    ---------
    rows : list of dict
        Manifest rows.
    group_key : str
        Test unit (IEMOCAP's ``session`` protocol: ``group``, holding
        the session).
    valid_ratio : float
        Share of the remaining clear rows that validates.
    seed : int
        Seed of the valid draw.
    label_key : str
        Column to stratify on.
    valid_group_key : str, optional
        Hold out whole groups of this column instead of stratified rows.
    use_ambiguous : bool
        Put ambiguous rows in train.

    Returns
    -------
    list of Fold

    Example
    -------
    >>> rows = [{"ID": f"{s}_{i}", "spk_id": f"{s}F", "group": s,
    ...          "emo": "ab"[i % 2], "ambiguous": int(i == 9)}
    ...         for s in ("S1", "S2", "S3") for i in range(10)]
    >>> folds = leave_one_group_out(rows, "group", valid_ratio=0.1)
    >>> f = folds[0]
    >>> f.test_groups, len(f.test), len(f.valid), len(f.train)
    (['S1'], 9, 2, 18)
    """
    folds = []
    for group in sorted({r[group_key] for r in rows}):
        rest = [r for r in rows if r[group_key] != group]
        rng = random.Random(f"{seed}/{group}")
        clear_rest = _clear(rest)
        if valid_group_key is None:
            kept, valid = stratified_holdout(
                clear_rest, valid_ratio, rng, label_key
            )
        else:
            kept, valid = grouped_holdout(
                clear_rest, valid_group_key, valid_ratio, rng
            )
        train = _train_minus_valid(rest, valid, use_ambiguous,
                                   valid_group_key)
        folds.append(
            Fold(
                test_groups=[group],
                test=_clear([r for r in rows if r[group_key] == group]),
                valid=valid,
                train=train,
            )
        )
    return folds


def grouped_k_folds(
    rows,
    group_key,
    n_folds=5,
    valid_ratio=0.1,
    seed=1234,
    use_ambiguous=True,
):
    """``n_folds`` folds of whole groups; valid is whole groups too.

    Groups are dealt, largest first (ties broken by a seeded shuffle), to
    the fold with the fewest rows so far; fold ``k`` tests on its groups,
    validates on a ``valid_ratio`` share of the other folds' groups, trains
    on the rest. Use it when speakers are unknown, with ``group_key`` the
    recording, so that segments of one recording never straddle splits.

    Arguments
    ---------
    rows : list of dict
        Manifest rows.
    group_key : str
        Column whose groups stay together (e.g. a recording ID).
    n_folds : int
        Number of folds (<= number of groups).
    valid_ratio : float
        Share of the remaining clear rows that validates (whole groups).
    seed : int
        Seed of the dealing and of the valid draws.
    use_ambiguous : bool
        Put ambiguous rows in train.

    Returns
    -------
    list of Fold

    Example
    -------
    >>> rows = [{"ID": f"r{g}_{i}", "rec": f"r{g}", "emo": "a",
    ...          "ambiguous": 0} for g in range(6) for i in range(g + 1)]
    >>> folds = grouped_k_folds(rows, "rec", n_folds=3)
    >>> [len(f.test) for f in folds]
    [7, 7, 7]
    >>> sorted(g for f in folds for g in f.test_groups)
    ['r0', 'r1', 'r2', 'r3', 'r4', 'r5']
    """
    sizes = {}
    for r in rows:
        sizes[r[group_key]] = sizes.get(r[group_key], 0) + 1
    groups = sorted(sizes)
    if not 2 <= n_folds <= len(groups):
        raise ValueError(
            f"n_folds must be in [2, {len(groups)}] (the number of "
            f"{group_key} groups), got {n_folds}"
        )
    rng = random.Random(f"{seed}/deal")
    rng.shuffle(groups)
    groups.sort(key=lambda g: -sizes[g])  # stable: shuffled ties
    members = [[] for _ in range(n_folds)]
    load = [0] * n_folds
    for g in groups:
        k = min(range(n_folds), key=lambda i: (load[i], i))
        members[k].append(g)
        load[k] += sizes[g]
    folds = []
    for k in range(n_folds):
        test_groups = set(members[k])
        rest = [r for r in rows if r[group_key] not in test_groups]
        kept, valid = grouped_holdout(
            _clear(rest), group_key, valid_ratio,
            random.Random(f"{seed}/{k}"),
        )
        folds.append(
            Fold(
                test_groups=sorted(test_groups),
                test=_clear([r for r in rows if r[group_key] in test_groups]),
                valid=valid,
                train=_train_minus_valid(rest, valid, use_ambiguous,
                                         group_key),
            )
        )
    return folds


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
    class_set : amser_sb.labels.ClassSet
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


def stratified_grouped_folds(
    rows, group_key="group", label_key="emo", n_folds=5, valid_ratio=0.1,
    seed=1234,
):
    """Grouped folds that spread each class's groups evenly over the folds.

    Like :func:`amser_sb.data.folds.grouped_k_folds` (whole groups per
    fold, valid whole groups too), but groups are dealt class by class
    (a group's class: its most frequent ``label_key``), largest first, to
    the fold holding the fewest rows of that class; valid holds out a
    ``valid_ratio`` share of each class's remaining groups. On small
    corpora this keeps every class in every test and valid split, so that
    per-class recall (UA) is measured on all classes.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (clear ones; ambiguous rows go to train only).
    group_key : str
        Column whose groups stay together (a recording).
    label_key : str
        Column to stratify on.
    n_folds : int
        Number of folds (<= number of groups).
    valid_ratio : float
        Share of each class's non-test rows that validates.
    seed : int
        Seed of the tie-breaking shuffle and the valid draws.

    Returns
    -------
    list of Fold

    Example
    -------
    >>> rows = [{"ID": f"{c}{g}_{i}", "rec": f"{c}{g}", "emo": c,
    ...          "ambiguous": 0}
    ...         for c in "ab" for g in range(4) for i in range(2)]
    >>> folds = stratified_grouped_folds(rows, "rec", n_folds=2)
    >>> ["".join(sorted(r["emo"] for r in f.test)) for f in folds]
    ['aaaabbbb', 'aaaabbbb']
    >>> [len({r["rec"] for r in f.valid}) for f in folds]
    [2, 2]
    """
    clear = [r for r in rows if not is_ambiguous(r)]
    members = collections.defaultdict(list)
    for r in clear:
        members[r[group_key]].append(r)
    groups = sorted(members)
    if not 2 <= n_folds <= len(groups):
        raise ValueError(
            f"n_folds must be in [2, {len(groups)}] (the number of "
            f"{group_key} groups), got {n_folds}"
        )
    label = {
        g: sorted(collections.Counter(r[label_key] for r in members[g])
                  .items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        for g in groups
    }
    rng = random.Random(f"{seed}/deal")
    rng.shuffle(groups)
    groups.sort(key=lambda g: -len(members[g]))  # stable: shuffled ties
    fold_groups = [[] for _ in range(n_folds)]
    total = [0] * n_folds
    for cls in sorted(set(label.values())):
        per_class = [0] * n_folds
        for g in (g for g in groups if label[g] == cls):
            k = min(range(n_folds), key=lambda i: (per_class[i], total[i], i))
            fold_groups[k].append(g)
            per_class[k] += len(members[g])
            total[k] += len(members[g])
    folds = []
    for k in range(n_folds):
        test_groups = set(fold_groups[k])
        rest = sorted((g for g in members if g not in test_groups))
        rng = random.Random(f"{seed}/{k}")
        valid_groups = set()
        for cls in sorted(set(label.values())):
            candidates = [g for g in rest if label[g] == cls]
            rng.shuffle(candidates)
            n_rows = sum(len(members[g]) for g in candidates)
            held = 0
            for g in candidates[:-1]:  # train keeps one group of each class
                if held >= valid_ratio * n_rows:
                    break
                valid_groups.add(g)
                held += len(members[g])
        folds.append(
            Fold(
                test_groups=sorted(test_groups),
                test=[r for r in clear if r[group_key] in test_groups],
                valid=[r for r in clear if r[group_key] in valid_groups],
                train=[
                    r for r in rows
                    if r[group_key] not in test_groups
                    and r[group_key] not in valid_groups
                ],
            )
        )
    return folds



#: The protocols of corpora without IEMOCAP's session structure.
CORPUS_PROTOCOLS = ("speaker", "grouped")


def choose_protocol(protocol, speakers, groups, speakers_known=True,
                    corpus="the corpus"):
    """The protocol of a corpus's folds, and why it was chosen.

    Arguments
    ---------
    protocol : str or None
        ``"speaker"`` (leave-one-speaker-out), ``"grouped"`` (folds of
        whole groups) or None: ``speaker`` when two or more speakers are
        known, else ``grouped``.
    speakers : sequence of str
        The speakers of the used rows.
    groups : sequence of str
        Their recording groups.
    speakers_known : bool
        Whether the corpus names its speakers at all.
    corpus : str
        Name used in messages.

    Returns
    -------
    protocol : str
    why : str
        The reason, for the log and the summary.

    Example
    -------
    >>> choose_protocol(None, ["a", "b"], ["a", "b"])
    ('speaker', '2 speakers named in the file names')
    >>> choose_protocol(None, ["unknown"], ["r1", "r2"],
    ...                 speakers_known=False)[0]
    'grouped'
    """
    if protocol is not None and protocol not in CORPUS_PROTOCOLS:
        raise ValueError(
            f"unknown protocol {protocol!r}; choose one of {CORPUS_PROTOCOLS}"
        )
    if protocol is None:
        if speakers_known and len(speakers) >= 2:
            protocol = "speaker"
            why = f"{len(speakers)} speakers named in the file names"
        elif speakers_known:
            protocol = "grouped"
            why = (f"only {len(speakers)} speaker among the used files, "
                   "leave-one-speaker-out impossible")
        else:
            protocol = "grouped"
            why = ("speakers are not given by the file names; every "
                   "recording stays in one fold")
    elif protocol == "speaker":
        if not speakers_known or len(speakers) < 2:
            found = list(speakers) if speakers_known else "none"
            raise ValueError(
                f"{corpus}: protocol 'speaker' needs two or more known "
                f"speakers (found {found}); use protocol='grouped' or give "
                "speaker_regex"
            )
        why = "asked for"
    else:
        why = "asked for"
    if protocol == "grouped" and len(groups) < 2:
        raise ValueError(
            f"{corpus}: grouped folds need two or more recordings "
            f"(groups), found {len(groups)}"
        )
    return protocol, why


def corpus_folds(rows, protocol, n_folds=5, valid_ratio=0.1, seed=1234):
    """The folds of a corpus's ``speaker`` or ``grouped`` protocol.

    ``speaker``: :func:`leave_one_group_out` over ``spk_id`` (valid: whole
    recording groups where groups are finer than speakers). ``grouped``:
    :func:`stratified_grouped_folds` over ``group``.

    Arguments
    ---------
    rows : list of dict
        Used manifest rows (``spk_id``, ``group``, ``emo``).
    protocol : str
        ``"speaker"`` or ``"grouped"`` (see :func:`choose_protocol`).
    n_folds : int
        Folds of the grouped protocol (at most the number of groups).
    valid_ratio : float
        Share of the non-test rows that validates.
    seed : int
        Seed of the draws.

    Returns
    -------
    folds : list of Fold
    speaker_key : str or None
        The speaker column the folds are disjoint on (None: grouped folds
        of recordings, not speaker-independent).

    Example
    -------
    >>> rows = [{"ID": f"{s}{i}", "spk_id": s, "group": s, "emo": "ab"[i % 2],
    ...          "ambiguous": 0} for s in "xyz" for i in range(4)]
    >>> folds, key = corpus_folds(rows, "speaker")
    >>> [f.test_groups for f in folds], key
    ([['x'], ['y'], ['z']], 'spk_id')
    """
    # Groups finer than speakers (recordings of a speaker) stay whole in
    # valid too.
    recordings = any(r["group"] != r["spk_id"] for r in rows)
    if protocol == "speaker":
        folds = leave_one_group_out(
            rows, "spk_id", valid_ratio=valid_ratio, seed=seed,
            valid_group_key="group" if recordings else None,
        )
        return folds, "spk_id"
    n_groups = len({r["group"] for r in rows})
    folds = stratified_grouped_folds(
        rows, "group", "emo", n_folds=min(int(n_folds), n_groups),
        valid_ratio=valid_ratio, seed=seed,
    )
    # Speaker-disjoint only when the groups are the speakers.
    return folds, None if recordings else "spk_id"


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
