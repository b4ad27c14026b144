"""The default protocol of corpora that may or may not name their speakers.

The file-name corpora (:mod:`amser_sb.data.corpora.named_files`) offer
``speaker`` and ``grouped``; without ``--protocol`` the data decides:
leave one speaker out when two or more speakers are named, else grouped
folds of whole recordings.

Authors
 * amser-sb contributors
"""

from amser_sb.data.protocols.registry import ProtocolError, get_protocol

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
        raise ProtocolError(
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
    else:
        why = "asked for"
    get_protocol(protocol).check(speakers, groups, speakers_known, corpus)
    return protocol, why
