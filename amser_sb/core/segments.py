"""The segment grid: how an utterance is cut into fixed-length segments.

Shared by the training data pipeline (``amser_sb.training.pipeline``) and the
whole-utterance inference encoder (``amser_sb.lobes.UtteranceEncoder``), so
that an exported model sees exactly the segments evaluation saw.

An utterance of ``N`` samples and a segment length ``L`` (hop ``H``,
default ``L``) is covered by segments starting at ``0, H, 2H, ...`` while
``start + L < N``, plus one last segment ending exactly at ``N`` (it may
overlap the one before and is never padded). An utterance no longer than
``L`` is one segment, the whole utterance.

Authors
 * amser-sb contributors
"""


def segment_bounds(num_samples, segment_samples=None, hop_samples=None):
    """Cut ``num_samples`` into the segment grid described in the module doc.

    Arguments
    ---------
    num_samples : int
        Utterance length in samples (> 0).
    segment_samples : int, optional
        Segment length ``L``; ``None`` or 0 gives one whole-utterance segment.
    hop_samples : int, optional
        Hop ``H`` between segment starts; defaults to ``segment_samples``.

    Returns
    -------
    list of (int, int)
        ``(start, stop)`` samples, stop exclusive, in order.

    Example
    -------
    >>> segment_bounds(10, 4)
    [(0, 4), (4, 8), (6, 10)]
    >>> segment_bounds(8, 4)
    [(0, 4), (4, 8)]
    >>> segment_bounds(3, 4)
    [(0, 3)]
    >>> segment_bounds(10, 4, hop_samples=3)
    [(0, 4), (3, 7), (6, 10)]
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if not segment_samples or num_samples <= segment_samples:
        return [(0, num_samples)]
    hop = hop_samples or segment_samples
    if hop <= 0:
        raise ValueError(f"hop_samples must be positive, got {hop}")
    bounds = []
    start = 0
    while start + segment_samples < num_samples:
        bounds.append((start, start + segment_samples))
        start += hop
    last = (num_samples - segment_samples, num_samples)
    if bounds[-1] != last:
        bounds.append(last)
    return bounds
