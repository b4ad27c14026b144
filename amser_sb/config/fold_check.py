"""The recipe's ``fold`` and ``protocol`` checked before anything is written.

``--fold=99`` used to create ``fold_99/``, run the data preparation and
then fail on a missing manifest; ``--protocol foo`` failed inside the
preparation with a traceback. The corpus of the registry
(:mod:`amser_sb.data.corpora.registry`, the hparams' ``dataset``) knows its
protocols and what the hparams tell of its speakers and groups; the
protocol (:mod:`amser_sb.data.protocols.registry`) turns that into its fold
count: for IEMOCAP two folds a session (speaker protocol) or one (session
protocol); for corpus presets only the grouped protocol's ``n_folds``
(their speaker folds are as many as speakers, known only after the
preparation).

Authors
 * amser-sb contributors
"""

from amser_sb.data.corpora.registry import get_corpus
from amser_sb.data.protocols.registry import get_protocol


def fold_problem(hparams):
    """Why ``fold`` / ``protocol`` cannot work, or None.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams (``fold``, ``protocol``, ``prepare_sessions``,
        optionally ``dataset``, ``n_folds``).

    Returns
    -------
    str or None

    Example
    -------
    >>> fold_problem({"fold": 99, "protocol": "speaker",
    ...               "prepare_sessions": [1, 2, 3, 4, 5]})
    '--fold=99: protocol speaker over sessions [1, 2, 3, 4, 5] has folds 1 to 10; pass one of them'
    >>> fold_problem({"fold": 2, "protocol": "session",
    ...               "prepare_sessions": [1, 2]}) is None
    True
    """
    if "fold" not in hparams or "protocol" not in hparams:
        return None
    fold, protocol = hparams["fold"], hparams["protocol"]
    corpus = get_corpus(hparams.get("dataset") or "iemocap")
    if protocol not in corpus.protocols:
        return (
            f"--protocol={protocol}: {corpus.name} has the protocols "
            f"{', '.join(corpus.protocols)}; pass one of them"
        )
    count, scope = get_protocol(protocol).fold_count(
        corpus.known_counts(hparams), hparams
    )
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        return f"--fold={fold}: folds are numbered from 1; pass e.g. --fold=1"
    if count is not None and fold > count:
        return f"--fold={fold}: {scope} has folds 1 to {count}; pass one of them"
    return None
