"""The wav2vec 2.0 branch: a padding-safe wrapper around SpeechBrain's lobe.

Li & Zhang (2025, Sec. 2.4) feed the raw 16 kHz waveform to
``facebook/wav2vec2-base-960h`` and use its last hidden state as a frozen
feature extractor. ``Wav2Vec2Encoder`` (the ``SpeechEncoder`` of these
families, see ``amser_sb.lobes.encoder``) wraps SpeechBrain's
``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2`` lobe, so any
Hugging Face wav2vec2 / HuBERT / WavLM checkpoint works, from the Hub or from
a local folder, frozen or fine-tuned, and adds what the paper leaves open:

* **per-utterance waveform normalisation**: SpeechBrain's lobe layer-norms
  the whole padded tensor (``F.layer_norm(wav, wav.shape[1:])``), so a
  waveform's features depend on how much padding it was batched with. Here
  each waveform is normalised to zero mean and unit variance over its OWN
  samples, exactly like ``Wav2Vec2FeatureExtractor`` (padding stays 0).
* **per-utterance backbone runs**: group-norm feature encoders
  (``feat_extract_norm="group"``, e.g. wav2vec2-base) normalise each channel
  over the whole time axis, padding included, so batching changes every
  frame. ``per_utterance`` runs the backbone on each utterance cropped to its
  own length (by default at inference only, for group-norm encoders), which
  makes the output independent of the batch; utterances of equal length
  share one call. Layer-norm encoders
  (``do_stable_layer_norm=True``, e.g. wav2vec2-large-lv60, WavLM) normalise
  each frame on its own and are padding-invariant when batched.
* **SUPERB-style layer weights**: optionally a learned softmax-weighted sum
  of all hidden layers instead of the last one.
* **precomputed features**: ``extract`` (the backbone) and ``combine`` (the
  learned layer weighting and output norm) are separate steps, so a cache of
  frozen backbone outputs can skip ``extract``.
* **our own layer loop** (``Wav2Vec2Stack``): SpeechBrain's lobe loads the
  model; the transformer layers run one by one here (equal to the model's
  ``output_hidden_states``), so that (1) LayerDrop never skips a layer when
  layer weights combine every hidden state: transformers 5 returns no
  state for a skipped layer, so a fine-tuned run with layer weights got
  0 to L states at random and crashed; the weighted sum needs each
  layer's own output on every step (an identity skip would give the
  weight of layer l the features of layer l-1 at random steps, a
  train/test mismatch in what the weights learn). With last-layer
  features the checkpoint's LayerDrop applies as in the model's forward.
  (2) ``finetune_layers=k`` trains only the top ``k`` layers, and the
  hidden states below them (``extract_frozen``) can be cached.

``build_random_wav2vec2`` writes a local Hugging Face folder with random
weights (tests, benchmarks and the offline demo use it; nothing reaches the
Hub).

Authors
 * amser-sb contributors
"""

import os
from contextlib import nullcontext

import torch
from speechbrain.dataio.dataio import length_to_mask

from amser_sb.lobes.encoder import SpeechEncoder
from amser_sb.lobes.encoder_registry import hf_config_dict
from amser_sb.core.lengths import lengths_to_samples
from amser_sb.lobes.wav2vec2_layers import Wav2Vec2Stack

#: Variance floor of ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``.
NORM_EPS = 1e-7

_TINY_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    # Three conv layers with wav2vec2's total stride of 320 samples (50
    # frames a second), so tiny and base backbones give the same frame rate.
    conv_dim=(32, 32, 32),
    conv_kernel=(10, 8, 4),
    conv_stride=(5, 8, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def wav2vec2_config(size="tiny", feat_extract_norm="group", **overrides):
    """A ``Wav2Vec2Config`` for a random backbone (see
    ``build_random_wav2vec2``).

    Arguments
    ---------
    size : str
        ``"tiny"`` or ``"base"``.
    feat_extract_norm : str
        ``"group"`` or ``"layer"``.
    **overrides
        Other ``Wav2Vec2Config`` entries (e.g. ``layerdrop=0.5``).

    Returns
    -------
    transformers.Wav2Vec2Config

    Example
    -------
    >>> config = wav2vec2_config("base")
    >>> config.hidden_size, config.num_hidden_layers, config.conv_dim[0]
    (768, 12, 512)
    """
    from transformers import Wav2Vec2Config

    if size not in ("tiny", "base"):
        raise ValueError(f"size must be 'tiny' or 'base', got {size!r}")
    if feat_extract_norm not in ("group", "layer"):
        raise ValueError(
            "feat_extract_norm must be 'group' or 'layer', got "
            f"{feat_extract_norm!r}"
        )
    layer = feat_extract_norm == "layer"
    kwargs = dict(_TINY_CONFIG) if size == "tiny" else {}
    # Deterministic compute: no LayerDrop, no spec-augment parameter
    # (SpeechBrain's lobe switches spec augment off anyway).
    kwargs.update(layerdrop=0.0, mask_time_prob=0.0)
    kwargs.update(overrides)
    return Wav2Vec2Config(
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=layer,
        conv_bias=layer,
        **kwargs,
    )


def build_random_wav2vec2(
    folder, size="tiny", feat_extract_norm="group", seed=0, **overrides
):
    """Write a randomly initialised wav2vec2 model as a local HF folder.

    The folder holds ``config.json``, the weights (``save_pretrained``) and
    ``preprocessor_config.json`` (``Wav2Vec2FeatureExtractor``), so
    ``SSLBackbone(folder)`` and SpeechBrain's ``Wav2Vec2(folder, ...)`` load
    it offline.

    Arguments
    ---------
    folder : str or os.PathLike
        Output folder (created if missing).
    size : str
        ``"tiny"`` (32-dim, 2 layers, 50 frames a second: for tests) or
        ``"base"`` (exactly wav2vec2-base's architecture: 7 conv layers of
        512 channels, 12 transformer layers of 768, ~94M parameters; random
        weights, same compute; ~380 MB on disk).
    feat_extract_norm : str
        ``"group"`` (wav2vec2-base style: group norm in the first conv layer,
        post-norm transformer, no attention mask in the feature extractor
        config) or ``"layer"`` (wav2vec2-large-lv60 style: layer norm in every
        conv layer, ``do_stable_layer_norm=True``, attention mask returned).
    seed : int
        Seed of the random initialisation.
    **overrides
        Other ``Wav2Vec2Config`` entries (``wav2vec2_config``).

    Returns
    -------
    str
        The folder path.

    Example
    -------
    >>> folder = build_random_wav2vec2(getfixture("tmp_path") / "w2v")
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = wav2vec2_config(size, feat_extract_norm, **overrides)
    torch.manual_seed(seed)
    model = Wav2Vec2Model(config)
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        do_normalize=True,
        return_attention_mask=feat_extract_norm == "layer",
    ).save_pretrained(folder)
    return folder


def normalize_waveforms(wavs, wav_lens=None, eps=NORM_EPS):
    """Zero mean, unit variance per waveform, over its own samples only.

    The same arithmetic as ``Wav2Vec2FeatureExtractor``: ``(x - mean) /
    sqrt(var + eps)`` with the biased variance of the valid samples; padding
    is set to 0.

    Arguments
    ---------
    wavs : torch.Tensor
        Waveforms ``[batch, time]``.
    wav_lens : torch.Tensor, optional
        Relative lengths ``[batch]``; None means all full length.
    eps : float
        Variance floor.

    Returns
    -------
    torch.Tensor
        Normalised waveforms ``[batch, time]``.

    Example
    -------
    >>> wavs = torch.tensor([[1.0, 3.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    >>> normalize_waveforms(wavs, torch.tensor([0.5, 1.0]))[0]
    tensor([-1.,  1.,  0.,  0.])
    """
    batch, time = wavs.shape
    if wav_lens is None:
        wav_lens = torch.ones(batch, device=wavs.device)
    n = lengths_to_samples(wav_lens, time).clamp(min=1)
    valid = length_to_mask(n, time, dtype=wavs.dtype, device=wavs.device)
    count = n.to(wavs.dtype).unsqueeze(1)
    mean = (wavs * valid).sum(1, keepdim=True) / count
    var = (((wavs - mean) * valid) ** 2).sum(1, keepdim=True) / count
    out = (wavs - mean) / torch.sqrt(var + eps)
    return torch.where(valid.bool(), out, torch.zeros_like(out))


def _lobe_from_config(config, freeze, freeze_feature_extractor, layer_weights):
    """SpeechBrain's ``Wav2Vec2`` lobe around a model built from a config.

    The lobe's constructor always fetches a configuration and weights
    (from the Hub or a folder); here the Hugging Face model is built from
    ``config`` alone and the lobe's attributes are set as its constructor
    would (SpeechBrain 1.1), so forward passes and state-dict keys are the
    same as for a lobe loaded from a folder.

    Arguments
    ---------
    config : dict
        Hugging Face configuration (``model_type`` included).
    freeze, freeze_feature_extractor, layer_weights : bool
        As in ``SSLBackbone``.

    Returns
    -------
    speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2
    """
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    from transformers import AutoConfig, AutoModel

    config = dict(config)
    model_type = config.pop("model_type", "wav2vec2")
    hf_config = AutoConfig.for_model(model_type, **config)
    lobe = Wav2Vec2.__new__(Wav2Vec2)
    torch.nn.Module.__init__(lobe)
    lobe.config = hf_config
    lobe.quantization_config = None
    lobe.for_pretraining = False
    lobe.model = AutoModel.from_config(hf_config)
    lobe.model.config.apply_spec_augment = False
    lobe.freeze = freeze
    if freeze:
        lobe.freeze_model(lobe.model)
    lobe.freeze_feature_extractor = freeze_feature_extractor
    if not freeze and freeze_feature_extractor:
        lobe.model.feature_extractor.eval()
        for param in lobe.model.feature_extractor.parameters():
            param.requires_grad = False
    lobe.normalize_wav = False
    lobe.output_norm = False
    lobe.output_all_hiddens = layer_weights
    return lobe


class Wav2Vec2Encoder(SpeechEncoder):
    """wav2vec2 / HuBERT / WavLM / data2vec-audio branch, padding-safe.

    Built over SpeechBrain's ``Wav2Vec2`` lobe (which loads any of these
    families through ``AutoModel``). Usually made by ``SSLBackbone``, which
    picks the class from the source's ``model_type``.

    Arguments
    ---------
    source : str
        Hugging Face hub id (e.g. ``"facebook/wav2vec2-base"``; the paper
        used ``"facebook/wav2vec2-base-960h"``) or a local folder.
        Not needed with ``config``.
    save_path : str
        Download cache of the hub model.
    freeze : bool
        True (default, as in the paper): the backbone is a fixed feature
        extractor, runs without gradients and stays in eval mode (no
        dropout) even when the surrounding model is put in train mode.
        False: fine-tuned with the rest of the model.
    freeze_feature_extractor : bool
        With ``freeze=False``, keep the convolutional feature encoder frozen
        (SpeechBrain's option; usual when fine-tuning).
    layer_weights : bool
        False: use the last hidden state (the paper). True: SUPERB-style
        learned softmax-weighted sum of all hidden states (the CNN
        projection plus every transformer layer).
    normalize : str or bool
        Per-utterance waveform normalisation over each waveform's own
        samples. ``"auto"`` (default) follows the checkpoint's
        ``preprocessor_config.json`` (``do_normalize``); True/False force it.
    per_utterance : str
        Run the backbone one utterance at a time, each cropped to its own
        length, so padding cannot reach it: ``"never"``, ``"eval"``
        (inference only), ``"always"``, or ``"auto"`` (default: ``"eval"``
        for group-norm feature encoders, ``"never"`` for layer-norm ones).
    output_norm : bool
        Layer-norm each output frame over its features (no affine). Unlike
        SpeechBrain's ``output_norm``, which normalises over time and
        features of the padded batch, this is per frame.
    config : dict, optional
        A Hugging Face model configuration (``config.json`` as a dict): the
        backbone is built from it with random weights, without reading or
        downloading anything, for weights that a checkpoint loads next
        (exported models embed it; see ``amser_sb.inference.export``). Needs an
        explicit ``normalize``.
    window_seconds : None
        Only None (no fixed input window; the option is Whisper's).
    finetune_layers : int or str or None
        With ``freeze=False``: ``"all"`` (default: the whole model), ``k``
        (only the top ``k`` transformer layers, plus the final layer norm
        of pre-norm models with last-layer features; the rest frozen, in
        eval mode, its output cacheable), 0/None (frozen).
    **kwargs
        Passed on to SpeechBrain's ``Wav2Vec2`` (e.g.
        ``apply_spec_augment``).

    Example
    -------
    >>> folder = build_random_wav2vec2(getfixture("tmp_path") / "w2v")
    >>> ssl = Wav2Vec2Encoder(folder, save_path=str(getfixture("tmp_path")))
    >>> wavs = torch.randn(2, 16000)
    >>> feats, lens = ssl(wavs, torch.tensor([1.0, 0.5]))
    >>> feats.shape, ssl.out_dim
    (torch.Size([2, 50, 32]), 32)
    >>> lens
    tensor([1.0000, 0.5000])
    """

    model_types = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")

    def __init__(
        self,
        source=None,
        save_path="pretrained_models",
        freeze=True,
        freeze_feature_extractor=False,
        layer_weights=False,
        normalize="auto",
        per_utterance="auto",
        output_norm=False,
        config=None,
        window_seconds=None,
        finetune_layers="all",
        **kwargs,
    ):
        if window_seconds is not None:
            raise ValueError(
                "window_seconds is for encoders with a fixed input window "
                "(Whisper); wav2vec2-like encoders take any length: set "
                "ssl_window_seconds: null"
            )
        if config is not None:
            if normalize == "auto":
                raise ValueError(
                    "SSLBackbone(config=...) needs normalize=True/False "
                    "(there is no preprocessor_config.json to read it from)"
                )
            lobe = _lobe_from_config(
                config, freeze, freeze_feature_extractor, layer_weights
            )
        elif source is None:
            raise ValueError(
                "SSLBackbone needs a source (hub id or local folder) or a "
                "config (a Hugging Face config dict)"
            )
        else:
            from speechbrain.integrations.huggingface.wav2vec2 import (
                Wav2Vec2,
            )

            lobe = Wav2Vec2(
                source,
                save_path=save_path,
                freeze=freeze,
                freeze_feature_extractor=freeze_feature_extractor,
                output_norm=False,
                output_all_hiddens=layer_weights,
                **kwargs,
            )
        hf_config = lobe.model.config
        super().__init__(
            out_dim=hf_config.hidden_size,
            n_layers=hf_config.num_hidden_layers + 1,
            freeze=freeze,
            layer_weights=layer_weights,
            output_norm=output_norm,
            finetune_layers=finetune_layers,
        )
        self.lobe = lobe
        if normalize == "auto":
            normalize = bool(self.lobe.normalize_wav)
        self.normalize = bool(normalize)
        # We normalise per utterance ourselves; the lobe's layer norm over
        # the padded tensor would make features depend on the padding.
        self.lobe.normalize_wav = False
        group_norm = getattr(hf_config, "feat_extract_norm", "group") == "group"
        if per_utterance == "auto":
            per_utterance = "eval" if group_norm else "never"
        if per_utterance not in ("never", "eval", "always"):
            raise ValueError(
                "per_utterance must be 'auto', 'never', 'eval' or 'always', "
                f"got {per_utterance!r}"
            )
        self.per_utterance = per_utterance
        self.group_norm = group_norm
        self.min_samples = self._min_samples(hf_config)
        self.apply_finetuning()

    @staticmethod
    def _min_samples(config):
        """Receptive field of one output frame, in samples."""
        field = 1
        for i in reversed(range(len(config.conv_kernel))):
            field = (field - 1) * config.conv_stride[i] + config.conv_kernel[i]
        return field

    def backbone(self):
        """The Hugging Face model.

        Returns
        -------
        transformers.PreTrainedModel
        """
        return self.lobe.model

    #: The lower layers of a partly fine-tuned encoder can be cached.
    splits_partial = True

    @property
    def stack(self):
        """The model's transformer stack, run layer by layer."""
        return Wav2Vec2Stack(self.lobe.model, extractor_float32=getattr(
            self, "extractor_float32", False))

    def transformer_layers(self):
        """The transformer layers (``ModuleList``)."""
        return self.lobe.model.encoder.layers

    def final_norm(self):
        """The norm after the last layer (pre-norm models, last-layer
        features only: with layer weights the hidden states are taken
        before it, as Hugging Face returns them), or None."""
        if self.layer_weights is not None:
            return None
        return self.stack.final_norm()

    def export_options(self):
        """Keyword arguments of ``SSLBackbone`` that rebuild this encoder.

        Returns
        -------
        dict
            ``config`` (the Hugging Face configuration, without where it
            came from), ``normalize``, ``layer_weights``, ``output_norm``
            and ``freeze``.
        """
        return {
            "config": hf_config_dict(self.lobe.model.config),
            "normalize": self.normalize,
            "layer_weights": self.layer_weights_option,
            "output_norm": self.output_norm,
            "freeze": True,
        }

    def frame_counts(self, n_samples):
        """Number of output frames for waveforms of ``n_samples`` samples.

        Arguments
        ---------
        n_samples : torch.Tensor
            Absolute lengths in samples, ``[batch]`` (long).

        Returns
        -------
        torch.Tensor
            Absolute lengths in frames, ``[batch]`` (long).
        """
        return self.lobe.model._get_feat_extract_output_lengths(n_samples)

    def extract(self, wavs, wav_lens=None):
        """Run the backbone (the cacheable part when frozen).

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
            with ``layer_weights``; padded frames are 0.
        lens : torch.Tensor
            Relative lengths in frames ``[batch]``.
        """
        if self.partial:
            lower, lens = self.extract_frozen(wavs, wav_lens)
            return self.run_top(lower, lens), lens
        context = torch.no_grad() if self.freeze else nullcontext()
        with context:
            hidden, frames = self.lower_states(wavs, wav_lens, None)
        if self.layer_weights is None:
            hidden = hidden[:, -1]
        return hidden, frames.to(hidden.dtype) / hidden.shape[-2]

    def lower_states(self, wavs, wav_lens, stop):
        """Hidden states ``0 .. stop`` (None: all, the last normed).

        Arguments
        ---------
        wavs : torch.Tensor
            Raw 16 kHz waveforms ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``; None means all full length.
        stop : int or None
            Last hidden state (the output of layer ``stop``).

        Returns
        -------
        hidden : torch.Tensor
            ``[batch, stop + 1, frames, feat]``; padded frames are 0.
        frames : torch.Tensor
            ``[batch]`` (long) real frames.
        """
        batch = wavs.shape[0]
        if wav_lens is None:
            wav_lens = torch.ones(batch, device=wavs.device)
        n = self.sample_counts(wavs, wav_lens)
        if self.normalize:
            wavs = normalize_waveforms(wavs, wav_lens)
        frames = self.frame_counts(n)
        one_by_one = self.per_utterance == "always" or (
            self.per_utterance == "eval" and not self.training
        )
        if one_by_one and batch > 1:
            hidden = self._per_utterance(wavs, n, frames, stop)
        else:
            hidden = self._run(wavs, n, stop)
            total = hidden.shape[-2]
            valid = length_to_mask(frames, total, device=wavs.device)
            hidden = hidden * valid.view(batch, 1, total, 1).to(hidden.dtype)
        return hidden, frames

    def top_states(self, hidden, frames, start):
        """Hidden states ``start + 1 .. L`` from state ``start``.

        Arguments
        ---------
        hidden : torch.Tensor
            ``[batch, frames, feat]``.
        frames : torch.Tensor
            ``[batch]`` (long) real frames.
        start : int
            Index of ``hidden``.

        Returns
        -------
        list of torch.Tensor
        """
        stack = self.stack
        states = stack.layers(hidden, frames, start, drop=self.drop_layer)
        if self.layer_weights is None:
            states[-1] = stack.output(states[-1])
        return states

    def _run(self, wavs, n, stop=None):
        """One backbone call on samples ``n``: ``[B, stop + 1, T, C]``."""
        stack = self.stack
        frames = self.frame_counts(n)
        hidden = stack.embed(wavs, frames)
        states = [hidden] + stack.layers(
            hidden, frames, 0, stop, drop=self.drop_layer
        )
        if stop is None and self.layer_weights is None:
            states = [stack.output(states[-1])]  # last_hidden_state
        return torch.stack(states, dim=1)

    def _per_utterance(self, wavs, n, frames, stop=None):
        """Backbone on each utterance cropped to its own length.

        Utterances of equal length run together: cropped to that length
        they hold no padding, so batching them changes nothing (and is
        much faster on CPU, e.g. the equal windows of a long recording).
        """
        total = int(self.frame_counts(torch.tensor(wavs.shape[1])))
        out = None
        for length in torch.unique(n).tolist():
            index = torch.nonzero(n == length).squeeze(1)
            group = self._run(wavs[index, :length], n[index], stop)
            if out is None:
                shape = (wavs.shape[0],) + group.shape[1:-2]
                out = group.new_zeros(shape + (total, group.shape[-1]))
            out[index, ..., : group.shape[-2], :] = group
        return out
