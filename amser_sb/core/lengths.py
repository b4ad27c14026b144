"""Relative lengths (SpeechBrain's ``wav_lens``) and absolute sample counts.

SpeechBrain batches carry each utterance's length as a fraction of the
padded length (``wav_lens``, ``[batch]`` in (0, 1]). The lobes, MADD and the
encoders turn these into sample (or frame) counts with one rounding rule,
defined here once.

Authors
 * amser-sb contributors
"""

import torch


def lengths_to_samples(wav_lens, max_len):
    """Convert SpeechBrain relative lengths to absolute sample counts.

    Arguments
    ---------
    wav_lens : torch.Tensor or None
        Relative lengths in (0, 1], ``[batch]``; None means all full.
    max_len : int
        Padded length of the batch in samples.

    Returns
    -------
    torch.Tensor
        ``[batch]`` long tensor of valid sample counts.

    Example
    -------
    >>> lengths_to_samples(torch.tensor([1.0, 0.5]), 10)
    tensor([10,  5])
    """
    if wav_lens is None:
        raise ValueError("wav_lens is None")
    return torch.round(wav_lens.float() * max_len).long().clamp(0, max_len)
