"""Frozen-backbone feature cache: exactness, reuse and invalidation."""

import logging
import os
import time

import numpy as np
import pytest
import soundfile
import torch

from amser_sb.training.feature_cache import FeatureCache, backbone_identity
from amser_sb.lobes import AMSER, AMResNet, CrossAttentionFusion, SSLBackbone


@pytest.fixture(scope="module")
def backbone(tiny_w2v2_group, tmp_path_factory):
    """One tiny frozen backbone for the module (tests never change it)."""
    folder = tmp_path_factory.mktemp("pm")
    return SSLBackbone(tiny_w2v2_group, save_path=str(folder))


def _wav(path, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    data = (0.1 * rng.standard_normal(int(seconds * 16000))).astype("float32")
    soundfile.write(str(path), data, 16000, subtype="FLOAT")
    return str(path), torch.from_numpy(data)


def test_cached_features_equal_the_backbone_on_the_segment(backbone,
                                                           tmp_path):
    path, sig = _wav(tmp_path / "a.wav", 1.0)
    cache = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    seg = sig[4000:12000]
    feats, lens = cache.features([seg, sig], [path, path], [4000, 0],
                                 [12000, 16000])
    assert cache.misses == 2 and cache.hits == 0
    with torch.no_grad():
        ref_seg, _ = backbone.extract(seg[None])
        ref_all, _ = backbone.extract(sig[None])
    assert feats.shape == (2, ref_all.shape[1], ref_all.shape[2])
    n = ref_seg.shape[1]
    assert torch.equal(feats[0, :n], ref_seg[0])
    assert feats[0, n:].abs().sum() == 0  # padding
    assert torch.equal(feats[1], ref_all[0])
    assert torch.allclose(lens, torch.tensor([n / ref_all.shape[1], 1.0]))
    # second time: read back, identical
    again, _ = cache.features([seg, sig], [path, path], [4000, 0],
                              [12000, 16000])
    assert cache.hits == 2 and torch.equal(again, feats)


def test_float16_storage_is_what_every_epoch_sees(backbone, tmp_path):
    path, sig = _wav(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", backbone)  # float16
    first, _ = cache.features([sig], [path], [0], [16000])
    second, _ = cache.features([sig], [path], [0], [16000])
    assert torch.equal(first, second)
    with torch.no_grad():
        ref, _ = backbone.extract(sig[None])
    assert torch.allclose(first, ref, atol=1e-2, rtol=1e-2)


def test_changed_audio_is_recomputed(backbone, tmp_path):
    path, sig = _wav(tmp_path / "a.wav", seed=0)
    cache = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    old, _ = cache.features([sig], [path], [0], [16000])
    time.sleep(0.01)
    _, new_sig = _wav(tmp_path / "a.wav", seed=1)  # same name, new content
    new, _ = cache.features([new_sig], [path], [0], [16000])
    assert cache.misses == 2 and not torch.equal(old, new)
    # other segment bounds of the same file: another entry
    cache.features([new_sig[:8000]], [path], [0], [8000])
    assert cache.misses == 3


def test_content_hash_survives_a_touch(backbone, tmp_path):
    path, sig = _wav(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", backbone, content_hash=True)
    cache.features([sig], [path], [0], [16000])
    os.utime(path, (1, 1))
    cache2 = FeatureCache(tmp_path / "cache", backbone, content_hash=True)
    cache2.features([sig], [path], [0], [16000])
    assert cache2.hits == 1
    # with size+mtime keys a touch invalidates
    cache3 = FeatureCache(tmp_path / "cache", backbone)
    cache3.features([sig], [path], [0], [16000])
    os.utime(path, (2, 2))
    cache3.features([sig], [path], [0], [16000])
    assert cache3.misses == 2


def test_another_backbone_never_reads_stale_features(backbone, tmp_path,
                                                     tiny_w2v2_group):
    path, sig = _wav(tmp_path / "a.wav")
    root = tmp_path / "cache"
    cache = FeatureCache(root, backbone, dtype="float32")
    cache.features([sig], [path], [0], [16000])
    # same backbone rebuilt from the same folder: shares the entries
    twin = SSLBackbone(tiny_w2v2_group, save_path=str(tmp_path / "pm"))
    assert FeatureCache(root, twin, dtype="float32").folder == cache.folder
    # changed weights
    with torch.no_grad():
        twin.lobe.model.encoder.layers[0].attention.q_proj.weight.add_(0.1)
    changed = FeatureCache(root, twin, dtype="float32")
    assert changed.folder != cache.folder
    changed.features([sig], [path], [0], [16000])
    assert changed.misses == 1
    # changed normalisation option
    raw = SSLBackbone(tiny_w2v2_group, save_path=str(tmp_path / "pm"),
                      normalize=False)
    assert FeatureCache(root, raw, dtype="float32").folder != cache.folder
    # an option that acts after the cached step does not invalidate
    normed = SSLBackbone(tiny_w2v2_group, save_path=str(tmp_path / "pm"),
                         output_norm=True)
    assert FeatureCache(root, normed, dtype="float32").folder == cache.folder
    # all hidden layers are another output
    layers = SSLBackbone(tiny_w2v2_group, save_path=str(tmp_path / "pm"),
                         layer_weights=True)
    identity = backbone_identity(layers)
    assert identity["all_hiddens"] is True
    assert FeatureCache(root, layers, dtype="float32").folder != cache.folder
    # another storage type
    assert FeatureCache(root, backbone).folder != cache.folder


def test_corrupt_entry_is_recomputed(backbone, tmp_path, caplog):
    path, sig = _wav(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    ref, _ = cache.features([sig], [path], [0], [16000])
    entry = cache._entry(cache.audio_key(path, 0, 16000))
    with open(entry, "wb") as handle:
        handle.write(b"truncated")
    with caplog.at_level(logging.WARNING, logger="amser_sb.training.feature_cache"):
        again, _ = cache.features([sig], [path], [0], [16000])
    assert "unreadable cache entry" in caplog.text
    assert torch.equal(again, ref) and cache.misses == 2


def test_model_output_is_the_same_with_and_without_cache(backbone, tmp_path):
    path, sig = _wav(tmp_path / "a.wav", 1.0)
    torch.manual_seed(0)
    am = AMResNet(channels=8)
    model = AMSER(backbone, am, CrossAttentionFusion(8, backbone.out_dim))
    mode = backbone.training
    model.eval()
    cache = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    wavs = torch.stack([sig, torch.cat([sig[:8000], torch.zeros(8000)])])
    lens = torch.tensor([1.0, 0.5])
    feats, feat_lens = cache.features([sig, sig[:8000]], [path, path],
                                      [0, 0], [16000, 8000])
    with torch.no_grad():
        direct = model(wavs, lens)
        cached = model(wavs, lens, ssl_feats=feats, ssl_lens=feat_lens)
    assert torch.allclose(direct, cached, atol=1e-5)
    backbone.train(mode)


def test_equal_length_segments_run_as_one_batch(backbone, tmp_path):
    path, sig = _wav(tmp_path / "a.wav", 1.0)
    mode = backbone.training
    cache = FeatureCache(tmp_path / "cache", backbone, dtype="float32",
                         max_batch=2)
    segs = [sig[:5000], sig[5000:10000], sig[10000:15000]]
    feats, lens = cache.features(segs, [path] * 3, [0, 5000, 10000],
                                 [5000, 10000, 15000])
    assert cache.misses == 3 and torch.equal(lens, torch.ones(3))
    with torch.no_grad():
        for k, seg in enumerate(segs):
            ref, _ = backbone.extract(seg[None])
            assert torch.allclose(feats[k], ref[0], atol=1e-5)
    # the backbone's own options and mode are left as they were
    assert backbone.per_utterance == "eval" and backbone.training == mode


def test_frozen_am_resnet_is_cached_with_its_mask(tmp_path):
    path, sig = _wav(tmp_path / "a.wav", 1.0)
    torch.manual_seed(0)
    am = AMResNet(channels=8).eval()
    cache = FeatureCache(tmp_path / "cache", am, dtype="float32")
    mask = torch.zeros(16000)
    mask[2000:12000] = 1
    short = torch.ones(8000)
    feats, lens = cache.features([sig, sig[:8000]], [path, path], [0, 0],
                                 [16000, 8000], masks=[mask, short])
    wavs = torch.stack([sig, torch.cat([sig[:8000], torch.zeros(8000)])])
    masks = torch.stack([mask, torch.cat([short, torch.zeros(8000)])])
    with torch.no_grad():
        ref, ref_lens = am(wavs, torch.tensor([1.0, 0.5]), mask=masks)
    assert torch.allclose(lens, ref_lens)
    n = int(round(float(ref_lens[1]) * ref.shape[1]))
    assert torch.allclose(feats[0], ref[0], atol=1e-5)
    assert torch.allclose(feats[1, :n], ref[1, :n], atol=1e-5)
    # same audio, same bounds, another mask: another entry
    cache.features([sig], [path], [0], [16000], masks=[torch.ones(16000)])
    assert cache.misses == 3
    cache.features([sig], [path], [0], [16000], masks=[mask])
    assert cache.hits == 1


def test_entry_of_another_segment_is_recomputed(backbone, tmp_path, caplog):
    """An entry file holding another segment's features (a shorter one),
    a different dtype or feature size is not used, in a fresh process's
    cache too (nothing computed there yet)."""
    path, sig = _wav(tmp_path / "a.wav", 1.0)
    cache = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    cache.features([sig, sig[:8000]], [path, path], [0, 0], [16000, 8000])
    whole = cache._entry(cache.audio_key(path, 0, 16000))
    half = cache._entry(cache.audio_key(path, 0, 8000))
    good = torch.load(whole, weights_only=True)
    os.replace(half, whole)  # the 0.5 s entry under the 1 s key
    fresh = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    with caplog.at_level(logging.WARNING):
        feats, _ = fresh.features([sig], [path], [0], [16000])
    assert fresh.misses == 1 and fresh.rejected == 1
    assert torch.equal(feats[0], good)
    assert "expected %d for 16000 samples" % good.shape[0] in caplog.text
    assert "1 wrong entries so far" in caplog.text

    torch.save(good.half(), whole)  # another storage type
    half_frames = int(backbone.frame_counts(torch.tensor([8000]))[0])
    torch.save(torch.zeros(half_frames, good.shape[1] - 1), half)  # feat dim
    again = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    again.features([sig, sig[:8000]], [path, path], [0, 0], [16000, 8000])
    assert again.rejected == 2 and again.misses == 2
    assert "dtype torch.float16, expected torch.float32" in caplog.text
    assert "expected (frames, %d)" % good.shape[1] in caplog.text
    # what was recomputed is used from then on
    last = FeatureCache(tmp_path / "cache", backbone, dtype="float32")
    last.features([sig, sig[:8000]], [path, path], [0, 0], [16000, 8000])
    assert last.hits == 2 and last.rejected == 0
