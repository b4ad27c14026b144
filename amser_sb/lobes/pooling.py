"""Utterance statistics of frame features: masked mean (and standard
deviation), standardised.

What a linear probe gets from ``StandardScaler`` on mean-pooled features, a
trained head gets here: the mean (and, as an option, the standard
deviation) of each feature over each utterance's real frames (padding never
counts), standardised by statistics of the training data (``BatchNorm1d``
without affine parameters: batch statistics in training, their cumulative
average at evaluation, saved with the weights), then dropout.

Authors
 * amser-sb contributors
"""

import torch
from speechbrain.dataio.dataio import length_to_mask

from amser_sb.lobes.fusion import masked_mean


def masked_mean_std(x, lengths=None, eps=1e-5):
    """Mean and standard deviation over each sequence's valid frames.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time, feat]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``; None means all full length.
    eps : float
        Variance floor (one-frame utterances have no spread).

    Returns
    -------
    torch.Tensor
        ``[batch, 2 * feat]``: the means, then the standard deviations.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]], [[1.0], [2.0], [3.0]]])
    >>> masked_mean_std(x, torch.tensor([2 / 3, 1.0]), eps=0.0)
    tensor([[2.0000, 1.0000],
            [2.0000, 0.8165]])
    """
    batch, time, _ = x.shape
    if lengths is None:
        n = torch.full((batch,), time, device=x.device)
    else:
        n = torch.round(lengths.float() * time).long().clamp(1, time)
    valid = length_to_mask(n, time, dtype=x.dtype, device=x.device)
    count = n.to(x.dtype).unsqueeze(1)
    mean = torch.einsum("bt,btc->bc", valid, x) / count
    centred = (x - mean.unsqueeze(1)) * valid.unsqueeze(-1)
    var = torch.einsum("btc,btc->bc", centred, centred) / count
    return torch.cat([mean, torch.sqrt(var + eps)], dim=1)


class StatsPooling(torch.nn.Module):
    """Standardised mean (+ standard deviation) of frame features.

    Arguments
    ---------
    in_dim : int
        Feature size of the frames.
    dropout : float
        Dropout on the standardised statistics (training only).
    statistics : str
        ``"mean_std"`` (the means, then the standard deviations: ``2 *
        in_dim`` outputs) or ``"mean"`` (the means alone, ``in_dim``
        outputs: what a linear probe on mean-pooled features sees). The
        default is the one of models exported before the choice existed;
        the recipe's YAML sets its own (``head_statistics``).

    Example
    -------
    >>> pool = StatsPooling(in_dim=8, dropout=0.5)
    >>> feats = torch.randn(3, 20, 8)
    >>> lens = torch.tensor([1.0, 0.5, 0.25])
    >>> pool(feats, lens).shape, pool.out_dim
    (torch.Size([3, 16]), 16)
    >>> StatsPooling(in_dim=8, statistics="mean")(feats, lens).shape
    torch.Size([3, 8])
    >>> pool = pool.eval()
    >>> padded = torch.cat([feats[:1, :10], torch.randn(1, 10, 8)], dim=1)
    >>> torch.allclose(pool(feats[:1, :10], None),
    ...                pool(padded, torch.tensor([0.5])), atol=1e-5)
    True
    """

    def __init__(self, in_dim, dropout=0.5, statistics="mean_std"):
        super().__init__()
        if statistics not in ("mean", "mean_std"):
            raise ValueError(
                f"statistics must be 'mean' or 'mean_std', got {statistics!r}"
            )
        self.statistics = statistics
        self.out_dim = int(in_dim) * (2 if statistics == "mean_std" else 1)
        # standardisation by the training data: cumulative statistics
        self.norm = torch.nn.BatchNorm1d(self.out_dim, affine=False,
                                         momentum=None)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, feats, lens=None):
        """Standardised statistics ``[batch, out_dim]``.

        Arguments
        ---------
        feats : torch.Tensor
            ``[batch, time, in_dim]``.
        lens : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
        """
        if self.statistics == "mean":
            stats = masked_mean(feats.float(), lens)
        else:
            stats = masked_mean_std(feats.float(), lens)
        if self.training and stats.shape[0] == 1:
            # one utterance has no batch statistics: use the running ones
            stats = torch.nn.functional.batch_norm(
                stats, self.norm.running_mean, self.norm.running_var,
                training=False, eps=self.norm.eps,
            )
        else:
            stats = self.norm(stats)
        return self.dropout(stats)
