"""Emotion-classification metrics: WA, UA, macro-F1, confusion matrices.

Definitions (the usual ones in speech emotion recognition):

- **WA** (weighted accuracy): correct / total, i.e. plain accuracy.
- **UA** (unweighted accuracy): the mean of the per-class recalls over the
  classes present in the reference (each class counts the same).
- **macro-F1**: the mean of the per-class F1 scores over the classes that
  occur in the reference or the predictions (a class never seen and never
  predicted is left out; one predicted but never seen scores 0).

All three are returned in percent, as in the paper's tables. Confusion
matrices have the reference in rows and the prediction in columns.

:class:`ClassificationStats` collects posteriors batch by batch and scores
**per utterance**: every segment appended under the same utterance ID
contributes its log-probabilities, the utterance posterior is the softmax
of their mean (the renormalised geometric mean of the segment posteriors),
and the prediction is its arg-max.

Authors
 * amser-sb contributors 2026
"""

import csv
import json
import math

import torch

__all__ = [
    "confusion_matrix",
    "weighted_accuracy",
    "unweighted_accuracy",
    "per_class_recall",
    "macro_f1",
    "ClassificationStats",
    "save_confusion_png",
]


def confusion_matrix(predictions, targets, n_classes):
    """Counts of (reference, prediction) pairs.

    Arguments
    ---------
    predictions : torch.Tensor or list of int
        ``[n]`` predicted class indices.
    targets : torch.Tensor or list of int
        ``[n]`` reference class indices.
    n_classes : int
        Number of classes.

    Returns
    -------
    matrix : torch.Tensor
        ``[n_classes, n_classes]`` int64 counts, reference in rows and
        prediction in columns.

    Example
    -------
    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3)
    tensor([[1, 0, 0],
            [0, 1, 0],
            [0, 1, 1]])
    """
    predictions = torch.as_tensor(predictions, dtype=torch.long).flatten()
    targets = torch.as_tensor(targets, dtype=torch.long).flatten()
    if predictions.shape != targets.shape:
        raise ValueError(
            f"{predictions.numel()} predictions for {targets.numel()} targets"
        )
    for name, values in (("predictions", predictions), ("targets", targets)):
        if values.numel() and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} must lie in [0, {n_classes})")
    flat = targets * n_classes + predictions
    counts = torch.bincount(flat, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def weighted_accuracy(matrix):
    """WA: the share of correct decisions, in percent.

    Arguments
    ---------
    matrix : torch.Tensor
        ``[n_classes, n_classes]`` confusion matrix.

    Returns
    -------
    float
        Percent correct; ``nan`` for an empty matrix.

    Example
    -------
    >>> weighted_accuracy(torch.tensor([[3, 1], [0, 0]]))
    75.0
    """
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    total = float(matrix.sum())
    if total == 0:
        return math.nan
    return 100.0 * float(matrix.diagonal().sum()) / total


def per_class_recall(matrix):
    """Recall of every class, in percent (``nan`` for absent classes).

    Arguments
    ---------
    matrix : torch.Tensor
        ``[n_classes, n_classes]`` confusion matrix.

    Returns
    -------
    list of float
        One recall per class.

    Example
    -------
    >>> per_class_recall(torch.tensor([[3, 1], [0, 0]]))
    [75.0, nan]
    """
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    support = matrix.sum(dim=1)
    return [
        100.0 * float(matrix[c, c] / support[c]) if support[c] > 0 else math.nan
        for c in range(matrix.shape[0])
    ]


def unweighted_accuracy(matrix):
    """UA: mean recall over the classes present in the reference, percent.

    Arguments
    ---------
    matrix : torch.Tensor
        ``[n_classes, n_classes]`` confusion matrix.

    Returns
    -------
    float
        The unweighted mean of the recalls; ``nan`` for an empty matrix.

    Example
    -------
    >>> unweighted_accuracy(torch.tensor([[3, 1], [1, 1]]))
    62.5
    """
    recalls = [r for r in per_class_recall(matrix) if not math.isnan(r)]
    return sum(recalls) / len(recalls) if recalls else math.nan


def macro_f1(matrix):
    """Macro-averaged F1 in percent.

    Classes absent from both reference and predictions are left out of the
    average; a class predicted but never in the reference scores 0.

    Arguments
    ---------
    matrix : torch.Tensor
        ``[n_classes, n_classes]`` confusion matrix.

    Returns
    -------
    float
        The mean F1; ``nan`` for an empty matrix.

    Example
    -------
    >>> round(macro_f1(torch.tensor([[3, 1], [1, 1]])), 4)
    62.5
    """
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    scores = []
    for c in range(matrix.shape[0]):
        tp = float(matrix[c, c])
        support = float(matrix[c].sum())
        predicted = float(matrix[:, c].sum())
        if support == 0 and predicted == 0:
            continue
        scores.append(200.0 * tp / (support + predicted))
    return sum(scores) / len(scores) if scores else math.nan


def save_confusion_png(matrix, labels, path, title=None):
    """Draws a confusion matrix (counts and row percentages) to a PNG.

    Uses matplotlib's non-interactive ``Agg`` backend, so it works without
    a display.

    Arguments
    ---------
    matrix : torch.Tensor
        ``[n_classes, n_classes]`` confusion matrix (reference in rows).
    labels : list of str
        Class names, in index order.
    path : str
        Output file.
    title : str, optional
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    support = matrix.sum(dim=1, keepdim=True).clamp(min=1)
    share = (matrix / support).numpy()
    n_classes = len(labels)
    figure = Figure(figsize=(1.2 * n_classes + 2, 1.2 * n_classes + 1.5))
    axes = figure.subplots()
    axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(n_classes):
        for col in range(n_classes):
            axes.text(
                col,
                row,
                f"{int(matrix[row, col])}\n{100 * share[row, col]:.1f}%",
                ha="center",
                va="center",
                color="white" if share[row, col] > 0.5 else "black",
                fontsize=9,
            )
    axes.set_xticks(range(n_classes), labels)
    axes.set_yticks(range(n_classes), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("reference")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


class ClassificationStats:
    """Collects posteriors and scores per utterance.

    Segments appended under the same utterance ID are merged: the
    utterance's posterior is the renormalised geometric mean of its
    segments' posteriors, i.e. the softmax of the mean segment
    log-probability (equivalently of the mean segment logits). Because the
    classifier is one linear layer, this equals classifying the mean
    segment embedding, which is what an exported model does
    (``amser_sb.lobes.UtteranceEncoder``), so exported predictions equal
    these. The prediction is the arg-max (ties go to the lowest index).
    Every utterance must keep one reference class.

    Arguments
    ---------
    labels : list of str
        Class names in index order (e.g. ``label_encoder`` order).

    Example
    -------
    >>> stats = ClassificationStats(["neu", "hap"])
    >>> probs = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.6, 0.4]])
    >>> stats.append(["a", "a", "b"], probs, torch.tensor([1, 1, 0]))
    >>> summary = stats.summarize()
    >>> summary["WA"], summary["UA"], summary["recall"]
    (100.0, 100.0, {'neu': 100.0, 'hap': 100.0})
    >>> stats.predictions()["a"]
    1
    >>> stats.posteriors()["a"]  # softmax of the mean log-probability
    tensor([0.2899, 0.7101])
    """

    def __init__(self, labels):
        self.labels = list(labels)
        self.n_classes = len(self.labels)
        self.clear()

    def clear(self):
        """Forgets everything appended so far."""
        self._sums = {}
        self._counts = {}
        self._targets = {}

    def append(self, ids, probs, targets):
        """Adds a batch of segment posteriors.

        Arguments
        ---------
        ids : list of str
            ``[batch]`` utterance IDs (repeat an ID for each of its segments).
        probs : torch.Tensor
            ``[batch, n_classes]`` (or ``[batch, 1, n_classes]``) posterior
            probabilities (not log-probabilities).
        targets : torch.Tensor or list of int
            ``[batch]`` reference class indices.
        """
        probs = torch.as_tensor(probs).detach().float().cpu()
        probs = probs.reshape(len(ids), -1)
        log_probs = torch.log(probs.clamp_min(1e-30))
        if probs.shape[1] != self.n_classes:
            raise ValueError(
                f"probs have {probs.shape[1]} classes, "
                f"expected {self.n_classes}"
            )
        targets = torch.as_tensor(targets).flatten().tolist()
        for utt_id, prob, target in zip(ids, log_probs, targets):
            target = int(target)
            if not 0 <= target < self.n_classes:
                raise ValueError(
                    f"utterance {utt_id}: target {target} is not a class "
                    f"index in [0, {self.n_classes})"
                )
            if utt_id in self._sums:
                if self._targets[utt_id] != target:
                    raise ValueError(
                        f"utterance {utt_id} appended with two references: "
                        f"{self._targets[utt_id]} and {target}"
                    )
                self._sums[utt_id] += prob
                self._counts[utt_id] += 1
            else:
                self._sums[utt_id] = prob.clone()
                self._counts[utt_id] = 1
                self._targets[utt_id] = target

    def posteriors(self):
        """Per-utterance posteriors (softmax of the mean log-probability).

        Returns
        -------
        dict
            Utterance ID -> ``[n_classes]`` probabilities.
        """
        return {
            utt: torch.softmax(self._sums[utt] / self._counts[utt], dim=0)
            for utt in self._sums
        }

    def predictions(self):
        """Per-utterance predicted class index.

        Returns
        -------
        dict
            Utterance ID -> arg-max of the mean posterior.
        """
        return {
            utt: int(torch.argmax(prob))
            for utt, prob in self.posteriors().items()
        }

    def confusion(self):
        """Per-utterance confusion matrix.

        Returns
        -------
        torch.Tensor
            ``[n_classes, n_classes]``, reference in rows.
        """
        predictions = self.predictions()
        ids = list(predictions)
        return confusion_matrix(
            [predictions[utt] for utt in ids],
            [self._targets[utt] for utt in ids],
            self.n_classes,
        )

    def summarize(self):
        """All metrics of the utterances appended so far.

        Returns
        -------
        dict
            ``WA``, ``UA``, ``macro_F1`` (percent), ``recall`` (class name ->
            percent), ``n_utterances``, ``n_segments`` and ``confusion``
            (nested lists, reference in rows).
        """
        matrix = self.confusion()
        recalls = per_class_recall(matrix)
        return {
            "WA": weighted_accuracy(matrix),
            "UA": unweighted_accuracy(matrix),
            "macro_F1": macro_f1(matrix),
            "recall": dict(zip(self.labels, recalls)),
            "n_utterances": len(self._sums),
            "n_segments": int(sum(self._counts.values())),
            "confusion": matrix.tolist(),
        }

    def write(self, prefix, title=None, extra=None):
        """Writes ``<prefix>_confusion.csv``, ``<prefix>_confusion.png``,
        ``<prefix>_predictions.csv`` and ``<prefix>_metrics.json``.

        Arguments
        ---------
        prefix : str
            Path prefix, e.g. ``exp/fold_0/test``.
        title : str, optional
            Title of the PNG.
        extra : dict, optional
            More fields for the JSON file (e.g. the epoch).

        Returns
        -------
        dict
            The :meth:`summarize` output that was written.
        """
        summary = self.summarize()
        matrix = torch.tensor(summary["confusion"])
        with open(f"{prefix}_confusion.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["reference\\predicted"] + self.labels)
            for label, row in zip(self.labels, summary["confusion"]):
                writer.writerow([label] + row)
        save_confusion_png(
            matrix, self.labels, f"{prefix}_confusion.png", title
        )
        posteriors = self.posteriors()
        with open(f"{prefix}_predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["ID", "reference", "predicted", "n_segments"]
                + [f"p_{label}" for label in self.labels]
            )
            for utt in sorted(posteriors):
                prob = posteriors[utt]
                writer.writerow(
                    [
                        utt,
                        self.labels[self._targets[utt]],
                        self.labels[int(torch.argmax(prob))],
                        self._counts[utt],
                    ]
                    + [f"{float(p):.6f}" for p in prob]
                )
        summary.update(extra or {})
        with open(f"{prefix}_metrics.json", "w") as handle:
            json.dump(json_safe(summary), handle, indent=2)
        return summary


def json_safe(value):
    """NaN -> None, recursively, for strict JSON.

    Arguments
    ---------
    value : object
        A float, dict, list or tuple (nested), or anything else.

    Returns
    -------
    object
        ``value`` with every NaN float replaced by None.

    Example
    -------
    >>> json_safe({"UA": float("nan"), "recall": [1.0, float("nan")]})
    {'UA': None, 'recall': [1.0, None]}
    """
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
