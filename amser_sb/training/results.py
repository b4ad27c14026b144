"""Cross-validation results: per-fold rows and mean ± std, as Markdown and JSON.

The protocol (:mod:`amser_sb.data.protocols`) names the table and what a
fold tests; a protocol folder that no registered protocol names (an old
run) gets a generic title.

Authors
 * amser-sb contributors
"""

import csv
import json
import math
import os
import statistics

import speechbrain as sb

from amser_sb.core.metrics import json_safe
from amser_sb.data.protocols.registry import find_protocol

__all__ = ["protocol_title", "fold_test_groups", "summarize_folds",
           "which_checkpoint", "write_results"]


def protocol_title(protocol):
    """Heading, test unit and manifest column of a protocol's results.

    Arguments
    ---------
    protocol : str
        A registered protocol (``speaker``, ``session``, ``grouped`` ...)
        or another protocol folder.

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
    found = find_protocol(protocol)
    if found is None:
        return f"{protocol} protocol", "group", "group"
    return found.title, found.test_unit, found.test_column


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


#: How each ``model_selection`` picks the tested checkpoint, in words.
SELECTION_WORDS = {
    "last": "with the last epoch's checkpoint",
    "best_valid": "with the checkpoint of best validation UA",
}


def which_checkpoint(per_fold):
    """Which checkpoint the folds tested, in words (their
    ``model_selection``).

    Arguments
    ---------
    per_fold : list of dict
        The folds' rows (``model_selection``: None when not recorded).

    Returns
    -------
    str

    Example
    -------
    >>> which_checkpoint([{"fold": 1, "model_selection": "last"}])
    "with the last epoch's checkpoint"
    >>> which_checkpoint([{"fold": 1, "model_selection": "last"},
    ...                    {"fold": 2, "model_selection": "best_valid"}])
    'with the checkpoint of last (folds 1), best_valid (folds 2)'
    """
    folds = {}
    for row in per_fold:
        folds.setdefault(row.get("model_selection"), []).append(row["fold"])
    if len(folds) == 1:
        (selection,) = folds
        if selection in SELECTION_WORDS:
            return SELECTION_WORDS[selection]
    return "with the checkpoint of " + ", ".join(
        f"{selection or 'an unrecorded model_selection'} (folds "
        f"{', '.join(str(f) for f in numbers)})"
        for selection, numbers in folds.items()
    )


@sb.utils.distributed.main_process_only
def write_results(folder, per_fold, title, protocol):
    """Writes ``results.md`` and ``results.json`` (paper's Table 5 shape).

    Arguments
    ---------
    folder : str
        Output folder (``<output_root>/<protocol>``).
    per_fold : list of dict
        One dict per fold: ``fold``, ``test_groups``, ``WA``, ``UA``,
        ``macro_F1``, ``recall``, ``n_utterances``, ``epoch`` (the tested
        checkpoint's), ``model_selection`` (what chose it; None when the
        fold did not record it).
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
    head += [f"{label} recall (%)" for label in labels] + ["Tested epoch"]
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
        f"{unit}'s clear utterances, {which_checkpoint(per_fold)}. std: "
        "sample standard deviation over folds.",
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
