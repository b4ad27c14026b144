"""Tests of the wav2vec2 branch: normalisation, padding, freezing, layers."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from amser_sb.lobes import SSLBackbone, normalize_waveforms, wav2vec2_config


def waves(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=gen) + 0.05 for n in lengths]


def pad_batch(wavs):
    time = max(len(w) for w in wavs)
    batch = torch.stack([F.pad(w, (0, time - len(w))) for w in wavs])
    return batch, torch.tensor([len(w) / time for w in wavs])


def backbone(folder, tmp_path, **kwargs):
    torch.manual_seed(0)
    return SSLBackbone(folder, save_path=str(tmp_path), **kwargs)


def max_diff_alone_vs_batched(ssl, wavs):
    batch, lens = pad_batch(wavs)
    with torch.no_grad():
        feats, feat_lens = ssl(batch, lens)
        worst = 0.0
        for i, wav in enumerate(wavs):
            alone, _ = ssl(wav.unsqueeze(0))
            n = alone.shape[1]
            assert round(float(feat_lens[i]) * feats.shape[1]) == n
            assert torch.all(feats[i, n:] == 0)
            worst = max(worst, float((feats[i, :n] - alone[0]).abs().max()))
    return worst


def test_folder_contents(tiny_w2v2_group, tiny_w2v2_layer):
    for folder, norm in [
        (tiny_w2v2_group, "group"),
        (tiny_w2v2_layer, "layer"),
    ]:
        assert {"config.json", "preprocessor_config.json"} <= set(
            os.listdir(folder)
        )
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        assert config["feat_extract_norm"] == norm
        assert config["do_stable_layer_norm"] == (norm == "layer")
        with open(os.path.join(folder, "preprocessor_config.json")) as f:
            assert json.load(f)["do_normalize"] is True


def test_base_config_is_wav2vec2_base():
    config = wav2vec2_config("base", "group")
    assert config.hidden_size == 768
    assert config.num_hidden_layers == 12
    assert config.num_attention_heads == 12
    assert config.intermediate_size == 3072
    assert tuple(config.conv_dim) == (512,) * 7
    assert tuple(config.conv_kernel) == (10, 3, 3, 3, 3, 2, 2)
    assert tuple(config.conv_stride) == (5, 2, 2, 2, 2, 2, 2)
    assert config.num_conv_pos_embeddings == 128
    assert config.num_conv_pos_embedding_groups == 16
    assert config.feat_extract_norm == "group"
    assert not config.do_stable_layer_norm and not config.conv_bias
    with pytest.raises(ValueError, match="size"):
        wav2vec2_config("large")


def test_normalisation_matches_hf_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    extractor = Wav2Vec2FeatureExtractor(do_normalize=True)
    wavs = waves([500, 1200, 1300], seed=1)
    batch, lens = pad_batch(wavs)
    ours = normalize_waveforms(batch, lens)
    for i, wav in enumerate(wavs):
        ref = extractor(wav.numpy(), sampling_rate=16000).input_values[0]
        n = len(wav)
        np.testing.assert_allclose(ours[i, :n].numpy(), ref, atol=1e-5)
        assert torch.all(ours[i, n:] == 0)


def test_layer_norm_backbone_is_padding_invariant(tiny_w2v2_layer, tmp_path):
    ssl = backbone(tiny_w2v2_layer, tmp_path).eval()
    assert ssl.per_utterance == "never"
    assert max_diff_alone_vs_batched(ssl, waves([4000, 9000, 16000])) < 1e-4


def test_speechbrain_lobe_alone_leaks_padding(tiny_w2v2_layer, tmp_path):
    """The trap we avoid: SpeechBrain's lobe (which loads the model; its
    forward is not ours) layer-norms the whole padded tensor."""
    lobe = backbone(tiny_w2v2_layer, tmp_path).eval().lobe
    lobe.normalize_wav = True
    wavs = waves([4000, 16000])
    batch, lens = pad_batch(wavs)
    with torch.no_grad():
        batched = lobe(batch, lens)
        alone = lobe(wavs[0].unsqueeze(0))
    n = alone.shape[1]
    assert float((batched[0, :n] - alone[0]).abs().max()) > 1e-3


def test_group_norm_backbone(tiny_w2v2_group, tmp_path):
    """Group norm spans padding when batched; per utterance it cannot."""
    wavs = waves([4000, 9000, 16000])
    batched = backbone(tiny_w2v2_group, tmp_path, per_utterance="never").eval()
    assert max_diff_alone_vs_batched(batched, wavs) > 1e-3
    auto = backbone(tiny_w2v2_group, tmp_path).eval()
    assert auto.per_utterance == "eval"
    assert max_diff_alone_vs_batched(auto, wavs) < 1e-5
    # "eval" batches in training (speed) and goes one by one at inference.
    batch, lens = pad_batch(wavs)
    with torch.no_grad():
        auto.train()
        train_feats, _ = auto(batch, lens)
        batched_feats, _ = batched.train()(batch, lens)
    assert torch.equal(train_feats, batched_feats)


@pytest.mark.parametrize("per_utterance", ["never", "always"])
def test_frozen_backbone_gets_no_gradient(
    tiny_w2v2_group, tmp_path, per_utterance
):
    ssl = backbone(
        tiny_w2v2_group,
        tmp_path,
        per_utterance=per_utterance,
        layer_weights=True,
    )
    ssl.train()
    assert not ssl.lobe.model.training  # frozen: no dropout in training
    batch, lens = pad_batch(waves([4000, 8000]))
    feats, _ = ssl(batch, lens)
    feats.sum().backward()
    for name, param in ssl.lobe.named_parameters():
        assert param.grad is None, name
        assert not param.requires_grad, name
    assert ssl.layer_weights.grad is not None
    assert ssl.layer_weights.grad.abs().sum() > 0


def test_fine_tuned_backbone_gets_gradients(tiny_w2v2_layer, tmp_path):
    ssl = backbone(tiny_w2v2_layer, tmp_path, freeze=False)
    ssl.train()
    assert ssl.lobe.model.training
    batch, lens = pad_batch(waves([4000, 8000]))
    feats, _ = ssl(batch, lens)
    (feats**2).sum().backward()
    for name, param in ssl.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_layer_weights(tiny_w2v2_layer, tmp_path):
    ssl = backbone(tiny_w2v2_layer, tmp_path, layer_weights=True).eval()
    assert ssl.n_layers == 3
    batch, lens = pad_batch(waves([4000, 8000]))
    with torch.no_grad():
        hidden, hid_lens = ssl.extract(batch, lens)
        assert hidden.shape == (2, 3, 25, 32)
        assert torch.allclose(ssl.combine(hidden), hidden.mean(1), atol=1e-6)
        ssl.layer_weights.fill_(-1e4)
        ssl.layer_weights[-1] = 0.0
        assert torch.allclose(ssl.combine(hidden), hidden[:, -1], atol=1e-6)
        feats, feat_lens = ssl(batch, lens)
    assert torch.equal(feats, ssl.combine(hidden))
    assert torch.equal(feat_lens, hid_lens)
    with pytest.raises(ValueError, match="no hidden states where"):
        ssl.combine(hidden[:, 0])
    # the message names the cause (issue 17 row 14), not the cache
    with pytest.raises(ValueError, match="2 hidden states where "
                       "Wav2Vec2Encoder has 3 .*LayerDrop"):
        ssl.combine(hidden[:, :2])


def test_output_norm_is_per_frame(tiny_w2v2_layer, tmp_path):
    ssl = backbone(tiny_w2v2_layer, tmp_path, output_norm=True).eval()
    with torch.no_grad():
        feats, _ = ssl(torch.stack(waves([8000])))
    assert torch.allclose(feats.mean(-1), torch.zeros(1, 25), atol=1e-5)


def test_too_short_waveform_is_a_clear_error(tiny_w2v2_layer, tmp_path):
    ssl = backbone(tiny_w2v2_layer, tmp_path)
    assert ssl.min_samples == 165
    batch, lens = pad_batch(waves([100, 4000]))
    with pytest.raises(ValueError, match=r"one output frame of Wav2Vec2Encoder \(165 samples\)"):
        ssl(batch, lens)


def test_bad_per_utterance_value(tiny_w2v2_layer, tmp_path):
    with pytest.raises(ValueError, match="per_utterance"):
        backbone(tiny_w2v2_layer, tmp_path, per_utterance="sometimes")


def test_config_mode_matches_folder(tiny_w2v2_layer, tmp_path):
    """Built from an inline config (export), loaded with the same state
    dict, the backbone gives the same features as from its folder."""
    from transformers import AutoConfig

    folder = backbone(tiny_w2v2_layer, tmp_path).eval()
    config = AutoConfig.from_pretrained(tiny_w2v2_layer).to_dict()
    inline = SSLBackbone(config=config, normalize=True).eval()
    assert inline.state_dict().keys() == folder.state_dict().keys()
    inline.load_state_dict(folder.state_dict())
    assert inline.per_utterance == folder.per_utterance == "never"
    batch, lens = pad_batch(waves([4000, 8000]))
    with torch.no_grad():
        assert torch.equal(inline(batch, lens)[0], folder(batch, lens)[0])
    with pytest.raises(ValueError, match="normalize=True/False"):
        SSLBackbone(config=config)
    with pytest.raises(ValueError, match="source"):
        SSLBackbone()


def test_per_utterance_groups_equal_lengths(tiny_w2v2_group, tmp_path):
    """Equal-length utterances may share a backbone call: still exact."""
    ssl = backbone(tiny_w2v2_group, tmp_path, per_utterance="always").eval()
    wavs = waves([8000, 5000, 8000, 5000, 3000], seed=3)
    assert max_diff_alone_vs_batched(ssl, wavs) < 1e-5
    ssl = backbone(
        tiny_w2v2_group, tmp_path, per_utterance="always", layer_weights=True
    ).eval()
    batch, lens = pad_batch(wavs)
    with torch.no_grad():
        hidden, _ = ssl.extract(batch, lens)
        alone, _ = ssl.extract(wavs[1][None])
    assert hidden.shape == (5, 3, 25, 32)
    n = alone.shape[-2]
    assert (hidden[1, :, :n] - alone[0]).abs().max() < 1e-5
    assert torch.all(hidden[1, :, n:] == 0)


def test_layer_weights_padding_invariant(tiny_w2v2_layer, tmp_path):
    ssl = backbone(tiny_w2v2_layer, tmp_path, layer_weights=True).eval()
    with torch.no_grad():
        ssl.layer_weights.copy_(torch.tensor([0.3, -1.0, 2.0]))
    assert max_diff_alone_vs_batched(ssl, waves([3000, 12000])) < 1e-4
