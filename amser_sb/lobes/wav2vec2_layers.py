"""The transformer stack of wav2vec2-family models, one layer at a time.

Hugging Face's ``Wav2Vec2Model`` (and HuBERT, WavLM, data2vec-audio) runs
its layers inside one ``forward``: it applies LayerDrop there (in train
mode a layer is skipped at random, and transformers 5 then returns no
hidden state for it, so the number of hidden states changes from one call
to the next), and it cannot start at a given layer. ``Wav2Vec2Encoder``
needs both: every hidden state on every step (learned layer weights), and
the top ``k`` layers run on their own from a cached input (partial
fine-tuning). ``Wav2Vec2Stack`` runs the same modules in the same order as
the model's own ``forward``:

* ``embed``: convolutional feature encoder, feature projection,
  SpecAugment (if the model's configuration asks for it), positional
  convolution, the pre-layer norm of post-norm models, dropout; gives
  hidden state 0 (what ``output_hidden_states`` calls the first one);
* ``layers(hidden, frames, start)``: layers ``start..L-1``, each with the
  padding mask of the real frames; the states are those of
  ``output_hidden_states`` (transformers 5: the last one before the final
  layer norm of pre-norm, ``do_stable_layer_norm``, models);
* ``output(hidden)``: that final norm (``last_hidden_state``).

LayerDrop is the caller's choice (``drop``): ``Wav2Vec2Encoder`` turns it
off whenever layer weights combine every hidden state (see its docstring).
The tests check the states against ``output_hidden_states`` of the model's
own ``forward`` in eval mode, for every family.

Authors
 * amser-sb contributors
"""

import torch
from speechbrain.dataio.dataio import length_to_mask


class Wav2Vec2Stack:
    """Layer-by-layer runner of a Hugging Face wav2vec2-family model.

    Arguments
    ---------
    model : transformers.PreTrainedModel
        A ``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel`` or
        ``Data2VecAudioModel``.

    Example
    -------
    >>> import torch
    >>> from transformers import AutoConfig, AutoModel
    >>> config = AutoConfig.for_model(
    ...     "hubert", hidden_size=16, num_hidden_layers=2,
    ...     num_attention_heads=2, intermediate_size=32, conv_dim=(16, 16),
    ...     conv_kernel=(10, 8), conv_stride=(5, 64),
    ...     num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    >>> stack = Wav2Vec2Stack(AutoModel.from_config(config).eval())
    >>> frames = torch.tensor([50, 30])
    >>> hidden = stack.embed(torch.randn(2, 16000), frames)
    >>> states = stack.layers(hidden, frames)
    >>> hidden.shape, len(states), states[-1].shape
    (torch.Size([2, 50, 16]), 2, torch.Size([2, 50, 16]))
    """

    def __init__(self, model, extractor_float32=False):
        self.model = model
        self.extractor_float32 = extractor_float32
        self.config = model.config
        self.encoder = model.encoder
        self.pre_norm = bool(getattr(self.config, "do_stable_layer_norm",
                                     False))
        self.relative_bias = self.config.model_type == "wavlm"

    @property
    def n_layers(self):
        """Number of transformer layers."""
        return len(self.encoder.layers)

    def final_norm(self):
        """The norm after the last layer (pre-norm models), or None."""
        return self.encoder.layer_norm if self.pre_norm else None

    def embed(self, wavs, frames):
        """Hidden state 0 of a batch of (normalised) waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]``.
        frames : torch.Tensor
            ``[batch]`` (long) real frames of each waveform.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, feat]``: the input of layer 0.
        """
        model, enc = self.model, self.encoder
        device = wavs.device.type
        if self.extractor_float32 and torch.is_autocast_enabled(device):
            # cuDNN's bf16/fp16 kernels for these long 1-D convolutions
            # are slower than float32 (TF32) ones: the front end in float32
            with torch.autocast(device, enabled=False):
                feats = model.feature_extractor(wavs.float())
        else:
            feats = model.feature_extractor(wavs)
        feats = feats.transpose(1, 2)
        mask = length_to_mask(frames, feats.shape[1], device=wavs.device)
        mask = mask.bool()
        hidden = model.feature_projection(feats)
        if isinstance(hidden, tuple):  # wav2vec2 also returns the norm
            hidden = hidden[0]
        hidden = model._mask_hidden_states(hidden, attention_mask=mask)
        hidden = hidden.masked_fill(~mask.unsqueeze(-1), 0.0)
        hidden = hidden + enc.pos_conv_embed(hidden)
        if not self.pre_norm:
            hidden = enc.layer_norm(hidden)
        return enc.dropout(hidden)

    def _mask(self, hidden, frames):
        """The attention mask the layers of this family take."""
        valid = length_to_mask(frames, hidden.shape[1], device=hidden.device)
        valid = valid.bool()
        if self.relative_bias:  # WavLM: the 0/1 padding mask itself
            return valid
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=valid
        )

    def _position_bias(self, hidden):
        """WavLM's relative position bias (layer 0 computes it)."""
        attention = self.encoder.layers[0].attention
        batch, time = hidden.shape[:2]
        bias = attention.compute_bias(time, time)
        return (
            bias.unsqueeze(0)
            .repeat(batch, 1, 1, 1)
            .view(batch * attention.num_heads, time, time)
        )

    def layers(self, hidden, frames, start=0, stop=None, drop=None):
        """Run layers ``start, ..., stop - 1`` on their input.

        Arguments
        ---------
        hidden : torch.Tensor
            ``[batch, frames, feat]``: the input of layer ``start`` (hidden
            state ``start``).
        frames : torch.Tensor
            ``[batch]`` (long) real frames; the others are masked out of
            the attention.
        start : int
            First layer to run.
        stop : int, optional
            Layer to stop before; None: run to the last one.
        drop : callable, optional
            ``drop(index, layer) -> bool``: skip that layer this call
            (LayerDrop); its state is then its input.

        Returns
        -------
        list of torch.Tensor
            Hidden states ``start + 1, ..., stop`` (``[batch, frames,
            feat]`` each), as ``output_hidden_states`` gives them.
        """
        stop = self.n_layers if stop is None else int(stop)
        mask = self._mask(hidden, frames)
        extra = {}
        if self.relative_bias and start < stop:
            extra["position_bias"] = self._position_bias(hidden)
        states = []
        for index in range(start, stop):
            layer = self.encoder.layers[index]
            if drop is None or not drop(index, layer):
                out = layer(hidden, attention_mask=mask, **extra)
                if isinstance(out, tuple):
                    hidden = out[0]
                    if self.relative_bias:
                        extra["position_bias"] = out[1]
                else:
                    hidden = out
            states.append(hidden)
        return states

    def output(self, hidden):
        """``last_hidden_state`` from the last hidden state: the final
        norm of pre-norm models (post-norm: unchanged)."""
        return self.encoder.layer_norm(hidden) if self.pre_norm else hidden
