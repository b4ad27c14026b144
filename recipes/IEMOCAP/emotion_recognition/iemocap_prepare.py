#!/usr/bin/env python3
"""Prepare IEMOCAP for the AM-ResNet + wav2vec 2.0 recipe.

Writes the CSV manifests (soft targets, MADD voiced intervals), the skipped
list, the label encoder and the cross-validation folds. As in every
SpeechBrain recipe, the preparation is a function, :func:`prepare_iemocap`,
that ``train.py`` (through the corpus registry) and users call from
Python; it is a thin call into the library's ``iemocap`` corpus
(``amser_sb.data.corpora.iemocap.prepare_iemocap``), the one
``amser-sb prepare`` runs too. The script keeps a command line::

    python iemocap_prepare.py --data_folder /data/IEMOCAP_full_release \\
        --save_folder results/prep [--protocol speaker|session]

From Python::

    from iemocap_prepare import prepare_iemocap
    out = prepare_iemocap("/data/IEMOCAP_full_release", "results/prep",
                          protocol="session")
    out["folds"][0]["train"]   # CSV of fold 1's training rows

Authors
 * amser-sb contributors
"""

import argparse
import logging
import sys

from amser_sb.data.corpora.registry import get_corpus

__all__ = ["prepare_iemocap", "main"]


def prepare_iemocap(data_folder, save_folder, protocol="speaker", **options):
    """Prepare IEMOCAP: manifests, skipped list, label encoder and folds.

    Idempotent (a rerun with the same options and files does nothing).

    Arguments
    ---------
    data_folder : str
        The ``IEMOCAP_full_release`` folder (``Session1`` ... ``Session5``).
    save_folder : str
        Output folder.
    protocol : str
        ``speaker`` (10 folds, the paper's) or ``session`` (5 folds).
    **options
        The library's options (``ambiguous_min_mass``,
        ``include_self_evaluation``, ``use_ambiguous``, ``madd_window``,
        ``madd_factor``, ``seed``, ``valid_ratio``, ``sessions``,
        ``num_workers``, ``class_set``); their defaults are
        ``amser_sb.data.corpora.iemocap.prepare_iemocap``'s.

    Returns
    -------
    dict
        ``all``, ``skipped``, ``label_encoder`` (paths) and ``folds`` (per
        fold, its ``train``/``valid``/``test`` CSV paths).
    """
    return get_corpus("iemocap").prepare(data_folder, save_folder,
                                         protocol=protocol, **options)


def parse_args(argv=None):
    """Command-line options; those not given keep the library's defaults.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
    """
    keep = argparse.SUPPRESS  # not given: prepare_iemocap's default
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True,
                        help="IEMOCAP_full_release folder (Session1..5)")
    parser.add_argument("--save_folder", required=True,
                        help="where manifests and folds are written")
    parser.add_argument("--protocol", default=keep,
                        choices=get_corpus("iemocap").protocols,
                        help="speaker: 10 folds (paper, default); "
                        "session: 5 folds")
    parser.add_argument("--ambiguous_min_mass", type=float, default=keep,
                        help="keep an ambiguous utterance iff this share "
                        "of its votes is on the 4 classes (default 0.5)")
    parser.add_argument("--include_self_evaluation", action="store_true",
                        default=keep,
                        help="count the actors' self-evaluations as votes")
    parser.add_argument("--no_ambiguous", dest="use_ambiguous",
                        action="store_false", default=keep,
                        help="leave ambiguous utterances out of train")
    parser.add_argument("--madd_window", type=int, default=keep,
                        help="MADD window, samples (default 400)")
    parser.add_argument("--madd_factor", type=float, default=keep,
                        help="MADD factor f, silent if d < f * min(d) "
                        "(default 3.0)")
    parser.add_argument("--seed", type=int, default=keep,
                        help="seed of the session protocol's valid draw")
    parser.add_argument("--valid_ratio", type=float, default=keep,
                        help="valid share in the session protocol")
    parser.add_argument("--sessions", type=int, nargs="+", default=keep,
                        help="sessions to use (default all five)")
    parser.add_argument("--num_workers", type=int, default=keep,
                        help="processes reading audio")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the preparation from the command line.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    options = vars(parse_args(argv))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    out = prepare_iemocap(options.pop("data_folder"),
                          options.pop("save_folder"), **options)
    print(f"manifests: {out['all']}")
    print(f"folds: {len(out['folds'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
