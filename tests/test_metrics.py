"""WA / UA / macro-F1, confusion matrices and per-utterance scoring."""

import csv
import json
import math
import random

import pytest
import torch

from amser_sb.core.metrics import (
    ClassificationStats,
    confusion_matrix,
    macro_f1,
    per_class_recall,
    unweighted_accuracy,
    weighted_accuracy,
)


def _brute_force(preds, refs, n_classes):
    """Metrics by counting, class by class."""
    matrix = [[0] * n_classes for _ in range(n_classes)]
    for p, r in zip(preds, refs):
        matrix[r][p] += 1
    wa = 100 * sum(p == r for p, r in zip(preds, refs)) / len(refs)
    recalls, f1s = [], []
    for c in range(n_classes):
        tp = sum(p == c and r == c for p, r in zip(preds, refs))
        support = sum(r == c for r in refs)
        predicted = sum(p == c for p in preds)
        if support:
            recalls.append(100 * tp / support)
        if support or predicted:
            precision = tp / predicted if predicted else 0.0
            recall = tp / support if support else 0.0
            f1s.append(
                200 * precision * recall / (precision + recall)
                if precision + recall else 0.0
            )
    return matrix, wa, sum(recalls) / len(recalls), sum(f1s) / len(f1s)


@pytest.mark.parametrize("seed", range(20))
def test_metrics_against_brute_force(seed):
    rng = random.Random(seed)
    n_classes = rng.randint(2, 5)
    n = rng.randint(1, 40)
    refs = [rng.randrange(n_classes) for _ in range(n)]
    preds = [rng.randrange(n_classes) for _ in range(n)]
    matrix = confusion_matrix(preds, refs, n_classes)
    ref_matrix, wa, ua, f1 = _brute_force(preds, refs, n_classes)
    assert matrix.tolist() == ref_matrix
    assert weighted_accuracy(matrix) == pytest.approx(wa)
    assert unweighted_accuracy(matrix) == pytest.approx(ua)
    assert macro_f1(matrix) == pytest.approx(f1)


def test_known_values():
    # reference rows: neu 4 (3 right), hap 2 (1 right), sad 0, ang 2 (2)
    matrix = torch.tensor(
        [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]]
    )
    assert weighted_accuracy(matrix) == 75.0
    recalls = per_class_recall(matrix)
    assert recalls[:2] == [75.0, 50.0] and math.isnan(recalls[2])
    assert recalls[3] == 100.0
    assert unweighted_accuracy(matrix) == pytest.approx(75.0)
    # F1: neu 2*3/(4+4)=0.75, hap 2*1/(2+2)=0.5, ang 1 -> 75
    assert macro_f1(matrix) == pytest.approx(75.0)
    assert math.isnan(weighted_accuracy(torch.zeros(2, 2)))


def test_confusion_matrix_rejects_bad_indices():
    with pytest.raises(ValueError, match="lie in"):
        confusion_matrix([0, 4], [0, 1], 4)
    with pytest.raises(ValueError, match="predictions for"):
        confusion_matrix([0], [0, 1], 4)


def test_segments_are_averaged_per_utterance():
    stats = ClassificationStats(["neu", "hap", "sad"])
    # utterance u1: two segments lean "neu" a little, one is sure of "hap":
    # the mean log-probability favours hap (a majority vote of segment
    # decisions would say neu)
    stats.append(
        ["u1", "u1"],
        torch.tensor([[0.4, 0.3, 0.3], [0.4, 0.3, 0.3]]),
        torch.tensor([1, 1]),
    )
    stats.append(["u1", "u2"], torch.tensor([[0.0, 1.0, 0.0], [0.1, 0.1, 0.8]]),
                 [1, 0])
    assert stats.predictions() == {"u1": 1, "u2": 2}
    # softmax of the mean segment log-probability (renormalised geometric
    # mean), the rule an exported model reproduces exactly
    log_p = torch.log(torch.tensor([[0.4, 0.3, 0.3], [0.4, 0.3, 0.3],
                                    [1e-30, 1.0, 1e-30]]))
    assert torch.allclose(
        stats.posteriors()["u1"], torch.softmax(log_p.mean(0), dim=0)
    )
    summary = stats.summarize()
    assert summary["n_utterances"] == 2 and summary["n_segments"] == 4
    assert summary["WA"] == 50.0
    assert summary["recall"]["neu"] == 0.0 and summary["recall"]["hap"] == 100
    assert math.isnan(summary["recall"]["sad"])
    assert summary["confusion"] == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_inconsistent_references_are_an_error():
    stats = ClassificationStats(["a", "b"])
    stats.append(["u"], torch.tensor([[0.5, 0.5]]), [0])
    with pytest.raises(ValueError, match="two references"):
        stats.append(["u"], torch.tensor([[0.5, 0.5]]), [1])
    with pytest.raises(ValueError, match="not a class"):
        stats.append(["v"], torch.tensor([[0.5, 0.5]]), [-1])
    with pytest.raises(ValueError, match="classes"):
        stats.append(["v"], torch.tensor([[0.2, 0.3, 0.5]]), [0])


def test_write_outputs(tmp_path):
    stats = ClassificationStats(["neu", "hap"])
    stats.append(["a", "b", "c"], torch.tensor([[0.9, 0.1], [0.2, 0.8],
                                                [0.7, 0.3]]), [0, 1, 1])
    summary = stats.write(str(tmp_path / "test"), title="t", extra={"epoch": 3})
    with open(tmp_path / "test_confusion.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["reference\\predicted", "neu", "hap"],
                    ["neu", "1", "0"], ["hap", "1", "1"]]
    with open(tmp_path / "test_predictions.csv") as handle:
        preds = list(csv.DictReader(handle))
    assert [(r["ID"], r["reference"], r["predicted"]) for r in preds] == [
        ("a", "neu", "neu"), ("b", "hap", "hap"), ("c", "hap", "neu")]
    # strict JSON (no NaN), epoch added
    text = (tmp_path / "test_metrics.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert data["epoch"] == 3 and data["WA"] == pytest.approx(200 / 3)
    assert summary["UA"] == pytest.approx(75.0)
    png = (tmp_path / "test_confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_nan_is_written_as_null(tmp_path):
    stats = ClassificationStats(["neu", "hap"])
    stats.append(["a"], torch.tensor([[0.9, 0.1]]), [0])
    stats.write(str(tmp_path / "v"))
    data = json.loads((tmp_path / "v_metrics.json").read_text())
    assert data["recall"] == {"neu": 100.0, "hap": None}
