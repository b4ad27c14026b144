"""AMSER: the embedding model of Li & Zhang (2025), with its ablations.

``AMSER`` runs the AM-ResNet branch and the pretrained-encoder branch
(wav2vec2 in the paper) on the same
raw waveforms and fuses them into one utterance vector ``[batch, 1, D]``,
the shape SpeechBrain's ``EncoderClassifier`` expects from its
``embedding_model`` (``classify_batch`` then applies ``classifier`` and
squeezes dimension 1). In an inference hparams file the waveform goes in
unchanged: ``compute_features`` and ``mean_var_norm`` are
``amser_sb.lobes.Passthrough`` (``encode_batch`` calls the latter with
lengths). ``hparams/inference.yaml`` wraps ``AMSER`` (trained on fixed
segments) in ``amser_sb.lobes.UtteranceEncoder`` for whole utterances.

Every row of the paper's ablation table is a configuration:

* ResNet: ``mode="am_resnet"`` with
  ``AMResNet(use_mask=False, use_attention=False)``;
* M-ResNet: ``mode="am_resnet"`` with ``AMResNet(use_attention=False)``;
* AM-ResNet: ``mode="am_resnet"`` with ``AMResNet()``;
* AM-ResNet + wav2vec2, concatenation: ``mode="concat"``;
* AM-ResNet + wav2vec2 + cross-attention: ``mode="fusion"`` (default);
* and the SpeechBrain IEMOCAP recipe's baseline, mean-pooled encoder:
  ``mode="ssl"``.

Authors
 * amser-sb contributors
"""

import warnings

import torch

from amser_sb.lobes.fusion import ConcatFusion, masked_mean

MODES = ("fusion", "concat", "am_resnet", "ssl")

#: Old mode names still accepted (with a deprecation warning).
MODE_ALIASES = {"wav2vec2": "ssl"}


class AMSER(torch.nn.Module):
    """AM-ResNet + pretrained-encoder cross-feature fusion embedding model.

    Arguments
    ---------
    ssl : SpeechEncoder, optional
        The pretrained-encoder branch (``amser_sb.lobes.SSLBackbone``:
        wav2vec2, HuBERT, WavLM, Whisper, ...); not needed in
        ``"am_resnet"`` mode.
    am_resnet : AMResNet, optional
        The waveform branch; not needed in ``"ssl"`` mode.
    fusion : torch.nn.Module, optional
        ``CrossAttentionFusion`` (``"fusion"`` mode); in ``"concat"`` mode
        a ``ConcatFusion`` is built when None.
    mode : str
        ``"fusion"`` (default), ``"concat"``, ``"am_resnet"`` or
        ``"ssl"`` (the last two pool one branch over its valid frames).
    pooling : torch.nn.Module, optional
        How ``"ssl"`` mode pools the encoder features ``[batch, time,
        feat]`` with their lengths (e.g. ``StatsPooling``, the head of the
        default fusion, for an encoder-alone row with the same head);
        None: the mean over valid frames.
    compile_training : bool or dict
        ``torch.compile`` the AM-ResNet branch and the fusion for training
        (True, or a dict of ``torch.compile`` keyword arguments; default
        False). Training segments have one fixed shape, so they compile
        once (``dynamic=False`` unless given); in eval mode (whole,
        variable-length utterances) the same modules run eagerly. The
        compiled and eager modules share their parameters; checkpoints
        are unchanged. The encoder is left alone (SpeechBrain's
        ``--compile`` / ``compile_module_keys`` compile whole modules for
        every stage).

    Example
    -------
    >>> from amser_sb.lobes import (
    ...     AMResNet, CrossAttentionFusion, SSLBackbone, build_random_wav2vec2
    ... )
    >>> tmp = getfixture("tmp_path")
    >>> ssl = SSLBackbone(build_random_wav2vec2(tmp / "w2v"), str(tmp))
    >>> am = AMResNet()
    >>> fusion = CrossAttentionFusion(am.out_dim, ssl.out_dim)
    >>> model = AMSER(ssl, am, fusion).eval()
    >>> wavs = 0.1 * torch.randn(2, 16000)
    >>> model(wavs, torch.tensor([1.0, 0.75])).shape, model.out_dim
    (torch.Size([2, 1, 512]), 512)
    >>> AMSER(am_resnet=am, mode="am_resnet").eval()(wavs).shape
    torch.Size([2, 1, 64])
    """

    def __init__(
        self,
        ssl=None,
        am_resnet=None,
        fusion=None,
        mode="fusion",
        compile_training=False,
        pooling=None,
    ):
        super().__init__()
        if mode in MODE_ALIASES:
            warnings.warn(
                f"mode {mode!r} is deprecated: use {MODE_ALIASES[mode]!r}",
                DeprecationWarning,
                stacklevel=2,
            )
            mode = MODE_ALIASES[mode]
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        needs_ssl = mode != "am_resnet"
        needs_am = mode != "ssl"
        if needs_ssl and ssl is None:
            raise ValueError(f"mode {mode!r} needs an ssl (encoder) branch")
        if needs_am and am_resnet is None:
            raise ValueError(f"mode {mode!r} needs an am_resnet branch")
        if mode == "concat" and fusion is None:
            fusion = ConcatFusion(am_resnet.out_dim, ssl.out_dim)
        if mode in ("fusion", "concat") and fusion is None:
            raise ValueError(
                "mode 'fusion' needs a fusion module, e.g. "
                "CrossAttentionFusion(am_dim, ssl_dim)"
            )
        if mode in ("am_resnet", "ssl"):
            fusion = None
        self.mode = mode
        self.ssl = ssl if needs_ssl else None
        self.am_resnet = am_resnet if needs_am else None
        self.fusion = fusion
        self.pooling = pooling if mode == "ssl" else None
        if fusion is not None:
            self.out_dim = fusion.out_dim
        elif self.pooling is not None:
            self.out_dim = self.pooling.out_dim
        elif mode == "am_resnet":
            self.out_dim = am_resnet.out_dim
        else:
            self.out_dim = ssl.out_dim
        # Not submodules (their parameters are the eager modules'): a
        # plain dict keeps them out of state_dict and .modules().
        self._compiled = {}
        if compile_training:
            self.compile_training(
                **(compile_training if isinstance(compile_training, dict)
                   else {})
            )

    def compile_training(self, **options):
        """Compile the AM-ResNet branch and the fusion for training steps.

        Arguments
        ---------
        **options
            ``torch.compile`` keyword arguments (default ``dynamic=False``:
            training segments have one shape). Inductor's
            ``options={"layout_optimization": False}`` keeps AM-ResNet's
            convolutions in its own layout (the ``channels_last`` hparam):
            about 100 operators fewer per step on CPU (the weight
            gradients then come back in the weights' layout, with no
            conversions), but a slower step there (channels-last is
            oneDNN's fast layout); inductor's default is left alone.

        Example
        -------
        >>> from amser_sb.lobes import AMResNet
        >>> model = AMSER(am_resnet=AMResNet(), mode="am_resnet")
        >>> model.compile_training()
        >>> sorted(model._compiled)
        ['am_resnet']
        """
        options.setdefault("dynamic", False)
        for name in ("am_resnet", "fusion"):
            module = getattr(self, name)
            if module is not None:
                self._compiled[name] = torch.compile(module, **options)

    def _branch(self, name):
        """The module ``name``, compiled when training and compiled."""
        if self.training and name in self._compiled:
            return self._compiled[name]
        return getattr(self, name)

    def ssl_features(self, wavs, wav_lens, ssl_feats=None, ssl_lens=None):
        """Encoder features, from the waveforms or from cached outputs.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` waveforms.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.
        ssl_feats : torch.Tensor, optional
            Precomputed ``SSLBackbone.extract_frozen`` output, ``[batch, frames,
            feat]`` (or ``[batch, layers, frames, feat]`` with layer
            weights).
        ssl_lens : torch.Tensor, optional
            Their relative lengths; None derives them from ``wav_lens``.

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, feat]``.
        lens : torch.Tensor
            ``[batch]`` relative lengths in frames.
        """
        if ssl_feats is None:
            return self.ssl(wavs, wav_lens)
        if ssl_lens is None:
            frames = ssl_feats.shape[-2]
            if wavs is None:
                ssl_lens = torch.ones(
                    ssl_feats.shape[0], device=ssl_feats.device
                )
            else:
                n = torch.round(wav_lens * wavs.shape[1]).long()
                counts = self.ssl.frame_counts(n).clamp(1, frames)
                ssl_lens = counts.to(ssl_feats.dtype) / frames
        return self.ssl.from_cache(ssl_feats, ssl_lens), ssl_lens

    def am_features(
        self, wavs, wav_lens, mask=None, am_feats=None, am_lens=None
    ):
        """AM-ResNet features, from the waveforms or given (cached).

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` waveforms.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.
        mask : torch.Tensor, optional
            Voiced 0/1 mask ``[batch, time]``; None runs MADD.
        am_feats : torch.Tensor, optional
            Precomputed ``AMResNet`` output ``[batch, frames, channels]``
            (e.g. a frozen stage-1 AM-ResNet's, from a cache).
        am_lens : torch.Tensor, optional
            Their relative lengths; None derives them from ``wav_lens``.

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, channels]``.
        lens : torch.Tensor
            ``[batch]`` relative lengths in frames.
        """
        if am_feats is None:
            return self._branch("am_resnet")(wavs, wav_lens, mask)
        if am_lens is None:
            frames = am_feats.shape[1]
            n = torch.round(wav_lens * wavs.shape[1]).long()
            counts = self.am_resnet.output_lengths(n).clamp(1, frames)
            am_lens = counts.to(am_feats.dtype) / frames
        return am_feats, am_lens

    def forward(
        self,
        wavs,
        wav_lens=None,
        mask=None,
        ssl_feats=None,
        ssl_lens=None,
        am_feats=None,
        am_lens=None,
    ):
        """Utterance embeddings.

        Arguments
        ---------
        wavs : torch.Tensor
            Raw 16 kHz waveforms ``[batch, time]`` (may be None in
            ``"ssl"`` mode when ``ssl_feats`` is given).
        wav_lens : torch.Tensor, optional
            Relative lengths ``[batch]``; None means all full length.
        mask : torch.Tensor, optional
            Voiced 0/1 mask ``[batch, time]`` for AM-ResNet; None runs MADD.
        ssl_feats : torch.Tensor, optional
            Precomputed (cached) backbone outputs, see ``ssl_features``.
        ssl_lens : torch.Tensor, optional
            Relative lengths of ``ssl_feats``.
        am_feats : torch.Tensor, optional
            Precomputed (cached) AM-ResNet outputs, see ``am_features``.
        am_lens : torch.Tensor, optional
            Relative lengths of ``am_feats``.

        Returns
        -------
        torch.Tensor
            ``[batch, 1, out_dim]``.
        """
        if wavs is not None:
            if wavs.dim() == 3 and wavs.shape[-1] == 1:
                wavs = wavs.squeeze(-1)
            if wavs.dim() != 2:
                raise ValueError(
                    f"AMSER expects waveforms [batch, time], got "
                    f"{tuple(wavs.shape)} (mix multi-channel audio to mono)"
                )
            if wav_lens is None:
                wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        elif self.mode != "ssl" or ssl_feats is None:
            raise ValueError(
                "wavs may be None only in 'ssl' mode with ssl_feats"
            )
        if self.mode == "am_resnet":
            feats, lens = self.am_features(
                wavs, wav_lens, mask, am_feats, am_lens
            )
            return masked_mean(feats, lens).unsqueeze(1)
        w2v, w2v_lens = self.ssl_features(wavs, wav_lens, ssl_feats, ssl_lens)
        if self.mode == "ssl":
            if self.pooling is not None:
                return self.pooling(w2v, w2v_lens).unsqueeze(1)
            return masked_mean(w2v, w2v_lens).unsqueeze(1)
        am, am_lens = self.am_features(wavs, wav_lens, mask, am_feats, am_lens)
        fusion = self._branch("fusion")
        return fusion(am, am_lens, w2v, w2v_lens).unsqueeze(1)
