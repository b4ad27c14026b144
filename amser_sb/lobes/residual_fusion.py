"""A fusion that starts as its encoder path: gated residual cross-attention.

The decision rests on the encoder's standardised utterance statistics
(:class:`~amser_sb.lobes.pooling.StatsPooling`: what a linear probe on the
same frozen features uses); the paper's AM-ResNet x encoder cross-attention
(:class:`~amser_sb.lobes.fusion.CrossAttentionFusion`) adds a residual
contribution scaled by a learned gate ``tanh(g)`` with ``g = 0`` at the
start. The fused model therefore starts as the encoder path exactly and
moves away from it only as far as the training data pull the gate, so on a
small corpus the waveform branch cannot drown the encoder's evidence.

Authors
 * amser-sb contributors
"""

import torch

from amser_sb.lobes.fusion import Fusion


class GatedResidualFusion(Fusion):
    """Encoder statistics, plus a gated cross-attention contribution.

    Arguments
    ---------
    pooling : StatsPooling, optional
        Pools the encoder features ``[batch, time_w, ssl_dim]``; None:
        no encoder path (with ``gated=False``: the paper's fusion alone).
    cross : Fusion, optional
        The cross-attention of both streams (None: the encoder path
        alone, e.g. for an ablation with the same head).
    cross_dropout : float
        Dropout on the cross-attention vector (training only).
    gated : bool
        Scale the cross-attention vector by the learned gate (False: it
        enters as it is, no gate parameter).
    gate_init : float
        Initial gate parameter ``g`` (the contribution is ``tanh(g)``).

    Example
    -------
    >>> from amser_sb.lobes import CrossAttentionFusion, StatsPooling
    >>> fusion = GatedResidualFusion(
    ...     StatsPooling(32), CrossAttentionFusion(am_dim=16, ssl_dim=32,
    ...                                            d_model=8, ffn_dim=16))
    >>> am, ssl = torch.randn(2, 10, 16), torch.randn(2, 12, 32)
    >>> lens = torch.tensor([1.0, 0.5])
    >>> out = fusion.eval()(am, lens, ssl, lens)
    >>> out.shape, fusion.out_dim
    (torch.Size([2, 96]), 96)
    >>> float(out[:, 64:].abs().max())  # the gate starts closed
    0.0
    """

    def __init__(self, pooling=None, cross=None, cross_dropout=0.5,
                 gated=True, gate_init=0.0):
        super().__init__()
        if pooling is None and cross is None:
            raise ValueError("GatedResidualFusion needs pooling or cross")
        self.pooling = pooling
        self.cross = cross
        self.cross_dropout = torch.nn.Dropout(cross_dropout)
        self.out_dim = pooling.out_dim if pooling is not None else 0
        if cross is not None and gated:
            self.gate = torch.nn.Parameter(torch.tensor(float(gate_init)))
        else:
            self.register_parameter("gate", None)
        if cross is not None:
            self.out_dim += cross.out_dim

    def forward(self, am_feats, am_lens, ssl_feats, ssl_lens):
        """Fuse the two streams into one utterance vector.

        Arguments
        ---------
        am_feats : torch.Tensor or None
            AM-ResNet features ``[batch, time_a, am_dim]``.
        am_lens : torch.Tensor or None
            Their relative lengths ``[batch]``.
        ssl_feats : torch.Tensor
            Encoder features ``[batch, time_w, ssl_dim]``.
        ssl_lens : torch.Tensor
            Their relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, out_dim]``: the encoder statistics, then the gated
            cross-attention vector.
        """
        parts = []
        if self.pooling is not None:
            parts.append(self.pooling(ssl_feats, ssl_lens))
        if self.cross is not None:
            fused = self.cross(am_feats, am_lens, ssl_feats, ssl_lens)
            if self.gate is not None:
                fused = torch.tanh(self.gate) * self.cross_dropout(
                    fused.float())
            parts.append(fused)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
