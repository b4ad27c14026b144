"""AM-ResNet: mask residual blocks and voiced/unvoiced attention on waveforms.

Li & Zhang (2025, Sec. 2.2-2.3) build the waveform branch from
pre-activation residual blocks, ``BN -> ReLU -> Conv1d(k=7, 64 channels)``
twice, on the raw 16 kHz sample sequence. Beside the convolutions runs a
*mask trunk*: the 0/1 sample mask (MADD silence detection and padding) goes
through max-pooling layers with the kernel, stride and padding of each
convolution and multiplies the BN output, so that BatchNorm's shift cannot
turn silent or padded (zero) positions into non-zero values (their Fig. 4).
An attention ``w = sigmoid(Conv1d(E))`` then gives one weight per time step
and the "AM-ResNet features" are ``E * w``.

What the paper does not state, and is chosen here (all hparams):

* **Stem**: ``Conv1d(1, 64, k=10, stride=5)`` (no bias), the geometry of
  the first layer of wav2vec2's feature encoder; the mask trunk pools the
  sample mask the same way.
* **Depth and strides**: six mask residual blocks with strides
  ``(4, 1, 4, 1, 4, 1)`` (the stride sits in each block's first
  convolution): two blocks at each of 800, 200 and 50 frames a second.
  Total stride 5 * 4 * 4 * 4 = 320 samples: 50 frames a second,
  wav2vec2's frame rate, so the cross-attention pairs frames of equal
  duration. About 360k parameters and ~0.13 GMAC (multiply-adds) a second
  of audio, about 2% of wav2vec2-base's ~6.7 GMAC; the receptive field of
  an output frame is about 8200 samples (0.5 s). A cheaper variant,
  ``(4, 4, 1, 4, 1)`` (one block at 800 frames a second), took 0.085 s
  instead of 0.12 s for a forward + backward pass on 2 x 4 s (CPU, one
  thread); ``benchmarks/model_speed.py`` measures the whole model against
  a wav2vec2-only baseline (goal: at most 1.15x).
* **Padding**: every convolution pads ``kernel // 2`` on both sides; a
  waveform of ``n`` samples gives ``floor(n / 5) + 1`` stem frames and
  ``ceil(m / s)`` frames after a block of stride ``s``.
* **Padding invariance**: the mask trunk's output is also multiplied by a
  length mask (each layer's valid frame count, from the convolution
  arithmetic), and every block's output is multiplied by its output mask.
  So everything past an utterance's own last frame is exactly 0 at every
  layer, just as zero padding is when the utterance runs alone, and (in
  eval mode) a waveform's features over its valid frames do not depend on
  what it was batched with.
* **BatchNorm statistics**: plain ``BatchNorm1d``; in training its batch
  statistics span every position, masked ones included (they are 0 on
  input), as in the paper, which masks after BN. Invariance to padding is
  an eval-mode property.
* **Shortcut**: identity when shape is kept, else a bias-free 1x1
  convolution with the block's stride on the pre-activated input (He et al.,
  2016, pre-activation ResNet), computed as subsampling + 1x1 convolution.
* **Head**: a final ``BN -> mask -> ReLU`` (as pre-activation networks end)
  gives ``E``; the attention convolution has kernel 1 by default.
* **Ablations**: ``use_mask=False`` is the paper's plain *ResNet*: no MADD,
  the trunk carries only the padding mask. ``use_attention=False`` is
  *M-ResNet*; both on is *AM-ResNet*.

Authors
 * amser-sb contributors
"""

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask

from amser_sb.core.lengths import lengths_to_samples
from amser_sb.core.madd import DEFAULT_FACTOR, DEFAULT_WINDOW, madd
from amser_sb.lobes.masked_ops import (
    batch_norm_planar,
    compute_dtype,
    conv_output_length,
    conv_planar,
    pointwise_conv_planar,
    subsample_valid,
)
from amser_sb.lobes.voiced_attention import VoicedAttention


class MaskedConv1d(torch.nn.Module):
    """A bias-free ``Conv1d`` with its mask trunk (max-pooling of the mask).

    Arguments
    ---------
    in_channels, out_channels : int
        Channels.
    kernel_size : int
        Kernel size.
    stride : int
        Stride.

    Example
    -------
    >>> conv = MaskedConv1d(1, 8, kernel_size=10, stride=5)
    >>> x, m = torch.randn(2, 1, 100), torch.ones(2, 1, 100)
    >>> y, m, n = conv(x, m, torch.tensor([100, 50]))
    >>> y.shape, m.shape, n
    (torch.Size([2, 8, 21]), torch.Size([2, 1, 21]), tensor([21, 11]))
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.conv = torch.nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=self.padding,
            bias=False,
        )

    def output_lengths(self, lengths):
        """Valid output frames for ``lengths`` valid input frames.

        Arguments
        ---------
        lengths : torch.Tensor
            ``[batch]`` long.

        Returns
        -------
        torch.Tensor
            ``[batch]`` long.
        """
        return conv_output_length(
            lengths, self.kernel_size, self.stride, self.padding
        )

    def pool_mask(self, mask, lengths):
        """Mask trunk: max-pool with the convolution's geometry, then cut
        every frame past the valid length.

        Arguments
        ---------
        mask : torch.Tensor
            ``[batch, 1, time]`` 0/1.
        lengths : torch.Tensor
            ``[batch]`` valid input frames (long).

        Returns
        -------
        mask : torch.Tensor
            ``[batch, 1, time']``.
        lengths : torch.Tensor
            ``[batch]`` valid output frames.
        """
        pooled = F.max_pool1d(mask, self.kernel_size, self.stride, self.padding)
        lengths = self.output_lengths(lengths)
        valid = length_to_mask(
            lengths, pooled.shape[-1], dtype=mask.dtype, device=mask.device
        )
        return pooled * valid.unsqueeze(1), lengths

    def forward(self, x, mask, lengths):
        """Convolve and carry the mask.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, channels, time]``, zero where ``mask`` is 0.
        mask : torch.Tensor
            ``[batch, 1, time]`` 0/1.
        lengths : torch.Tensor
            ``[batch]`` valid input frames (long).

        Returns
        -------
        y : torch.Tensor
            ``[batch, out_channels, time']``, not yet masked (the caller
            multiplies by ``mask`` where the value is kept, e.g. after BN).
        mask : torch.Tensor
            ``[batch, 1, time']``.
        lengths : torch.Tensor
            ``[batch]`` valid output frames.
        """
        mask, lengths = self.pool_mask(mask, lengths)
        return self.conv(x), mask, lengths

    def trunk(self, mask, valid):
        """Mask trunk in the planar layout, lengths carried as a mask.

        Arguments
        ---------
        mask : torch.Tensor
            ``[batch, 1, 1, time]`` 0/1, zero wherever ``valid`` is.
        valid : torch.Tensor
            ``[batch, 1, 1, time]`` 0/1 prefix mask of the valid frames.

        Returns
        -------
        mask : torch.Tensor
            ``[batch, 1, 1, time']``: what ``pool_mask`` gives.
        valid : torch.Tensor
            ``[batch, 1, 1, time']`` valid output frames.
        """
        valid = subsample_valid(
            valid, self.kernel_size, self.stride, self.padding
        )
        pooled = F.max_pool2d(
            mask, (1, self.kernel_size), (1, self.stride), (0, self.padding)
        )
        return pooled * valid, valid


class MaskResBlock(torch.nn.Module):
    """Pre-activation mask residual block (the paper's Fig. 4(d)).

    ``BN -> mask -> ReLU -> Conv(k, stride) -> BN -> mask -> ReLU -> Conv(k)``
    plus a shortcut; the mask trunk max-pools the mask with each
    convolution's kernel, stride and padding. Positions whose receptive
    field is all masked are exactly 0 at the output, and so is everything
    past each sequence's valid length.

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels (the paper: 64).
    kernel_size : int
        Kernel of both convolutions (the paper: 7).
    stride : int
        Stride of the first convolution (and of the shortcut).

    Example
    -------
    >>> block = MaskResBlock(16, 64, kernel_size=7, stride=4)
    >>> x = torch.randn(2, 16, 400)
    >>> mask = torch.ones(2, 1, 400)
    >>> mask[:, :, 100:300] = 0
    >>> x = x * mask
    >>> y, m, n = block(x, mask, torch.tensor([400, 200]))
    >>> y.shape, m.shape, n
    (torch.Size([2, 64, 100]), torch.Size([2, 1, 100]), tensor([100,  50]))
    >>> bool((y[0, :, 29:72] == 0).all())  # receptive field all silent
    True
    >>> bool((y[1, :, 50:] == 0).all())  # past the valid length
    True
    """

    def __init__(self, in_channels, out_channels=64, kernel_size=7, stride=1):
        super().__init__()
        self.norm1 = torch.nn.BatchNorm1d(in_channels)
        self.conv1 = MaskedConv1d(
            in_channels, out_channels, kernel_size, stride
        )
        self.norm2 = torch.nn.BatchNorm1d(out_channels)
        self.conv2 = MaskedConv1d(out_channels, out_channels, kernel_size)
        if stride != 1 or in_channels != out_channels:
            # A 1x1 convolution with stride s, computed as subsampling then
            # a 1x1 convolution (same result, several times faster on CPU).
            self.shortcut = torch.nn.Conv1d(
                in_channels, out_channels, 1, bias=False
            )
        else:
            self.shortcut = None

    def output_lengths(self, lengths):
        """Valid output frames for ``lengths`` valid input frames.

        Arguments
        ---------
        lengths : torch.Tensor
            ``[batch]`` long.

        Returns
        -------
        torch.Tensor
            ``[batch]`` long.
        """
        return self.conv2.output_lengths(self.conv1.output_lengths(lengths))

    def forward(self, x, mask, lengths=None):
        """Run the block.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, channels, time]``.
        mask : torch.Tensor
            ``[batch, 1, time]`` 0/1 mask (0: silent or padding).
        lengths : torch.Tensor, optional
            ``[batch]`` valid frames (long); None means all ``time``.

        Returns
        -------
        y : torch.Tensor
            ``[batch, out_channels, time']``, 0 wherever the output mask is.
        mask : torch.Tensor
            ``[batch, 1, time']`` output mask.
        lengths : torch.Tensor
            ``[batch]`` valid output frames.
        """
        if lengths is None:
            lengths = torch.full(
                (x.shape[0],), x.shape[-1], dtype=torch.long, device=x.device
            )
        valid = length_to_mask(
            lengths, x.shape[-1], dtype=mask.dtype, device=mask.device
        )
        mask = mask.unsqueeze(2)
        masks, _ = self.trunk(mask, valid.view(mask.shape))
        y = self.forward_planar(x.unsqueeze(2), mask, masks)
        return y.squeeze(2), masks[1].squeeze(2), self.output_lengths(lengths)

    def trunk(self, mask, valid):
        """The block's mask trunk (see ``MaskedConv1d.trunk``).

        Arguments
        ---------
        mask, valid : torch.Tensor
            ``[batch, 1, 1, time]`` input mask and valid frames.

        Returns
        -------
        masks : tuple of torch.Tensor
            The masks after the first and the second convolution.
        valid : torch.Tensor
            ``[batch, 1, 1, time']`` valid output frames.
        """
        mask1, valid = self.conv1.trunk(mask, valid)
        mask2, valid = self.conv2.trunk(mask1, valid)
        return (mask1, mask2), valid

    def forward_planar(self, x, mask, masks):
        """The block on ``[batch, channels, 1, time]`` with its trunk masks.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, channels, 1, time]``.
        mask : torch.Tensor
            ``[batch, 1, 1, time]`` input mask.
        masks : tuple of torch.Tensor
            ``trunk``'s masks.

        Returns
        -------
        torch.Tensor
            ``[batch, out_channels, 1, time']``, 0 where ``masks[1]`` is.
        """
        mask1, mask2 = masks
        act = F.relu(batch_norm_planar(self.norm1, x) * mask)
        h = conv_planar(self.conv1.conv, act)
        h = F.relu(batch_norm_planar(self.norm2, h) * mask1)
        h = conv_planar(self.conv2.conv, h)
        if self.shortcut is None:
            shortcut = x
        else:
            shortcut = pointwise_conv_planar(
                self.shortcut, act[..., :: self.conv1.stride]
            )
        return (h + shortcut) * mask2


class AMResNet(torch.nn.Module):
    """Attention mask residual network on raw 16 kHz waveforms.

    Arguments
    ---------
    channels : int
        Channels of every block (the paper: 64).
    kernel_size : int
        Kernel of the block convolutions (the paper: 7).
    strides : sequence of int
        One mask residual block per entry, with that stride (default
        ``(4, 1, 4, 1, 4, 1)``: with the stem, 320 samples per frame).
    stem_kernel, stem_stride : int
        The first convolution on the waveform (default 10 and 5).
    use_mask : bool
        True: run MADD (or take the given mask) and carry silence in the
        mask trunk (M-ResNet / AM-ResNet). False: the paper's plain ResNet
        ablation; only padding is masked.
    use_attention : bool
        True: voiced/unvoiced attention (AM-ResNet). False: M-ResNet.
    attention_kernel : int
        Kernel of the attention convolution (default 1).
    madd_window, madd_factor : int, float
        MADD's ``s`` and ``f`` (see ``amser_sb.core.madd.madd``), used when
        ``forward`` gets no mask.
    madd_options : dict, optional
        Further keyword arguments of ``madd``.
    channels_last : bool
        Run the convolutions in the channels-last memory layout (default
        False; on GPUs, cuDNN's channels-last kernels are often the fast
        ones in bf16). Same results.
    float32 : bool
        Run this branch in float32 even under autocast (default False:
        autocast's dtype), for GPUs where its small convolutions are
        cheaper in float32; the features are float32.

    Example
    -------
    >>> model = AMResNet()
    >>> wavs = 0.1 * torch.randn(2, 16000)
    >>> feats, feat_lens = model.eval()(wavs, torch.tensor([1.0, 0.5]))
    >>> feats.shape, model.out_dim
    (torch.Size([2, 51, 64]), 64)
    >>> feat_lens
    tensor([1.0000, 0.5098])
    """

    def __init__(
        self,
        channels=64,
        kernel_size=7,
        strides=(4, 1, 4, 1, 4, 1),
        stem_kernel=10,
        stem_stride=5,
        use_mask=True,
        use_attention=True,
        attention_kernel=1,
        madd_window=DEFAULT_WINDOW,
        madd_factor=DEFAULT_FACTOR,
        madd_options=None,
        channels_last=False,
        float32=False,
    ):
        super().__init__()
        self.channels_last = bool(channels_last)
        self.float32 = bool(float32)
        self.use_mask = use_mask
        self.madd_kwargs = dict(madd_options or {})
        self.madd_kwargs.update(window=madd_window, factor=madd_factor)
        self.stem = MaskedConv1d(1, channels, stem_kernel, stem_stride)
        self.blocks = torch.nn.ModuleList(
            MaskResBlock(channels, channels, kernel_size, stride)
            for stride in strides
        )
        self.norm = torch.nn.BatchNorm1d(channels)
        if use_attention:
            self.attention = VoicedAttention(channels, attention_kernel)
        else:
            self.attention = None
        self.out_dim = channels

    def output_lengths(self, n_samples):
        """Valid output frames for waveforms of ``n_samples`` samples.

        Arguments
        ---------
        n_samples : torch.Tensor
            ``[batch]`` long.

        Returns
        -------
        torch.Tensor
            ``[batch]`` long.

        Example
        -------
        >>> AMResNet().output_lengths(torch.tensor([64000, 16000]))
        tensor([201,  51])
        """
        lengths = self.stem.output_lengths(n_samples)
        for block in self.blocks:
            lengths = block.output_lengths(lengths)
        return lengths

    def input_mask(self, wavs, wav_lens=None, mask=None):
        """The sample mask entering the trunk: MADD (or ``mask``) x padding.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` waveforms.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths.
        mask : torch.Tensor, optional
            ``[batch, time]`` 0/1 voiced mask; None runs MADD.

        Returns
        -------
        torch.Tensor
            ``[batch, time]`` float 0/1 mask (ignored silence if
            ``use_mask`` is False).
        """
        return self._sample_masks(wavs, wav_lens, mask)[0]

    def _sample_masks(self, wavs, wav_lens, mask):
        """``(input_mask, padding)``: both ``[batch, time]`` float 0/1."""
        batch, time = wavs.shape
        if wav_lens is None:
            wav_lens = torch.ones(batch, device=wavs.device)
        n = lengths_to_samples(wav_lens, time)
        padding = length_to_mask(n, time, dtype=wavs.dtype, device=wavs.device)
        if not self.use_mask:
            return padding, padding
        if mask is None:
            _, mask = madd(wavs, wav_lens, **self.madd_kwargs)
            return mask * padding, padding
        if mask.shape != wavs.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match the waveforms "
                f"{tuple(wavs.shape)}: pass one 0/1 value per sample"
            )
        return mask.to(wavs.dtype) * padding, padding

    def forward(self, wavs, wav_lens=None, mask=None, return_weights=False):
        """AM-ResNet features of a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Raw 16 kHz waveforms ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``; None means all full length.
        mask : torch.Tensor, optional
            Voiced 0/1 mask ``[batch, time]`` (e.g. from the manifest's
            voiced intervals); None runs MADD here. Padding is always
            masked on top.
        return_weights : bool
            Also return the attention weights.

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, channels]``, 0 on masked and padded frames.
        feat_lens : torch.Tensor
            Relative lengths in frames ``[batch]``.
        weights : torch.Tensor
            ``[batch, frames]`` attention weights (with ``return_weights``;
            ones without attention).
        """
        if wavs.dim() != 2:
            raise ValueError(
                f"AMResNet expects waveforms [batch, time], got "
                f"{tuple(wavs.shape)} (average or pick one channel first)"
            )
        device = wavs.device.type
        if self.float32 and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return self._forward(
                    wavs.float(), wav_lens, mask, return_weights
                )
        return self._forward(wavs, wav_lens, mask, return_weights)

    def _forward(self, wavs, wav_lens, mask, return_weights):
        """``forward`` after the precision choice."""
        batch, time = wavs.shape
        if wav_lens is None:
            wav_lens = torch.ones(batch, device=wavs.device)
        sample_mask, padding = self._sample_masks(wavs, wav_lens, mask)
        # Planar layout [batch, channels, 1, time]: every convolution is one
        # 2-D convolution call. The mask trunk runs first, in the dtype the
        # convolutions compute in (autocast's), so that masking adds no
        # casts; lengths travel as valid-frame masks (no host round trips).
        dtype = compute_dtype(wavs)
        m = sample_mask.to(dtype).view(batch, 1, 1, time)
        m, valid = self.stem.trunk(m, padding.to(dtype).view(m.shape))
        stem_mask, trunk = m, []
        for block in self.blocks:
            masks, valid = block.trunk(m, valid)
            trunk.append((m, masks))
            m = masks[1]
        x = (wavs * sample_mask).view(batch, 1, 1, time)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = conv_planar(self.stem.conv, x) * stem_mask
        for block, (block_mask, masks) in zip(self.blocks, trunk):
            x = block.forward_planar(x, block_mask, masks)
        x = F.relu(batch_norm_planar(self.norm, x) * m)
        if self.attention is not None:
            x, w = self.attention.forward_planar(x)
        else:
            w = torch.ones_like(m)
        feats = x.squeeze(2).transpose(1, 2)
        frames = feats.shape[1]
        feat_lens = valid.view(batch, frames).sum(1).to(feats.dtype) / frames
        if return_weights:
            return feats, feat_lens, w.view(batch, frames)
        return feats, feat_lens
