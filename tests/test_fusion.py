"""Tests of the fusion modules and their pooling helpers."""

import pytest
import torch
import torch.nn.functional as F

from amser_sb.lobes import (
    ConcatFusion,
    CrossAttentionFusion,
    masked_mean,
    resample_to_length,
)


@pytest.mark.parametrize("seed", range(5))
def test_resample_matches_adaptive_avg_pool_per_utterance(seed):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(1, 40, (4,), generator=gen)
    dst = torch.randint(1, 40, (4,), generator=gen)
    x = torch.randn(4, int(src.max()) + 3, 5, generator=gen)
    out = resample_to_length(x, src, dst, int(dst.max()) + 2)
    for i in range(4):
        n, m = int(src[i]), int(dst[i])
        ref = F.adaptive_avg_pool1d(x[i, :n].T.unsqueeze(0), m)[0].T
        assert torch.allclose(out[i, :m], ref, atol=1e-6)
        assert torch.all(out[i, m:] == 0)


def test_masked_mean_ignores_padding():
    x = torch.randn(2, 6, 3)
    x[0, 4:] = 1e6
    lens = torch.tensor([4 / 6, 1.0])
    out = masked_mean(x, lens)
    assert torch.allclose(out[0], x[0, :4].mean(0))
    assert torch.allclose(out[1], x[1].mean(0))
    assert torch.allclose(masked_mean(x[1:]), x[1:].mean(1))


def make_streams(seed=0):
    gen = torch.Generator().manual_seed(seed)
    am_n, w2v_n = [20, 51, 33], [19, 49, 32]
    am = [torch.randn(n, 16, generator=gen) for n in am_n]
    w2v = [torch.randn(n, 24, generator=gen) for n in w2v_n]
    return am, w2v


def pad_with_garbage(seqs):
    time = max(len(s) for s in seqs)
    out = torch.full((len(seqs), time, seqs[0].shape[1]), 123.0)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, torch.tensor([len(s) / time for s in seqs])


def test_cross_attention_is_padding_invariant():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(am_dim=16, ssl_dim=24, d_model=32).eval()
    am, w2v = make_streams()
    am_b, am_lens = pad_with_garbage(am)
    w2v_b, w2v_lens = pad_with_garbage(w2v)
    with torch.no_grad():
        batched = fusion(am_b, am_lens, w2v_b, w2v_lens)
        assert batched.shape == (3, 128) and fusion.out_dim == 128
        for i in range(3):
            alone = fusion(
                am[i][None], torch.ones(1), w2v[i][None], torch.ones(1)
            )
            assert (batched[i] - alone[0]).abs().max() < 1e-5


def test_cross_attention_uses_both_streams():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(am_dim=16, ssl_dim=24, d_model=32).eval()
    am, w2v = make_streams()
    ones = torch.ones(1)
    with torch.no_grad():
        base = fusion(am[1][None], ones, w2v[1][None], ones)
        other_am = fusion(am[1][None] + 1, ones, w2v[1][None], ones)
        other_w2v = fusion(am[1][None], ones, w2v[1][None] + 1, ones)
    # Each half of the output sees both streams through the attention.
    for half in (slice(0, 64), slice(64, 128)):
        assert (base[0, half] - other_am[0, half]).abs().max() > 1e-3
        assert (base[0, half] - other_w2v[0, half]).abs().max() > 1e-3


def test_cross_attention_gradients_reach_every_parameter():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(am_dim=16, ssl_dim=24, d_model=32).train()
    am, w2v = make_streams()
    am_b, am_lens = pad_with_garbage(am)
    w2v_b, w2v_lens = pad_with_garbage(w2v)
    am_b.requires_grad_(True)
    out = fusion(am_b, am_lens, w2v_b, w2v_lens)
    (out**2).sum().backward()
    for name, param in fusion.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # Padding receives no gradient: it never reaches the output.
    assert torch.all(am_b.grad[0, 20:] == 0)


def test_concat_fusion():
    am, w2v = make_streams()
    am_b, am_lens = pad_with_garbage(am)
    w2v_b, w2v_lens = pad_with_garbage(w2v)
    fusion = ConcatFusion(16, 24)
    out = fusion(am_b, am_lens, w2v_b, w2v_lens)
    assert out.shape == (3, 40) and fusion.out_dim == 40
    assert torch.allclose(out[0, :16], am[0].mean(0), atol=1e-6)
    assert torch.allclose(out[0, 16:], w2v[0].mean(0), atol=1e-6)
    assert ConcatFusion().out_dim is None


def test_ssl_skip_appends_the_pooled_encoder_features():
    torch.manual_seed(0)
    plain = CrossAttentionFusion(am_dim=16, ssl_dim=24, d_model=32).eval()
    skip = CrossAttentionFusion(am_dim=16, ssl_dim=24, d_model=32,
                                ssl_skip=True).eval()
    skip.load_state_dict(plain.state_dict())  # no parameters of its own
    am, w2v = make_streams()
    am_b, am_lens = pad_with_garbage(am)
    w2v_b, w2v_lens = pad_with_garbage(w2v)
    with torch.no_grad():
        out = skip(am_b, am_lens, w2v_b, w2v_lens)
        assert out.shape == (3, 128 + 24) and skip.out_dim == 152
        assert torch.equal(out[:, :128], plain(am_b, am_lens, w2v_b, w2v_lens))
        for i in range(3):  # padding never reaches the skip path
            assert torch.allclose(out[i, 128:], w2v[i].mean(dim=0), atol=1e-6)
    # Training: dropout on the fused part only.
    skip.train()
    out = skip(am_b, am_lens, w2v_b, w2v_lens)
    assert (out[:, :128] == 0).any()
    assert torch.allclose(out[:, 128:], masked_mean(w2v_b, w2v_lens))


def _reference_fusion(fusion, am_feats, am_lens, ssl_feats, ssl_lens):
    """The fusion as it ran before issue 18: the modules' own forwards."""
    from speechbrain.dataio.dataio import length_to_mask

    from amser_sb.lobes.fusion import resample_to_length

    time = am_feats.shape[1]
    n_am = torch.round(am_lens * time).long().clamp(1, time)
    n_ssl = torch.round(ssl_lens * ssl_feats.shape[1]).long()
    n_ssl = n_ssl.clamp(1, ssl_feats.shape[1])
    ssl = resample_to_length(ssl_feats, n_ssl, n_am, time)
    am, ssl = fusion.proj_am(am_feats), fusion.proj_ssl(ssl)
    padding = ~length_to_mask(n_am, time).bool()
    ssl_got, _ = fusion.ssl_from_am(ssl, am, am, key_padding_mask=padding,
                                    need_weights=False)
    am_got, _ = fusion.am_from_ssl(am, ssl, ssl, key_padding_mask=padding,
                                   need_weights=False)
    am = fusion.norm_am(torch.cat([am, am_got], -1))
    am = am + fusion.ffn_am(am)
    ssl = fusion.norm_ssl(torch.cat([ssl, ssl_got], -1))
    ssl = ssl + fusion.ffn_ssl(ssl)
    lens = n_am.float() / time
    return torch.cat([masked_mean(am, lens), masked_mean(ssl, lens)], -1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stacked_fusion_equals_the_modules_forwards(seed):
    """Both streams stacked = each module run on its own (values and
    gradients; dropout off), random lengths and weights."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fusion = CrossAttentionFusion(am_dim=16, ssl_dim=24, d_model=32,
                                  n_heads=4, dropout=0.0)
    for param in fusion.parameters():
        param.data.normal_(0, 0.3, generator=gen)
    am = torch.randn(3, 21, 16, generator=gen)
    ssl = torch.randn(3, 19, 24, generator=gen)
    am_lens = torch.rand(3, generator=gen).clamp(0.1, 1)
    ssl_lens = (am_lens + 0.05 * torch.rand(3, generator=gen)).clamp(max=1)
    new = fusion.train()(am, am_lens, ssl, ssl_lens)
    (new**2).sum().backward()
    grads = {n: p.grad.clone() for n, p in fusion.named_parameters()}
    fusion.zero_grad()
    old = _reference_fusion(fusion, am, am_lens, ssl, ssl_lens)
    (old**2).sum().backward()
    assert torch.allclose(new, old, atol=1e-5, rtol=1e-4)
    for name, param in fusion.named_parameters():
        assert torch.allclose(grads[name], param.grad, atol=1e-4,
                              rtol=1e-3), name


def test_cpu_attention_equals_sdpa():
    from amser_sb.lobes.fusion import attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 4, 2, 9, 8, generator=gen).unbind(0)
    keep = torch.rand(4, 1, 1, 9, generator=gen) > 0.4
    keep[..., 0] = True
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, keep)
    assert torch.allclose(attention(q, k, v, keep), ref, atol=1e-6)
