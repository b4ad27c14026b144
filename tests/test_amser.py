"""Tests of the AMSER embedding model, its modes and the classifier head."""

import pytest
import torch
import torch.nn.functional as F

from amser_sb.lobes import (
    AMSER,
    AMResNet,
    ConcatFusion,
    CrossAttentionFusion,
    EmotionClassifier,
    SSLBackbone,
)


def speechlike(n, seed):
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    wav = (
        0.3
        * torch.sin(2 * torch.pi * 150 * t)
        * (torch.sin(2 * torch.pi * 2 * t) > 0)
    )
    return wav + 1e-3 * torch.randn(n, generator=gen)


def pad_batch(wavs):
    time = max(len(w) for w in wavs)
    batch = torch.stack([F.pad(w, (0, time - len(w))) for w in wavs])
    return batch, torch.tensor([len(w) / time for w in wavs])


WAVS = [speechlike(5000, 1), speechlike(16000, 2), speechlike(11111, 3)]


def build(folder, tmp_path, mode="fusion", freeze=True, **ssl_kwargs):
    torch.manual_seed(0)
    ssl = SSLBackbone(
        folder, save_path=str(tmp_path), freeze=freeze, **ssl_kwargs
    )
    am = AMResNet(channels=16)
    fusion = CrossAttentionFusion(am.out_dim, ssl.out_dim, d_model=32)
    if mode != "fusion":
        fusion = None
    return AMSER(ssl, am, fusion, mode=mode)


def max_diff_alone_vs_batched(model, wavs):
    batch, lens = pad_batch(wavs)
    with torch.no_grad():
        emb = model(batch, lens)
        worst = 0.0
        for i, wav in enumerate(wavs):
            alone = model(wav.unsqueeze(0))
            worst = max(worst, float((emb[i] - alone[0]).abs().max()))
    return worst


@pytest.mark.parametrize("mode", ["fusion", "concat", "am_resnet", "ssl"])
def test_layer_norm_model_is_padding_invariant(tiny_w2v2_layer, tmp_path, mode):
    model = build(tiny_w2v2_layer, tmp_path, mode=mode).eval()
    assert max_diff_alone_vs_batched(model, WAVS) < 1e-4


def test_group_norm_model_is_invariant_at_inference(tiny_w2v2_group, tmp_path):
    model = build(tiny_w2v2_group, tmp_path).eval()
    assert model.ssl.per_utterance == "eval"
    assert max_diff_alone_vs_batched(model, WAVS) < 1e-4
    leaky = build(tiny_w2v2_group, tmp_path, per_utterance="never").eval()
    assert max_diff_alone_vs_batched(leaky, WAVS) > 1e-4


def test_modes_and_shapes(tiny_w2v2_layer, tmp_path):
    batch, lens = pad_batch(WAVS)
    expected = {
        "fusion": 128,
        "concat": 16 + 32,
        "am_resnet": 16,
        "ssl": 32,
    }
    for mode, dim in expected.items():
        model = build(tiny_w2v2_layer, tmp_path, mode=mode).eval()
        assert model.out_dim == dim
        with torch.no_grad():
            assert model(batch, lens).shape == (3, 1, dim)
    assert isinstance(
        build(tiny_w2v2_layer, tmp_path, "concat").fusion, ConcatFusion
    )
    only_am = AMSER(am_resnet=AMResNet(channels=16), mode="am_resnet")
    assert only_am.ssl is None and only_am.fusion is None


def test_missing_branches_are_clear_errors(tiny_w2v2_layer, tmp_path):
    with pytest.raises(ValueError, match="needs an ssl"):
        AMSER(am_resnet=AMResNet(), mode="fusion")
    with pytest.raises(ValueError, match="needs an am_resnet branch"):
        AMSER(ssl=object(), mode="concat")
    with pytest.raises(ValueError, match="mode must be one of"):
        AMSER(mode="late")
    model = build(tiny_w2v2_layer, tmp_path, mode="am_resnet")
    with pytest.raises(ValueError, match="mono"):
        model(torch.zeros(2, 2, 4000))


@pytest.mark.parametrize("layer_weights", [False, True])
def test_precomputed_backbone_features(
    tiny_w2v2_layer, tmp_path, layer_weights
):
    model = build(tiny_w2v2_layer, tmp_path, layer_weights=layer_weights).eval()
    batch, lens = pad_batch(WAVS)
    with torch.no_grad():
        hidden, hid_lens = model.ssl.extract(batch, lens)
        direct = model(batch, lens)
        cached = model(batch, lens, ssl_feats=hidden, ssl_lens=hid_lens)
        derived = model(batch, lens, ssl_feats=hidden)
    assert torch.equal(direct, cached)
    assert torch.equal(direct, derived)
    w2v_only = AMSER(model.ssl, mode="ssl").eval()
    with torch.no_grad():
        a = w2v_only(batch, lens)
        b = w2v_only(None, ssl_feats=hidden, ssl_lens=hid_lens)
    assert torch.equal(a, b)


def test_given_voiced_mask_reaches_am_resnet(tiny_w2v2_layer, tmp_path):
    model = build(tiny_w2v2_layer, tmp_path).eval()
    batch, lens = pad_batch(WAVS)
    mask = torch.ones_like(batch)
    mask[:, 2000:4000] = 0
    with torch.no_grad():
        a = model(batch, lens, mask=mask)
        b = model(batch, lens, mask=torch.ones_like(batch))
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "fine-tuned"])
def test_gradients(tiny_w2v2_group, tmp_path, freeze):
    model = build(tiny_w2v2_group, tmp_path, freeze=freeze)
    head = EmotionClassifier(model.out_dim, 4)
    model.train()
    batch, lens = pad_batch(WAVS)
    log_probs = head(model(batch, lens)).squeeze(1)
    F.nll_loss(log_probs, torch.tensor([0, 1, 3])).backward()
    for name, param in list(model.named_parameters()) + list(
        head.named_parameters()
    ):
        if freeze and name.startswith("ssl.lobe."):
            assert param.grad is None, name
        else:
            assert param.grad is not None, name
            assert param.grad.abs().sum() > 0, name
    backbone = list(model.ssl.lobe.parameters())
    assert all(p.requires_grad != freeze for p in backbone)


def test_encoder_classifier_drives_the_model(tiny_w2v2_layer, tmp_path):
    """SpeechBrain's EncoderClassifier, with identity features, runs AMSER."""
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.inference.classifiers import EncoderClassifier
    from speechbrain.nnet.containers import LengthsCapableSequential

    model = build(tiny_w2v2_layer, tmp_path)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["ang", "hap", "neu", "sad"])
    encoder.expect_len(4)
    modules = {
        "compute_features": torch.nn.Identity(),
        "mean_var_norm": LengthsCapableSequential(torch.nn.Identity()),
        "embedding_model": model,
        "classifier": EmotionClassifier(model.out_dim, 4, output="prob"),
    }
    classifier = EncoderClassifier(
        modules=modules,
        hparams={"label_encoder": encoder},
        run_opts={"device": "cpu"},
    )
    batch, lens = pad_batch(WAVS)
    probs, score, index, labels = classifier.classify_batch(batch, lens)
    assert probs.shape == (3, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-5)
    assert len(labels) == 3 and set(labels) <= {"ang", "hap", "neu", "sad"}
    # Each row is what the utterance gets alone.
    alone, _, _, _ = classifier.classify_batch(WAVS[0].unsqueeze(0))
    assert torch.allclose(alone[0], probs[0], atol=1e-4)


def test_classifier_outputs_share_one_checkpoint():
    torch.manual_seed(0)
    heads = {
        out: EmotionClassifier(8, 4, output=out)
        for out in ("log_prob", "prob", "logits")
    }
    state = heads["log_prob"].state_dict()
    for head in heads.values():
        head.load_state_dict(state)
    emb = torch.randn(3, 1, 8)
    logits = heads["logits"](emb)
    assert logits.shape == (3, 1, 4)
    assert torch.allclose(heads["log_prob"](emb), logits.log_softmax(-1))
    assert torch.allclose(heads["prob"](emb), logits.softmax(-1))
    with pytest.raises(ValueError, match="output must be one of"):
        EmotionClassifier(8, 4, output="sigmoid")


@pytest.mark.parametrize("mode", ["fusion", "concat", "am_resnet"])
def test_precomputed_am_resnet_features(tiny_w2v2_layer, tmp_path, mode):
    model = build(tiny_w2v2_layer, tmp_path, mode=mode).eval()
    batch, lens = pad_batch(WAVS)
    with torch.no_grad():
        am, am_lens = model.am_resnet(batch, lens)
        direct = model(batch, lens)
        cached = model(batch, lens, am_feats=am, am_lens=am_lens)
        derived = model(batch, lens, am_feats=am)
    assert torch.equal(direct, cached)
    assert torch.equal(direct, derived)
