"""Graph forms of the model's own steps, for ``torch.export`` and ONNX.

MADD without data-dependent Python branches (``onnx_madd.graph_madd``, the
rule of :func:`amser_sb.core.madd.madd`), the segment grid as one gathered batch
(:func:`cut_segments`), traceable twins of what would fix an axis while
tracing (:func:`traceable`), and :class:`PosteriorGraph`: waveform and
relative lengths to class posteriors, the module that is exported.

Authors
 * amser-sb contributors
"""

import contextlib
import logging
import sys

import torch
import torch.nn.functional as F

from amser_sb.core.lengths import lengths_to_samples

from amser_sb.inference.onnx_contract import (
    OnnxExportError,
)
from amser_sb.inference.onnx_graph_encoders import graph_encoder
from amser_sb.inference.onnx_madd import graph_madd

logger = logging.getLogger(__name__)


# --------------------------------------------------------- segment grid ---
def cut_segments(wavs, mask, n_samples, segment, hop):
    """Every segment of every utterance, as one batch (graph form).

    The grid of :func:`amser_sb.core.segments.segment_bounds`: segments of
    ``segment`` samples starting every ``hop`` samples while they end
    before the utterance does, plus one ending at its last sample; an
    utterance of at most ``segment`` samples is one segment, itself. Each
    utterance gets the slots of the batch's longest; unused slots repeat its
    first segment (finite values, weight 0).

    Arguments
    ---------
    wavs, mask : torch.Tensor
        ``[batch, time]`` waveforms and their voiced masks (0 on padding).
    n_samples : torch.Tensor
        ``[batch]`` (long) valid samples.
    segment, hop : int
        Segment length and hop in samples.

    Returns
    -------
    seg_wavs, seg_mask : torch.Tensor
        ``[batch * slots, min(time, segment)]``.
    seg_lens : torch.Tensor
        ``[batch * slots]`` relative lengths.
    weights : torch.Tensor
        ``[batch, batch * slots]``: the mean over each utterance's
        segments as a matrix.

    Example
    -------
    >>> wavs = torch.arange(10.0).unsqueeze(0)
    >>> seg, _, lens, w = cut_segments(wavs, wavs, torch.tensor([10]), 4, 4)
    >>> seg  # segment_bounds(10, 4): (0, 4), (4, 8), (6, 10)
    tensor([[0., 1., 2., 3.],
            [4., 5., 6., 7.],
            [6., 7., 8., 9.]])
    >>> w
    tensor([[0.3333, 0.3333, 0.3333]])
    """
    batch, time = wavs.shape
    length = torch.sym_min(time, segment)
    slots = (torch.sym_max(time - segment, 0) + hop - 1) // hop + 1
    n = n_samples.unsqueeze(1)
    k = torch.arange(slots, device=wavs.device).unsqueeze(0)
    long_rows = n > segment
    # regular starts k * hop with k * hop + segment < n, then n - segment
    regular = torch.div(n - segment + hop - 1, hop, rounding_mode="floor")
    regular = torch.where(long_rows, regular, torch.zeros_like(regular))
    count = torch.where(long_rows, regular + 1, torch.ones_like(regular))
    starts = torch.where(k < regular, k * hop, n - segment)
    used = k < count
    starts = torch.where(used & long_rows, starts, torch.zeros_like(starts))
    seg_n = torch.clamp(n, max=segment).expand(batch, slots)
    pos = torch.arange(length, device=wavs.device)
    index = (starts.unsqueeze(2) + pos).clamp(max=time - 1)
    inside = (pos < seg_n.unsqueeze(2)).to(wavs.dtype)
    index = index.reshape(batch, -1)
    seg_wavs = torch.gather(wavs, 1, index).view(-1, length)
    seg_mask = torch.gather(mask, 1, index).view(-1, length)
    inside = inside.view(-1, length)
    seg_lens = seg_n.reshape(-1).to(wavs.dtype) / length
    per_utt = used.to(wavs.dtype) / count.to(wavs.dtype)
    owner = torch.div(
        torch.arange(batch * slots, device=wavs.device), slots,
        rounding_mode="floor",
    )
    rows = (torch.arange(batch, device=wavs.device).unsqueeze(1) == owner)
    rows = rows.to(wavs.dtype)
    weights = rows * per_utt.reshape(1, -1)
    return seg_wavs * inside, seg_mask * inside, seg_lens, weights


# ------------------------------------------------------------ the graph ---
def symbolic_length_to_mask(length, max_len=None, dtype=None, device=None):
    """SpeechBrain's ``length_to_mask`` without ``len()`` on a tensor.

    ``len(tensor)`` turns the batch size into a Python int, which
    ``torch.export`` must then fix to the example's; ``length.shape[0]``
    stays symbolic. Same arguments and result as
    ``speechbrain.dataio.dataio.length_to_mask``.

    Example
    -------
    >>> symbolic_length_to_mask(torch.tensor([1, 3]), 3)
    tensor([[1, 0, 0],
            [1, 1, 1]])
    """
    if max_len is None:
        max_len = length.max().long().item()
    mask = torch.arange(
        max_len, device=length.device, dtype=length.dtype
    ).expand(length.shape[0], max_len) < length.unsqueeze(1)
    return torch.as_tensor(
        mask, dtype=length.dtype if dtype is None else dtype,
        device=length.device if device is None else device,
    )


def graph_pool_mask(conv, mask, lengths):
    """``MaskedConv1d.pool_mask`` of a 0/1 mask, in a traceable form.

    ``torch.export`` fixes the time axis of every max-pooling to the
    example's; for a 0/1 mask the max-pooling is "any 1 in the window",
    i.e. a convolution with ones, positive (exact).

    Arguments
    ---------
    conv : amser_sb.lobes.MaskedConv1d
        The layer whose geometry the mask follows.
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

    Example
    -------
    >>> from amser_sb.lobes import MaskedConv1d
    >>> conv = MaskedConv1d(1, 4, kernel_size=7, stride=4)
    >>> mask = (torch.rand(2, 1, 50) > 0.7).float()
    >>> n = torch.tensor([50, 30])
    >>> ours, ref = graph_pool_mask(conv, mask, n), conv.pool_mask(mask, n)
    >>> torch.equal(ours[0], ref[0]), torch.equal(ours[1], ref[1])
    (True, True)
    """
    ones = mask.new_ones(1, 1, conv.kernel_size)
    summed = F.conv1d(mask, ones, stride=conv.stride, padding=conv.padding)
    pooled = (summed > 0.5).to(mask.dtype)
    lengths = conv.output_lengths(lengths)
    valid = symbolic_length_to_mask(
        lengths, pooled.shape[-1], dtype=mask.dtype, device=mask.device
    )
    return pooled * valid.unsqueeze(1), lengths


@contextlib.contextmanager
def traceable(model):
    """While tracing ``model``, swap in the traceable twins of two helpers.

    ``torch.export`` fixes an axis to the example's size where Python code
    reads it as an int: SpeechBrain's ``length_to_mask`` calls ``len()``
    on a tensor, and max-pooling fixes its time axis. For the duration of
    the export every ``amser_sb`` module holding SpeechBrain's
    ``length_to_mask`` gets ``symbolic_length_to_mask``, and every
    ``MaskedConv1d`` of ``model`` pools its mask with ``graph_pool_mask``
    (same values); all are restored afterwards. The tracer subclasses the
    traced modules' classes on the fly, which registers those subclasses in
    the encoder registry (``SpeechEncoder.__init_subclass__``); the
    registry is restored too.

    Arguments
    ---------
    model : torch.nn.Module
    """
    import functools

    from speechbrain.dataio.dataio import length_to_mask

    from amser_sb.lobes import MaskedConv1d
    from amser_sb.lobes.encoder_registry import ENCODERS

    patched = [
        module for name, module in list(sys.modules.items())
        if name.startswith("amser_sb.")
        and getattr(module, "length_to_mask", None) is length_to_mask
    ]
    convs = [m for m in model.modules() if isinstance(m, MaskedConv1d)]
    for module in patched:
        module.length_to_mask = symbolic_length_to_mask
    for conv in convs:
        conv.pool_mask = functools.partial(graph_pool_mask, conv)
    registry = dict(ENCODERS)
    try:
        yield
    finally:
        ENCODERS.clear()
        ENCODERS.update(registry)
        for module in patched:
            module.length_to_mask = length_to_mask
        for conv in convs:
            del conv.pool_mask


class VoicedFront(torch.nn.Module):
    """Waveforms to their valid samples and voiced masks (graph form).

    The first step of :class:`GraphFront`: samples past each utterance's
    length zeroed, and MADD's voiced mask of each whole utterance (or every
    valid sample, without the mask). The ONNX export runs it once, before
    the choice of segment grid (``onnx_compose.compose_by_length``).

    Arguments
    ---------
    use_voiced_mask : bool
        MADD mask (False: every valid sample counts).
    madd_window : int
        MADD window in samples.
    madd_factor : float
        MADD threshold factor.

    Example
    -------
    >>> voiced = VoicedFront(True, 400, 3.0)
    >>> wavs, n, mask = voiced(0.1 * torch.randn(2, 9000),
    ...                        torch.tensor([1.0, 0.5]))
    >>> wavs.shape, n.tolist(), mask.shape
    (torch.Size([2, 9000]), [9000, 4500], torch.Size([2, 9000]))
    """

    def __init__(self, use_voiced_mask, madd_window, madd_factor):
        super().__init__()
        self.use_voiced_mask = use_voiced_mask
        self.madd_window = int(madd_window)
        self.madd_factor = float(madd_factor)

    def forward(self, wavs, wav_lens):
        """Waveforms ``[batch, time]`` zeroed past their lengths, valid
        samples ``[batch]`` (long) and voiced masks ``[batch, time]`` of
        waveforms ``[batch, time]`` with relative lengths ``wav_lens``
        ``[batch]``."""
        time = wavs.shape[1]
        n = lengths_to_samples(wav_lens, time).clamp(min=1)
        samples = torch.arange(time, device=wavs.device) < n.unsqueeze(1)
        wavs = wavs * samples.to(wavs.dtype)
        if self.use_voiced_mask:
            mask = graph_madd(wavs, n, self.madd_window, self.madd_factor)
        else:
            mask = samples.to(wavs.dtype)
        return wavs, n, mask


class SegmentFront(torch.nn.Module):
    """Valid waveforms and voiced masks to the segments the model runs on
    (graph form).

    The second step of :class:`GraphFront`: the segment grid of
    ``UtteranceEncoder`` (``segment`` set: :func:`cut_segments`) or each
    utterance as its own segment (``segment`` None). The weights average
    each utterance's segment embeddings.

    Arguments
    ---------
    segment, hop : int or None
        Segment length and hop in samples (None: no grid).

    Example
    -------
    >>> grid = SegmentFront(4000, 4000)
    >>> seg, lens, mask, weights = grid(torch.randn(2, 9000),
    ...                                 torch.tensor([9000, 4500]),
    ...                                 torch.ones(2, 9000))
    >>> seg.shape, lens.shape, mask.shape, weights.shape
    (torch.Size([6, 4000]), torch.Size([6]), torch.Size([6, 4000]), \
torch.Size([2, 6]))
    """

    def __init__(self, segment, hop):
        super().__init__()
        self.segment = segment
        self.hop = hop or segment

    def forward(self, wavs, n_samples, mask):
        """Segments ``[segments, time']``, their relative lengths
        ``[segments]`` and voiced masks ``[segments, time']``, and the
        averaging weights ``[batch, segments]`` of :class:`VoicedFront`'s
        outputs."""
        if self.segment is not None:
            seg, seg_mask, seg_lens, weights = cut_segments(
                wavs, mask, n_samples, self.segment, self.hop
            )
            return seg, seg_lens, seg_mask, weights
        batch, time = wavs.shape
        rows = torch.arange(batch, device=wavs.device)
        weights = (rows.unsqueeze(1) == rows).to(wavs.dtype)
        return wavs, n_samples.to(wavs.dtype) / time, mask, weights


class GraphFront(torch.nn.Module):
    """Waveforms to the segments the model runs on (graph form):
    :class:`VoicedFront` then :class:`SegmentFront`.

    Arguments
    ---------
    segment, hop : int or None
        As :class:`SegmentFront`'s.
    use_voiced_mask, madd_window, madd_factor
        As :class:`VoicedFront`'s.

    Example
    -------
    >>> front = GraphFront(4000, 4000, True, 400, 3.0)
    >>> seg, lens, mask, weights = front(0.1 * torch.randn(2, 9000),
    ...                                  torch.tensor([1.0, 0.5]))
    >>> seg.shape, lens.shape, mask.shape, weights.shape
    (torch.Size([6, 4000]), torch.Size([6]), torch.Size([6, 4000]), \
torch.Size([2, 6]))
    """

    def __init__(self, segment, hop, use_voiced_mask, madd_window,
                 madd_factor):
        super().__init__()
        self.voiced = VoicedFront(use_voiced_mask, madd_window, madd_factor)
        self.grid = SegmentFront(segment, hop)

    @property
    def segment(self):
        """Segment length in samples (None: each utterance whole)."""
        return self.grid.segment

    def forward(self, wavs, wav_lens):
        """Segments ``[segments, time']``, their relative lengths
        ``[segments]`` and voiced masks ``[segments, time']``, and the
        averaging weights ``[batch, segments]`` of waveforms ``[batch,
        time]`` with relative lengths ``wav_lens`` ``[batch]``."""
        return self.grid(*self.voiced(wavs, wav_lens))


class GraphBody(torch.nn.Module):
    """Segments to class posteriors (graph form).

    The model on every segment (AMSER: AM-ResNet, encoder, fusion), the
    weighted mean of each utterance's segment embeddings and the
    classifier, normalised to posteriors. Its inputs are
    :class:`GraphFront`'s outputs.

    Arguments
    ---------
    segment_model : amser_sb.lobes.AMSER
        The model of one segment.
    classifier : torch.nn.Module
        The folder's classifier (probabilities or log-probabilities).
    log_probs : bool
        The classifier outputs log-probabilities.

    Example
    -------
    >>> from amser_sb.lobes import AMResNet, AMSER, EmotionClassifier
    >>> body = GraphBody(AMSER(am_resnet=AMResNet(channels=8),
    ...                        mode="am_resnet"),
    ...                  EmotionClassifier(8, 3, "prob"), False).eval()
    >>> seg = 0.1 * torch.randn(3, 16000)
    >>> weights = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    >>> post = body(seg, torch.ones(3), torch.ones(3, 16000), weights)
    >>> post.shape
    torch.Size([2, 3])
    """

    def __init__(self, segment_model, classifier, log_probs):
        super().__init__()
        self.segment_model = segment_model
        self.classifier = classifier
        self.log_probs = log_probs

    def forward(self, segments, segment_lens, segment_mask, weights):
        """Posteriors ``[batch, classes]``."""
        emb = self.segment_model(
            segments, segment_lens, mask=segment_mask
        ).squeeze(1)
        emb = weights @ emb
        out = self.classifier(emb.unsqueeze(1)).reshape(weights.shape[0], -1)
        if self.log_probs:
            out = out.exp()
        return out / out.sum(dim=1, keepdim=True)


class PosteriorGraph(torch.nn.Module):
    """What ``EncoderClassifier.classify_batch`` computes, in graph form:
    :class:`GraphFront` then :class:`GraphBody`.

    The ONNX export traces the parts on their own (the voiced mask and
    the body once, whichever segment front runs between them: see
    ``onnx_compose.build_onnx``).

    Arguments
    ---------
    utterance_model : amser_sb.lobes.UtteranceEncoder
        The loaded folder's ``embedding_model`` (MADD, segment grid, AMSER).
    classifier : torch.nn.Module
        The loaded folder's classifier (``EmotionClassifier``).

    Example
    -------
    >>> from amser_sb.lobes import AMResNet, AMSER, EmotionClassifier
    >>> from amser_sb.lobes import UtteranceEncoder
    >>> am = AMResNet(channels=8)
    >>> utt = UtteranceEncoder(AMSER(am_resnet=am, mode="am_resnet"),
    ...                        segment_seconds=1.0)
    >>> graph = PosteriorGraph(utt, EmotionClassifier(8, 3, "prob")).eval()
    >>> post = graph(0.1 * torch.randn(2, 24000), torch.tensor([1.0, 0.5]))
    >>> post.shape, bool(torch.allclose(post.sum(1), torch.ones(2)))
    (torch.Size([2, 3]), True)
    """

    def __init__(self, utterance_model, classifier):
        super().__init__()
        from amser_sb.lobes import AMSER

        model = utterance_model.encoder
        ssl = graph_encoder(model.ssl) if model.ssl is not None else None
        output = getattr(classifier, "output", "prob")
        if output == "logits":
            raise OnnxExportError(
                "the classifier outputs logits; export folders whose "
                "classifier outputs probabilities (amser-sb export does)"
            )
        self.front = GraphFront(
            utterance_model.segment, utterance_model.hop,
            utterance_model.use_voiced_mask, utterance_model.madd_window,
            utterance_model.madd_factor,
        )
        self.body = GraphBody(
            AMSER(ssl=ssl, am_resnet=model.am_resnet, fusion=model.fusion,
                  mode=model.mode),
            classifier, output == "log_prob",
        )

    @property
    def segment(self):
        """Segment length in samples (None: each utterance whole)."""
        return self.front.segment

    def whole_front(self):
        """A :class:`SegmentFront` that keeps each utterance whole (the
        model's path for clips of at most one segment)."""
        return SegmentFront(None, None)

    def forward(self, wavs, wav_lens):
        """Posteriors ``[batch, classes]`` of waveforms ``[batch, time]``
        with relative lengths ``wav_lens`` ``[batch]``."""
        return self.body(*self.front(wavs, wav_lens))
