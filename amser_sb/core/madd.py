"""Maximum amplitude difference detection (MADD) and voiced-interval masks.

MADD is the silence detector of Li & Zhang (2025, Sec. 2.2.1): a window of
``s`` samples slides over the waveform one sample at a time; for window
``i`` the amplitude difference is ``d_i = max(seg_i) - min(seg_i)``; windows
with ``d_i < f * min(d)`` are silent and their samples are set to 0 (kept in
place, not removed, so the time axis stays continuous). A per-sample 0/1
mask marks the samples that are kept.

The paper gives neither ``s`` nor ``f``. Defaults here, chosen for 16 kHz
speech and exposed as hparams:

* ``window=400`` (25 ms, the usual analysis frame): long enough to span a
  full pitch period down to 40 Hz, so a voiced window never looks flat
  between two glottal pulses;
* ``factor=3.0``: a window is silent when its peak-to-peak amplitude is
  within about 9.5 dB of the quietest window of the utterance (the noise
  floor); stationary background noise varies by less than that from window
  to window, weak consonants rise above it.

Three guards make the rule usable on real recordings (each is a documented
argument, and each reduces to the paper's rule when disabled):

* **digital silence**: with exact zeros ``min(d) == 0`` and the paper's
  threshold would be 0, disabling detection. Windows with
  ``d_i <= abs_floor`` are silent unconditionally and the reference
  ``min(d)`` is taken over the remaining windows only.
* **no silence at all**: when every window is loud (a sustained vowel, a
  tone), the quietest window is still speech, and ``f > 1`` would mark
  windows near it silent. A window is therefore silent only if it is also
  at least ``max_ratio`` below the loudest window of the utterance
  (``d_i < max_ratio * max(d)``; default 0.1, i.e. 20 dB).
* **clipping**: a window inside a clipped plateau is flat (``d_i == 0``)
  but loud. Windows whose peak absolute amplitude reaches ``clip_level``
  are voiced.

**Samples covered by both silent and voiced windows.** Every sample lies in
up to ``window`` windows. With the default ``keep="any_voiced"`` a sample
is kept if *any* valid window covering it is voiced ("voiced wins"): speech
onsets and offsets are never cut, and at most ``window - 1`` samples of
silence survive at each edge of a voiced stretch. ``keep="all_voiced"``
zeroes a sample as soon as one covering window is silent (the literal
reading of "set the window's samples to 0"), which erodes up to
``window - 1`` samples of speech at each edge.

Utterances shorter than ``window`` are one window: kept whole unless that
window is digital silence. Padding (beyond each utterance's relative
length) never counts toward ``min(d)``/``max(d)`` and is always masked.

Everything is vectorised: sliding maxima use the van Herk / Gil-Werman
block decomposition (two ``cummax`` passes), so the cost is O(T) per
utterance, independent of ``window``.

Authors
 * amser-sb contributors
"""

import re

import numpy as np
import torch
import torch.nn.functional as F

from amser_sb.core.lengths import lengths_to_samples

#: MADD window in samples (25 ms at 16 kHz): the one default of every
#: ``madd_window`` argument in the code (recipe YAMLs state their value).
DEFAULT_WINDOW = 400
#: MADD factor ``f``: the one default of every ``madd_factor`` argument.
DEFAULT_FACTOR = 3.0
DEFAULT_ABS_FLOOR = 1e-4
DEFAULT_MAX_RATIO = 0.1
DEFAULT_CLIP_LEVEL = 0.99

_INTERVAL_RE = re.compile(r"^(\d+):(\d+)$")


def sliding_max(x, window, pad_value=float("-inf")):
    """Maximum over every window of ``window`` consecutive samples, in O(T).

    Arguments
    ---------
    x : torch.Tensor
        Signals, ``[batch, time]``.
    window : int
        Window length in samples (>= 1, <= time).
    pad_value : float
        Value used to fill the last, partial block (must be neutral for
        ``max``).

    Returns
    -------
    torch.Tensor
        ``[batch, time - window + 1]``; entry ``i`` is ``x[:, i:i+window]``'s
        maximum.

    Example
    -------
    >>> x = torch.tensor([[1.0, 3.0, 2.0, 0.0, 5.0]])
    >>> sliding_max(x, 2)
    tensor([[3., 3., 2., 5.]])
    """
    batch, time = x.shape
    if not 1 <= window <= time:
        raise ValueError(f"window must be in [1, {time}], got {window}")
    if window == 1:
        return x.clone()
    if torch.compiler.is_compiling():
        # cummax has no compiled kernel (each pass is a fallback call);
        # the doubling maxima compile into the surrounding kernels.
        return sliding_max_doubling(x, window)
    n_blocks = -(-time // window)
    padded = F.pad(x, (0, n_blocks * window - time), value=pad_value)
    blocks = padded.view(batch, n_blocks, window)
    prefix = blocks.cummax(dim=2).values.reshape(batch, -1)
    suffix = blocks.flip(2).cummax(dim=2).values.flip(2).reshape(batch, -1)
    n_win = time - window + 1
    return torch.maximum(
        suffix[:, :n_win], prefix[:, window - 1 : window - 1 + n_win]
    )


def sliding_max_doubling(x, window):
    """``sliding_max`` by doubling spans, in O(T log(window)).

    The maximum over ``2 ** k`` samples is the maximum of two overlapping
    maxima over ``2 ** (k - 1)``; a window that is no power of two is
    covered by two overlapping power-of-two spans. Only slices and
    ``maximum``: ``torch.compile`` fuses them into its own kernels (where
    ``sliding_max``'s ``cummax`` runs as separate calls). The values are
    ``sliding_max``'s exactly (a maximum has no rounding).

    Arguments
    ---------
    x : torch.Tensor
        Signals, ``[batch, time]``.
    window : int
        Window length in samples (>= 1, <= time).

    Returns
    -------
    torch.Tensor
        ``[batch, time - window + 1]``.

    Example
    -------
    >>> x = torch.tensor([[1.0, 3.0, 2.0, 0.0, 5.0]])
    >>> sliding_max_doubling(x, 3)
    tensor([[3., 3., 5.]])
    """
    time = x.shape[1]
    if not 1 <= window <= time:
        raise ValueError(f"window must be in [1, {time}], got {window}")
    n_win = time - window + 1
    span = 1
    while 2 * span <= window:
        # x[:, i] becomes the maximum over samples i .. i + 2 * span - 1
        x = torch.maximum(x[:, :-span], x[:, span:])
        span *= 2
    rest = window - span
    return torch.maximum(x[:, :n_win], x[:, rest : rest + n_win])


def madd(
    wavs,
    wav_lens=None,
    window=DEFAULT_WINDOW,
    factor=DEFAULT_FACTOR,
    abs_floor=DEFAULT_ABS_FLOOR,
    max_ratio=DEFAULT_MAX_RATIO,
    clip_level=DEFAULT_CLIP_LEVEL,
    keep="any_voiced",
):
    """Maximum amplitude difference detection on a batch of waveforms.

    Arguments
    ---------
    wavs : torch.Tensor
        Waveforms in [-1, 1], ``[batch, time]`` or ``[time]``.
    wav_lens : torch.Tensor, optional
        Relative lengths ``[batch]`` (SpeechBrain convention); samples past
        each length are padding. None: every waveform is full length.
    window : int
        The paper's ``s``: window length in samples (default 400, 25 ms
        at 16 kHz).
    factor : float
        The paper's ``f``: a window is silent if ``d_i < factor * min(d)``
        (default 3.0).
    abs_floor : float
        Windows with ``d_i <= abs_floor`` are digital silence: silent, and
        left out of ``min(d)`` (default 1e-4, -80 dB of full scale).
    max_ratio : float or None
        A window is silent only if also ``d_i < max_ratio * max(d)``
        (default 0.1); None disables the guard (the paper's plain rule).
    clip_level : float or None
        Windows whose peak ``|x|`` reaches this level are voiced (default
        0.99); None disables the guard.
    keep : str
        ``"any_voiced"`` (default): a sample is kept if any valid window
        covering it is voiced. ``"all_voiced"``: kept only if all are.

    Returns
    -------
    processed_wavs : torch.Tensor
        ``wavs`` with silent and padded samples set to 0, same shape.
    mask : torch.Tensor
        Float 0/1 mask of kept samples, same shape as ``wavs``.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> noise = 1e-3 * torch.randn(1600, generator=gen)
    >>> t = torch.arange(3200) / 16000
    >>> tone = 0.5 * torch.sin(2 * torch.pi * 200 * t)
    >>> wav = torch.cat([noise, tone, noise])
    >>> processed, mask = madd(wav)
    >>> mask_to_intervals(mask)  # the tone, with < window samples of margin
    [(1202, 5199)]
    >>> bool((processed[mask == 0] == 0).all())
    True
    """
    if keep not in ("any_voiced", "all_voiced"):
        raise ValueError(
            f"keep must be 'any_voiced' or 'all_voiced', got {keep!r}"
        )
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    squeeze = wavs.dim() == 1
    if squeeze:
        wavs = wavs.unsqueeze(0)
    if wavs.dim() != 2:
        raise ValueError(
            f"madd expects [batch, time] or [time], got {tuple(wavs.shape)}"
        )
    x = wavs.float()
    batch, time = x.shape
    if wav_lens is None:
        lens = torch.full((batch,), time, dtype=torch.long, device=x.device)
    else:
        lens = lengths_to_samples(wav_lens.to(x.device), time)
    pos = torch.arange(time, device=x.device)
    valid_samples = pos.unsqueeze(0) < lens.unsqueeze(1)  # [B, T]
    long_rows = (lens >= window).unsqueeze(1)  # [B, 1]
    # x and -x stacked: one sliding maximum gives the windows' max and min
    # (no branch on the data, no host round trip: rows too short for one
    # window are decided below for every row and picked with ``where``).
    both = torch.cat([x, -x])

    if time >= window:
        n_win = time - window + 1
        ext = sliding_max(both, window)
        hi, lo = ext[:batch], -ext[batch:]
        d = hi - lo  # [B, n_win]
        win_pos = torch.arange(n_win, device=x.device)
        valid = win_pos.unsqueeze(0) + window <= lens.unsqueeze(1)
        voiced = _voiced_windows(
            d, valid, abs_floor, factor, max_ratio,
            peak=None if clip_level is None else torch.maximum(hi, -lo),
            clip_level=clip_level,
        )
        # A sample j is covered by windows j - window + 1 .. j.
        if keep == "any_voiced":
            v = (voiced & valid).float()
            v = F.pad(v, (window - 1, window - 1), value=0.0)
            covered = sliding_max(v, window) > 0
        else:
            # Silent-wins: kept iff no valid covering window is silent.
            s = (~voiced & valid).float()
            s = F.pad(s, (window - 1, window - 1), value=0.0)
            covered = sliding_max(s, window) == 0
    else:
        covered = torch.zeros_like(valid_samples)

    # Rows shorter than one window: one window spanning the utterance.
    ext = torch.where(valid_samples, both.view(2, batch, time), float("-inf"))
    ext = ext.amax(dim=2)
    hi, lo = ext[0], -ext[1]
    keep_short = (hi - lo) > abs_floor
    if clip_level is not None:
        keep_short |= torch.maximum(hi, -lo) >= clip_level
    mask = torch.where(long_rows, covered, keep_short.unsqueeze(1))
    mask &= valid_samples
    mask_f = mask.to(wavs.dtype if wavs.is_floating_point() else x.dtype)
    processed = wavs * mask_f
    if squeeze:
        return processed.squeeze(0), mask_f.squeeze(0)
    return processed, mask_f


def _voiced_windows(d, valid, abs_floor, factor, max_ratio, peak, clip_level):
    """Decide, for each valid window, whether it is voiced (see ``madd``).

    Arguments
    ---------
    d : torch.Tensor
        Amplitude differences ``[batch, n_windows]``.
    valid : torch.Tensor
        Bool ``[batch, n_windows]``: windows lying fully inside the
        utterance.
    abs_floor, factor, max_ratio, clip_level : float
        As in ``madd``.
    peak : torch.Tensor or None
        Peak absolute amplitude per window, ``[batch, n_windows]``.

    Returns
    -------
    torch.Tensor
        Bool ``[batch, n_windows]``, True for voiced windows.
    """
    audible = valid & (d > abs_floor)
    ref = torch.where(audible, d, float("inf")).amin(dim=1, keepdim=True)
    silent = ~audible | (d < factor * ref)
    if max_ratio is not None:
        loudest = torch.where(valid, d, float("-inf")).amax(
            dim=1, keepdim=True
        )
        silent &= ~audible | (d < max_ratio * loudest)
    voiced = ~silent
    if peak is not None:
        voiced |= valid & (peak >= clip_level)
    return voiced


def mask_to_intervals(mask):
    """Runs of kept samples in a 1-D 0/1 mask.

    Arguments
    ---------
    mask : torch.Tensor
        ``[time]`` mask (any dtype; non-zero means kept).

    Returns
    -------
    list of (int, int)
        ``(start, end)`` sample intervals, end exclusive, in order.

    Example
    -------
    >>> mask_to_intervals(torch.tensor([0, 1, 1, 0, 1]))
    [(1, 3), (4, 5)]
    """
    m = torch.as_tensor(mask).reshape(-1).cpu().numpy() != 0
    if m.size == 0:
        return []
    # numpy: far cheaper than small torch ops for one utterance
    edges = np.diff(m.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1).tolist()
    ends = np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, ends))


def intervals_to_mask(intervals, length, start=0):
    """Build a 0/1 float mask of ``length`` samples from kept intervals.

    Arguments
    ---------
    intervals : list of (int, int)
        Kept ``(start, end)`` intervals in absolute samples, end exclusive.
    length : int
        Length of the mask in samples.
    start : int
        Absolute sample at which the mask begins (to cut the mask of a
        segment out of an utterance's intervals).

    Returns
    -------
    torch.Tensor
        ``[length]`` float mask.

    Example
    -------
    >>> intervals_to_mask([(1, 3), (4, 9)], 6)
    tensor([0., 1., 1., 0., 1., 1.])
    >>> intervals_to_mask([(1, 3), (4, 9)], 3, start=2)
    tensor([1., 0., 1.])
    """
    if not intervals:
        return torch.zeros(length)
    bounds = torch.tensor(intervals, dtype=torch.long).reshape(-1, 2) - start
    bounds = bounds.clamp(0, length)
    bounds = bounds[bounds[:, 0] < bounds[:, 1]]
    diff = torch.zeros(length + 1)
    diff.index_add_(0, bounds[:, 0], torch.ones(len(bounds)))
    diff.index_add_(0, bounds[:, 1], -torch.ones(len(bounds)))
    return (diff.cumsum(0)[:length] > 0).float()


def format_intervals(intervals):
    """Serialise intervals as space-separated ``start:end`` (manifest form).

    Arguments
    ---------
    intervals : list of (int, int)
        ``(start, end)`` sample intervals, end exclusive.

    Returns
    -------
    str

    Example
    -------
    >>> format_intervals([(0, 1600), (3200, 8000)])
    '0:1600 3200:8000'
    """
    return " ".join(f"{int(s)}:{int(e)}" for s, e in intervals)


def parse_intervals(text):
    """Parse the manifest form written by ``format_intervals``.

    Arguments
    ---------
    text : str
        Space-separated ``start:end`` pairs; empty means nothing kept.

    Returns
    -------
    list of (int, int)

    Example
    -------
    >>> parse_intervals("0:1600 3200:8000")
    [(0, 1600), (3200, 8000)]
    >>> parse_intervals("")
    []
    """
    out = []
    for token in str(text).split():
        match = _INTERVAL_RE.match(token)
        if match is None:
            raise ValueError(
                f"malformed voiced interval {token!r} in {text!r}: expected "
                "space-separated 'start:end' sample pairs, e.g. '0:1600 "
                "3200:8000' (re-run the data preparation to rebuild it)"
            )
        s, e = int(match.group(1)), int(match.group(2))
        if e < s:
            raise ValueError(f"voiced interval {token!r} ends before start")
        out.append((s, e))
    return out
