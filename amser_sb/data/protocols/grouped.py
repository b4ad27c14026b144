"""``grouped``: folds of whole recording groups, every class in each.

For corpora whose speakers are unknown (or too few): ``n_folds`` folds of
whole ``group`` values (e.g. the segments of one recording stay together),
dealt class by class so that every fold tests every class. Folds are
speaker-independent only where the groups are the speakers.

Authors
 * amser-sb contributors
"""

from amser_sb.data.protocols.registry import Protocol, ProtocolError
from amser_sb.data.protocols.splits import stratified_grouped_folds


class GroupedProtocol(Protocol):
    """Stratified folds of whole groups.

    Example
    -------
    >>> rows = [{"ID": f"r{g}_{i}", "spk_id": "unknown", "group": f"r{g}",
    ...          "emo": "ab"[g % 2], "ambiguous": 0}
    ...         for g in range(6) for i in range(2)]
    >>> len(GroupedProtocol().split(rows, n_folds=3))
    3
    """

    name = "grouped"
    title = "grouped folds (whole recording groups a fold)"
    test_unit = "group"
    test_column = "group"

    def split(self, rows, n_folds=5, valid_ratio=0.1, seed=1234,
              use_ambiguous=True):
        """``n_folds`` stratified folds of whole groups (at most one a group).

        Arguments
        ---------
        rows : list of dict
            Manifest rows.
        n_folds : int
            Number of folds (capped at the number of groups).
        valid_ratio : float
            Share of the non-test groups that validates.
        seed : int
            Seed of the deal.
        use_ambiguous : bool
            Unused (the file-name corpora have no ambiguous rows).

        Returns
        -------
        list of Fold
        """
        n_groups = len({r["group"] for r in rows})
        return stratified_grouped_folds(
            rows, "group", "emo", n_folds=min(int(n_folds), n_groups),
            valid_ratio=valid_ratio, seed=seed,
        )

    def speaker_key(self, rows):
        """``spk_id`` when the groups are the speakers, else None.

        Arguments
        ---------
        rows : list of dict

        Returns
        -------
        str or None
        """
        recordings = any(r["group"] != r["spk_id"] for r in rows)
        return None if recordings else "spk_id"

    def check(self, speakers, groups, speakers_known=True,
              corpus="the corpus"):
        """Two or more groups.

        Arguments
        ---------
        speakers, groups : sequence of str
        speakers_known : bool
        corpus : str
        """
        if len(groups) < 2:
            raise ProtocolError(
                f"{corpus}: grouped folds need two or more recordings "
                f"(groups), found {len(groups)}"
            )

    def fold_count(self, counts, hparams):
        """``n_folds`` of the hparams.

        Arguments
        ---------
        counts : dict
        hparams : dict

        Returns
        -------
        (int, str)
        """
        count = int(hparams.get("n_folds", 5))
        return count, f"protocol grouped with n_folds={count}"
