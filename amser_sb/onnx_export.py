"""ONNX export of a whole exported model: waveform in, posteriors out.

``amser-sb export-onnx MODEL_DIR`` writes ``MODEL_DIR/model.onnx``, one
graph from the waveform to the class posteriors, with everything
``EncoderClassifier`` runs in PyTorch inside it:

* inputs ``wavs`` ``[batch, time]`` (float32, at the model's
  ``sample_rate``) and ``wav_lens`` ``[batch]`` (relative lengths, as
  SpeechBrain's), both axes dynamic; output ``posteriors``
  ``[batch, classes]`` in ``label_encoder.txt`` order;
* MADD (the voiced mask of each whole utterance, ``graph_madd``: the same
  rule as ``amser_sb.silence.madd``, written without data-dependent Python
  branches), the segment grid of ``UtteranceEncoder`` (``cut_segments``:
  every segment of every utterance in one batch, gathered by index),
  AM-ResNet, the encoder branch with its layer weights (Whisper's log-mel
  front end, STFT included, and its fixed window; wav2vec2-family waveform
  normalisation), fusion, the mean segment embedding and the classifier.

Padded batches give the posteriors of each clip alone: the wav2vec2
family's group-norm feature encoder is normalised over each clip's own
frames (``MaskedFeatureEncoder``; in PyTorch the clip runs alone, cropped),
its transformer gets the frame padding mask; Whisper pads every window to
its fixed length as in PyTorch; AM-ResNet and fusion mask padding already.

The export checks itself before it writes anything: onnxruntime's posteriors
must equal PyTorch's (``EncoderClassifier.classify_batch`` on each clip
alone) within ``PARITY_TOLERANCE`` on speech-like clips of several lengths
(shorter than a segment, several segments), each alone and all together in
one padded batch. ``--int8`` also writes ``model.int8.onnx`` (onnxruntime's
dynamic quantisation of the MatMul weights); its deviation from float32 on
the same clips is reported, not bounded. What was checked goes to
``onnx.json`` and to the model card (``README.md``).

The exporter is ``torch.onnx.export(..., dynamo=True)`` on a
``torch.export`` program (non-strict mode; onnxscript translates), opset
``OPSET``. ``torch.export`` cannot keep one time axis dynamic across "the
clip is its own segment, of any length" and "fixed-length segments", so a
model with a segment grid is exported twice (on clips shorter and longer
than a segment) and the two graphs are joined by an ONNX ``If`` on the
input's length (``compose_by_length``; the weights are stored once). Where
tracing would fix an axis to the example's size (SpeechBrain's
``length_to_mask`` calls ``len()`` on a tensor; max-pooling fixes its time
axis), ``traceable`` swaps in twins with the same values for the duration
of the export.

Authors
 * amser-sb contributors
"""

import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from amser_sb.errors import AmserUserError
from amser_sb.silence import (
    DEFAULT_ABS_FLOOR,
    DEFAULT_CLIP_LEVEL,
    DEFAULT_MAX_RATIO,
    lengths_to_samples,
)

logger = logging.getLogger(__name__)

#: ONNX opset of the exported graph (STFT needs 17; 18 is onnxscript's
#: well-tested default).
OPSET = 18
#: The float32 graph and the int8 one, in the model folder.
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
#: What the export checked, in the model folder.
REPORT_FILE = "onnx.json"
#: Largest |posterior difference| allowed between onnxruntime and PyTorch.
PARITY_TOLERANCE = 1e-4
#: Names of the graph's inputs and output.
INPUT_NAMES = ("wavs", "wav_lens")
OUTPUT_NAME = "posteriors"
#: Heading of the model card's section (replaced on every export).
CARD_HEADING = "## ONNX (onnxruntime, no PyTorch)"


class OnnxExportError(AmserUserError, RuntimeError):
    """The model folder cannot be exported, or the export does not match."""


# ---------------------------------------------------------------- MADD ---
def sliding_max(x, window):
    """Maximum over every window of ``window`` samples, in O(T log window).

    ``amser_sb.silence.sliding_max`` uses ``cummax``, which ONNX lacks; here
    maxima over spans of 1, 2, 4, ... samples are built by doubling, and a
    window is the maximum of two overlapping spans (exact).

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time]`` with ``time >= window``.
    window : int
        Window length (>= 1).

    Returns
    -------
    torch.Tensor
        ``[batch, time - window + 1]``.

    Example
    -------
    >>> sliding_max(torch.tensor([[1.0, 3.0, 2.0, 0.0, 5.0]]), 3)
    tensor([[3., 3., 5.]])
    """
    span, spans = 1, x
    while 2 * span <= window:
        spans = torch.maximum(spans[:, :-span], spans[:, span:])
        span *= 2
    if span == window:
        return spans
    rest = window - span
    return torch.maximum(spans[:, :-rest], spans[:, rest:])


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

    The rule of :func:`amser_sb.silence.madd` (see there), computed for
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
        As in ``amser_sb.silence.madd``.

    Returns
    -------
    torch.Tensor
        ``[batch, time]`` float 0/1 mask (0 on padding).

    Example
    -------
    >>> from amser_sb.silence import madd
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
    if keep == "any_voiced":
        v = F.pad((voiced & valid).float(), (window - 1, window - 1))
        covered = sliding_max(v, window) > 0
    else:
        s = F.pad((~voiced & valid).float(), (window - 1, window - 1))
        covered = sliding_max(s, window) == 0
    mask = covered[:, :time] & long_rows
    samples = torch.arange(time, device=x.device).unsqueeze(0) < n
    floor = torch.finfo(x.dtype).min
    hi_s = torch.where(samples, x, floor).amax(dim=1, keepdim=True)
    lo_s = -torch.where(samples, -x, floor).amax(dim=1, keepdim=True)
    keep_short = (hi_s - lo_s) > abs_floor
    if clip_level is not None:
        keep_short = keep_short | (torch.maximum(hi_s, -lo_s) >= clip_level)
    mask = mask | (~long_rows & (n > 0) & keep_short)
    return (mask & samples).to(wavs.dtype)


# --------------------------------------------------------- segment grid ---
def cut_segments(wavs, mask, n_samples, segment, hop):
    """Every segment of every utterance, as one batch (graph form).

    The grid of :func:`amser_sb.segments.segment_bounds`: segments of
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


# ------------------------------------------------------- encoder branch ---
class MaskedFeatureEncoder(torch.nn.Module):
    """A wav2vec2-family feature encoder whose group norm sees real frames.

    Group-norm feature encoders (wav2vec2-base, HuBERT-base) normalise each
    channel of the first convolution over the whole time axis, so padding
    changes every frame; in PyTorch each clip therefore runs alone, cropped
    (``Wav2Vec2Encoder.per_utterance``). Here the statistics are taken
    over each clip's own frames (``sample_counts``, set by the caller for
    the call), which gives the cropped run's frames in a padded batch.
    Without ``sample_counts`` it is the wrapped encoder.

    Arguments
    ---------
    feature_encoder : torch.nn.Module
        Hugging Face ``*FeatureEncoder`` (its ``conv_layers``).
    """

    def __init__(self, feature_encoder):
        super().__init__()
        self.conv_layers = feature_encoder.conv_layers
        self.sample_counts = None

    def forward(self, input_values):
        """Features ``[batch, channels, frames]`` of ``[batch, time]``."""
        hidden = input_values[:, None]
        counts = self.sample_counts
        for layer in self.conv_layers:
            norm = getattr(layer, "layer_norm", None)
            conv = layer.conv
            if counts is not None:
                counts = torch.div(
                    counts - conv.kernel_size[0], conv.stride[0],
                    rounding_mode="floor",
                ) + 1
            if counts is None or not isinstance(norm, torch.nn.GroupNorm):
                hidden = layer(hidden)
                continue
            hidden = layer.activation(
                masked_group_norm(conv(hidden), counts, norm)
            )
        return hidden


def masked_group_norm(x, counts, norm):
    """``GroupNorm`` over each sequence's first ``counts`` frames only.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, channels, time]``.
    counts : torch.Tensor
        ``[batch]`` (long) valid frames.
    norm : torch.nn.GroupNorm
        Groups, eps and the affine parameters.

    Returns
    -------
    torch.Tensor
        ``[batch, channels, time]``.

    Example
    -------
    >>> norm = torch.nn.GroupNorm(4, 4)
    >>> x = torch.randn(1, 4, 10)
    >>> padded = torch.cat([x, torch.randn(1, 4, 5)], dim=2)
    >>> out = masked_group_norm(padded, torch.tensor([10]), norm)
    >>> torch.allclose(out[..., :10], norm(x), atol=1e-6)
    True
    """
    batch, channels, time = x.shape
    groups = norm.num_groups
    valid = (torch.arange(time, device=x.device) < counts.unsqueeze(1))
    valid = valid.to(x.dtype).view(batch, 1, 1, time)
    g = x.view(batch, groups, channels // groups, time)
    total = counts.to(x.dtype).view(batch, 1, 1, 1) * (channels // groups)
    mean = (g * valid).sum(dim=(2, 3), keepdim=True) / total
    var = (((g - mean) * valid) ** 2).sum(dim=(2, 3), keepdim=True) / total
    out = ((g - mean) / torch.sqrt(var + norm.eps)).view(batch, channels, time)
    if norm.affine:
        out = out * norm.weight.view(1, -1, 1) + norm.bias.view(1, -1, 1)
    return out


class GraphWav2Vec2(torch.nn.Module):
    """``Wav2Vec2Encoder`` (wav2vec2, HuBERT, WavLM) in graph form.

    The same computation as ``Wav2Vec2Encoder.forward`` on each clip alone:
    per-clip waveform normalisation, the Hugging Face model with the sample
    padding mask (its transformer masks padded frames), the group norm of
    the feature encoder over each clip's own frames
    (``MaskedFeatureEncoder``), layer weights and output norm
    (``combine``).

    Arguments
    ---------
    encoder : amser_sb.lobes.Wav2Vec2Encoder
    """

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.out_dim
        model = encoder.backbone()
        self.masked = None
        if encoder.group_norm:
            self.masked = MaskedFeatureEncoder(model.feature_extractor)

    def forward(self, wavs, wav_lens):
        """``(feats [batch, frames, out_dim], lens [batch])``."""
        enc = self.encoder
        batch, time = wavs.shape
        n = lengths_to_samples(wav_lens, time)
        if enc.normalize:
            from amser_sb.lobes.wav2vec2 import normalize_waveforms

            wavs = normalize_waveforms(wavs, wav_lens)
        attention = (torch.arange(time, device=wavs.device) < n.unsqueeze(1))
        model = enc.backbone()
        hidden_states = enc.layer_weights is not None
        original = model.feature_extractor
        if self.masked is not None:
            self.masked.sample_counts = n
            model.feature_extractor = self.masked
        try:
            out = model(
                wavs,
                attention_mask=attention.long(),
                output_hidden_states=hidden_states,
            )
        finally:
            model.feature_extractor = original
            if self.masked is not None:
                self.masked.sample_counts = None
        if hidden_states:
            hidden = torch.stack(list(out.hidden_states), dim=1)
        else:
            hidden = out.last_hidden_state
        frames = enc.frame_counts(n)
        total = hidden.shape[-2]
        valid = torch.arange(total, device=wavs.device) < frames.unsqueeze(1)
        shape = [batch] + [1] * (hidden.dim() - 3) + [total, 1]
        hidden = hidden * valid.view(shape).to(hidden.dtype)
        return enc.combine(hidden), frames.to(hidden.dtype) / total


class GraphWhisper(torch.nn.Module):
    """``WhisperEncoder`` in graph form (log-mel front end included).

    As ``WhisperEncoder.extract``: each clip is zero-padded on its own to
    consecutive windows of ``window_seconds`` (30 s by default), the log-mel
    spectrogram of each window (STFT, mel filter bank, the window's own
    clamp) goes through the encoder, and only the clip's real frames are
    kept. Windows past a clip's end (only in padded batches) are run and
    then masked, instead of being skipped.

    Arguments
    ---------
    encoder : amser_sb.lobes.WhisperEncoder
    """

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.out_dim

    def forward(self, wavs, wav_lens):
        """``(feats [batch, frames, out_dim], lens [batch])``."""
        enc = self.encoder
        batch, time = wavs.shape
        n = lengths_to_samples(wav_lens, time)
        samples = torch.arange(time, device=wavs.device) < n.unsqueeze(1)
        wavs = wavs * samples.to(wavs.dtype)
        window = enc.window
        n_windows = (time + window - 1) // window
        padded = F.pad(wavs, (0, n_windows * window - time))
        states = enc.encode(enc.log_mel(padded.reshape(-1, window)))
        layers, per_window, feat = states.shape[1:]
        out = (
            states.reshape(batch, n_windows, layers, per_window, feat)
            .permute(0, 2, 1, 3, 4)
            .reshape(batch, layers, n_windows * per_window, feat)
        )
        total = (time // enc.hop_length + 1) // 2
        out = out[:, :, :total]
        frames = enc.frame_counts(n)
        valid = torch.arange(total, device=wavs.device) < frames.unsqueeze(1)
        out = out * valid.view(batch, 1, total, 1).to(out.dtype)
        if enc.layer_weights is None:
            out = out[:, -1]
        return enc.combine(out), frames.to(out.dtype) / total


def graph_encoder(encoder):
    """The graph form of an encoder branch (one class a family).

    Arguments
    ---------
    encoder : amser_sb.lobes.SpeechEncoder

    Returns
    -------
    torch.nn.Module
        Called as ``(wavs, wav_lens) -> (feats, lens)``.
    """
    from amser_sb.lobes import Wav2Vec2Encoder, WhisperEncoder

    graph_forms = {Wav2Vec2Encoder: GraphWav2Vec2, WhisperEncoder: GraphWhisper}
    for cls, form in graph_forms.items():
        if isinstance(encoder, cls):
            return form(encoder)
    raise OnnxExportError(
        f"no ONNX graph form for the encoder class {type(encoder).__name__}: "
        "add one to amser_sb.onnx_export.graph_encoder"
    )


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
    from amser_sb.lobes.encoder import ENCODERS

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


class PosteriorGraph(torch.nn.Module):
    """What ``EncoderClassifier.classify_batch`` computes, in graph form.

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
        self.segment_model = AMSER(
            ssl=ssl, am_resnet=model.am_resnet, fusion=model.fusion,
            mode=model.mode,
        )
        self.classifier = classifier
        self.segment = utterance_model.segment
        self.hop = utterance_model.hop or utterance_model.segment
        self.use_voiced_mask = utterance_model.use_voiced_mask
        self.madd_window = int(utterance_model.madd_window)
        self.madd_factor = float(utterance_model.madd_factor)
        self.log_probs = getattr(classifier, "output", "prob") == "log_prob"
        if getattr(classifier, "output", "prob") == "logits":
            raise OnnxExportError(
                "the classifier outputs logits; export folders whose "
                "classifier outputs probabilities (amser-sb export does)"
            )

    def forward(self, wavs, wav_lens):
        """Posteriors ``[batch, classes]`` of waveforms ``[batch, time]``
        with relative lengths ``wav_lens`` ``[batch]``."""
        batch, time = wavs.shape
        n = lengths_to_samples(wav_lens, time).clamp(min=1)
        samples = torch.arange(time, device=wavs.device) < n.unsqueeze(1)
        wavs = wavs * samples.to(wavs.dtype)
        if self.use_voiced_mask:
            mask = graph_madd(wavs, n, self.madd_window, self.madd_factor)
        else:
            mask = samples.to(wavs.dtype)
        if self.segment is None:
            lens = n.to(wavs.dtype) / time
            emb = self.segment_model(wavs, lens, mask=mask).squeeze(1)
        else:
            seg, seg_mask, seg_lens, weights = cut_segments(
                wavs, mask, n, self.segment, self.hop
            )
            emb = self.segment_model(seg, seg_lens, mask=seg_mask).squeeze(1)
            emb = weights @ emb
        out = self.classifier(emb.unsqueeze(1)).reshape(batch, -1)
        if self.log_probs:
            out = out.exp()
        return out / out.sum(dim=1, keepdim=True)


# -------------------------------------------------------------- export ---
def _export_graph(graph, wavs, wav_lens):
    """``torch.export`` + ONNX translation of ``graph`` on an example batch.

    Returns
    -------
    onnx.ModelProto
    """
    dims = torch.export.Dim.AUTO
    shapes = {"wavs": {0: dims, 1: dims}, "wav_lens": {0: dims}}
    with traceable(graph), torch.no_grad():
        program = torch.export.export(
            graph, (wavs, wav_lens), dynamic_shapes=shapes, strict=False
        )
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in INPUT_NAMES:
            fixed = [d for d in node.meta["val"].shape if isinstance(d, int)]
            if fixed:
                raise OnnxExportError(
                    f"the exported graph fixed an axis of {node.name} to "
                    f"{fixed} (a traced Python int): report it as a bug"
                )
    onnx_program = torch.onnx.export(
        program, dynamo=True, opset_version=OPSET, optimize=False,
        input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
        verbose=False,
    )
    model = onnx_program.model_proto
    fold_weight_transposes(model)
    return model


def fold_weight_transposes(model):
    """Store transposed weights instead of transposing them in the graph.

    The exporter writes ``Linear`` as ``MatMul(x, Transpose(weight))``;
    onnxruntime's quantiser only quantises a ``MatMul`` whose weight is an
    initializer, so each ``Transpose`` of an initializer becomes an
    initializer (named after the weight, hence the same in both branches of
    ``compose_by_length``). In place.

    Arguments
    ---------
    model : onnx.ModelProto
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    users = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    renamed, dropped, kept_nodes = {}, set(), []
    for node in graph.node:
        if node.op_type != "Transpose" or node.input[0] not in inits:
            kept_nodes.append(node)
            continue
        perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
        source = numpy_helper.to_array(inits[node.input[0]])
        array = np.transpose(source, perm[0] if perm else None)
        tag = "_".join(str(p) for p in (perm[0] if perm else []))
        name = f"{node.input[0]}.transposed{tag}"
        if name not in inits:
            folded = numpy_helper.from_array(np.ascontiguousarray(array), name)
            graph.initializer.append(folded)
            inits[name] = folded
        renamed[node.output[0]] = name
        users[node.input[0]] -= 1
        if users[node.input[0]] == 0:
            dropped.add(node.input[0])
    if not renamed:
        return
    del graph.node[:]
    graph.node.extend(kept_nodes)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    for i, output in enumerate(graph.output):
        if output.name in renamed:
            raise OnnxExportError("a graph output is a folded weight")
    kept = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _same_tensor(a, b):
    from onnx import numpy_helper

    if (a.data_type, list(a.dims)) != (b.data_type, list(b.dims)):
        return False
    if a.raw_data and b.raw_data:
        return a.raw_data == b.raw_data
    return np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def _as_branch(model, prefix, initializers, functions):
    """``model``'s graph as an ``If`` branch reading the outer inputs.

    Every value it makes is renamed ``prefix + name``; its initializers
    move to ``initializers`` (shared when equal to one already there, e.g.
    the weights both branches use), its functions to ``functions``.
    """
    import onnx

    graph = model.graph
    rename = {}
    for init in graph.initializer:
        name = init.name
        if name in initializers and not _same_tensor(initializers[name], init):
            name = prefix + name
        rename[init.name] = name
        if name not in initializers:
            kept = onnx.TensorProto()
            kept.CopyFrom(init)
            kept.name = name
            initializers[name] = kept
    for func in model.functions:
        functions.setdefault((func.domain, func.name, func.overload), func)
    inputs = {value.name for value in graph.input}
    for node in graph.node:
        for attr in node.attribute:
            if attr.g.node or attr.graphs:
                raise OnnxExportError(
                    "the exported graph holds a subgraph: report it as a bug"
                )
        node.name = prefix + node.name
        for i, name in enumerate(node.output):
            if name:
                rename[name] = prefix + name
                node.output[i] = prefix + name
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name and name not in inputs:
                node.input[i] = rename.get(name, name)
    for value in list(graph.value_info) + list(graph.output):
        value.name = rename.get(value.name, value.name)
    del graph.initializer[:]
    del graph.input[:]
    graph.name = prefix.strip("/")
    return graph


def compose_by_length(whole, segmented, segment):
    """One model: the segmented graph for inputs longer than a segment.

    ``torch.export`` cannot keep one time axis dynamic across "shorter
    than a segment" (the clip is its own segment, of any length) and
    "longer" (fixed-length segments), so each is exported on its own and
    joined here by an ONNX ``If`` on the input's length.

    Arguments
    ---------
    whole, segmented : onnx.ModelProto
        Graphs for inputs of at most / more than ``segment`` samples.
    segment : int
        Segment length in samples.

    Returns
    -------
    onnx.ModelProto
    """
    import onnx
    from onnx import TensorProto, helper

    inputs = [onnx.ValueInfoProto() for _ in whole.graph.input]
    for copy, value in zip(inputs, whole.graph.input):
        copy.CopyFrom(value)
    output = onnx.ValueInfoProto()
    output.CopyFrom(whole.graph.output[0])
    initializers, functions = {}, {}
    else_branch = _as_branch(whole, "whole/", initializers, functions)
    then_branch = _as_branch(segmented, "segmented/", initializers, functions)
    nodes = [
        helper.make_node("Shape", ["wavs"], ["time"], start=1, end=2),
        helper.make_node(
            "Constant", [], ["segment"],
            value=helper.make_tensor("segment", TensorProto.INT64, [1],
                                     [segment]),
        ),
        helper.make_node("Greater", ["time", "segment"], ["segmented"]),
        helper.make_node(
            "If", ["segmented"], [output.name],
            then_branch=then_branch, else_branch=else_branch,
        ),
    ]
    graph = helper.make_graph(
        nodes, "amser_sb_posteriors", inputs, [output],
        initializer=list(initializers.values()),
    )
    model = helper.make_model(
        graph, opset_imports=list(whole.opset_import),
        functions=list(functions.values()),
    )
    model.ir_version = whole.ir_version
    return model


def build_onnx(clf, sample_rate):
    """The ONNX model of a loaded model folder (not yet checked).

    Arguments
    ---------
    clf : speechbrain.inference.classifiers.EncoderClassifier
        The folder loaded by ``amser_sb.classify.load_classifier``.
    sample_rate : int
        The model's rate.

    Returns
    -------
    onnx.ModelProto
    """
    graph = PosteriorGraph(clf.mods.embedding_model, clf.mods.classifier)
    graph.eval()
    segment = graph.segment
    short = segment or int(4 * sample_rate)
    clips = check_clips(
        [0.6 * short / sample_rate, 0.45 * short / sample_rate], sample_rate
    )
    wavs, lens = pad_batch(clips)
    whole_graph = PosteriorGraph(clf.mods.embedding_model, clf.mods.classifier)
    whole_graph.segment = None
    whole = _export_graph(whole_graph.eval(), wavs, lens)
    if segment is None:
        return whole
    clips = check_clips(
        [2.3 * segment / sample_rate, 1.6 * segment / sample_rate],
        sample_rate,
    )
    wavs, lens = pad_batch(clips)
    segmented = _export_graph(graph, wavs, lens)
    return compose_by_length(whole, segmented, segment)


def check_clips(seconds, sample_rate, seed=0):
    """Speech-like test clips: harmonic bursts, pauses, a noise floor.

    Arguments
    ---------
    seconds : list of float
        Clip lengths.
    sample_rate : int
        Their rate.
    seed : int
        Random seed.

    Returns
    -------
    list of numpy.ndarray
        ``[time]`` float32 clips.

    Example
    -------
    >>> [clip.shape for clip in check_clips([0.5, 1.0], 16000)]
    [(8000,), (16000,)]
    """
    rng = np.random.default_rng(seed)
    clips = []
    for length in seconds:
        n = int(round(length * sample_rate))
        t = np.arange(n) / sample_rate
        f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        syllables = np.clip(np.sin(2 * np.pi * 2.5 * t + rng.uniform()), 0, 1)
        wav = 0.1 * voice * syllables + 1e-3 * rng.standard_normal(n)
        clips.append(wav.astype(np.float32))
    return clips


def pad_batch(clips):
    """Zero-pad clips into ``(wavs [batch, time], wav_lens [batch])``.

    Arguments
    ---------
    clips : list of numpy.ndarray

    Returns
    -------
    (torch.Tensor, torch.Tensor)
    """
    longest = max(len(clip) for clip in clips)
    wavs = torch.zeros(len(clips), longest)
    for i, clip in enumerate(clips):
        wavs[i, : len(clip)] = torch.from_numpy(np.asarray(clip))
    lens = torch.tensor([len(clip) / longest for clip in clips])
    return wavs, lens


def torch_posteriors(clf, wavs, wav_lens):
    """PyTorch's posteriors ``[batch, classes]`` (``classify_batch``)."""
    with torch.inference_mode():
        out = clf.classify_batch(wavs, wav_lens)[0]
    out = out.reshape(out.shape[0], -1).float()
    if (out <= 0).all():
        out = out.exp()
    return (out / out.sum(dim=1, keepdim=True)).numpy()


def onnx_posteriors(session, wavs, wav_lens):
    """onnxruntime's posteriors ``[batch, classes]``."""
    feeds = {"wavs": np.asarray(wavs, dtype=np.float32),
             "wav_lens": np.asarray(wav_lens, dtype=np.float32)}
    return session.run([OUTPUT_NAME], feeds)[0]


def check_parity(clf, path, sample_rate, segment, int8_path=None):
    """Compare onnxruntime with PyTorch on clips alone and in a batch.

    Arguments
    ---------
    clf : EncoderClassifier
        The loaded model folder.
    path : str
        The float32 ONNX file.
    sample_rate : int
        The model's rate.
    segment : int or None
        Segment length in samples (clip lengths are chosen around it).
    int8_path : str, optional
        The int8 file, compared with float32 on the same clips.

    Returns
    -------
    dict
        What was checked, the deviations, ``passed``.
    """
    import onnxruntime

    short = (segment or 4 * sample_rate) / sample_rate
    seconds = [0.35, 0.8 * short, short + 0.3, 2.6 * short]
    clips = check_clips(seconds, sample_rate, seed=1)
    options = onnxruntime.SessionOptions()
    session = onnxruntime.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    reference = np.concatenate([
        torch_posteriors(clf, torch.from_numpy(c)[None], torch.ones(1))
        for c in clips
    ])
    alone = np.concatenate([
        onnx_posteriors(session, c[None], np.ones(1)) for c in clips
    ])
    wavs, lens = pad_batch(clips)
    batched = onnx_posteriors(session, wavs.numpy(), lens.numpy())
    dev_alone = float(np.abs(alone - reference).max())
    dev_batch = float(np.abs(batched - reference).max())
    report = {
        "clip_seconds": [round(s, 3) for s in seconds],
        "reference": "PyTorch EncoderClassifier.classify_batch, each clip "
                     "alone",
        "max_abs_diff_alone": dev_alone,
        "max_abs_diff_padded_batch": dev_batch,
        "tolerance": PARITY_TOLERANCE,
        "passed": max(dev_alone, dev_batch) <= PARITY_TOLERANCE,
    }
    if int8_path is not None:
        quantized = onnxruntime.InferenceSession(
            int8_path, options, providers=["CPUExecutionProvider"]
        )
        q = np.concatenate([
            onnx_posteriors(quantized, c[None], np.ones(1)) for c in clips
        ])
        report["int8"] = {
            "max_abs_diff_vs_pytorch_float32": float(
                np.abs(q - reference).max()
            ),
            "top1_agreement": float(
                (q.argmax(1) == reference.argmax(1)).mean()
            ),
            "note": "synthetic clips; measure on real speech "
                    "(benchmarks/inference_speed.py)",
        }
    return report


def quantize_int8(src, dst):
    """onnxruntime's dynamic int8 quantisation of the MatMul weights.

    Arguments
    ---------
    src, dst : str
        float32 model in, int8 model out.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
        extra_options={"EnableSubgraph": True},
    )


def _labels(clf):
    encoder = clf.hparams.label_encoder
    return [encoder.ind2lab[i] for i in range(len(encoder.ind2lab))]


def _metadata(clf, sample_rate):
    """Entries of the ONNX model's ``metadata_props`` (torch-free users
    read the classes and the rate there)."""
    hparams = clf.hparams
    encoder = clf.mods.embedding_model.encoder.ssl
    min_samples = int(getattr(encoder, "min_samples", 1))
    return {
        "labels": json.dumps(_labels(clf)),
        "sample_rate": str(sample_rate),
        "madd_window": str(int(hparams.madd_window)),
        "madd_factor": str(float(hparams.madd_factor)),
        "min_samples": str(min_samples),
        "inputs": "wavs [batch, time] float32 at sample_rate; wav_lens "
                  "[batch] float32 relative lengths (1.0: the longest)",
        "outputs": "posteriors [batch, classes] in the order of labels",
        "producer": "amser-sb export-onnx",
    }


def _write_card_section(model_dir, report):
    """Replace the model card's ONNX section with what was checked."""
    path = os.path.join(model_dir, "README.md")
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    if CARD_HEADING in text:
        text = text[: text.index(CARD_HEADING)].rstrip() + "\n"
    parity = report["parity"]
    files = f"`{ONNX_FILE}`" + (
        f" and `{INT8_FILE}`" if "int8" in parity else ""
    )
    lines = [
        "", CARD_HEADING, "",
        f"{files}: the whole model (MADD, segment grid, AM-ResNet, encoder, "
        "fusion, classifier) from the waveform to the posteriors, opset "
        f"{report['opset']}; inputs `wavs` `[batch, time]` at "
        f"{report['sample_rate']} Hz and `wav_lens` `[batch]` (relative "
        "lengths), output `posteriors` `[batch, classes]` (classes in the "
        "model's `labels` metadata and label_encoder.txt).",
        "",
        "Checked at export: onnxruntime against PyTorch on speech-like clips "
        f"of {', '.join(f'{s:g}' for s in parity['clip_seconds'])} s, each "
        "alone and all in one padded batch: max |posterior difference| "
        f"{parity['max_abs_diff_alone']:.2e} alone, "
        f"{parity['max_abs_diff_padded_batch']:.2e} batched (tolerance "
        f"{parity['tolerance']:g}).",
    ]
    if "int8" in parity:
        q = parity["int8"]
        lines += [
            "",
            f"`{INT8_FILE}` (dynamic int8 MatMul weights) on the same clips: "
            f"max deviation {q['max_abs_diff_vs_pytorch_float32']:.4f} from "
            f"float32, top-1 agreement {100 * q['top1_agreement']:.0f}% "
            "(synthetic clips: see the project README for real speech).",
        ]
    lines += [
        "",
        "`amser-sb classify --runtime onnx --model <this folder> file.wav` "
        "(or `--runtime onnx-int8`).",
        "",
    ]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.rstrip() + "\n" + "\n".join(lines))


def export_onnx(model_dir, int8=False, savedir=None, allow_any_yaml=False):
    """Write ``model.onnx`` (and ``model.int8.onnx``) into a model folder.

    The graph is built and checked in a temporary folder next to
    ``model_dir``; only a graph whose onnxruntime posteriors equal
    PyTorch's (``check_parity``) lands in the folder, with ``onnx.json``
    and the model card's ONNX section.

    Arguments
    ---------
    model_dir : str
        A folder written by ``amser-sb export``.
    int8 : bool
        Also write the dynamically quantised ``model.int8.onnx``.
    savedir : str, optional
        SpeechBrain's collection folder for loading (default: temporary).
    allow_any_yaml : bool
        As ``load_classifier``'s.

    Returns
    -------
    dict
        The report written to ``onnx.json``.
    """
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise OnnxExportError(
            f"export-onnx needs onnx and onnxruntime ({err}): pip install "
            "'amser-sb[onnx]'"
        ) from err
    from amser_sb.classify import load_classifier

    if not os.path.isdir(model_dir):
        raise OnnxExportError(
            f"model folder {model_dir} does not exist: write it with "
            "'amser-sb export <experiment folder> <model_dir>'"
        )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(
        prefix=".onnx-", dir=os.path.dirname(os.path.abspath(model_dir))
    ) as staging:
        clf = load_classifier(
            model_dir, savedir=savedir or os.path.join(staging, "sd"),
            allow_any_yaml=allow_any_yaml,
        )
        sample_rate = int(clf.hparams.sample_rate)
        segment = clf.mods.embedding_model.segment
        model = build_onnx(clf, sample_rate)
        for key, value in _metadata(clf, sample_rate).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        path = os.path.join(staging, ONNX_FILE)
        onnx.save_model(model, path)
        del model
        int8_path = None
        if int8:
            int8_path = os.path.join(staging, INT8_FILE)
            quantize_int8(path, int8_path)
        parity = check_parity(clf, path, sample_rate, segment, int8_path)
        if not parity["passed"]:
            raise OnnxExportError(
                f"the ONNX graph of {model_dir} does not reproduce PyTorch: "
                f"max |posterior difference| {parity['max_abs_diff_alone']:.2e}"
                f" alone, {parity['max_abs_diff_padded_batch']:.2e} in a "
                f"padded batch (tolerance {PARITY_TOLERANCE:g}); nothing was "
                "written (report it as a bug)"
            )
        report = {
            "onnx_file": ONNX_FILE,
            "int8_file": INT8_FILE if int8 else None,
            "opset": OPSET,
            "exporter": "torch.onnx.export(dynamo=True) on torch.export "
                        "(non-strict)",
            "sample_rate": sample_rate,
            "segment_samples": segment,
            "parity": parity,
            "versions": {
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "python": platform.python_version(),
            },
            "export_seconds": round(time.perf_counter() - start, 1),
        }
        for name in (ONNX_FILE, INT8_FILE):
            source = os.path.join(staging, name)
            if os.path.isfile(source):
                os.replace(source, os.path.join(model_dir, name))
        if not int8 and os.path.isfile(os.path.join(model_dir, INT8_FILE)):
            # an int8 file of an older export would not match this one
            os.remove(os.path.join(model_dir, INT8_FILE))
    with open(os.path.join(model_dir, REPORT_FILE), "w") as handle:
        json.dump(report, handle, indent=2)
    _write_card_section(model_dir, report)
    logger.info(
        "wrote %s (max |posterior difference| vs PyTorch %.2e alone, %.2e "
        "batched) in %.0f s", os.path.join(model_dir, ONNX_FILE),
        parity["max_abs_diff_alone"], parity["max_abs_diff_padded_batch"],
        report["export_seconds"],
    )
    return report
