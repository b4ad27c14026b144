"""Cross-validation: train and test every fold, then tabulate the results.

One command runs a whole protocol (10 folds leave-one-speaker-out, or 5
leave-one-session-out)::

    amser-sb cv hparams/am_resnet_w2v2.yaml --data_folder=/data/IEMOCAP \\
        --protocol speaker
    # or, in recipes/IEMOCAP/emotion_recognition:  python cv.py <same>

Each fold is the recipe's ``train.py`` run with ``--fold=<k>``
(:func:`amser_sb.training.run.run_fold`): prepare the data (once; idempotent), train with
model selection on the fold's validation set (never its test
speaker/session), test the best checkpoint. A fold whose
``test_metrics.json`` exists is finished and is not rerun (delete its
folder to redo it); an interrupted fold resumes from its last checkpoint.
Finally ``results.md`` and ``results.json`` are written to
``<output_root>/<protocol>``: WA, UA, macro-F1 and per-class recall of each
finished fold (those of earlier calls with other ``--folds`` included) and
their mean ± sample standard deviation, the shape of the paper's Table 5.

Authors
 * amser-sb contributors 2026
"""

import argparse
import gc
import json
import logging
import os
import re
import sys

import speechbrain as sb

from amser_sb.training.distributed import exit_process, init_distributed
from amser_sb.core.errors import USER_ERROR_STATUS, AmserUserError
from amser_sb.config.hparams_loading import RecipeError, load_hparams
from amser_sb.training.results import fold_test_groups, write_results
from amser_sb.training.run import prepare_data, run_fold
from amser_sb.training.pipeline import ManifestError

logger = logging.getLogger(__name__)

__all__ = ["fold_numbers", "run_cv", "main"]

def fold_numbers(manifest_folder, protocol):
    """The folds the preparation wrote for a protocol.

    Arguments
    ---------
    manifest_folder : str
        The preparation's save folder.
    protocol : str
        Protocol sub-folder (``speaker``, ``session`` ...).

    Returns
    -------
    list of int
        Sorted fold numbers.
    """
    folder = os.path.join(manifest_folder, protocol)
    if not os.path.isdir(folder):
        raise RecipeError(
            f"no folds in {folder}: the data preparation did not write "
            f"protocol {protocol!r}"
        )
    numbers = []
    for name in os.listdir(folder):
        match = re.fullmatch(r"fold_(\d+)", name)
        if match and os.path.isdir(os.path.join(folder, name)):
            numbers.append(int(match.group(1)))
    return sorted(numbers)


#: File whose presence marks a finished fold.
DONE_FILE = "test_metrics.json"


def _finished(done_file, debug=False):
    """The test summary of a finished fold, or None to (re)run it.

    A ``--debug`` run's results only count for another debug run.
    """
    if not os.path.isfile(done_file):
        return None
    with open(done_file) as handle:
        summary = json.load(handle)
    if summary.get("debug") and not debug:
        logger.info("%s is from a --debug run: fold rerun", done_file)
        return None
    return summary


def _parse_folds(text, available):
    """``"1,3-5"`` -> [1, 3, 4, 5]; ``"all"``/None -> every fold."""
    if text in (None, "", "all"):
        return list(available)
    wanted = []
    for part in str(text).split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-")
            wanted.extend(range(int(low), int(high) + 1))
        elif part:
            wanted.append(int(part))
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise RecipeError(
            f"folds {missing} do not exist; the protocol has folds "
            f"{available}"
        )
    return wanted


def run_cv(argv):
    """Runs (or resumes) every fold of a protocol and writes the results.

    Arguments
    ---------
    argv : list of str
        ``hparams_file [--protocol P] [--folds 1,2|all] [--key=value ...]``
        plus SpeechBrain's run options (``--device``, ``--debug``, ...).

    Returns
    -------
    dict
        The content of ``results.json``.

    Raises
    ------
    SystemExit
        With a one-line ``error: ...`` message for bad input.
    """
    argv = list(argv)
    parser = argparse.ArgumentParser(
        prog="amser-sb cv",
        allow_abbrev=False,
        description="Train and test every fold of a protocol; write "
        "results.md and results.json.",
    )
    parser.add_argument("--protocol", default=None,
                        help="speaker (10 folds) or session (5 folds); "
                        "default: the hparams file's")
    parser.add_argument("--folds", default="all",
                        help="folds to run, e.g. '1,2' or '1-5' (default all)")
    own, rest = parser.parse_known_args(argv)
    if any(arg.split("=")[0] == "--fold" for arg in rest):
        _user_error("cv runs every fold; choose them with --folds, not "
                    "--fold")
    hparams_file, run_opts, overrides = sb.parse_arguments(rest)
    try:
        # torchrun: every fold on all processes (one process group).
        run_opts = init_distributed(run_opts)
    except ValueError as err:
        _user_error(err)
    overrides = overrides or ""
    if own.protocol:
        overrides += f"\nprotocol: {own.protocol}"
    try:
        # Prepare once (fold 1's hparams name the shared manifest folder).
        hparams = load_hparams(hparams_file, overrides)
        prepare_data(hparams)
        manifest_folder = hparams["manifest_folder"]
        protocol = hparams["protocol"]
        title = hparams.get("experiment_name", os.path.basename(hparams_file))
        output_folder = os.path.normpath(hparams["output_folder"])
        if os.path.basename(output_folder) != f"fold_{hparams['fold']}":
            raise RecipeError(
                f"output_folder {output_folder} does not end with "
                f"fold_{hparams['fold']}: every fold would write to the "
                "same folder. Keep output_folder: "
                "!ref <output_root>/<protocol>/fold_<fold> and change "
                "output_root instead."
            )
        results_folder = os.path.dirname(output_folder)
        available = fold_numbers(manifest_folder, protocol)
        folds = _parse_folds(own.folds, available)
        del hparams
        gc.collect()

        debug = bool(run_opts.get("debug"))
        summaries = {}
        for fold in folds:
            fold_overrides = overrides + f"\nfold: {fold}"
            done = os.path.join(results_folder, f"fold_{fold}", DONE_FILE)
            summary = _finished(done, debug)
            if summary is not None:
                logger.info("fold %d already finished (%s): kept", fold, done)
            else:
                logger.info("fold %d of %s: training", fold, folds)
                summary = run_fold(hparams_file, run_opts, fold_overrides)
                gc.collect()
            if summary is not None:  # only the main process has results
                summaries[fold] = summary
        # The table holds every finished fold, also those of earlier calls
        # with other --folds.
        for fold in available:
            if fold not in summaries:
                done = os.path.join(results_folder, f"fold_{fold}", DONE_FILE)
                summary = _finished(done, debug)
                if summary is not None:
                    summaries[fold] = summary
        per_fold = []
        for fold, summary in sorted(summaries.items()):
            per_fold.append(
                {
                    "fold": fold,
                    "test_groups": fold_test_groups(
                        manifest_folder, protocol, fold
                    ),
                    "n_utterances": summary.get("n_utterances"),
                    "WA": summary.get("WA"),
                    "UA": summary.get("UA"),
                    "macro_F1": summary.get("macro_F1"),
                    "recall": summary.get("recall", {}),
                    "epoch": summary.get("epoch"),
                    "model_selection": summary.get("model_selection"),
                }
            )
    except (AmserUserError, ManifestError) as err:
        _user_error(err)
    result = write_results(results_folder, per_fold, title, protocol)
    if sb.utils.distributed.if_main_process():
        logger.info("results written to %s", results_folder)
        with open(os.path.join(results_folder, "results.md")) as handle:
            print(handle.read())
    return result


def _user_error(err):
    """One line ``error: ...`` and exit status 2 (as every user error)."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(USER_ERROR_STATUS)


def main(argv=None):
    """Command-line entry point (``amser-sb cv``, the recipe's ``cv.py``).

    Arguments
    ---------
    argv : list of str, optional
        As :func:`run_cv`; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success (bad input exits with a message instead).
    """
    try:
        run_cv(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        exit_process(exc.code)  # under torchrun: ends here
        raise
    # under torchrun: leave the group and end before the interpreter's
    # teardown (see exit_process); otherwise nothing
    exit_process(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
