"""The recipe's ``fold`` and ``protocol`` checked before anything is written.

``--fold=99`` used to create ``fold_99/``, run the data preparation and
then fail on a missing manifest; ``--protocol foo`` failed inside the
preparation with a traceback. For IEMOCAP both are known from the hparams
alone: the speaker protocol has two folds a session (``prepare_sessions``),
the session protocol one. Corpus presets (``dataset``) have as many speaker
folds as speakers, known only after their preparation, so only their
grouped protocol (``n_folds``) is checked here.

Authors
 * amser-sb contributors
"""

IEMOCAP_PROTOCOLS = ("speaker", "session")


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
    dataset = str(hparams.get("dataset") or "iemocap").lower()
    if dataset == "iemocap":
        if protocol not in IEMOCAP_PROTOCOLS:
            return (
                f"--protocol={protocol}: IEMOCAP has the protocols "
                f"{', '.join(IEMOCAP_PROTOCOLS)}; pass one of them"
            )
        sessions = list(hparams.get("prepare_sessions") or [1, 2, 3, 4, 5])
        count = len(sessions) * (2 if protocol == "speaker" else 1)
        scope = f"protocol {protocol} over sessions {sessions}"
    elif protocol == "grouped":
        count = int(hparams.get("n_folds", 5))
        scope = f"protocol grouped with n_folds={count}"
    else:
        count, scope = None, None
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        return f"--fold={fold}: folds are numbered from 1; pass e.g. --fold=1"
    if count is not None and fold > count:
        return f"--fold={fold}: {scope} has folds 1 to {count}; pass one of them"
    return None
