"""Length and mask arithmetic of strided convolutions, and the planar layout.

AM-ResNet runs each 1-D convolution as one 2-D convolution over a
``[batch, channels, 1, time]`` layout (one cuDNN call, channels-last
capable) and carries each utterance's valid frames as a mask subsampled
layer by layer, so no lengths are recomputed (and no host sync happens)
inside a step. These are the shared primitives of
:mod:`amser_sb.lobes.mask_resnet`.

Authors
 * amser-sb contributors
"""

import torch
import torch.nn.functional as F


def conv_output_length(lengths, kernel_size, stride, padding):
    """Output frames of a 1-D convolution (or max-pooling) layer.

    Arguments
    ---------
    lengths : torch.Tensor
        Input lengths in frames (long), any shape.
    kernel_size, stride, padding : int
        The layer's geometry.

    Returns
    -------
    torch.Tensor
        ``floor((lengths + 2 * padding - kernel_size) / stride) + 1``.

    Example
    -------
    >>> conv_output_length(torch.tensor([16000, 8000]), 10, 5, 5)
    tensor([3201, 1601])
    """
    return (
        torch.div(
            lengths + 2 * padding - kernel_size, stride, rounding_mode="floor"
        )
        + 1
    )


def batch_norm_planar(norm, x):
    """``norm`` (a ``BatchNorm1d``) on ``[batch, channels, 1, time]``.

    The same statistics, running-average update and output as
    ``norm(x.squeeze(2)).unsqueeze(2)``, in one call (the planar layout
    lets every convolution of AM-ResNet run as one 2-D convolution, without
    the reshapes that 1-D convolutions add around each call).

    Arguments
    ---------
    norm : torch.nn.BatchNorm1d
        Its parameters, buffers and train/eval mode are used.
    x : torch.Tensor
        ``[batch, channels, 1, time]``.

    Returns
    -------
    torch.Tensor
        ``[batch, channels, 1, time]``.

    Example
    -------
    >>> norm = torch.nn.BatchNorm1d(3).train()
    >>> x = torch.randn(2, 3, 5)
    >>> ref = torch.nn.BatchNorm1d(3).train()(x)
    >>> torch.allclose(batch_norm_planar(norm, x.unsqueeze(2)).squeeze(2), ref)
    True
    """
    if norm.momentum is None or not norm.track_running_stats:
        return norm(x.squeeze(2)).unsqueeze(2)
    if norm.training:
        norm.num_batches_tracked.add_(1)
    return F.batch_norm(
        x,
        norm.running_mean,
        norm.running_var,
        norm.weight,
        norm.bias,
        norm.training,
        norm.momentum,
        norm.eps,
    )


def conv_planar(conv, x, bias=None):
    """A ``Conv1d``'s weights applied to ``[batch, channels, 1, time]``.

    Arguments
    ---------
    conv : torch.nn.Conv1d
        Weights, stride, padding (bias too, unless ``bias`` is given).
    x : torch.Tensor
        ``[batch, in_channels, 1, time]``.
    bias : torch.Tensor, optional
        Overrides ``conv.bias``.

    Returns
    -------
    torch.Tensor
        ``[batch, out_channels, 1, time']``, equal to
        ``conv(x.squeeze(2)).unsqueeze(2)``.

    Example
    -------
    >>> conv = torch.nn.Conv1d(2, 4, 7, stride=3, padding=3)
    >>> x = torch.randn(1, 2, 50)
    >>> y = conv_planar(conv, x.unsqueeze(2)).squeeze(2)
    >>> torch.allclose(y, conv(x), atol=1e-6)
    True
    """
    return F.conv2d(
        x,
        conv.weight.unsqueeze(2),
        conv.bias if bias is None else bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
    )


def pointwise_conv_planar(conv, x):
    """A kernel-1 ``Conv1d`` on ``[batch, channels, 1, time]``.

    Eagerly, ``conv_planar``. Under ``torch.compile`` a matrix product,
    which the compiler runs as one matrix multiplication forward and two
    backward, where its convolution fallback dispatches about 30 operators
    (the same values: a kernel-1 convolution is that matrix product).

    Arguments
    ---------
    conv : torch.nn.Conv1d
        Kernel 1, no padding, stride 1 (subsample the input for a
        stride).
    x : torch.Tensor
        ``[batch, in_channels, 1, time]``.

    Returns
    -------
    torch.Tensor
        ``[batch, out_channels, 1, time]``.

    Example
    -------
    >>> conv = torch.nn.Conv1d(4, 3, 1)
    >>> x = torch.randn(2, 4, 1, 9)
    >>> pointwise_conv_planar(conv, x).shape
    torch.Size([2, 3, 1, 9])
    >>> compiled = torch.compile(pointwise_conv_planar, backend="eager")
    >>> torch.allclose(compiled(conv, x), conv_planar(conv, x), atol=1e-6)
    True
    """
    if not torch.compiler.is_compiling():
        return conv_planar(conv, x)
    weight = conv.weight.view(conv.out_channels, conv.in_channels)
    y = torch.matmul(weight, x.squeeze(2))
    if conv.bias is not None:
        y = y + conv.bias.to(y.dtype).view(-1, 1)
    return y.unsqueeze(2)


def subsample_valid(valid, kernel_size, stride, padding):
    """Valid-frame mask after a convolution, from the one before it.

    Output frame ``j`` of a convolution is valid (``j <
    conv_output_length(n)``) exactly when input frame ``j * stride +
    kernel_size - 1 - 2 * padding`` is valid (frames before the first count
    as valid), so the output mask is a strided slice of the input mask:
    no lengths, no comparisons.

    Arguments
    ---------
    valid : torch.Tensor
        ``[..., time]`` 0/1 prefix mask (1 on the first ``n`` frames).
    kernel_size, stride, padding : int
        The layer's geometry, with ``2 * padding >= kernel_size - 1``.

    Returns
    -------
    torch.Tensor
        ``[..., time']`` 0/1 prefix mask of ``conv_output_length(n)`` ones.

    Example
    -------
    >>> valid = (torch.arange(12) < 7).float()
    >>> subsample_valid(valid, 10, 5, 5)
    tensor([1., 1., 0.])
    >>> int(conv_output_length(torch.tensor(7), 10, 5, 5))
    2
    """
    offset = kernel_size - 1 - 2 * padding
    if offset > 0:
        raise ValueError(
            f"padding {padding} too small for kernel {kernel_size}"
        )
    if offset < 0:
        valid = F.pad(valid, (-offset, 0), value=1.0)
    return valid if stride == 1 else valid[..., ::stride]


def compute_dtype(x):
    """The dtype convolutions on ``x`` compute in (autocast's when on)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype
