"""The random number generators' states as a checkpoint recoverable.

A run resumed from a checkpoint draws other dropout masks and other random
training segments than the uninterrupted run would have: the recipe seeds
the generators once at start-up and SpeechBrain checkpoints the model, the
optimiser and the data order, not the generators. ``RNGState`` saves
Python's ``random``, NumPy's global generator, torch's CPU generator and
(when CUDA is initialised) every CUDA generator's state with each
checkpoint and restores them on recovery, so that a resumed run equals an
uninterrupted one. The data order itself is SpeechBrain's (a
``ReproducibleRandomSampler`` seeded per epoch, and the
``SaveableDataLoader`` position for intra-epoch checkpoints).

The file holds only tensors, ints and strings, so it loads with
``torch.load(weights_only=True)``. Under ``torchrun`` the main process's
states are saved (one file per checkpoint).

Authors
 * amser-sb contributors
"""

import random

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)


def capture_rng_state():
    """The current states of every generator, as plain types.

    Returns
    -------
    dict
        ``python``, ``numpy``, ``torch`` and ``cuda`` states.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [
            name,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
    }


def restore_rng_state(state):
    """Set every generator to a state from :func:`capture_rng_state`.

    Arguments
    ---------
    state : dict
        As returned by :func:`capture_rng_state`.

    Example
    -------
    >>> state = capture_rng_state()
    >>> a = (random.random(), np.random.rand(), torch.rand(1).item())
    >>> restore_rng_state(state)
    >>> a == (random.random(), np.random.rand(), torch.rand(1).item())
    True
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(
        (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


@register_checkpoint_hooks
class RNGState:
    """Checkpoint recoverable of the generators' states.

    Add it to the recipe's checkpointer (``optional_recoverables`` of
    :class:`amser_sb.core.checkpoints.SafeCheckpointer`, so that checkpoints
    written before it still load).

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> rng = RNGState()
    >>> rng.save(tmp / "rng_state.ckpt")
    >>> first = torch.rand(3)
    >>> rng.load(tmp / "rng_state.ckpt", end_of_epoch=True)
    >>> torch.equal(first, torch.rand(3))
    True
    """

    @mark_as_saver
    def save(self, path):
        """Write the current states to ``path``.

        Arguments
        ---------
        path : str or pathlib.Path
            Checkpoint file.
        """
        torch.save(capture_rng_state(), path)

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Restore the states saved in ``path``.

        Arguments
        ---------
        path : str or pathlib.Path
            Checkpoint file.
        end_of_epoch : bool
            Unused (the states are exact wherever the checkpoint was taken).
        """
        del end_of_epoch
        restore_rng_state(torch.load(path, map_location="cpu", weights_only=True))
