"""The pretrained speech encoder branch: one interface, one registry.

Li & Zhang (2025) feed the waveform to wav2vec 2.0; any pretrained speech
encoder can take that place. ``SpeechEncoder`` writes down what the rest of
amser-sb needs of one (``AMSER``, the Brain, the feature cache, export,
inference):

* ``extract(wavs, wav_lens)``: the encoder run, the part a frozen encoder's
  feature cache stores: ``[batch, frames, feat]``, or ``[batch, layers,
  frames, feat]`` with layer weights; padded frames are 0;
* ``combine(hidden)``: learned softmax layer weights and the output norm
  (cheap, trained, never cached);
* ``forward(wavs, wav_lens) -> (feats [batch, frames, out_dim], lens)``;
* ``frame_counts(n_samples)``: real output frames of waveforms of
  ``n_samples`` samples (pooling and attention use only these);
* ``out_dim``, ``n_layers`` (hidden states with layer weights),
  ``min_samples`` (fewest samples that give one frame);
* ``freeze`` (a frozen encoder stays in eval mode and gets no gradients),
  ``encoder_parameters()`` (what the optimiser's ``lr_ssl`` group trains);
* ``cache_identity()``: what determines the cached output;
* ``export_options()``: keyword arguments of ``SSLBackbone`` that rebuild
  the encoder without files or network (``config=`` the Hugging Face
  configuration), so that an exported model loads offline.

A family of encoders is one subclass that names the Hugging Face
``model_type`` values it serves; ``SSLBackbone(source)`` reads the
``model_type`` of the source's ``config.json`` and builds the right class.
Adding a backbone is one new class (and one import in
``amser_sb/lobes/__init__.py``)::

    class MyEncoder(SpeechEncoder):
        model_types = ("my_model",)
        ...

Authors
 * amser-sb contributors
"""

import json
import os

import torch
import torch.nn.functional as F

from amser_sb.core.lengths import lengths_to_samples
from amser_sb.core.errors import AmserUserError

#: model_type -> SpeechEncoder subclass (filled by ``__init_subclass__``).
ENCODERS = {}


class SpeechEncoder(torch.nn.Module):
    """Base class of pretrained speech encoder branches.

    Subclasses set ``model_types``, build their model in ``__init__``
    (calling ``super().__init__`` with the sizes), and implement
    ``backbone``, ``extract``, ``frame_counts`` and ``export_options``.

    Arguments
    ---------
    out_dim : int
        Feature size of every hidden state.
    n_layers : int
        Number of hidden states (the input embedding plus every layer).
    freeze : bool
        Fixed feature extractor (eval mode, no gradients) if True.
    layer_weights : bool
        Learned softmax-weighted sum of all hidden states (SUPERB) instead
        of the last one.
    output_norm : bool
        Layer-norm each output frame over its features (no affine).

    Example
    -------
    >>> class Frames(SpeechEncoder):
    ...     model_types = ()  # a toy: 2 hidden states of 4 values a frame
    ...     def __init__(self):
    ...         super().__init__(out_dim=4, n_layers=2, layer_weights=True)
    ...     def backbone(self):
    ...         return torch.nn.Identity()
    ...     def frame_counts(self, n_samples):
    ...         return n_samples // 4
    ...     def extract(self, wavs, wav_lens=None):
    ...         frames = wavs.view(wavs.shape[0], -1, 4)
    ...         hidden = torch.stack([frames, 2 * frames], dim=1)
    ...         return hidden, torch.ones(wavs.shape[0])
    ...     def export_options(self):
    ...         return {}
    >>> feats, lens = Frames()(torch.ones(3, 16))
    >>> feats.shape, float(feats[0, 0, 0].detach())  # equal weights: 1.5
    (torch.Size([3, 4, 4]), 1.5)
    """

    #: Hugging Face ``model_type`` values this class serves.
    model_types = ()
    #: Fewest waveform samples that give one output frame.
    min_samples = 1
    #: Run utterances one at a time (see ``Wav2Vec2Encoder``); the feature
    #: cache sets it to "never" while it batches equal lengths.
    per_utterance = "never"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for model_type in cls.model_types:
            ENCODERS[model_type] = cls

    def __init__(
        self,
        out_dim,
        n_layers,
        freeze=True,
        layer_weights=False,
        output_norm=False,
    ):
        super().__init__()
        self.out_dim = int(out_dim)
        self.n_layers = int(n_layers)
        self.freeze = bool(freeze)
        self.output_norm = bool(output_norm)
        if layer_weights:
            self.layer_weights = torch.nn.Parameter(torch.zeros(self.n_layers))
        else:
            self.register_parameter("layer_weights", None)

    # ------------------------------------------------ what subclasses give ---
    def backbone(self):
        """The pretrained network (a ``torch.nn.Module``) itself."""
        raise NotImplementedError

    def extract(self, wavs, wav_lens=None):
        """Run the encoder: ``(hidden, lens)``, see the module docstring."""
        raise NotImplementedError

    def frame_counts(self, n_samples):
        """Real output frames ``[batch]`` (long) of ``n_samples`` samples."""
        raise NotImplementedError

    def export_options(self):
        """``SSLBackbone`` keyword arguments rebuilding this encoder offline."""
        raise NotImplementedError

    # ------------------------------------------------------- shared parts ---
    def sample_counts(self, wavs, wav_lens=None):
        """Absolute lengths of a batch, each at least ``min_samples``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``; None means all full length.

        Returns
        -------
        torch.Tensor
            ``[batch]`` (long) sample counts.
        """
        batch, time = wavs.shape
        if wav_lens is None:
            wav_lens = torch.ones(batch, device=wavs.device)
        n = lengths_to_samples(wav_lens, time)
        if int(n.min()) < self.min_samples:
            raise ValueError(
                f"a waveform has {int(n.min())} samples, fewer than one "
                f"output frame of {type(self).__name__} ({self.min_samples} "
                "samples): the audio is too short for this encoder; use "
                f"clips of at least {self.min_samples} samples"
            )
        return n

    def encoder_parameters(self):
        """Trainable parameters of the pretrained network (``lr_ssl``).

        Returns
        -------
        list of torch.nn.Parameter
            Empty for a frozen encoder. Layer weights are not included:
            they belong with the task parameters (``lr``).
        """
        return [p for p in self.backbone().parameters() if p.requires_grad]

    def train(self, mode=True):
        """Set train/eval mode; a frozen encoder always stays in eval mode.

        Arguments
        ---------
        mode : bool
            Train mode if True.

        Returns
        -------
        SpeechEncoder
            self
        """
        super().train(mode)
        if self.freeze:
            self.backbone().eval()
        return self

    def cache_identity(self):
        """What determines ``extract``'s output, as a JSON-able dict.

        Returns
        -------
        dict
            Class, rebuild options (the configuration included) and whether
            all hidden states are returned; the feature cache adds a
            fingerprint of ``backbone()``'s weights.
        """
        options = {
            key: value
            for key, value in self.export_options().items()
            if key not in ("freeze", "layer_weights", "output_norm")
        }
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "options": options,
            "all_hiddens": self.layer_weights is not None,
        }

    def combine(self, hidden):
        """Turn ``extract`` outputs into features (layer weights, norm).

        Arguments
        ---------
        hidden : torch.Tensor
            ``[batch, frames, feat]``, or ``[batch, layers, frames, feat]``
            with ``layer_weights``.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, feat]``.
        """
        if self.layer_weights is not None:
            if hidden.dim() != 4 or hidden.shape[1] != self.n_layers:
                raise ValueError(
                    f"with layer_weights the encoder output must be [batch, "
                    f"{self.n_layers}, frames, feat], got "
                    f"{tuple(hidden.shape)}: when fine-tuning "
                    "(--freeze_ssl=False) the encoder skipped layers "
                    "(LayerDrop: set layerdrop to 0 in its config.json); "
                    "with a frozen encoder, delete the feature cache "
                    "(--feature_cache_folder) so it is rebuilt with all "
                    "hidden layers"
                )
            w = torch.softmax(self.layer_weights, dim=0)
            hidden = torch.einsum("l,bltc->btc", w.to(hidden.dtype), hidden)
        elif hidden.dim() != 3:
            raise ValueError(
                "without layer_weights the encoder output must be [batch, "
                f"frames, feat], got {tuple(hidden.shape)}"
            )
        if self.output_norm:
            hidden = F.layer_norm(hidden, hidden.shape[-1:])
        return hidden

    def forward(self, wavs, wav_lens=None):
        """Features of a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Raw 16 kHz waveforms ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``; None means all full length.

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, out_dim]``.
        lens : torch.Tensor
            Relative lengths in frames ``[batch]``.
        """
        hidden, lens = self.extract(wavs, wav_lens)
        return self.combine(hidden), lens


#: Configuration entries that name where a model came from, not what it is.
VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version",
                        "_commit_hash")


def hf_config_dict(config):
    """A Hugging Face configuration as a plain dict, without its origin.

    Arguments
    ---------
    config : transformers.PretrainedConfig

    Returns
    -------
    dict
        ``config.to_dict()`` less ``_name_or_path`` and version entries
        (they do not change the model; they would make two copies of one
        model look different).

    Example
    -------
    >>> from transformers import WhisperConfig
    >>> d = hf_config_dict(WhisperConfig(d_model=64))
    >>> d["model_type"], d["d_model"], "_name_or_path" in d
    ('whisper', 64, False)
    """
    return {
        key: value
        for key, value in config.to_dict().items()
        if key not in VOLATILE_CONFIG_KEYS
    }


class EncoderSourceError(AmserUserError, ValueError):
    """An encoder source (hub id, folder, configuration) that cannot serve."""


def read_model_type(source=None, save_path=None, config=None):
    """The Hugging Face ``model_type`` of an encoder source.

    Arguments
    ---------
    source : str, optional
        Local folder (its ``config.json`` is read) or hub id (its
        configuration is fetched with ``AutoConfig``, cached in
        ``save_path``).
    save_path : str, optional
        Download cache of hub configurations.
    config : dict, optional
        A configuration dict instead of a source.

    Returns
    -------
    str

    Example
    -------
    >>> read_model_type(config={"model_type": "whisper", "d_model": 512})
    'whisper'
    """
    if config is not None:
        if "model_type" not in config:
            raise EncoderSourceError(
                "the encoder configuration has no 'model_type' (expected "
                f"one of {sorted(ENCODERS)}): re-export the model"
            )
        return str(config["model_type"])
    if source is None:
        raise EncoderSourceError(
            "SSLBackbone needs a source (hub id or local folder) or a config "
            "(a Hugging Face config dict)"
        )
    folder = os.path.expanduser(str(source))
    if os.path.isdir(folder):
        path = os.path.join(folder, "config.json")
        if not os.path.isfile(path):
            raise EncoderSourceError(
                f"{folder} has no config.json: pass a Hugging Face model "
                "folder (config.json, weights, preprocessor_config.json), "
                "e.g. one written by `amser-sb fetch-encoder whisper-base "
                "DIR`"
            )
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as err:
            raise EncoderSourceError(
                f"{path} is not a readable JSON configuration ({err}): "
                "re-download or re-convert the model"
            ) from err
        if "model_type" not in data:
            raise EncoderSourceError(
                f"{path} has no 'model_type': not a Hugging Face model "
                "configuration"
            )
        return str(data["model_type"])
    from transformers import AutoConfig

    return str(AutoConfig.from_pretrained(source, cache_dir=save_path)
               .model_type)


def encoder_class(model_type):
    """The ``SpeechEncoder`` subclass serving a ``model_type``.

    Arguments
    ---------
    model_type : str
        E.g. ``"wav2vec2"``, ``"hubert"``, ``"wavlm"``, ``"whisper"``.

    Returns
    -------
    type

    Example
    -------
    >>> encoder_class("hubert").__name__
    'Wav2Vec2Encoder'
    >>> encoder_class("whisper").__name__
    'WhisperEncoder'
    """
    # the families register themselves when their modules are imported
    import amser_sb.lobes  # noqa: F401

    if model_type not in ENCODERS:
        raise EncoderSourceError(
            f"no encoder class serves model_type {model_type!r}; known: "
            f"{', '.join(sorted(ENCODERS))} (a new family is one "
            "SpeechEncoder subclass, see amser_sb/lobes/encoder.py)"
        )
    return ENCODERS[model_type]


class SSLBackbone:
    """The encoder branch for a hub id, a local folder or a configuration.

    The family (``Wav2Vec2Encoder`` for wav2vec2 / HuBERT / WavLM /
    data2vec-audio, ``WhisperEncoder`` for Whisper, ...) follows the
    ``model_type`` of the source's configuration. This is the name the
    hparams files use (``!new:amser_sb.lobes.SSLBackbone``): a class whose
    constructor returns an instance of the family's class.

    Arguments
    ---------
    source : str, optional
        Hugging Face hub id or local folder.
    save_path : str
        Download cache of hub models.
    config : dict, optional
        Hugging Face configuration: the encoder is built from it with random
        weights, reading nothing (exported models; weights come next from
        their checkpoint).
    **kwargs
        Options of the family's class (``freeze``, ``layer_weights``, ...).

    Returns
    -------
    SpeechEncoder

    Example
    -------
    >>> from amser_sb.lobes import build_random_wav2vec2
    >>> tmp = getfixture("tmp_path")
    >>> ssl = SSLBackbone(build_random_wav2vec2(tmp / "w2v"), str(tmp))
    >>> type(ssl).__name__, ssl.out_dim
    ('Wav2Vec2Encoder', 32)
    """

    def __new__(cls, source=None, save_path="pretrained_models",
                config=None, **kwargs):
        model_type = read_model_type(source, save_path, config)
        family = encoder_class(model_type)
        return family(
            source=source, save_path=save_path, config=config, **kwargs
        )


def encoder_from_options(options):
    """``SSLBackbone(**options)``: the form exported hparams files use.

    Arguments
    ---------
    options : dict
        ``SpeechEncoder.export_options()`` of the trained encoder.

    Returns
    -------
    SpeechEncoder

    Example
    -------
    >>> from amser_sb.lobes.whisper import tiny_whisper_config
    >>> from amser_sb.lobes.encoder import hf_config_dict
    >>> enc = encoder_from_options(
    ...     {"config": hf_config_dict(tiny_whisper_config())}
    ... )
    >>> type(enc).__name__, enc.out_dim
    ('WhisperEncoder', 32)
    """
    return SSLBackbone(**dict(options))
