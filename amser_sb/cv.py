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
import sys
import traceback

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml, resolve_references

from amser_sb.brain import AMSERBrain
from amser_sb.data.iemocap import prepare_iemocap
from amser_sb.distributed import init_distributed
from amser_sb.fold_check import fold_problem
from amser_sb.metrics import _json_safe
from amser_sb.override_types import check_override_types
from amser_sb.overrides import OverrideError, rename_deprecated
from amser_sb.pipeline import (
    AudioError,
    ManifestError,
    dataio_prep,
    loader_options,
)
from amser_sb.run_lock import exclusive_output_folder

logger = logging.getLogger(__name__)

__all__ = [
    "RecipeError",
    "load_hparams",
    "prepare_kwargs",
    "prepare_data",
    "run_fold",
    "train_fold",
    "fold_numbers",
    "summarize_folds",
    "write_results",
    "run_cv",
    "main",
]

#: File whose presence marks a finished fold.
DONE_FILE = "test_metrics.json"


class RecipeError(ValueError):
    """A recipe configuration that cannot run, with the fix in the text."""


def _hparam_text(hparams_file, overrides, key):
    """The resolved text of one top-level key, without building objects."""
    try:
        with open(hparams_file) as handle:
            resolved = resolve_references(handle, overrides).getvalue()
    except Exception:  # only used to improve an error message
        return None
    match = re.search(rf"^{key}:\s*(.*)$", resolved, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _from_hub_loading(err):
    """Whether an exception was raised while loading a Hugging Face model."""
    frames = traceback.extract_tb(err.__traceback__)
    return any(
        "transformers" in frame.filename or "huggingface" in frame.filename
        for frame in frames
    )


def _hub_message(hub, err):
    """The error text for an encoder checkpoint that cannot be loaded."""
    text = f"cannot load ssl_hub={hub!r}: {err}\n"
    path_like = hub is not None and (
        os.path.isabs(hub) or hub.startswith((".", "~"))
    )
    if path_like and not os.path.isdir(os.path.expanduser(hub)):
        return text + (
            f"The folder {hub} does not exist. Pass --ssl_hub=<local "
            "folder> holding config.json, the weights and "
            "preprocessor_config.json, or a Hugging Face hub id."
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
    return text + (
        ("HF_HUB_OFFLINE is set, so nothing can be downloaded. " if offline
         else "The Hub could not be reached or has no such model. ")
        + "Pass --ssl_hub=<local folder> holding config.json, the "
        "weights and preprocessor_config.json (e.g. one written by "
        "`amser-sb fetch-encoder whisper-base DIR`, or downloaded beforehand "
        "with huggingface_hub.snapshot_download), or a hub id that is "
        "already in the local cache."
    )


def load_hparams(hparams_file, overrides=None, check_data=True):
    """Loads recipe hparams, turning common mistakes into clear errors.

    Arguments
    ---------
    hparams_file : str
        HyperPyYAML file, e.g. ``hparams/am_resnet_w2v2.yaml``.
    overrides : str or dict, optional
        ``key: value`` overrides (SpeechBrain's ``parse_arguments`` gives a
        YAML string).
    check_data : bool
        Require ``data_folder`` to exist (unless ``skip_prep``).

    Returns
    -------
    dict
        The loaded hparams (objects built).

    Raises
    ------
    RecipeError
        For a missing file, an unknown override, an unset ``data_folder``,
        a missing data folder, or a ``ssl_hub`` that cannot be loaded.
    """
    if not os.path.isfile(hparams_file):
        raise RecipeError(f"hparams file {hparams_file} does not exist")
    try:
        overrides = rename_deprecated(overrides)
    except OverrideError as err:
        raise RecipeError(str(err)) from err
    wrong_types = check_override_types(hparams_file, overrides)
    if wrong_types:
        raise RecipeError("; ".join(wrong_types))
    try:
        with open(hparams_file) as handle:
            hparams = load_hyperpyyaml(handle, overrides)
    except KeyError as err:
        text = str(err.args[0]) if err.args else str(err)
        match = re.match(r"Override '(.+?)' not found", text)
        if match:
            with open(hparams_file) as handle:
                known = re.findall(r"^(\w+):", handle.read(), re.MULTILINE)
            raise RecipeError(
                f"unknown hparam override --{match.group(1)}: "
                f"{hparams_file} has no such key (check the spelling). "
                "Its keys: "
                f"{', '.join(k for k in known if not k.startswith('__'))}"
            ) from err
        raise
    except ValueError as err:
        match = re.match(r"'(\w+)' is a !PLACEHOLDER", str(err))
        if match:
            raise RecipeError(
                f"{match.group(1)} is not set: pass "
                f"--{match.group(1)}=<path> (for data_folder, the "
                "IEMOCAP_full_release folder holding Session1..Session5)"
            ) from err
        raise
    except OSError as err:
        if not _from_hub_loading(err):
            raise
        hub = _hparam_text(hparams_file, overrides, "ssl_hub")
        raise RecipeError(_hub_message(hub, err)) from err
    problem = fold_problem(hparams)
    if problem is not None:
        raise RecipeError(problem)
    if check_data and not hparams.get("skip_prep", False):
        folder = hparams["data_folder"]
        if not os.path.isdir(folder):
            raise RecipeError(
                f"data_folder {folder} does not exist: pass "
                "--data_folder=<IEMOCAP_full_release folder> (holding "
                "Session1..Session5)"
            )
    return hparams


def prepare_kwargs(hparams):
    """Arguments of ``prepare_iemocap`` from the recipe hparams.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams.

    Returns
    -------
    dict
        Keyword arguments of :func:`amser_sb.data.iemocap.prepare_iemocap`.
    """
    return {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["manifest_folder"],
        "protocol": hparams["protocol"],
        "use_ambiguous": hparams["use_ambiguous"],
        "ambiguous_min_mass": hparams["ambiguous_min_mass"],
        "madd_window": hparams["madd_window"],
        "madd_factor": hparams["madd_factor"],
        "seed": hparams["prepare_seed"],
        "sessions": hparams["prepare_sessions"],
        "num_workers": hparams["prepare_num_workers"],
    }


def corpus_kwargs(hparams):
    """Arguments of ``prepare_corpus`` (a corpus preset) from the hparams.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams with ``dataset`` naming a preset.

    Returns
    -------
    dict
        Keyword arguments of :func:`amser_sb.data.corpora.prepare_corpus`.
    """
    return {
        "preset": hparams["dataset"],
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["manifest_folder"],
        "protocol": hparams["protocol"],
        "classes": hparams.get("classes"),
        "n_folds": hparams.get("n_folds", 5),
        "seed": hparams["prepare_seed"],
        "madd_window": hparams["madd_window"],
        "madd_factor": hparams["madd_factor"],
    }


def prepare_data(hparams):
    """Runs the data preparation on the main process (idempotent).

    IEMOCAP (``dataset: iemocap``) or a corpus preset of
    :mod:`amser_sb.data.corpora`; both write the same manifests and folds.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams.
    """
    if hparams.get("skip_prep", False):
        return
    dataset = str(hparams.get("dataset") or "iemocap").lower()
    if dataset == "iemocap":
        sb.utils.distributed.run_on_main(
            prepare_iemocap, kwargs=prepare_kwargs(hparams)
        )
        return
    from amser_sb.data.corpora import prepare_corpus, preset_names

    if dataset not in preset_names():
        raise RecipeError(
            f"unknown dataset {dataset!r}: use iemocap or one of "
            f"{', '.join(preset_names())}"
        )
    sb.utils.distributed.run_on_main(
        prepare_corpus, kwargs=corpus_kwargs(hparams)
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


def _test_groups(manifest_folder, protocol, fold):
    """Speakers (or sessions) in a fold's test manifest, joined by '+'."""
    path = os.path.join(manifest_folder, protocol, f"fold_{fold}", "test.csv")
    column = "session" if protocol == "session" else "spk_id"
    try:
        with open(path, newline="") as handle:
            values = sorted({row[column] for row in csv.DictReader(handle)})
    except (OSError, KeyError):
        return ""
    return "+".join(values)


def _mean_std(values):
    """Mean and sample standard deviation (n - 1) of the finite values."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


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
    unit = "session" if protocol == "session" else "speaker"
    head = ["Fold", f"Test {unit}", "Utts", "WA (%)", "UA (%)", "F1 (%)"]
    head += [f"{label} recall (%)" for label in labels] + ["Best epoch"]
    lines = [
        f"# {title}: {len(per_fold)} folds, leave-one-{unit}-out",
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
        "folds": per_fold,
        "mean_std": summary,
    }
    with open(os.path.join(folder, "results.json"), "w") as handle:
        json.dump(_json_safe(result), handle, indent=2)
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
                    "test_groups": _test_groups(
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
    except (RecipeError, ManifestError, AudioError) as err:
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
