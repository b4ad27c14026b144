"""The default head: standardised encoder statistics over concatenated
layers, and a gated cross-attention contribution that starts closed."""

import pytest
import torch

from amser_sb.lobes import (
    AMSER,
    AMResNet,
    CrossAttentionFusion,
    EmotionClassifier,
    GatedResidualFusion,
    SSLBackbone,
    StatsPooling,
    encoder_from_options,
    masked_mean,
    masked_mean_std,
)


@pytest.fixture(scope="module")
def concat_ssl(tiny_w2v2_group, tmp_path_factory):
    return SSLBackbone(tiny_w2v2_group, str(tmp_path_factory.mktemp("p")),
                       layer_weights="concat", output_norm=True)


def _models(ssl):
    torch.manual_seed(0)
    head = StatsPooling(ssl.out_dim, dropout=0.5)
    am = AMResNet(channels=8)
    cross = CrossAttentionFusion(am.out_dim, ssl.out_dim, d_model=16,
                                 n_heads=2, ffn_dim=32)
    fused = AMSER(ssl, am, GatedResidualFusion(head, cross))
    alone = AMSER(ssl=ssl, mode="ssl", pooling=head)
    return fused, alone


def test_layer_concat_keeps_every_hidden_state(concat_ssl):
    ssl = concat_ssl
    assert ssl.out_dim == ssl.n_layers * 32  # tiny: 32 features a layer
    assert not ssl.layer_weights.requires_grad
    wavs = 0.1 * torch.randn(2, 8000)
    feats, _ = ssl.eval()(wavs)
    hidden, _ = ssl.extract(wavs)
    assert feats.shape[-1] == ssl.out_dim
    # layer l's normed state sits in slice l
    normed = torch.nn.functional.layer_norm(hidden, hidden.shape[-1:])
    torch.testing.assert_close(feats[..., 32:64], normed[:, 1])
    again = encoder_from_options(ssl.export_options())
    assert again.layer_concat and again.out_dim == ssl.out_dim
    with pytest.raises(ValueError, match="layer_weights"):
        SSLBackbone(config=ssl.export_options()["config"], normalize=True,
                    layer_weights="sum")


def test_fused_model_starts_as_its_encoder_path(concat_ssl):
    """Gate closed at the start: the fused model's encoder part is the
    encoder-alone model's vector and the cross-attention part is 0."""
    fused, alone = _models(concat_ssl)
    fused.eval(), alone.eval()
    wavs = 0.1 * torch.randn(3, 16000)
    lens = torch.tensor([1.0, 0.7, 0.4])
    out = fused(wavs, lens).squeeze(1)
    ref = alone(wavs, lens).squeeze(1)
    head = alone.out_dim
    torch.testing.assert_close(out[:, :head], ref)
    assert torch.count_nonzero(out[:, head:]) == 0


def test_the_gate_learns(concat_ssl):
    fused, _ = _models(concat_ssl)
    clf = EmotionClassifier(fused.out_dim, 4)
    fused.train()
    wavs = 0.1 * torch.randn(4, 16000)
    loss = clf(fused(wavs, torch.ones(4))).sum()
    loss.backward()
    assert fused.fusion.gate.grad is not None
    assert float(fused.fusion.gate.grad.abs()) > 0


def test_stats_are_padding_invariant():
    x = torch.randn(2, 30, 5)
    lens = torch.tensor([1.0, 0.5])
    padded = x.clone()
    padded[1, 15:] = 1e3
    torch.testing.assert_close(masked_mean_std(x, lens),
                               masked_mean_std(padded, lens))
    torch.testing.assert_close(masked_mean_std(x[1:, :15]),
                               masked_mean_std(x, lens)[1:])


@pytest.mark.parametrize("statistics,width", [("mean", 5), ("mean_std", 10)])
def test_head_statistics_are_padding_invariant(statistics, width):
    """Both head statistics: the width they give, and a padded batch in
    evaluation pools exactly the real frames."""
    torch.manual_seed(0)
    pool = StatsPooling(5, statistics=statistics)
    assert pool.out_dim == width
    x = torch.randn(4, 30, 5)
    pool.train()(x, torch.ones(4))  # running statistics from one batch
    pool.eval()
    lens = torch.tensor([1.0, 0.5])
    padded = x[:2].clone()
    padded[1, 15:] = 1e3
    out = pool(padded, lens)
    assert out.shape == (2, width)
    torch.testing.assert_close(out[1:], pool(x[1:2, :15]))
    torch.testing.assert_close(masked_mean(padded, lens),
                               masked_mean_std(padded, lens)[:, :5])


def test_head_statistics_unknown_value():
    with pytest.raises(ValueError, match="'mean' or 'mean_std'"):
        StatsPooling(5, statistics="median")
