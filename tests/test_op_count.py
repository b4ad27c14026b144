"""Operator counts of a training step (issue 18) and compiled = eager.

The count of aten operators dispatched in one training step is
deterministic; the encoder is ``benchmarks/op_count.py``'s narrow one
(wav2vec2-base's depth at width 32: the same count as wav2vec2-base).
"""

import importlib.util
import os

import pytest
import torch

from amser_sb.lobes import AMSER, AMResNet, CrossAttentionFusion

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "benchmarks", "op_count.py")

#: Eager fused / encoder-only operator ratios, batch 2 x 2 s (were 2.41
#: frozen and 1.43 fine-tuned before issue 18, now 1.93 and 1.28; the
#: issue's goals, 1.25 and 1.15, are met by the compiled branches, 1.19
#: and 1.05: ``python benchmarks/op_count.py``, not run here because
#: inductor's compilation takes about a minute).
EAGER_BOUNDS = {"frozen": 1.95, "fine-tuned": 1.29}


def _bench():
    spec = importlib.util.spec_from_file_location("op_count", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def counts():
    return _bench().count_configs("narrow", "cpu", warmup=1)


def test_fused_step_operator_ratio(counts):
    for backbone, bound in EAGER_BOUNDS.items():
        fused = counts["fused", backbone]["ops"]
        base = counts["baseline", backbone]["ops"]
        assert fused / base <= bound, (backbone, fused, base)


def test_no_host_sync_ops_in_the_fused_branches(counts):
    """The fused branches issue no operator that reads a value back."""
    for backbone in EAGER_BOUNDS:
        extra = (counts["fused", backbone]["by_name"]
                 - counts["baseline", backbone]["by_name"])
        for name in ("aten::item", "aten::_local_scalar_dense",
                     "aten::nonzero", "aten::unique", "aten::is_nonzero"):
            assert extra[name] == 0, (backbone, name)


def _tiny_model():
    torch.manual_seed(0)
    am = AMResNet(channels=8, strides=(4, 4))
    fusion = CrossAttentionFusion(am.out_dim, 12, d_model=16, n_heads=2,
                                  ffn_dim=16, dropout=0.0)
    return am, fusion


def test_compiled_branches_equal_eager():
    """fullgraph=True also proves no graph break: no host syncs and no
    data-dependent shapes in AM-ResNet (MADD included) and the fusion."""
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile unavailable")
    am, fusion = _tiny_model()
    gen = torch.Generator().manual_seed(1)
    wavs = 0.1 * torch.randn(3, 4000, generator=gen)
    wavs[1, 1000:2500] = 0
    lens = torch.tensor([1.0, 0.8, 0.5])
    ssl = torch.randn(3, 12, 12, generator=gen)

    def run(am_fn, fusion_fn):
        for p in list(am.parameters()) + list(fusion.parameters()):
            p.grad = None
        feats, feat_lens = am_fn(wavs, lens)
        out = fusion_fn(feats, feat_lens, ssl, lens)
        (out**2).sum().backward()
        grads = [p.grad.clone() for p in am.parameters()]
        grads += [p.grad.clone() for p in fusion.parameters()]
        return out.detach(), grads

    am.train()
    fusion.train()
    state = {k: v.clone() for k, v in am.state_dict().items()}
    eager = run(am, fusion)
    am.load_state_dict(state)  # BN statistics as before the eager step
    options = dict(backend="aot_eager", fullgraph=True, dynamic=False)
    compiled = run(torch.compile(am, **options),
                   torch.compile(fusion, **options))
    assert torch.allclose(eager[0], compiled[0], atol=1e-5, rtol=1e-4)
    for a, b in zip(eager[1], compiled[1]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-3)


def test_amser_compiles_for_training_only(tiny_w2v2_layer, tmp_path):
    from amser_sb.lobes import SSLBackbone

    ssl = SSLBackbone(tiny_w2v2_layer, save_path=str(tmp_path))
    am = AMResNet(channels=8, strides=(4, 4, 4, 4))
    fusion = CrossAttentionFusion(am.out_dim, ssl.out_dim, d_model=16,
                                  n_heads=2, ffn_dim=16)
    model = AMSER(ssl, am, fusion,
                  compile_training={"backend": "aot_eager"})
    assert sorted(model._compiled) == ["am_resnet", "fusion"]
    assert not any("_orig_mod" in k for k in model.state_dict())
    assert model.train()._branch("fusion") is model._compiled["fusion"]
    assert model.eval()._branch("fusion") is fusion
    wavs = 0.1 * torch.randn(2, 8000)
    lens = torch.tensor([1.0, 0.6])
    with torch.no_grad():
        eval_out = model(wavs, lens)
    assert eval_out.shape == (2, 1, model.out_dim)
