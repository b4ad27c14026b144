"""Fold strategies over manifest rows: the splits the protocols use.

Every strategy returns a list of :class:`Fold` (train / valid / test rows)
and obeys the same cleanliness rules, checked by
:func:`amser_sb.data.protocols.fold_files.check_fold`:

* valid and test hold clear rows only; ambiguous rows only ever go to
  train (``use_ambiguous=False`` leaves them out);
* no test speaker appears in train or valid;
* no row is in two splits, and no row is lost: every clear row of the
  strategy's pool is in exactly one split.

Strategies (all generic over the grouping column):

* :func:`partner_valid_folds`: leave one group out for test, validate on
  the other groups of the same block, train on the other blocks
  (IEMOCAP's speaker protocol: group = speaker, block = session).
* :func:`leave_one_group_out`: leave one group out for test; valid is a
  seeded, class-stratified share of the rest's clear rows (or whole groups
  of another column).
* :func:`grouped_k_folds`: ``k`` folds of whole groups.
* :func:`stratified_grouped_folds`: as :func:`grouped_k_folds`, but the
  groups are dealt class by class so that every fold tests every class.

Which strategy a named protocol uses is the protocol's business
(:mod:`amser_sb.data.protocols.registry`).

Authors
 * amser-sb contributors
"""

import collections
import random
from dataclasses import dataclass, field


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


def stratified_grouped_folds(
    rows, group_key="group", label_key="emo", n_folds=5, valid_ratio=0.1,
    seed=1234,
):
    """Grouped folds that spread each class's groups evenly over the folds.

    Like :func:`grouped_k_folds` (whole groups per
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
