"""Whole-utterance inference over the training segment grid.

Training and evaluation see fixed-length segments (4 s in the paper) with
the MADD voiced mask of the whole utterance cut to each segment; the
utterance's class posterior is the softmax of the mean of its segments'
class scores (equivalently, since the classifier is one linear layer, the
classifier applied to the mean segment embedding). ``UtteranceEncoder``
reproduces exactly that for whole waveforms, so SpeechBrain's plain
``EncoderClassifier`` gives the same predictions as the training-time
evaluation:

1. MADD runs on each whole utterance (as the data preparation does);
2. the utterance is cut with :func:`amser_sb.core.segments.segment_bounds`;
3. every segment (with its slice of the mask) goes through the segment
   encoder (``AMSER``), a bounded number at a time;
4. the segment embeddings of each utterance are averaged -> ``[B, 1, D]``.

Authors
 * amser-sb contributors
"""

import torch

from amser_sb.core.segments import segment_bounds
from amser_sb.core.lengths import lengths_to_samples
from amser_sb.core.madd import DEFAULT_FACTOR, DEFAULT_WINDOW, madd


class UtteranceEncoder(torch.nn.Module):
    """Mean segment embedding of whole utterances (inference wrapper).

    Arguments
    ---------
    encoder : torch.nn.Module
        Segment encoder called as ``encoder(wavs, wav_lens, mask=mask)``
        returning ``[segments, 1, D]`` (``amser_sb.lobes.AMSER``).
    sample_rate : int
        Rate of the waveforms (16 kHz).
    segment_seconds : float or None
        Segment length; None: whole utterances (one segment each).
    hop_seconds : float or None
        Hop between segments (None: ``segment_seconds``).
    use_voiced_mask : bool
        Give the encoder the MADD mask of the utterance (as the recipe's
        ``use_voiced_mask``); False: only the padding mask.
    madd_window, madd_factor : int, float
        MADD options, as used by the data preparation.
    max_segments : int
        Segments encoded together (bounds memory for long inputs).

    Example
    -------
    >>> class MeanEncoder(torch.nn.Module):
    ...     def forward(self, wavs, wav_lens=None, mask=None):
    ...         return (wavs * mask).sum(1, keepdim=True).unsqueeze(-1)
    >>> enc = UtteranceEncoder(MeanEncoder(), segment_seconds=0.5,
    ...                        use_voiced_mask=False)
    >>> wavs = torch.ones(2, 16000)
    >>> enc(wavs, torch.tensor([1.0, 0.25])).squeeze(-1)
    tensor([[8000.],
            [4000.]])
    """

    def __init__(
        self,
        encoder,
        sample_rate=16000,
        segment_seconds=4.0,
        hop_seconds=None,
        use_voiced_mask=True,
        madd_window=DEFAULT_WINDOW,
        madd_factor=DEFAULT_FACTOR,
        max_segments=16,
    ):
        super().__init__()
        self.encoder = encoder
        self.segment = (
            int(round(segment_seconds * sample_rate))
            if segment_seconds
            else None
        )
        self.hop = (
            int(round(hop_seconds * sample_rate)) if hop_seconds else None
        )
        self.use_voiced_mask = use_voiced_mask
        self.madd_window = madd_window
        self.madd_factor = madd_factor
        self.max_segments = max_segments

    def forward(self, wavs, wav_lens=None):
        """Utterance embeddings.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` 16 kHz waveforms (``[batch, time, 1]`` ok).
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, 1, D]`` mean segment embeddings.
        """
        if wavs.dim() == 3 and wavs.shape[-1] == 1:
            wavs = wavs.squeeze(-1)
        if wavs.dim() != 2:
            raise ValueError(
                f"expected waveforms [batch, time], got {tuple(wavs.shape)} "
                "(mix multi-channel audio to mono first)"
            )
        batch, time = wavs.shape
        if wav_lens is None:
            wav_lens = torch.ones(batch, device=wavs.device)
        lens = lengths_to_samples(wav_lens, time)
        if bool((lens <= 0).any()):
            raise ValueError(
                "empty waveform (0 samples) in the batch: nothing to classify"
            )
        if self.use_voiced_mask:
            _, mask = madd(
                wavs,
                wav_lens,
                window=self.madd_window,
                factor=self.madd_factor,
            )
        else:
            pos = torch.arange(time, device=wavs.device)
            mask = (pos.unsqueeze(0) < lens.unsqueeze(1)).to(wavs.dtype)
        jobs = [
            (b, start, stop)
            for b in range(batch)
            for start, stop in segment_bounds(
                int(lens[b]), self.segment, self.hop
            )
        ]
        sums, counts = None, torch.zeros(batch, device=wavs.device)
        for i in range(0, len(jobs), self.max_segments):
            chunk = jobs[i : i + self.max_segments]
            longest = max(stop - start for _, start, stop in chunk)
            seg = wavs.new_zeros(len(chunk), longest)
            seg_mask = wavs.new_zeros(len(chunk), longest)
            seg_lens = wavs.new_zeros(len(chunk))
            for j, (b, start, stop) in enumerate(chunk):
                seg[j, : stop - start] = wavs[b, start:stop]
                seg_mask[j, : stop - start] = mask[b, start:stop]
                seg_lens[j] = (stop - start) / longest
            emb = self.encoder(seg, seg_lens, mask=seg_mask).squeeze(1)
            if sums is None:
                sums = emb.new_zeros(batch, emb.shape[-1])
            index = torch.tensor([b for b, _, _ in chunk], device=emb.device)
            sums.index_add_(0, index, emb)
            counts.index_add_(
                0, index, torch.ones(len(chunk), device=counts.device)
            )
        return (sums / counts.unsqueeze(1).to(sums.dtype)).unsqueeze(1)


class Passthrough(torch.nn.Module):
    """Returns its first input unchanged, ignoring the rest.

    Fills the ``compute_features`` / ``mean_var_norm`` slots of
    SpeechBrain's ``EncoderClassifier`` (which calls them with lengths) when
    the embedding model takes raw waveforms.

    Example
    -------
    >>> Passthrough()(torch.ones(2), torch.ones(2)).shape
    torch.Size([2])
    """

    def forward(self, x, *args, **kwargs):
        """Identity.

        Arguments
        ---------
        x : torch.Tensor
            Anything.
        *args, **kwargs
            Ignored (e.g. relative lengths).

        Returns
        -------
        torch.Tensor
            ``x``.
        """
        return x
