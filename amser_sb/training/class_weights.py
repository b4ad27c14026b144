"""Class weights of the loss, from the ``class_weights`` hparam.

Authors
 * amser-sb contributors
"""

import logging

import torch

from amser_sb.core.losses import balanced_class_weights

logger = logging.getLogger(__name__)


def class_weights(setting, train_set, labels):
    """Class weights: none, balanced (inverse frequency) or given.

    Arguments
    ---------
    setting : None, str or list
        ``null``, ``"balanced"`` or one weight a class (label-encoder
        order).
    train_set : DynamicItemDataset or DataLoader
        For ``balanced``: whose ``soft`` targets are counted.
    labels : list of str
        The classes, in label-encoder order.

    Returns
    -------
    torch.Tensor or None
        ``[n_classes]`` weights (CPU).
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting != "balanced":
            raise ValueError(
                f"class_weights must be null, 'balanced' or a list, "
                f"got {setting!r}"
            )
        dataset = getattr(train_set, "dataset", train_set)
        targets = torch.tensor(
            [dataset.data[key]["soft"] for key in dataset.data_ids]
        )
        targets = targets / targets.sum(dim=1, keepdim=True)
        weights = balanced_class_weights(targets)
    else:
        weights = torch.tensor([float(w) for w in setting])
    if weights.numel() != len(labels):
        raise ValueError(
            f"class_weights has {weights.numel()} values for "
            f"{len(labels)} classes {labels}"
        )
    logger.info(
        "class weights: %s",
        {lab: round(float(w), 3) for lab, w in zip(labels, weights)},
    )
    return weights

