"""Soft-target cross-entropy against PyTorch's losses and by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from amser_sb.core.losses import balanced_class_weights, soft_target_cross_entropy


def _random_case(seed, batch=7, n_classes=4):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, n_classes, generator=gen)
    labels = torch.randint(n_classes, (batch,), generator=gen)
    return logits, labels


@pytest.mark.parametrize("seed", range(5))
def test_one_hot_equals_nll_loss(seed):
    logits, labels = _random_case(seed)
    log_probs = F.log_softmax(logits, dim=-1)
    one_hot = F.one_hot(labels, 4).float()
    ours = soft_target_cross_entropy(log_probs, one_hot)
    assert torch.allclose(ours, F.nll_loss(log_probs, labels), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_class_weights_match_weighted_nll_loss(seed):
    logits, labels = _random_case(seed)
    log_probs = F.log_softmax(logits, dim=-1)
    weights = torch.tensor([0.5, 1.0, 2.0, 3.0])
    one_hot = F.one_hot(labels, 4).float()
    ours = soft_target_cross_entropy(log_probs, one_hot, class_weights=weights)
    ref = F.nll_loss(log_probs, labels, weight=weights)
    assert torch.allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_matches_cross_entropy(eps):
    logits, labels = _random_case(3)
    ours = soft_target_cross_entropy(
        F.log_softmax(logits, -1), F.one_hot(labels, 4).float(),
        label_smoothing=eps,
    )
    ref = F.cross_entropy(logits, labels, label_smoothing=eps)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_soft_targets_by_hand_and_shapes():
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    per_sample = soft_target_cross_entropy(
        probs.log(), targets, reduction="batch"
    )
    expected = torch.tensor(
        [-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)), -math.log(0.6)]
    )
    assert torch.allclose(per_sample, expected, atol=1e-6)
    mean = soft_target_cross_entropy(probs.log(), targets)
    assert torch.allclose(mean, expected.mean(), atol=1e-6)
    total = soft_target_cross_entropy(probs.log(), targets, reduction="sum")
    assert torch.allclose(total, expected.sum(), atol=1e-6)
    # [batch, 1, classes], the SpeechBrain classifier shape
    three_d = soft_target_cross_entropy(
        probs.log()[:, None], targets[:, None]
    )
    assert torch.allclose(three_d, mean)


def test_vote_counts_are_normalised():
    log_probs = F.log_softmax(torch.randn(3, 4), -1)
    counts = torch.tensor([[2.0, 1.0, 0, 0], [0, 0, 3.0, 0], [1, 1, 1, 1.0]])
    props = counts / counts.sum(1, keepdim=True)
    assert torch.allclose(
        soft_target_cross_entropy(log_probs, counts),
        soft_target_cross_entropy(log_probs, props),
    )


@pytest.mark.parametrize("seed", range(3))
def test_gradient_equals_kl_divergence_gradient(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, 4, generator=gen, requires_grad=True)
    targets = torch.softmax(torch.randn(5, 4, generator=gen), -1)
    soft_target_cross_entropy(F.log_softmax(logits, -1), targets).backward()
    ours = logits.grad.clone()
    logits.grad = None
    F.kl_div(F.log_softmax(logits, -1), targets, reduction="batchmean")\
        .backward()
    assert torch.allclose(ours, logits.grad, atol=1e-6)
    # and the closed form: (softmax - target) / batch
    expected = (torch.softmax(logits, -1) - targets) / 5
    assert torch.allclose(ours, expected.detach(), atol=1e-6)


def test_bad_input_is_rejected():
    log_probs = F.log_softmax(torch.randn(2, 3), -1)
    with pytest.raises(ValueError, match="non-negative"):
        soft_target_cross_entropy(log_probs, torch.tensor([[1.0, -1, 1]] * 2))
    with pytest.raises(ValueError, match="positive sum"):
        soft_target_cross_entropy(log_probs, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="batch, n_classes"):
        soft_target_cross_entropy(log_probs, torch.ones(2, 4))
    with pytest.raises(ValueError, match="class_weights"):
        soft_target_cross_entropy(
            log_probs, torch.ones(2, 3), class_weights=[1.0, 2.0]
        )
    with pytest.raises(ValueError, match="reduction"):
        soft_target_cross_entropy(log_probs, torch.ones(2, 3), reduction="x")
    with pytest.raises(ValueError, match="label_smoothing"):
        soft_target_cross_entropy(
            log_probs, torch.ones(2, 3), label_smoothing=1.0
        )
    with pytest.raises(ValueError, match="batch, 1, n_classes"):
        soft_target_cross_entropy(torch.zeros(2, 2, 3), torch.ones(2, 3))


def test_balanced_class_weights():
    targets = torch.tensor(
        [[1.0, 0, 0], [1.0, 0, 0], [0.5, 0.5, 0], [0, 1.0, 0]]
    )
    weights = balanced_class_weights(targets)
    # mass: 2.5, 1.5, 0 -> 4 / (3 * mass), absent class 0
    assert torch.allclose(weights, torch.tensor([4 / 7.5, 4 / 4.5, 0.0]))
    # weighted mass is the same for every present class
    mass = targets.sum(0) * weights
    assert torch.allclose(mass[:2], torch.full((2,), 4 / 3))
