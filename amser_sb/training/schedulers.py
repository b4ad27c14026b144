"""Epoch-wise learning-rate schedules missing from SpeechBrain.

Authors
 * amser-sb contributors 2026
"""

__all__ = ["MilestoneScheduler"]


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
