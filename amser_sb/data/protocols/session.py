"""``session``: leave one recording session out (IEMOCAP's 5 folds).

Each fold tests one value of the ``group`` column (IEMOCAP writes the
session there); a seeded class-stratified share of the other sessions'
clear rows validates. The protocol of SUPERB and emotion2vec.

Authors
 * amser-sb contributors
"""

from amser_sb.data.protocols.registry import Protocol
from amser_sb.data.protocols.splits import leave_one_group_out


class SessionProtocol(Protocol):
    """Leave one session (``group``) out.

    Example
    -------
    >>> rows = [{"ID": f"{g}{i}", "spk_id": f"{g}{i % 2}", "group": g,
    ...          "emo": "ab"[i % 2], "ambiguous": 0}
    ...         for g in ("Ses01", "Ses02") for i in range(8)]
    >>> [f.test_groups for f in SessionProtocol().split(rows)]
    [['Ses01'], ['Ses02']]
    """

    name = "session"
    title = "leave-one-session-out"
    test_unit = "session"
    test_column = "group"

    def split(self, rows, valid_ratio=0.1, seed=1234, use_ambiguous=True):
        """Folds of one test session each.

        Arguments
        ---------
        rows : list of dict
            Manifest rows.
        valid_ratio : float
            Share of the other sessions' clear rows that validates.
        seed : int
            Seed of that draw.
        use_ambiguous : bool
            Whether ambiguous rows train.

        Returns
        -------
        list of Fold
        """
        return leave_one_group_out(
            rows, "group", valid_ratio=valid_ratio, seed=seed,
            use_ambiguous=use_ambiguous,
        )

    def fold_count(self, counts, hparams):
        """One fold a session (group), when the corpus knows them.

        Arguments
        ---------
        counts : dict
        hparams : dict

        Returns
        -------
        (int or None, str or None)
        """
        if counts.get("groups") is None:
            return None, None
        return counts["groups"], f"protocol session over {counts['scope']}"
