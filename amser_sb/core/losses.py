"""Soft-target cross-entropy for multi-label (vote-proportion) learning.

SpeechBrain's ``nll_loss`` and ``kldiv_loss`` take integer class indices;
the paper's multi-label learning trains on the proportion of annotators'
votes per class (a probability vector per utterance), so this module
provides the cross-entropy against such float targets:

``loss_i = - sum_c w_c * t_ic * log p_ic``

With one-hot targets and no class weights this equals ``nll_loss``; with
soft targets its gradient equals that of the KL divergence to the targets
(the two differ by the targets' entropy, a constant).

Authors
 * amser-sb contributors 2026
"""

import torch

__all__ = ["soft_target_cross_entropy", "balanced_class_weights"]


def soft_target_cross_entropy(
    log_probs,
    targets,
    class_weights=None,
    label_smoothing=0.0,
    reduction="mean",
):
    """Cross-entropy between predicted log-probabilities and float targets.

    Arguments
    ---------
    log_probs : torch.Tensor
        Log-probabilities, ``[batch, n_classes]`` or ``[batch, 1, n_classes]``
        (the shape of SpeechBrain classifiers' output).
    targets : torch.Tensor
        Target distributions, same shape as ``log_probs`` (or
        ``[batch, n_classes]`` for a ``[batch, 1, n_classes]`` input). Each
        row must be non-negative; rows are renormalised to sum to one, so
        raw vote counts work too.
    class_weights : torch.Tensor, optional
        ``[n_classes]`` weights. A sample's loss is
        ``- sum_c w_c t_c log p_c``; with ``reduction="mean"`` the sum over
        the batch is divided by ``sum_i sum_c w_c t_ic`` (as PyTorch's
        weighted ``nll_loss`` divides by the weights of the target classes).
    label_smoothing : float
        Mixes the targets with the uniform distribution:
        ``t <- (1 - eps) t + eps / n_classes``. Default 0.
    reduction : str
        ``"mean"`` (default), ``"sum"``, or ``"batch"`` / ``"none"`` for one
        loss per sample, ``[batch]``.

    Returns
    -------
    loss : torch.Tensor
        A scalar, or ``[batch]`` for ``reduction="batch"``.

    Example
    -------
    >>> log_probs = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    >>> targets = torch.tensor([[1.0, 0.0, 0.0]])
    >>> round(float(soft_target_cross_entropy(log_probs, targets)), 4)
    0.6931
    >>> targets = torch.tensor([[0.5, 0.5, 0.0]])
    >>> round(float(soft_target_cross_entropy(log_probs, targets)), 4)
    1.0397
    >>> soft_target_cross_entropy(log_probs[:, None], targets).shape
    torch.Size([])
    """
    if log_probs.dim() == 3:
        if log_probs.shape[1] != 1:
            raise ValueError(
                "soft_target_cross_entropy expects [batch, 1, n_classes] "
                f"for 3-D input, got {tuple(log_probs.shape)}"
            )
        log_probs = log_probs.squeeze(1)
    if targets.dim() == 3:
        targets = targets.squeeze(1)
    if log_probs.dim() != 2 or targets.shape != log_probs.shape:
        raise ValueError(
            f"log_probs {tuple(log_probs.shape)} and targets "
            f"{tuple(targets.shape)} must both be [batch, n_classes]"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(
            f"label_smoothing must be in [0, 1): {label_smoothing}"
        )

    targets = targets.to(log_probs.dtype)
    if bool((targets < 0).any()):
        raise ValueError("targets must be non-negative")
    totals = targets.sum(dim=-1, keepdim=True)
    if bool((totals <= 0).any()):
        raise ValueError("every target row needs a positive sum")
    targets = targets / totals
    n_classes = targets.shape[-1]
    if label_smoothing > 0:
        targets = (1 - label_smoothing) * targets + label_smoothing / n_classes

    if class_weights is not None:
        class_weights = torch.as_tensor(
            class_weights, dtype=log_probs.dtype, device=log_probs.device
        )
        if class_weights.shape != (n_classes,):
            raise ValueError(
                f"class_weights must be [{n_classes}], "
                f"got {tuple(class_weights.shape)}"
            )
        targets = targets * class_weights

    per_sample = -(targets * log_probs).sum(dim=-1)
    if reduction in ("batch", "none"):
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.sum() / targets.sum()
    raise ValueError(f"unknown reduction {reduction!r}")


def balanced_class_weights(targets):
    """Inverse-frequency class weights from a set of (soft) targets.

    ``w_c = n_samples / (n_classes * mass_c)``, where ``mass_c`` is the
    total target probability of class ``c``; the weights average one under
    the data's class distribution. Classes with no mass get weight 0.

    Arguments
    ---------
    targets : torch.Tensor
        ``[n_samples, n_classes]`` targets (one-hot or soft, rows summing
        to one).

    Returns
    -------
    weights : torch.Tensor
        ``[n_classes]`` float weights.

    Example
    -------
    >>> targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0],
    ...                         [0.0, 1.0]])
    >>> balanced_class_weights(targets)
    tensor([0.6667, 2.0000])
    """
    targets = torch.as_tensor(targets, dtype=torch.float32)
    mass = targets.sum(dim=0)
    n_samples, n_classes = targets.shape
    weights = torch.zeros(n_classes)
    present = mass > 0
    weights[present] = n_samples / (n_classes * mass[present])
    return weights
