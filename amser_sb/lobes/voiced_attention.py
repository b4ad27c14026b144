"""Voiced/unvoiced attention: one weight per time step of AM-ResNet's features.

Li & Zhang (2025, Sec. 2.3) weight the output ``E`` of the mask residual
blocks with ``w = sigmoid(Conv1d(E))``, one weight in (0, 1) per frame, so
that voiced frames count more than unvoiced or silent ones; the "AM-ResNet
features" are ``E * w``. The kernel of the attention convolution is not
stated in the paper (an hparam of ``AMResNet``, default 1).

Authors
 * amser-sb contributors
"""

import torch

from amser_sb.lobes.masked_ops import conv_planar


class VoicedAttention(torch.nn.Module):
    """Voiced/unvoiced attention: ``E * sigmoid(Conv1d(E))``.

    One weight in (0, 1) per time step, from a convolution that collapses
    the channels; silent positions (``E == 0``) stay 0.

    Arguments
    ---------
    channels : int
        Channels of ``E``.
    kernel_size : int
        Kernel of the attention convolution (default 1; the paper does not
        say).

    Example
    -------
    >>> att = VoicedAttention(64)
    >>> out, w = att(torch.randn(2, 64, 50))
    >>> out.shape, w.shape
    (torch.Size([2, 64, 50]), torch.Size([2, 1, 50]))
    """

    def __init__(self, channels, kernel_size=1):
        super().__init__()
        self.conv = torch.nn.Conv1d(
            channels, 1, kernel_size, padding=kernel_size // 2
        )

    def forward(self, x):
        """Weight each time step.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, channels, time]``.

        Returns
        -------
        out : torch.Tensor
            ``[batch, channels, time]``.
        weights : torch.Tensor
            ``[batch, 1, time]``.
        """
        w = torch.sigmoid(self.conv(x))
        return x * w, w

    def forward_planar(self, x):
        """``forward`` on ``[batch, channels, 1, time]``.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, channels, 1, time]``.

        Returns
        -------
        out : torch.Tensor
            ``[batch, channels, 1, time]``.
        weights : torch.Tensor
            ``[batch, 1, 1, time]``.
        """
        if self.conv.kernel_size[0] == 1:
            # kernel 1, one output channel: a weighted sum over channels,
            # two fused operators instead of a convolution call (eager:
            # about 30 operators fewer with its backward; compiled: no
            # call left, where the convolution was 36). Under autocast the
            # sum runs in float32 (the parameters' dtype) and the weights
            # come back in the features' dtype, as the convolution's do.
            logits = torch.sum(
                x * self.conv.weight.view(1, -1, 1, 1), 1, keepdim=True
            ) + self.conv.bias
            w = torch.sigmoid(logits).to(x.dtype)
        else:
            w = torch.sigmoid(conv_planar(self.conv, x))
        return x * w, w
