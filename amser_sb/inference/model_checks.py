"""Checks of a model folder and of its input before anything is built.

* :func:`check_checkpoints`: every ``*.ckpt`` of an exported folder opens
  as a weights-only torch file (a damaged or truncated copy is named, with
  the fix, instead of an ``UnpicklingError`` traceback that suggests
  ``weights_only=False``);
* :func:`fetch_hub_hyperparams`: a Hub model's ``hyperparams.yaml`` is
  fetched on its own first, so that the YAML check
  (:mod:`amser_sb.config.yaml_trust`) runs before SpeechBrain loads it;
* :func:`check_finite`: audio holding NaN or infinite samples is refused
  (it would give ``nan`` posteriors);
* :func:`shortest_input`: the fewest samples the model's encoders accept.

Authors
 * amser-sb contributors
"""

import os

import torch

from amser_sb.core.audio import AudioError
from amser_sb.core.errors import AmserUserError

#: Weight files of an exported model folder (``amser-sb export``).
CHECKPOINTS = ("embedding_model.ckpt", "classifier.ckpt")


class DamagedModelError(AmserUserError, ValueError):
    """A model folder file that cannot be read (truncated, overwritten)."""


def check_checkpoints(model_dir):
    """Open each weight file of a model folder (weights-only, memory-mapped:
    cheap, nothing is copied).

    Arguments
    ---------
    model_dir : str
        Exported model folder.

    Raises
    ------
    DamagedModelError
        Naming the file and the fix.
    """
    for name in CHECKPOINTS:
        path = os.path.join(model_dir, name)
        try:
            torch.load(path, map_location="cpu", weights_only=True,
                       mmap=True)
        except Exception as err:  # torch raises many types for bad files
            reason = " ".join(str(err).split())[:160]
            raise DamagedModelError(
                f"{path} is damaged or truncated ({type(err).__name__}: "
                f"{reason}); copy the model folder again or re-export it "
                "with 'amser-sb export <experiment folder> <model_dir>'"
            ) from err


def fetch_hub_hyperparams(source, savedir):
    """Fetch only the ``hyperparams.yaml`` of a Hub model (to check it).

    Arguments
    ---------
    source : str
        Hub id.
    savedir : str
        SpeechBrain's savedir for the model.

    Returns
    -------
    str
        Local path of the file.
    """
    from speechbrain.utils.fetching import fetch

    return str(fetch("hyperparams.yaml", source=source, savedir=savedir))


def check_finite(wav, path):
    """Refuse a waveform holding NaN or infinite samples.

    Arguments
    ---------
    wav : torch.Tensor
        Samples.
    path : str
        Its file, for the message.

    Raises
    ------
    AudioError
        Naming the file and the fix (``reason`` ``non-finite audio``).

    Example
    -------
    >>> check_finite(torch.zeros(3), "a.wav")
    >>> check_finite(torch.tensor([0.0, float("nan")]), "a.wav")
    Traceback (most recent call last):
    ...
    amser_sb.core.audio.AudioError: a.wav holds 1 NaN or infinite samples \
(of 2); the file is damaged: restore it or re-encode it from its source
    """
    bad = int((~torch.isfinite(wav)).sum())
    if bad:
        raise AudioError(
            f"{path} holds {bad} NaN or infinite samples (of {wav.numel()}); "
            "the file is damaged: restore it or re-encode it from its source",
            reason="non-finite audio",
        )


def shortest_input(clf):
    """The fewest samples a loaded classifier accepts.

    Arguments
    ---------
    clf : EncoderClassifier or OnnxClassifier
        A PyTorch model (its encoders declare ``min_samples``) or an
        onnxruntime one (``min_samples`` from the graph's metadata).

    Returns
    -------
    int
        0 when no part declares a minimum.
    """
    if not hasattr(clf, "mods"):
        return int(getattr(clf, "min_samples", 0) or 0)
    module = clf.mods
    sizes = [
        int(getattr(part, "min_samples", 0) or 0)
        for part in module.modules()
    ]
    return max(sizes, default=0)
