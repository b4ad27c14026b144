"""Cross-validation: train and test every fold, then tabulate the results.

One command runs a whole protocol (10 folds leave-one-speaker-out, or 5
leave-one-session-out)::

    amser-sb cv hparams/am_resnet_w2v2.yaml --data_folder=/data/IEMOCAP \\
        --protocol speaker
    # or, in recipes/IEMOCAP/emotion_recognition:  python cv.py <same>

Each fold is the recipe's ``train.py`` run with ``--fold=<k>``
(:func:`run_fold`): prepare the data (once; idempotent), train with
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
import csv
import gc
import json
import logging
import math
import os
import re
import statistics
import sys

import speechbrain as sb

from amser_sb.brain import AMSERBrain
from amser_sb.data.registry import get_corpus
from amser_sb.distributed import init_distributed
from amser_sb.errors import AmserUserError
from amser_sb.hparams_loading import RecipeError, load_hparams
from amser_sb.metrics import json_safe
from amser_sb.pipeline import ManifestError, dataio_prep, loader_options
from amser_sb.run_lock import exclusive_output_folder

logger = logging.getLogger(__name__)

__all__ = [
    "prepare_data",
    "run_fold",
    "train_fold",
    "fold_numbers",
    "summarize_folds",
    "protocol_title",
    "fold_test_groups",
    "write_results",
    "run_cv",
    "main",
]

#: File whose presence marks a finished fold.
DONE_FILE = "test_metrics.json"


def prepare_data(hparams):
    """Runs the data preparation on the main process (idempotent).

    The corpus is the registry's ``hparams["dataset"]`` (default
    ``iemocap``; :mod:`amser_sb.data.registry`): IEMOCAP or a corpus
    preset, which all write the same manifests and folds.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams.

    Raises
    ------
    amser_sb.data.registry.CorpusError
        For an unknown ``dataset`` (listing the known ones).
    """
    if hparams.get("skip_prep", False):
        return
    corpus = get_corpus(hparams.get("dataset") or "iemocap")
    sb.utils.distributed.run_on_main(
        corpus.prepare_from_hparams, args=[hparams]
    )


def run_fold(hparams_file, run_opts=None, overrides=None):
    """Trains and tests one fold (``amser-sb cv``, for every fold).

    Joins the process group of a ``torchrun`` launch (once), loads the
    hparams, then :func:`train_fold`.

    Arguments
    ---------
    hparams_file : str
        Recipe hparams file.
    run_opts : dict, optional
        SpeechBrain run options (``--device``, ``--debug`` ...).
    overrides : str, optional
        YAML overrides (``fold``, ``protocol``, ...).

    Returns
    -------
    dict
        Test summary (:meth:`amser_sb.metrics.ClassificationStats.summarize`
        plus ``epoch``), on every process.
    """
    run_opts = init_distributed({} if run_opts is None else run_opts)
    hparams = load_hparams(hparams_file, overrides)
    return train_fold(hparams, hparams_file, run_opts, overrides)


@exclusive_output_folder  # a second live run on the folder is refused
def train_fold(hparams, hparams_file, run_opts=None, overrides=None):
    """Trains and tests one fold from loaded hparams: the recipe's steps.

    The one definition of a fold's run, used by the recipe's ``train.py``
    and by :func:`run_fold`: the experiment folder, the data preparation
    (main process only, the others wait), the fold's datasets, the Brain,
    training with model selection on validation UA, and the test of the
    best checkpoint. Under ``torchrun`` (process group joined, see
    :func:`amser_sb.distributed.init_distributed`) every process runs
    this; files are written once, by the main process.

    Arguments
    ---------
    hparams : dict
        Loaded hparams (:func:`load_hparams`).
    hparams_file : str
        The file they came from (copied to the experiment folder).
    run_opts : dict, optional
        SpeechBrain run options.
    overrides : str, optional
        The YAML overrides used (saved with the hparams).

    Returns
    -------
    dict
        Test summary, on every process.
    """
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    prepare_data(hparams)
    datasets = dataio_prep(hparams)
    brain = AMSERBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=loader_options(hparams, datasets["train"], "train"),
        valid_loader_kwargs=loader_options(hparams, datasets["valid"], "valid"),
    )
    brain.evaluate(
        datasets["test"],
        max_key="UA",
        test_loader_kwargs=loader_options(hparams, datasets["test"], "test"),
    )
    return brain.test_summary


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


#: How the results name each protocol: heading, what a fold tests (its
#: column ``Test <unit>``) and the manifest column that holds it. IEMOCAP's
#: ``session`` protocol tests sessions, held by the ``group`` column.
PROTOCOL_TITLES = {
    "speaker": ("leave-one-speaker-out", "speaker", "spk_id"),
    "session": ("leave-one-session-out", "session", "group"),
    "grouped": ("grouped folds (whole recording groups a fold)", "group",
                "group"),
}


def protocol_title(protocol):
    """Heading, test unit and manifest column of a protocol's results.

    Arguments
    ---------
    protocol : str
        ``speaker``, ``session``, ``grouped`` or another protocol folder.

    Returns
    -------
    (str, str, str)

    Example
    -------
    >>> protocol_title("grouped")[:2]
    ('grouped folds (whole recording groups a fold)', 'group')
    >>> protocol_title("speaker")
    ('leave-one-speaker-out', 'speaker', 'spk_id')
    """
    return PROTOCOL_TITLES.get(
        protocol, (f"{protocol} protocol", "group", "group")
    )


def fold_test_groups(manifest_folder, protocol, fold):
    """What a fold tests (speakers, sessions or groups), joined by '+'.

    Arguments
    ---------
    manifest_folder : str
        The preparation's save folder.
    protocol : str
        Protocol sub-folder.
    fold : int
        Fold number.

    Returns
    -------
    str
        E.g. ``Ses01F`` or ``f_ans001+m_rab004``; empty if unreadable.
    """
    path = os.path.join(manifest_folder, protocol, f"fold_{fold}", "test.csv")
    column = protocol_title(protocol)[2]
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return ""
    if rows and column not in rows[0] and "session" in rows[0]:
        column = "session"  # manifests written before the column's rename
    values = sorted({row.get(column, "") for row in rows} - {""})
    return "+".join(values)


def _mean_std(values):
    """Mean and sample standard deviation (n - 1) of the finite values."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    if len(values) < 2:
        return statistics.mean(values), math.nan
    return statistics.mean(values), statistics.stdev(values)


def summarize_folds(per_fold):
    """Mean ± std over folds.

    Arguments
    ---------
    per_fold : list of dict
        Each with ``WA``, ``UA``, ``macro_F1`` and ``recall`` (class ->
        value).

    Returns
    -------
    dict
        ``{"WA": {"mean", "std"}, "UA": ..., "macro_F1": ..., "recall":
        {class: {"mean", "std"}}}``.

    Example
    -------
    >>> out = summarize_folds([
    ...     {"WA": 60.0, "UA": 50.0, "macro_F1": 40.0, "recall": {"a": 1.0}},
    ...     {"WA": 70.0, "UA": 60.0, "macro_F1": 50.0, "recall": {"a": 3.0}},
    ... ])
    >>> out["WA"]["mean"], round(out["WA"]["std"], 4), out["recall"]["a"]
    (65.0, 7.0711, {'mean': 2.0, 'std': 1.4142135623730951})
    """
    summary = {}
    for key in ("WA", "UA", "macro_F1"):
        mean, std = _mean_std([fold.get(key) for fold in per_fold])
        summary[key] = {"mean": mean, "std": std}
    labels = []
    for fold in per_fold:
        for label in fold.get("recall", {}):
            if label not in labels:
                labels.append(label)
    summary["recall"] = {}
    for label in labels:
        mean, std = _mean_std(
            [fold.get("recall", {}).get(label) for fold in per_fold]
        )
        summary["recall"][label] = {"mean": mean, "std": std}
    return summary


def _fmt(value, digits=2):
    """A number for the Markdown table ('-' for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


@sb.utils.distributed.main_process_only
def write_results(folder, per_fold, title, protocol):
    """Writes ``results.md`` and ``results.json`` (paper's Table 5 shape).

    Arguments
    ---------
    folder : str
        Output folder (``<output_root>/<protocol>``).
    per_fold : list of dict
        One dict per fold: ``fold``, ``test_groups``, ``WA``, ``UA``,
        ``macro_F1``, ``recall``, ``n_utterances``, ``epoch``.
    title : str
        Heading of the Markdown file (e.g. the experiment name).
    protocol : str
        Protocol name, for the heading.

    Returns
    -------
    dict
        What was written to ``results.json`` (under ``torchrun`` written by
        the main process, returned to every process).
    """
    summary = summarize_folds(per_fold)
    labels = list(summary["recall"])
    heading, unit, _ = protocol_title(protocol)
    head = ["Fold", f"Test {unit}", "Utts", "WA (%)", "UA (%)", "F1 (%)"]
    head += [f"{label} recall (%)" for label in labels] + ["Best epoch"]
    lines = [
        f"# {title}: {len(per_fold)} folds, {heading}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for fold in per_fold:
        cells = [
            str(fold["fold"]),
            fold.get("test_groups", ""),
            str(fold.get("n_utterances", "")),
            _fmt(fold.get("WA")),
            _fmt(fold.get("UA")),
            _fmt(fold.get("macro_F1")),
        ]
        cells += [_fmt(fold.get("recall", {}).get(lab)) for lab in labels]
        cells.append(str(fold.get("epoch", "")))
        lines.append("| " + " | ".join(cells) + " |")

    def pm(entry):
        return f"{_fmt(entry['mean'])} ± {_fmt(entry['std'])}"

    cells = ["**Mean ± std**", "", ""]
    cells += [pm(summary[key]) for key in ("WA", "UA", "macro_F1")]
    cells += [pm(summary["recall"][lab]) for lab in labels] + [""]
    lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "WA: accuracy; UA: mean per-class recall; F1: macro-F1; per "
        "utterance (softmax of the mean segment log-probability), on the test "
        f"{unit}'s clear utterances, with the checkpoint of best validation "
        "UA. std: sample standard deviation over folds.",
        "",
    ]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.md"), "w") as handle:
        handle.write("\n".join(lines))
    result = {
        "title": title,
        "protocol": protocol,
        "protocol_title": heading,
        "test_unit": unit,
        "folds": per_fold,
        "mean_std": summary,
    }
    with open(os.path.join(folder, "results.json"), "w") as handle:
        json.dump(json_safe(result), handle, indent=2)
    return result


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
        raise SystemExit(
            "error: cv runs every fold; choose them with --folds, not --fold"
        )
    hparams_file, run_opts, overrides = sb.parse_arguments(rest)
    try:
        # torchrun: every fold on all processes (one process group).
        run_opts = init_distributed(run_opts)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
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
                }
            )
    except (AmserUserError, ManifestError) as err:
        raise SystemExit(f"error: {err}") from err
    result = write_results(results_folder, per_fold, title, protocol)
    if sb.utils.distributed.if_main_process():
        logger.info("results written to %s", results_folder)
        with open(os.path.join(results_folder, "results.md")) as handle:
            print(handle.read())
    return result


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
    run_cv(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
