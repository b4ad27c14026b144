"""The Whisper encoder as the pretrained-encoder branch, padding-safe.

Built over SpeechBrain's ``Whisper`` lobe
(``speechbrain.integrations.huggingface.whisper``, encoder only): the lobe
loads the model and its mel filter bank; this class computes the input and
runs the encoder so that a clip's features never depend on its batch:

* **the 30 s rule**: Whisper was trained on 30 s windows (3000 mel frames,
  1500 positions) and its encoder has no padding mask. Every waveform is
  zero-padded on its own to the window, exactly as Whisper's feature
  extractor does, and only its real frames (``frame_counts``: 50 a second)
  are pooled and attended by the rest of the model; padded frames are 0.
  Longer inputs are cut into consecutive windows whose real frames are
  concatenated (windows holding only padding are not run).
* **per-utterance log-mel**: SpeechBrain's lobe clamps the log-mel
  spectrogram at 8 below the maximum of the WHOLE batch; here the maximum is
  each window's own (as ``WhisperFeatureExtractor`` computes it).
* **shorter windows** (``window_seconds``, e.g. 4 s for 4 s segments): the
  positional embeddings are cut to the window, which saves up to 7.5x
  encoder compute on short segments but shows the encoder windows it never
  saw in training; measure before adopting (``benchmarks/
  ablation.py``).
* **all hidden states** with ``layer_weights`` (the embedding plus every
  layer, the last one after the final layer norm, as Hugging Face returns
  them): emotion lies mostly in the middle layers.
* **LayerDrop** (``encoder_layerdrop``, 0 in OpenAI's checkpoints): the
  layer loop is ours; with layer weights no layer is ever skipped (the
  weighted sum needs every state on every step, see
  ``SpeechEncoder.drop_layer``), with last-layer features a fine-tuned
  layer is skipped with that probability in train mode.
* **top-k fine-tuning** (``finetune_layers=k``): the top ``k`` layers and
  the final layer norm train, the rest runs without gradients in eval
  mode. It is not cached: the encoder attends over its window's padding,
  whose states depend on the clip, so a cache would have to hold whole
  windows.

Authors
 * amser-sb contributors
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask

from amser_sb.lobes.encoder import SpeechEncoder
from amser_sb.lobes.encoder_registry import hf_config_dict

#: Whisper's training window, in seconds.
WHISPER_WINDOW_SECONDS = 30.0
#: Sample rate Whisper works at.
WHISPER_SAMPLE_RATE = 16000


def tiny_whisper_config(**overrides):
    """A small ``WhisperConfig`` for random test encoders.

    Arguments
    ---------
    **overrides
        Entries to change.

    Returns
    -------
    transformers.WhisperConfig

    Example
    -------
    >>> tiny_whisper_config().d_model
    32
    """
    from transformers import WhisperConfig

    kwargs = dict(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=1500,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    kwargs.update(overrides)
    return WhisperConfig(**kwargs)


def build_random_whisper(folder, seed=0, **overrides):
    """Write a randomly initialised small Whisper as a local HF folder.

    Arguments
    ---------
    folder : str or os.PathLike
        Output folder (created if missing).
    seed : int
        Seed of the initialisation.
    **overrides
        ``WhisperConfig`` entries (see ``tiny_whisper_config``).

    Returns
    -------
    str
        The folder (``config.json``, weights, ``preprocessor_config.json``).

    Example
    -------
    >>> import os
    >>> folder = build_random_whisper(getfixture("tmp_path") / "whisper")
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    import os

    from transformers import WhisperFeatureExtractor, WhisperModel

    config = tiny_whisper_config(**overrides)
    torch.manual_seed(seed)
    model = WhisperModel(config)
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(
        folder
    )
    return folder


def _lobe_from_config(config):
    """SpeechBrain's ``Whisper`` lobe (encoder only) around a config.

    The lobe's constructor always reads a configuration and weights; here
    the encoder is built from ``config`` alone and the lobe's attributes are
    set as its constructor sets them (SpeechBrain 1.1), so state-dict keys
    equal those of a lobe loaded from a folder.
    """
    from speechbrain.integrations.huggingface.whisper import Whisper
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import (
        WhisperEncoder as HFWhisperEncoder,
    )

    config = dict(config)
    config.pop("model_type", None)
    hf_config = WhisperConfig(**config)
    lobe = Whisper.__new__(Whisper)
    torch.nn.Module.__init__(lobe)
    holder = torch.nn.Module()
    holder.config = hf_config
    holder.encoder = HFWhisperEncoder(hf_config)
    holder.decoder = None
    lobe.model = holder
    lobe.config = hf_config
    lobe.encoder_only = True
    lobe.output_all_hiddens = True
    extractor = WhisperFeatureExtractor(feature_size=hf_config.num_mel_bins)
    lobe.feature_extractor = extractor
    lobe._n_fft = extractor.n_fft
    lobe._hop_length = extractor.hop_length
    lobe._n_samples = extractor.n_samples
    filters = extractor.mel_filters
    if filters.shape[0] != extractor.feature_size:
        filters = filters.T
    lobe.register_buffer(
        "_mel_filters", torch.as_tensor(filters, dtype=torch.float32)
    )
    return lobe


class WhisperEncoder(SpeechEncoder):
    """Whisper's encoder as the encoder branch (any Whisper size).

    Arguments
    ---------
    source : str
        Hugging Face hub id (``"openai/whisper-base"``) or a local folder
        (e.g. written by ``amser-sb fetch-encoder whisper-base DIR``). Not
        needed with ``config``.
    save_path : str
        Download cache of the hub model.
    freeze : bool
        Fixed feature extractor (eval mode, no gradients) if True.
    layer_weights : bool
        Learned softmax-weighted sum of all hidden states (recommended:
        middle layers carry most emotion) instead of the last one.
    window_seconds : float, optional
        Encoder window; None (default) is Whisper's 30 s. A shorter window
        (a multiple of 0.02 s) cuts the positional embeddings to it.
    output_norm : bool
        Layer-norm each output frame over its features (no affine).
    normalize : bool, optional
        Accepted for a uniform interface; Whisper takes log-mel features,
        never a normalised waveform (must be None or False).
    config : dict, optional
        Hugging Face configuration: build the encoder with random weights
        and read nothing (exported models).
    finetune_layers : int or str or None
        With ``freeze=False``: ``"all"`` (default), ``k`` (the top ``k``
        layers and the final layer norm; the rest frozen), 0/None
        (frozen).

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> enc = WhisperEncoder(build_random_whisper(tmp / "w"), str(tmp))
    >>> feats, lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, enc.out_dim, enc.n_layers
    (torch.Size([2, 50, 32]), 32, 3)
    >>> lens
    tensor([1.0000, 0.5000])
    """

    model_types = ("whisper",)

    def __init__(
        self,
        source=None,
        save_path="pretrained_models",
        freeze=True,
        layer_weights=False,
        window_seconds=None,
        output_norm=False,
        normalize=None,
        config=None,
        finetune_layers="all",
    ):
        if normalize not in (None, False, "auto"):
            raise ValueError(
                "Whisper takes log-mel features of the raw waveform: "
                "normalize must be None/False"
            )
        if config is not None:
            lobe = _lobe_from_config(config)
        elif source is None:
            raise ValueError(
                "WhisperEncoder needs a source (hub id or local folder) or a "
                "config (a Hugging Face config dict)"
            )
        else:
            from speechbrain.integrations.huggingface.whisper import Whisper

            lobe = Whisper(
                source,
                save_path=save_path,
                sampling_rate=WHISPER_SAMPLE_RATE,
                encoder_only=True,
                freeze=freeze,
                output_all_hiddens=True,
            )
        hf_config = lobe.model.config
        super().__init__(
            out_dim=hf_config.d_model,
            n_layers=hf_config.encoder_layers + 1,
            freeze=freeze,
            layer_weights=layer_weights,
            output_norm=output_norm,
            finetune_layers=finetune_layers,
        )
        self.lobe = lobe
        for param in self.backbone().parameters():
            param.requires_grad = not freeze
        # Whisper keeps its positional embeddings fixed.
        self.backbone().embed_positions.requires_grad_(False)
        self.apply_finetuning()
        self.hop_length = int(lobe._hop_length)
        self.n_fft = int(lobe._n_fft)
        # one encoder frame = two mel frames (conv2 has stride 2)
        self.samples_per_frame = 2 * self.hop_length
        positions = int(hf_config.max_source_positions)
        full = positions * self.samples_per_frame
        if window_seconds is None:
            window = full
        else:
            window = int(round(float(window_seconds) * WHISPER_SAMPLE_RATE))
            if window % self.samples_per_frame or not 0 < window <= full:
                raise ValueError(
                    f"window_seconds={window_seconds} must be a multiple of "
                    f"{self.samples_per_frame / WHISPER_SAMPLE_RATE} s and at "
                    f"most {full / WHISPER_SAMPLE_RATE:g} s"
                )
        self.window_seconds = (
            None if window_seconds is None else window / WHISPER_SAMPLE_RATE
        )
        self.window = window
        self.min_samples = self.hop_length

    def backbone(self):
        """The Hugging Face Whisper encoder.

        Returns
        -------
        transformers.models.whisper.modeling_whisper.WhisperEncoder
        """
        return self.lobe.model.encoder

    def transformer_layers(self):
        """The encoder layers (``ModuleList``)."""
        return self.backbone().layers

    def final_norm(self):
        """The layer norm after the last layer (the last hidden state is
        taken after it)."""
        return self.backbone().layer_norm

    def export_options(self):
        """Keyword arguments of ``SSLBackbone`` that rebuild this encoder.

        Returns
        -------
        dict
        """
        return {
            "config": hf_config_dict(self.lobe.model.config),
            "layer_weights": self.layer_weights_option,
            "window_seconds": self.window_seconds,
            "output_norm": self.output_norm,
            "freeze": True,
        }

    def frame_counts(self, n_samples):
        """Real encoder frames of waveforms of ``n_samples`` samples.

        Arguments
        ---------
        n_samples : torch.Tensor
            ``[batch]`` (long).

        Returns
        -------
        torch.Tensor
            ``[batch]`` (long): ``ceil(floor(n / hop) / 2)``, 50 a second.
        """
        mel = torch.div(n_samples, self.hop_length, rounding_mode="floor")
        return torch.div(mel + 1, 2, rounding_mode="floor")

    def power_spectrum(self, windows):
        """Whisper's power spectrum of waveform windows: ``|STFT|^2`` with a
        Hann window, centred frames (reflect padding), the last frame
        dropped.

        Arguments
        ---------
        windows : torch.Tensor
            ``[n, window]`` waveforms.

        Returns
        -------
        torch.Tensor
            ``[n, n_fft / 2 + 1, window / hop]``.
        """
        stft = torch.stft(
            windows,
            self.n_fft,
            self.hop_length,
            window=torch.hann_window(self.n_fft, device=windows.device),
            return_complex=True,
        )
        return stft[..., :-1].abs() ** 2

    def log_mel(self, windows, power=None):
        """Whisper's log-mel input of waveform windows, each on its own.

        Arguments
        ---------
        windows : torch.Tensor
            ``[n, window]`` waveforms (zero-padded to the window).
        power : torch.Tensor, optional
            Their :meth:`power_spectrum`, computed elsewhere (the ONNX
            graph's convolution with the Fourier basis).

        Returns
        -------
        torch.Tensor
            ``[n, mel_bins, window / hop]``.
        """
        if power is None:
            power = self.power_spectrum(windows)
        mel = self.lobe._mel_filters.to(power.dtype) @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        floor = log_spec.amax(dim=(1, 2), keepdim=True) - 8.0
        log_spec = torch.maximum(log_spec, floor)
        return (log_spec + 4.0) / 4.0

    def encode(self, mel):
        """All hidden states of Whisper's encoder on log-mel windows.

        Arguments
        ---------
        mel : torch.Tensor
            ``[n, mel_bins, mel_frames]`` (``mel_frames`` at most 3000).

        Returns
        -------
        torch.Tensor
            ``[n, layers, mel_frames / 2, feat]``.
        """
        enc = self.backbone()
        lower = torch.no_grad() if self.partial else nullcontext()
        with lower:  # a partly fine-tuned encoder: its frozen part
            hidden = F.gelu(enc.conv1(mel))
            hidden = F.gelu(enc.conv2(hidden)).permute(0, 2, 1)
            hidden = hidden + enc.embed_positions.weight[: hidden.shape[1]]
            hidden = F.dropout(hidden, p=enc.dropout, training=enc.training)
            states = [hidden]
            for layer in enc.layers[: self.frozen_layers]:
                hidden = self._layer(layer, hidden)
                states.append(hidden)
        for index in range(self.frozen_layers, len(enc.layers)):
            layer = enc.layers[index]
            if not self.drop_layer(index, layer):
                hidden = self._layer(layer, hidden)
            states.append(hidden)
        states[-1] = enc.layer_norm(hidden)
        return torch.stack(states, dim=1)

    @staticmethod
    def _layer(layer, hidden):
        """One encoder layer (no attention mask: Whisper has none)."""
        out = layer(hidden, None)
        return out[0] if isinstance(out, tuple) else out

    def extract(self, wavs, wav_lens=None):
        """Run the encoder (the cacheable part when frozen).

        Arguments
        ---------
        wavs : torch.Tensor
            Raw 16 kHz waveforms ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``; None means all full length.

        Returns
        -------
        hidden : torch.Tensor
            ``[batch, frames, feat]``, or ``[batch, layers, frames, feat]``
            with ``layer_weights``; frames past each clip's end are 0.
        lens : torch.Tensor
            Relative lengths in frames ``[batch]``.
        """
        batch, time = wavs.shape
        n = self.sample_counts(wavs, wav_lens)
        valid = length_to_mask(n, time, device=wavs.device)
        wavs = wavs * valid.to(wavs.dtype)
        n_windows = max(1, -(-time // self.window))
        padded = F.pad(wavs, (0, n_windows * self.window - time))
        windows = padded.view(batch * n_windows, self.window)
        # run only the windows that hold some of their clip's samples
        starts = torch.arange(n_windows, device=wavs.device) * self.window
        used = (starts.unsqueeze(0) < n.unsqueeze(1)).reshape(-1)
        index = torch.nonzero(used).squeeze(1)
        frames_per_window = self.window // self.samples_per_frame
        context = torch.no_grad() if self.freeze else torch.enable_grad()
        with context:
            states = self.encode(self.log_mel(windows[index]))
        layers, feat = states.shape[1], states.shape[-1]
        out = states.new_zeros(
            batch * n_windows, layers, frames_per_window, feat
        )
        out[index] = states
        out = (
            out.view(batch, n_windows, layers, frames_per_window, feat)
            .permute(0, 2, 1, 3, 4)
            .reshape(batch, layers, n_windows * frames_per_window, feat)
        )
        total = int(self.frame_counts(torch.tensor(time)))
        out = out[:, :, :total]
        frames = self.frame_counts(n)
        mask = length_to_mask(frames, total, device=wavs.device)
        out = out * mask.view(batch, 1, total, 1).to(out.dtype)
        if self.layer_weights is None:
            out = out[:, -1]
        return out, frames.to(out.dtype) / total
