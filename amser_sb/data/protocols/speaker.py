"""``speaker``: leave one speaker out.

Each fold tests one speaker's clear rows. Validation: with ``block_key``
(IEMOCAP: the session, two speakers a block) the other speakers of the test
speaker's block validate and the other blocks train (the paper's 10
folds). Without it, with four or more speakers, whole other speakers (a
seeded ``valid_ratio`` share of the rows) validate, so that model selection
is speaker-independent too (e.g. RAVDESS: 2 to 3 actors); with fewer, a
seeded class-stratified share of the other speakers' rows validates (whole
recording groups where groups are finer than speakers, so that segments
of one recording never straddle train and valid).

Authors
 * amser-sb contributors
"""

from amser_sb.data.protocols.registry import Protocol, ProtocolError
from amser_sb.data.protocols.splits import (
    leave_one_group_out,
    partner_valid_folds,
)


class SpeakerProtocol(Protocol):
    """Leave one speaker out (``spk_id``).

    Example
    -------
    >>> rows = [{"ID": f"{s}{i}", "spk_id": s, "group": s, "emo": "ab"[i % 2],
    ...          "ambiguous": 0} for s in "xyz" for i in range(4)]
    >>> [f.test_groups for f in SpeakerProtocol().split(rows)]
    [['x'], ['y'], ['z']]
    """

    name = "speaker"
    title = "leave-one-speaker-out"
    test_unit = "speaker"
    test_column = "spk_id"

    def split(self, rows, block_key=None, valid_ratio=0.1, seed=1234,
              use_ambiguous=True):
        """Folds of one test speaker each (see the module docstring).

        Arguments
        ---------
        rows : list of dict
            Manifest rows.
        block_key : str, optional
            Column of the speaker blocks whose other speakers validate.
        valid_ratio : float
            Share of the other speakers' rows that validates (no blocks).
        seed : int
            Seed of that draw.
        use_ambiguous : bool
            Whether ambiguous rows train.

        Returns
        -------
        list of Fold
        """
        if block_key is not None:
            return partner_valid_folds(rows, "spk_id", block_key,
                                       use_ambiguous=use_ambiguous)
        recordings = any(r["group"] != r["spk_id"] for r in rows)
        if len({r["spk_id"] for r in rows}) >= 4:
            valid_key = "spk_id"  # whole held-out speakers
        else:
            valid_key = "group" if recordings else None
        return leave_one_group_out(
            rows, "spk_id", valid_ratio=valid_ratio, seed=seed,
            valid_group_key=valid_key, use_ambiguous=use_ambiguous,
        )

    def check(self, speakers, groups, speakers_known=True,
              corpus="the corpus"):
        """Two or more known speakers.

        Arguments
        ---------
        speakers, groups : sequence of str
        speakers_known : bool
        corpus : str
        """
        if not speakers_known or len(speakers) < 2:
            found = list(speakers) if speakers_known else "none"
            raise ProtocolError(
                f"{corpus}: protocol 'speaker' needs two or more known "
                f"speakers (found {found}); use protocol='grouped' or give "
                "speaker_regex"
            )

    def fold_count(self, counts, hparams):
        """One fold a speaker, when the corpus knows its speakers.

        Arguments
        ---------
        counts : dict
        hparams : dict

        Returns
        -------
        (int or None, str or None)
        """
        if counts.get("speakers") is None:
            return None, None
        return counts["speakers"], f"protocol speaker over {counts['scope']}"
