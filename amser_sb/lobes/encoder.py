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
* ``finetune_layers``: with ``freeze=False``, ``"all"`` fine-tunes the
  whole network, ``k`` only its top ``k`` transformer layers (and the norm
  after the last one): everything below has no gradients and stays in
  eval mode. ``extract_frozen`` is then the frozen lower part (what the
  feature cache stores: hidden states ``0 .. L-k``), ``run_top`` the live
  top ``k`` layers on it, ``from_cache`` both steps after the cache
  (``cacheable`` says whether a family supports it);
* LayerDrop: with layer weights every layer runs on every step (see
  ``drop_layer``), so ``extract`` always gives ``n_layers`` states;
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


import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask

from amser_sb.core.lengths import lengths_to_samples
from amser_sb.lobes.encoder_registry import ENCODERS

class EncoderOptionError(ValueError):
    """An encoder option (e.g. ``finetune_layers``) the encoder cannot take."""


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
    layer_weights : bool or str
        True: a learned softmax-weighted sum of all hidden states (SUPERB)
        instead of the last one; ``"concat"``: all hidden states side by
        side (``out_dim`` times ``n_layers`` features a frame, each state
        layer-normed with ``output_norm``), so that a head sees every
        layer (what a probe on the concatenated layers sees).
    output_norm : bool
        Layer-norm each output frame over its features (no affine); with
        ``layer_weights="concat"`` each hidden state on its own.
    finetune_layers : int or str or None
        With ``freeze=False``: ``"all"`` (the whole network), ``k`` (the
        top ``k`` transformer layers only), 0 or None (frozen, as
        ``freeze=True``).

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
        finetune_layers="all",
    ):
        super().__init__()
        if layer_weights not in (True, False, "concat"):
            raise EncoderOptionError(
                f"layer_weights must be true, false or concat, got "
                f"{layer_weights!r}"
            )
        self.layer_concat = layer_weights == "concat"
        self.n_layers = int(n_layers)
        self.out_dim = int(out_dim) * (self.n_layers if self.layer_concat
                                       else 1)
        self.freeze = bool(freeze)
        self.output_norm = bool(output_norm)
        self.top_layers = None  # fine-tuned top layers; None: all of it
        if not self.freeze:
            self.top_layers = self._parse_finetune_layers(finetune_layers)
            if self.top_layers == 0:
                self.freeze, self.top_layers = True, None
        if layer_weights:
            # with "concat": all hidden states are returned and none is
            # weighted (the parameter stays 0 and is not trained)
            self.layer_weights = torch.nn.Parameter(
                torch.zeros(self.n_layers),
                requires_grad=not self.layer_concat,
            )
        else:
            self.register_parameter("layer_weights", None)

    @property
    def layer_weights_option(self):
        """The ``layer_weights`` argument that rebuilds this encoder."""
        if self.layer_weights is None:
            return False
        return "concat" if self.layer_concat else True

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

    def transformer_layers(self):
        """The transformer layers of ``backbone()`` (a ``ModuleList``);
        needed for ``finetune_layers`` other than ``"all"``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support partial fine-tuning"
        )

    def final_norm(self):
        """The norm applied after the last layer, or None."""
        return None

    #: Whether ``extract_frozen``/``run_top`` split a partly fine-tuned
    #: encoder (so that its lower part can be cached).
    splits_partial = False

    def lower_states(self, wavs, wav_lens, stop):
        """Hidden states ``0 .. stop`` and real frames (partial families).

        Returns ``(hidden [batch, stop + 1, frames, feat] (padded frames
        0), frames [batch] long)``."""
        raise NotImplementedError

    def top_states(self, hidden, frames, start):
        """Hidden states ``start + 1 .. L`` from hidden state ``start``
        (``[batch, frames, feat]``), as a list (partial families)."""
        raise NotImplementedError

    # ------------------------------------------------------- shared parts ---
    def _parse_finetune_layers(self, value):
        """``finetune_layers`` as None (all) or a layer count 0..L."""
        layers = self.n_layers - 1
        if value is None:
            return 0
        if isinstance(value, str) and value.strip().lower() == "all":
            return None
        try:
            count = int(value)
        except (TypeError, ValueError):
            count = -1
        if isinstance(value, bool) or not 0 <= count <= layers \
                or str(count) != str(value).strip():
            raise EncoderOptionError(
                f"finetune_layers (ssl_finetune_layers) must be 'all', null "
                f"or a number of top layers from 0 to {layers} (this "
                f"encoder has {layers} layers), got {value!r}"
            )
        return count

    @property
    def partial(self):
        """True when only the top ``top_layers`` layers are fine-tuned."""
        return self.top_layers is not None

    @property
    def frozen_layers(self):
        """Transformer layers below the fine-tuned top (0 unless partial)."""
        return self.n_layers - 1 - self.top_layers if self.partial else 0

    def top_modules(self):
        """Modules fine-tuned by a partial encoder (top layers, final
        norm)."""
        if not self.partial:
            return []
        layers = list(self.transformer_layers())
        modules = layers[len(layers) - self.top_layers:]
        norm = self.final_norm()
        return modules + ([norm] if norm is not None else [])

    def apply_finetuning(self):
        """Set ``requires_grad`` from ``freeze``/``finetune_layers``.

        Subclasses call it at the end of ``__init__``: frozen, no backbone
        parameter trains; partial, only those of ``top_modules()``; full,
        the family's own choice stays (e.g. ``freeze_feature_extractor``).
        """
        if self.freeze or self.partial:
            for param in self.backbone().parameters():
                param.requires_grad = False
        for module in self.top_modules():
            for param in module.parameters():
                param.requires_grad = True
        self.train(self.training)

    @property
    def cacheable(self):
        """Whether ``extract_frozen`` may be cached (frozen, or partial in
        a family that splits)."""
        return self.freeze or (self.partial and self.splits_partial)

    def drop_layer(self, index, layer):
        """LayerDrop: whether to skip transformer layer ``index`` now.

        With learned layer weights no layer is ever skipped: the weighted
        sum needs every hidden state on every step (a skipped layer would
        give the weight of state ``l`` the features of state ``l - 1`` on
        random steps, and no state at all in Hugging Face's own loop).
        Without them, a layer in train mode is skipped with the
        configuration's LayerDrop probability (``layerdrop``,
        ``encoder_layerdrop``), as the model's own ``forward`` does.

        Arguments
        ---------
        index : int
            The layer's index.
        layer : torch.nn.Module
            The layer.

        Returns
        -------
        bool
        """
        if self.layer_weights is not None or not layer.training:
            return False
        config = self.backbone().config
        rate = getattr(config, "layerdrop",
                       getattr(config, "encoder_layerdrop", 0.0))
        return bool(rate) and float(torch.rand([])) < float(rate)

    def extract_frozen(self, wavs, wav_lens=None):
        """The frozen part of ``extract``: what the feature cache stores.

        Frozen: ``extract`` itself. Partial (``splits_partial``): hidden
        states ``0 .. L-k`` (``[batch, L-k+1, frames, feat]``) with layer
        weights, else state ``L-k`` alone (``[batch, frames, feat]``),
        padded frames 0, computed without gradients.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        hidden : torch.Tensor
        lens : torch.Tensor
            Relative lengths in frames ``[batch]``.
        """
        if not (self.partial and self.splits_partial):
            return self.extract(wavs, wav_lens)
        with torch.no_grad():
            hidden, frames = self.lower_states(
                wavs, wav_lens, self.frozen_layers
            )
        if self.layer_weights is None:
            hidden = hidden[:, -1]
        return hidden, frames.to(hidden.dtype) / hidden.shape[-2]

    def run_top(self, lower, lens):
        """Run the fine-tuned top layers on ``extract_frozen`` output.

        Arguments
        ---------
        lower : torch.Tensor
            ``extract_frozen`` output (possibly from the cache, padded).
        lens : torch.Tensor
            Relative lengths in frames ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``extract`` form: ``[batch, L+1, frames, feat]`` with layer
            weights, else ``[batch, frames, feat]``; padded frames 0.
        """
        if not (self.partial and self.splits_partial):
            return lower
        total = lower.shape[-2]
        frames = torch.round(lens * total).long().clamp(1, total)
        below = list(lower.unbind(1)) if lower.dim() == 4 else [lower]
        top = self.top_states(below[-1], frames, self.frozen_layers)
        valid = length_to_mask(frames, total, device=lower.device)
        valid = valid.to(lower.dtype).unsqueeze(-1)
        if self.layer_weights is None:
            return top[-1] * valid
        return torch.stack(below + top, dim=1) * valid.unsqueeze(1)

    def from_cache(self, cached, lens):
        """Features from cached ``extract_frozen`` output.

        Arguments
        ---------
        cached : torch.Tensor
            ``extract_frozen`` output (padded batch).
        lens : torch.Tensor
            Relative lengths in frames ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, out_dim]`` (``combine`` of ``run_top``).
        """
        return self.combine(self.run_top(cached, lens))

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
        """Set train/eval mode; a frozen encoder (or the frozen part of a
        partly fine-tuned one) always stays in eval mode.

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
        if self.freeze or self.partial:
            self.backbone().eval()
        for module in self.top_modules():
            module.train(mode)
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
        identity = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "options": options,
            "all_hiddens": self.layer_weights is not None,
        }
        if self.partial:
            # the cache holds the states below the fine-tuned layers; only
            # the frozen weights determine them
            identity["frozen_layers"] = self.frozen_layers
            trained = {id(p) for m in self.top_modules()
                       for p in m.parameters()}
            identity["frozen_state"] = {
                name: tensor
                for name, tensor in self.backbone().state_dict(
                    keep_vars=True).items()
                if id(tensor) not in trained
            }
        return identity

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
                got = hidden.shape[1] if hidden.dim() == 4 else "no"
                raise ValueError(
                    f"with layer_weights the encoder output must be [batch, "
                    f"{self.n_layers}, frames, feat], got "
                    f"{tuple(hidden.shape)}: {got} hidden states where "
                    f"{type(self).__name__} has {self.n_layers} (the "
                    "embedding and every layer); an encoder whose layers "
                    "are skipped in training (LayerDrop) or that returns "
                    "only some hidden states cannot feed layer weights"
                )
            if self.layer_concat:
                if self.output_norm:
                    hidden = F.layer_norm(hidden, hidden.shape[-1:])
                batch, layers, frames, feat = hidden.shape
                return hidden.permute(0, 2, 1, 3).reshape(
                    batch, frames, layers * feat
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
