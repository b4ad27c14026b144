"""MADD in graph form, for ``torch.export`` and ONNX.

:func:`graph_madd` is the rule of :func:`amser_sb.core.madd.madd` without
data-dependent Python branches; :func:`sliding_max` is its window maximum
by doubling spans, each shift one ``Pad`` (:func:`shift_left`), since
ONNX has no ``cummax``.

Authors
 * amser-sb contributors
"""

import torch
import torch.nn.functional as F

from amser_sb.core.madd import (
    DEFAULT_ABS_FLOOR,
    DEFAULT_CLIP_LEVEL,
    DEFAULT_MAX_RATIO,
)


def sliding_max(x, window):
    """Maximum over every window of ``window`` samples, in O(T log window).

    ``amser_sb.core.madd.sliding_max`` uses ``cummax``, which ONNX lacks; here
    maxima over spans of 1, 2, 4, ... samples are built by doubling, and a
    window is the maximum of two overlapping spans (exact). Every step keeps
    the length (the shifted copy is zero-padded at the end: only the last
    ``window - 1`` outputs see the padding, and they are cut once at the
    end), so that no step costs the graph a computation of a new length,
    and shifts and the cut are pads (negative ones drop samples), which
    need no shape computation either.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time]`` with ``time >= window``.
    window : int
        Window length (>= 1).

    Returns
    -------
    torch.Tensor
        ``[batch, time - window + 1]``: the values of
        ``amser_sb.core.madd.sliding_max_doubling``, whose steps shorten
        the signal (fine for ``torch.compile``, a new length each step in a
        graph).

    Example
    -------
    >>> sliding_max(torch.tensor([[4.0, 1.0, 0.0, 2.0, 7.0, 3.0]]), 3)
    tensor([[4., 2., 7., 7.]])
    """
    span, spans = 1, x
    while 2 * span <= window:
        spans = torch.maximum(spans, shift_left(spans, span))
        span *= 2
    if span < window:
        spans = torch.maximum(spans, shift_left(spans, window - span))
    return F.pad(spans, (0, 1 - window))


def shift_left(x, k):
    """``x`` ``[batch, time]`` moved ``k`` samples to the left, zeros
    coming in at the end: one ``Pad`` (negative at the start) in the graph,
    where a slice and a pad cost a dozen shape operations.

    Example
    -------
    >>> shift_left(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 1)
    tensor([[2., 3., 4., 0.]])
    """
    return F.pad(x, (-k, k))


def graph_madd(
    wavs,
    n_samples,
    window,
    factor,
    abs_floor=DEFAULT_ABS_FLOOR,
    max_ratio=DEFAULT_MAX_RATIO,
    clip_level=DEFAULT_CLIP_LEVEL,
    keep="any_voiced",
):
    """MADD's voiced mask without data-dependent Python branches.

    The rule of :func:`amser_sb.core.madd.madd` (see there), computed for
    every utterance on both of its paths (utterances of at least ``window``
    samples, shorter ones) and combined with ``where``, so that the
    exported graph holds the whole decision. The waveforms are zero-padded
    by ``window`` samples first, so that at least one window fits whatever
    the batch's length (the padding lies past every utterance and is never
    a valid window).

    Arguments
    ---------
    wavs : torch.Tensor
        ``[batch, time]`` waveforms.
    n_samples : torch.Tensor
        ``[batch]`` (long) valid samples of each.
    window, factor, abs_floor, max_ratio, clip_level, keep
        As in ``amser_sb.core.madd.madd``.

    Returns
    -------
    torch.Tensor
        ``[batch, time]`` float 0/1 mask (0 on padding).

    Example
    -------
    >>> from amser_sb.core.madd import madd
    >>> wavs = 0.01 * torch.randn(2, 3000)
    >>> wavs[:, 1000:2000] += torch.sin(torch.arange(1000) / 3)
    >>> n = torch.tensor([3000, 2500])
    >>> mask = graph_madd(wavs, n, 400, 3.0)
    >>> torch.equal(mask, madd(wavs, n / 3000, 400, 3.0)[1])
    True
    """
    x = wavs.float()
    batch, time = x.shape
    padded = F.pad(x, (0, window))
    n_win = time + 1  # windows of the padded signal
    hi = sliding_max(padded, window)
    lo = -sliding_max(-padded, window)
    d = hi - lo
    n = n_samples.unsqueeze(1)
    long_rows = n >= window
    win_pos = torch.arange(n_win, device=x.device).unsqueeze(0)
    valid = (win_pos + window <= n) & long_rows
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    audible = valid & (d > abs_floor)
    ref = torch.where(audible, d, inf).amin(dim=1, keepdim=True)
    silent = ~audible | (d < factor * ref)
    if max_ratio is not None:
        loudest = torch.where(valid, d, -inf).amax(dim=1, keepdim=True)
        silent = silent & (~audible | (d < max_ratio * loudest))
    voiced = ~silent
    if clip_level is not None:
        voiced = voiced | (valid & (torch.maximum(hi, -lo) >= clip_level))
    # each sample's windows: those starting up to window - 1 samples
    # before it (the pads: window - 1 on either side, the last window cut)
    if keep == "any_voiced":
        v = F.pad((voiced & valid).float(), (window - 1, -1))
        covered = sliding_max(v, window) > 0
    else:
        s = F.pad((~voiced & valid).float(), (window - 1, -1))
        covered = sliding_max(s, window) == 0
    mask = covered & long_rows
    samples = torch.arange(time, device=x.device).unsqueeze(0) < n
    floor = torch.finfo(x.dtype).min
    hi_s = torch.where(samples, x, floor).amax(dim=1, keepdim=True)
    lo_s = -torch.where(samples, -x, floor).amax(dim=1, keepdim=True)
    keep_short = (hi_s - lo_s) > abs_floor
    if clip_level is not None:
        keep_short = keep_short | (torch.maximum(hi_s, -lo_s) >= clip_level)
    mask = mask | (~long_rows & (n > 0) & keep_short)
    return (mask & samples).to(wavs.dtype)
