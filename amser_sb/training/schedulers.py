"""Epoch-wise learning-rate schedules missing from SpeechBrain, and the
one step of any epoch-wise schedule at the end of an epoch.

Authors
 * amser-sb contributors 2026
"""

import speechbrain as sb

__all__ = ["MilestoneScheduler", "anneal_epoch"]


class MilestoneScheduler:
    """Piecewise-constant learning rate, multiplied by ``factor`` at each
    milestone epoch (as ``torch.optim.lr_scheduler.MultiStepLR``, in
    SpeechBrain's ``scheduler(epoch) -> (old_value, new_value)`` form).

    The paper's stage 1: 0.01 for 40 epochs, 0.001 for the next 80, 0.0001
    for the remaining 280 is ``MilestoneScheduler(0.01, [40, 120], 0.1)``.

    Arguments
    ---------
    initial_value : float
        Learning rate of epoch 1.
    milestones : list of int
        After each of these epochs the value is multiplied by ``factor``.
    factor : float
        Multiplier at each milestone (default 0.1).

    Example
    -------
    >>> scheduler = MilestoneScheduler(0.01, [40, 120])
    >>> [round(scheduler.value(epoch), 6) for epoch in (1, 40, 41, 120, 121)]
    [0.01, 0.01, 0.001, 0.001, 0.0001]
    >>> scheduler(40)
    (0.01, 0.001)
    """

    def __init__(self, initial_value, milestones=(), factor=0.1):
        self.initial_value = float(initial_value)
        self.milestones = sorted(int(m) for m in milestones)
        self.factor = float(factor)

    def value(self, epoch):
        """Learning rate during ``epoch`` (1-based).

        Arguments
        ---------
        epoch : int
            The epoch.

        Returns
        -------
        float
        """
        passed = sum(1 for milestone in self.milestones if epoch > milestone)
        return self.initial_value * self.factor**passed

    def __call__(self, current_epoch):
        """Value during ``current_epoch`` and during the next one.

        Arguments
        ---------
        current_epoch : int
            The epoch that just ended.

        Returns
        -------
        tuple of float
            ``(old_value, new_value)``.
        """
        return self.value(current_epoch), self.value(current_epoch + 1)


def anneal_epoch(annealing, optimizer, epoch, valid_ua):
    """Steps an epoch-wise scheduler and scales every parameter group of
    ``optimizer`` by the same factor (so ``lr_ssl`` follows the main
    schedule).

    Epoch-driven schedulers (``MilestoneScheduler``, ``StepScheduler``,
    ``LinearScheduler``, ...) get the epoch; ``NewBobScheduler`` gets the
    validation error ``100 - UA``.

    Arguments
    ---------
    annealing : callable or None
        SpeechBrain-style ``scheduler(x) -> (old_value, new_value)``; None
        keeps the learning rates.
    optimizer : torch.optim.Optimizer
        Its first group is the ``model`` group.
    epoch : int
        The epoch that just ended.
    valid_ua : float
        Its validation UA (percent).

    Returns
    -------
    float
        The learning rate of the first group during that epoch.

    Example
    -------
    >>> import torch
    >>> opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 0.01},
    ...                        {"params": [torch.zeros(1)], "lr": 0.001}])
    >>> anneal_epoch(MilestoneScheduler(0.01, [1]), opt, 1, 50.0)
    0.01
    >>> [round(g["lr"], 6) for g in opt.param_groups]
    [0.001, 0.0001]
    """
    current = optimizer.param_groups[0]["lr"]
    if annealing is None:
        return current
    if isinstance(annealing, sb.nnet.schedulers.NewBobScheduler):
        old_lr, new_lr = annealing(100.0 - valid_ua)
    else:
        old_lr, new_lr = annealing(epoch)
    if old_lr > 0 and new_lr != old_lr:
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * new_lr / old_lr
    return old_lr
