"""The paper's two-stage schedule: AM-ResNet's weights from stage 1.

Stage 1 trains AM-ResNet alone (``hparams/am_resnet.yaml``); stage 2
(``am_resnet_w2v2.yaml`` with ``stage1_folder``) starts from the AM-ResNet
of stage 1's best checkpoint (by validation UA).

Authors
 * amser-sb contributors
"""

import logging
import os

import torch

from amser_sb.core.checkpoints import find_best_checkpoint

logger = logging.getLogger(__name__)


def load_stage_one(folder, am_resnet):
    """Load AM-ResNet's weights from stage 1's best checkpoint.

    Arguments
    ---------
    folder : str
        Stage 1's output folder for this fold (or its ``save/``).
    am_resnet : torch.nn.Module or None
        The AM-ResNet branch to load into.

    Returns
    -------
    str
        The checkpoint folder loaded.
    """
    save = os.path.join(folder, "save")
    try:
        best = find_best_checkpoint(save if os.path.isdir(save) else folder)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err}; stage 2 loads AM-ResNet from stage 1: run stage 1 "
            "(hparams/am_resnet.yaml) for this fold first, or fix "
            "stage1_folder"
        ) from err
    state = torch.load(
        os.path.join(best.path, "embedding_model.ckpt"), map_location="cpu",
        weights_only=True,
    )
    prefix = "am_resnet."
    weights = {
        key[len(prefix) :]: value
        for key, value in state.items()
        if key.startswith(prefix)
    }
    if not weights or am_resnet is None:
        raise ValueError(
            f"{best.path} holds no AM-ResNet weights (am_resnet.*) or "
            "this model has no AM-ResNet branch"
        )
    am_resnet.load_state_dict(weights)
    logger.info(
        "stage 2: AM-ResNet loaded from %s (valid UA %.2f)",
        best.path,
        best.meta.get("UA", float("nan")),
    )
    return str(best.path)

