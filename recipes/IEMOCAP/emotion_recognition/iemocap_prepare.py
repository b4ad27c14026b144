#!/usr/bin/env python3
"""Prepare IEMOCAP for the AM-ResNet + wav2vec 2.0 recipe.

Writes the CSV manifests (soft targets, MADD voiced intervals), the skipped
list, the label encoder and the cross-validation folds. The preparation is
the ``iemocap`` corpus of ``amser_sb.data.corpora.registry`` (the one that
``train.py`` and ``amser-sb prepare`` run too;
``amser_sb.data.corpora.iemocap.prepare_iemocap``).

Usage::

    python iemocap_prepare.py --data_folder /data/IEMOCAP_full_release \\
        --save_folder results/prep [--protocol speaker|session]

Authors
 * amser-sb contributors
"""

import argparse
import logging
import sys

from amser_sb.data.corpora.registry import get_corpus
from amser_sb.core.madd import DEFAULT_FACTOR, DEFAULT_WINDOW

__all__ = ["main"]

CORPUS = get_corpus("iemocap")


def parse_args(argv=None):
    """Command-line options (defaults are ``prepare_iemocap``'s).

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data_folder", required=True,
                        help="IEMOCAP_full_release folder (Session1..5)")
    parser.add_argument("--save_folder", required=True,
                        help="where manifests and folds are written")
    parser.add_argument("--protocol", default="speaker",
                        choices=CORPUS.protocols,
                        help="speaker: 10 folds (paper); session: 5 folds")
    parser.add_argument("--ambiguous_min_mass", type=float, default=0.5,
                        help="keep an ambiguous utterance iff this share "
                        "of its votes is on the 4 classes")
    parser.add_argument("--include_self_evaluation", action="store_true",
                        help="count the actors' self-evaluations as votes")
    parser.add_argument("--no_ambiguous", action="store_true",
                        help="leave ambiguous utterances out of train")
    parser.add_argument("--madd_window", type=int, default=DEFAULT_WINDOW,
                        help="MADD window, samples")
    parser.add_argument("--madd_factor", type=float, default=DEFAULT_FACTOR,
                        help="MADD factor f (silent if d < f * min(d))")
    parser.add_argument("--seed", type=int, default=1234,
                        help="seed of the session protocol's valid draw")
    parser.add_argument("--valid_ratio", type=float, default=0.1,
                        help="valid share in the session protocol")
    parser.add_argument("--sessions", type=int, nargs="+",
                        default=[1, 2, 3, 4, 5], help="sessions to use")
    parser.add_argument("--num_workers", type=int, default=2,
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
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    out = CORPUS.prepare(
        args.data_folder,
        args.save_folder,
        protocol=args.protocol,
        ambiguous_min_mass=args.ambiguous_min_mass,
        include_self_evaluation=args.include_self_evaluation,
        use_ambiguous=not args.no_ambiguous,
        madd_window=args.madd_window,
        madd_factor=args.madd_factor,
        seed=args.seed,
        valid_ratio=args.valid_ratio,
        sessions=args.sessions,
        num_workers=args.num_workers,
    )
    print(f"manifests: {out['all']}")
    print(f"folds: {len(out['folds'])} ({args.protocol} protocol)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
