"""Cross-attention fusion of AM-ResNet and wav2vec2 features.

Li & Zhang (2025, Sec. 2.5): the wav2vec2 sequence is average-pooled to the
AM-ResNet length; each stream attends to the other,
``softmax(Q_w K_a^T / sqrt(d)) V_a`` and ``softmax(Q_a K_w^T / sqrt(d)) V_w``;
each stream is concatenated with what it received, then layer norm and a
feed-forward layer with a residual; both streams are average-pooled and
concatenated (one linear layer then gives the classes, see
``EmotionClassifier``).

What the paper does not state, and is chosen here (all hparams):

* both streams are first projected to a common ``d_model=128`` by a linear
  layer (the paper's ``Q``/``K``/``V`` need a common width);
* multi-head attention with ``n_heads=4``, one layer, key padding masks so
  no query attends to padding; dropout 0.1;
* the block per stream is ``z = LayerNorm([x ; received])``,
  ``y = z + FFN(z)`` with ``FFN = Linear(2d, ffn_dim=256) -> ReLU ->
  Dropout -> Linear(ffn_dim, 2d)``;
* pooling is a mean over each utterance's valid frames (padding excluded),
  so the embedding has ``4 * d_model = 512`` dimensions;
* "average-pooled to the AM-ResNet length" is done per utterance from its
  own valid wav2vec2 frames to its own valid AM-ResNet frames (the
  windows of ``adaptive_avg_pool1d``), so padding never enters the pooling.

Beyond the paper, ``ssl_skip=True`` appends the mean-pooled encoder
features to the fused vector (after a dropout of ``skip_dropout`` on the
fused part), so the classifier always sees what the encoder alone gives;
on small corpora the cross-attention block otherwise memorises the
training set (see the recipe README).

``ConcatFusion`` is the paper's concatenation ablation: mean-pool each
stream, concatenate.

Authors
 * amser-sb contributors
"""

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask


def _abs_lengths(lens, time):
    """Relative lengths ``[batch]`` to valid frame counts (at least 1)."""
    return torch.round(lens.float() * time).long().clamp(1, time)


def masked_mean(x, lengths=None):
    """Mean over each sequence's valid frames.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time, feat]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``; None means all full length.

    Returns
    -------
    torch.Tensor
        ``[batch, feat]``.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]], [[1.0], [2.0], [3.0]]])
    >>> masked_mean(x, torch.tensor([2 / 3, 1.0]))
    tensor([[2.],
            [2.]])
    """
    batch, time, _ = x.shape
    if lengths is None:
        return x.mean(dim=1)
    n = _abs_lengths(lengths, time)
    valid = length_to_mask(n, time, dtype=x.dtype, device=x.device)
    total = torch.einsum("bt,btc->bc", valid, x)
    return total / n.to(x.dtype).unsqueeze(1)


class Fusion(torch.nn.Module):
    """The fusion contract: two feature streams to one utterance vector.

    A fusion is one subclass of this class, named in the recipe's YAML
    (``fusion: !new:...``); ``AMSER`` calls it, export carries and checks
    it like any other module. A subclass sets ``out_dim`` (the size of the
    vector, read by the classifier's declaration) and implements
    :meth:`forward`.

    Example
    -------
    >>> class MeanOfBoth(Fusion):
    ...     def __init__(self, am_dim, ssl_dim):
    ...         super().__init__()
    ...         self.out_dim = am_dim + ssl_dim
    ...     def forward(self, am_feats, am_lens, ssl_feats, ssl_lens):
    ...         return torch.cat([masked_mean(am_feats, am_lens),
    ...                           masked_mean(ssl_feats, ssl_lens)], dim=1)
    >>> lens = torch.ones(2)
    >>> MeanOfBoth(3, 5)(torch.ones(2, 4, 3), lens,
    ...                  torch.ones(2, 6, 5), lens).shape
    torch.Size([2, 8])
    """

    #: Size of the fused vector ``[batch, out_dim]``.
    out_dim = None

    def forward(self, am_feats, am_lens, ssl_feats, ssl_lens):
        """Fuse the streams.

        Arguments
        ---------
        am_feats : torch.Tensor
            AM-ResNet features ``[batch, time_a, am_dim]``.
        am_lens : torch.Tensor
            Their relative lengths ``[batch]``.
        ssl_feats : torch.Tensor
            Encoder features ``[batch, time_w, ssl_dim]``.
        ssl_lens : torch.Tensor
            Their relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, out_dim]``.
        """
        raise NotImplementedError


def resample_to_length(x, src_lengths, dst_lengths, dst_time):
    """Average-pool each sequence from its own length to a target length.

    Frame ``j`` of a sequence with ``n`` source and ``m`` target frames is
    the mean of source frames ``floor(j n / m)`` to ``ceil((j + 1) n / m)``
    (exclusive), the windows of ``torch.nn.functional.adaptive_avg_pool1d``;
    target frames past ``m`` are 0.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time, feat]``.
    src_lengths : torch.Tensor
        ``[batch]`` valid source frames (long).
    dst_lengths : torch.Tensor
        ``[batch]`` valid target frames (long).
    dst_time : int
        Padded target length.

    Returns
    -------
    torch.Tensor
        ``[batch, dst_time, feat]``.

    Example
    -------
    >>> x = torch.arange(6.0).view(1, 6, 1)
    >>> resample_to_length(x, torch.tensor([6]), torch.tensor([3]), 4)[0, :, 0]
    tensor([0.5000, 2.5000, 4.5000, 0.0000])
    """
    src_time = x.shape[1]
    device = x.device
    j = torch.arange(dst_time, device=device).view(1, -1, 1)
    k = torch.arange(src_time, device=device).view(1, 1, -1)
    n = src_lengths.to(device).view(-1, 1, 1)
    m = dst_lengths.to(device).view(-1, 1, 1)
    start = torch.div(j * n, m, rounding_mode="floor")
    end = torch.div((j + 1) * n + m - 1, m, rounding_mode="floor")
    inside = (k >= start) & (k < end) & (j < m)
    weights = inside.to(x.dtype) / (end - start).clamp(min=1).to(x.dtype)
    return torch.bmm(weights, x)


class CrossAttentionFusion(Fusion):
    """Bidirectional cross-attention between AM-ResNet and wav2vec2 streams.

    Arguments
    ---------
    am_dim : int
        AM-ResNet feature size (``AMResNet.out_dim``).
    ssl_dim : int
        wav2vec2 feature size (``SSLBackbone.out_dim``; 768 for base).
    d_model : int
        Common width of both streams in the attention (default 128).
    n_heads : int
        Attention heads (default 4).
    ffn_dim : int
        Hidden size of each stream's feed-forward layer (default 256).
    dropout : float
        Dropout in attention and feed-forward layers (default 0.1).
    ssl_skip : bool
        Append the mean-pooled encoder features ``[batch, ssl_dim]`` to the
        fused vector (default False: the paper's model).
    skip_dropout : float
        With ``ssl_skip``, dropout on the fused part (default 0.5).

    Example
    -------
    >>> fusion = CrossAttentionFusion(am_dim=64, ssl_dim=32).eval()
    >>> am, ssl = torch.randn(2, 51, 64), torch.randn(2, 49, 32)
    >>> lens = torch.tensor([1.0, 0.5])
    >>> fusion(am, lens, ssl, lens).shape, fusion.out_dim
    (torch.Size([2, 512]), 512)
    >>> skip = CrossAttentionFusion(am_dim=64, ssl_dim=32, ssl_skip=True)
    >>> out = skip.eval()(am, lens, ssl, lens)
    >>> out.shape, skip.out_dim
    (torch.Size([2, 544]), 544)
    >>> torch.allclose(out[:, 512:], masked_mean(ssl, lens))
    True
    """

    def __init__(
        self,
        am_dim=64,
        ssl_dim=768,
        d_model=128,
        n_heads=4,
        ffn_dim=256,
        dropout=0.1,
        ssl_skip=False,
        skip_dropout=0.5,
    ):
        super().__init__()
        self.proj_am = torch.nn.Linear(am_dim, d_model)
        self.proj_ssl = torch.nn.Linear(ssl_dim, d_model)
        self.ssl_from_am = torch.nn.MultiheadAttention(
            d_model, n_heads, dropout=dropout, batch_first=True
        )
        self.am_from_ssl = torch.nn.MultiheadAttention(
            d_model, n_heads, dropout=dropout, batch_first=True
        )
        self.norm_am = torch.nn.LayerNorm(2 * d_model)
        self.norm_ssl = torch.nn.LayerNorm(2 * d_model)
        self.ffn_am = self._ffn(2 * d_model, ffn_dim, dropout)
        self.ffn_ssl = self._ffn(2 * d_model, ffn_dim, dropout)
        self.ssl_skip = ssl_skip
        self.skip_dropout = torch.nn.Dropout(skip_dropout)
        self.out_dim = 4 * d_model + (ssl_dim if ssl_skip else 0)

    @staticmethod
    def _ffn(dim, hidden, dropout):
        """Feed-forward layer ``dim -> hidden -> dim``."""
        return torch.nn.Sequential(
            torch.nn.Linear(dim, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, dim),
        )

    def forward(self, am_feats, am_lens, ssl_feats, ssl_lens):
        """Fuse the two streams into one utterance vector.

        Arguments
        ---------
        am_feats : torch.Tensor
            AM-ResNet features ``[batch, time_a, am_dim]``.
        am_lens : torch.Tensor
            Their relative lengths ``[batch]``.
        ssl_feats : torch.Tensor
            wav2vec2 features ``[batch, time_w, ssl_dim]``.
        ssl_lens : torch.Tensor
            Their relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, 4 * d_model]`` (``[batch, 4 * d_model + ssl_dim]``
            with ``ssl_skip``).
        """
        batch, time = am_feats.shape[:2]
        n_am = _abs_lengths(am_lens, time)
        n_ssl = _abs_lengths(ssl_lens, ssl_feats.shape[1])
        # Projected, then resampled to AM-ResNet's frames: both are linear
        # (one on features, one on time), so the order changes no valid
        # frame, and the resampling then moves d_model features instead of
        # the encoder's (13 x 768 with concatenated layers: 2% of int8
        # inference). Padding frames become 0 instead of the bias; nothing
        # reads them (masked keys, masked pooling).
        ssl = resample_to_length(self.proj_ssl(ssl_feats), n_ssl, n_am, time)
        # Both streams run every step stacked, [2, batch, time, d_model]
        # (0: AM-ResNet, 1: encoder), each with its own weights, so each
        # step of the block is one batched call for both.
        streams = torch.stack([self.proj_am(am_feats), ssl])
        valid = length_to_mask(n_am, time, dtype=streams.dtype,
                               device=streams.device)
        received = self._cross_attend(streams, valid)
        z = torch.cat([streams, received], dim=-1)
        d2 = z.shape[-1]
        z = F.layer_norm(z, (d2,), eps=self.norm_am.eps)
        z = torch.addcmul(
            _stacked(self.norm_am.bias, self.norm_ssl.bias).unsqueeze(1)
            .unsqueeze(1),
            z,
            _stacked(self.norm_am.weight, self.norm_ssl.weight).unsqueeze(1)
            .unsqueeze(1),
        )
        z = z + self._feed_forward(z.view(2, batch * time, d2)).view(z.shape)
        # a masked sum: a few operators where einsum dispatches dozens
        total = (z * valid.view(1, batch, time, 1)).sum(2)
        pooled = total / n_am.to(z.dtype).view(1, batch, 1)
        fused = pooled.transpose(0, 1).reshape(batch, 2 * d2)
        if not self.ssl_skip:
            return fused
        pooled = masked_mean(ssl_feats, ssl_lens)
        return torch.cat([self.skip_dropout(fused), pooled], -1)

    def _cross_attend(self, streams, valid):
        """Each stream attends to the other (both directions at once).

        Arguments
        ---------
        streams : torch.Tensor
            ``[2, batch, time, d_model]``: AM-ResNet, encoder.
        valid : torch.Tensor
            ``[batch, time]`` 0/1 valid frames (the keys attended to).

        Returns
        -------
        torch.Tensor
            ``[2, batch, time, d_model]``: what each stream received
            (``am_from_ssl`` for the first, ``ssl_from_am`` for the second,
            the same arithmetic as their ``forward``).
        """
        mods = (self.am_from_ssl, self.ssl_from_am)
        _, batch, time, d = streams.shape
        heads = mods[0].num_heads
        w_in = _stacked(*(m.in_proj_weight for m in mods))
        b_in = _stacked(*(m.in_proj_bias for m in mods)).unsqueeze(1)
        x = streams.reshape(2, batch * time, d)
        q = torch.baddbmm(b_in[..., :d], x, w_in[:, :d].transpose(1, 2))
        kv = torch.baddbmm(
            b_in[..., d:], x.flip(0), w_in[:, d:].transpose(1, 2)
        )
        # [2 * batch, heads, time, d_head]; keys/values: the other stream
        shape = (2, batch, time, heads, d // heads)
        q = q.view(shape).transpose(2, 3).reshape(2 * batch, heads, time, -1)
        k, v = kv.view(2, batch, time, 2, heads, d // heads).permute(
            3, 0, 1, 4, 2, 5
        ).reshape(2, 2 * batch, heads, time, -1).unbind(0)
        keep = torch.cat([valid, valid]).bool().view(2 * batch, 1, 1, time)
        p = mods[0].dropout if self.training else 0.0
        got = attention(q, k, v, keep, p)
        got = got.view(2, batch, heads, time, -1).transpose(2, 3)
        got = got.reshape(2, batch * time, d)
        w_out = _stacked(*(m.out_proj.weight for m in mods))
        b_out = _stacked(*(m.out_proj.bias for m in mods)).unsqueeze(1)
        got = torch.baddbmm(b_out, got, w_out.transpose(1, 2))
        return got.view(2, batch, time, d)

    def _feed_forward(self, z):
        """Both streams' ``Linear -> ReLU -> Dropout -> Linear``.

        Arguments
        ---------
        z : torch.Tensor
            ``[2, frames, 2 * d_model]``.

        Returns
        -------
        torch.Tensor
            ``[2, frames, 2 * d_model]``.
        """
        first = (self.ffn_am[0], self.ffn_ssl[0])
        second = (self.ffn_am[3], self.ffn_ssl[3])
        if not all(isinstance(m.weight, torch.Tensor)
                   for m in first + second):
            # e.g. dynamically quantized layers (int8 inference): each
            # stream through its own modules
            return torch.stack([self.ffn_am(z[0]), self.ffn_ssl(z[1])])
        h = torch.baddbmm(
            _stacked(*(m.bias for m in first)).unsqueeze(1),
            z,
            _stacked(*(m.weight for m in first)).transpose(1, 2),
        )
        h = self.ffn_am[2](F.relu(h))
        return torch.baddbmm(
            _stacked(*(m.bias for m in second)).unsqueeze(1),
            h,
            _stacked(*(m.weight for m in second)).transpose(1, 2),
        )


def _stacked(first, second):
    """The two streams' copies of one parameter, ``[2, ...]``."""
    return torch.stack([first, second])


def attention(q, k, v, keep, dropout=0.0):
    """Scaled dot-product attention over the kept keys.

    ``scaled_dot_product_attention`` on CUDA (fused kernels); on other
    devices the same arithmetic in three batched calls (the CPU's
    ``scaled_dot_product_attention`` with a mask and dropout runs an
    unfused path of many small operations).

    Arguments
    ---------
    q, k, v : torch.Tensor
        ``[batch, heads, time, d_head]`` (``k``, ``v``: ``time_k``).
    keep : torch.Tensor
        Bool ``[batch, 1, 1, time_k]``: keys that may be attended to (at
        least one per row).
    dropout : float
        Dropout on the attention weights.

    Returns
    -------
    torch.Tensor
        ``[batch, heads, time, d_head]``.

    Example
    -------
    >>> q, k, v = torch.randn(3, 2, 4, 8).unbind(0)
    >>> keep = torch.tensor([True, True, True, False]).view(1, 1, 1, 4)
    >>> ref = F.scaled_dot_product_attention(q[None], k[None], v[None], keep)
    >>> torch.allclose(attention(q[None], k[None], v[None], keep), ref,
    ...                atol=1e-6)
    True
    """
    if q.is_cuda:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=dropout
        )
    batch, heads, time, d_head = q.shape
    bias = torch.zeros(keep.shape, dtype=q.dtype, device=q.device)
    bias = bias.masked_fill(~keep, float("-inf"))
    scores = torch.baddbmm(
        bias.expand(batch, heads, 1, -1).reshape(batch * heads, 1, -1),
        q.reshape(batch * heads, time, d_head),
        k.reshape(batch * heads, -1, d_head).transpose(1, 2),
        alpha=d_head**-0.5,
    )
    weights = F.dropout(torch.softmax(scores, dim=-1), dropout, True)
    out = torch.bmm(weights, v.reshape(batch * heads, -1, d_head))
    return out.view(batch, heads, time, d_head)


class ConcatFusion(Fusion):
    """Concatenation baseline: mean-pool each stream, concatenate.

    Arguments
    ---------
    am_dim : int, optional
        AM-ResNet feature size (only to report ``out_dim``).
    ssl_dim : int, optional
        wav2vec2 feature size (only to report ``out_dim``).

    Example
    -------
    >>> fusion = ConcatFusion(am_dim=64, ssl_dim=32)
    >>> am, ssl = torch.randn(2, 51, 64), torch.randn(2, 49, 32)
    >>> lens = torch.tensor([1.0, 0.5])
    >>> fusion(am, lens, ssl, lens).shape, fusion.out_dim
    (torch.Size([2, 96]), 96)
    """

    def __init__(self, am_dim=None, ssl_dim=None):
        super().__init__()
        if am_dim is not None and ssl_dim is not None:
            self.out_dim = am_dim + ssl_dim
        else:
            self.out_dim = None

    def forward(self, am_feats, am_lens, ssl_feats, ssl_lens):
        """Pool and concatenate.

        Arguments
        ---------
        am_feats : torch.Tensor
            ``[batch, time_a, am_dim]``.
        am_lens : torch.Tensor
            ``[batch]`` relative lengths.
        ssl_feats : torch.Tensor
            ``[batch, time_w, ssl_dim]``.
        ssl_lens : torch.Tensor
            ``[batch]`` relative lengths.

        Returns
        -------
        torch.Tensor
            ``[batch, am_dim + ssl_dim]``.
        """
        return torch.cat(
            [masked_mean(am_feats, am_lens), masked_mean(ssl_feats, ssl_lens)],
            dim=-1,
        )
