"""Fine-tuning the encoder: LayerDrop with layer weights, top-k layers,
the cached lower part of a partly fine-tuned encoder, resume."""

import copy
import glob
import os

import pytest
import torch

from tiny_run import tiny_run_values

from amser_sb.training.feature_cache import FeatureCache
from amser_sb.lobes import SSLBackbone
from amser_sb.lobes.encoder_registry import hf_config_dict
from amser_sb.lobes.wav2vec2_layers import Wav2Vec2Stack
from amser_sb.lobes.whisper import tiny_whisper_config

TINY = dict(
    hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
    intermediate_size=32, conv_dim=(16, 16), conv_kernel=(10, 8),
    conv_stride=(5, 64), num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2, mask_time_prob=0.0,
)
# model_type, pre-norm (do_stable_layer_norm) transformer
W2V_FAMILIES = [("wav2vec2", False), ("wav2vec2", True), ("hubert", False),
                ("hubert", True), ("wavlm", False), ("wavlm", True),
                ("data2vec-audio", False)]


def family_config(model_type, pre_norm=False, **overrides):
    """A tiny Hugging Face configuration dict of a family."""
    if model_type == "whisper":
        return hf_config_dict(tiny_whisper_config(encoder_layers=3,
                                                  **overrides))
    from transformers import AutoConfig

    kwargs = dict(TINY, **overrides)
    if model_type != "data2vec-audio":
        kwargs.update(do_stable_layer_norm=pre_norm,
                      feat_extract_norm="layer" if pre_norm else "group")
    return hf_config_dict(AutoConfig.for_model(model_type, **kwargs))


def encoder(model_type, pre_norm=False, seed=0, config=None, **kwargs):
    torch.manual_seed(seed)
    config = config or family_config(model_type, pre_norm)
    if model_type != "whisper":
        kwargs.setdefault("normalize", True)
    return SSLBackbone(config=config, **kwargs)


def batch(lengths=(16000, 11000), seed=0):
    gen = torch.Generator().manual_seed(seed)
    time = max(lengths)
    wavs = torch.zeros(len(lengths), time)
    for i, n in enumerate(lengths):
        wavs[i, :n] = 0.1 * torch.randn(n, generator=gen)
    return wavs, torch.tensor([n / time for n in lengths])


# ---------------------------------------------------------------- stack ---
@pytest.mark.parametrize("model_type,pre_norm", W2V_FAMILIES)
def test_stack_gives_the_models_hidden_states(model_type, pre_norm):
    """Our layer loop equals output_hidden_states of the model's forward."""
    enc = encoder(model_type, pre_norm).eval()
    model = enc.backbone()
    wavs, _ = batch()
    n = torch.tensor([16000, 11000])
    mask = (torch.arange(16000) < n.unsqueeze(1)).long()
    with torch.no_grad():
        ref = model(wavs, attention_mask=mask,
                    output_hidden_states=True).hidden_states
        stack = Wav2Vec2Stack(model)
        frames = enc.frame_counts(n)
        first = stack.embed(wavs, frames)
        states = [first] + stack.layers(first, frames)
        # split anywhere: the same states
        lower = [first] + stack.layers(first, frames, 0, 2)
        upper = stack.layers(lower[-1], frames, 2)
        last = stack.output(states[-1])
        ref_last = model(wavs, attention_mask=mask).last_hidden_state
    assert len(states) == len(ref) == 4
    for i, f in enumerate(frames.tolist()):
        for ours, theirs in zip(states, ref):
            assert torch.allclose(ours[i, :f], theirs[i, :f], atol=1e-5)
        assert torch.allclose(last[i, :f], ref_last[i, :f], atol=1e-5)
    for a, b in zip(states, lower + upper):
        assert torch.equal(a, b)


# ------------------------------------------------------------ LayerDrop ---
FAMILIES = [m for m, pre in W2V_FAMILIES if not pre] + ["whisper"]


def _with_layerdrop(model_type, rate=0.5):
    key = "encoder_layerdrop" if model_type == "whisper" else "layerdrop"
    return family_config(model_type, **{key: rate})


def test_hugging_face_forward_loses_states_with_layerdrop():
    """The bug: in train mode the model's own forward returns a random
    number of hidden states when LayerDrop is on."""
    enc = encoder("wav2vec2", config=_with_layerdrop("wav2vec2"))
    model = enc.backbone().train()
    wavs, _ = batch()
    torch.manual_seed(0)
    with torch.no_grad():
        counts = {len(model(wavs, output_hidden_states=True).hidden_states)
                  for _ in range(20)}
    assert len(counts) > 1


@pytest.mark.parametrize("finetune", ["all", 1])
@pytest.mark.parametrize("model_type", FAMILIES)
def test_layer_weights_get_every_state_with_layerdrop(model_type, finetune):
    """Fine-tuning with layer weights and LayerDrop 0.5, train mode, many
    steps: every step gives all hidden states and trains every layer."""
    enc = encoder(model_type, config=_with_layerdrop(model_type),
                  freeze=False, layer_weights=True, finetune_layers=finetune)
    enc.train()
    opt = torch.optim.SGD(enc.parameters(), lr=1e-3)
    wavs, lens = batch()
    layers = list(enc.transformer_layers())
    trained = layers if finetune == "all" else layers[-finetune:]
    torch.manual_seed(0)
    for _ in range(12):
        hidden, _ = enc.extract(wavs, lens)
        assert hidden.shape[1] == enc.n_layers == 4
        feats = enc.combine(hidden)
        opt.zero_grad()
        feats.pow(2).mean().backward()
        for layer in trained:  # no layer skipped: all got gradients
            assert all(p.grad is not None and p.grad.abs().sum() > 0
                       for p in layer.parameters() if p.requires_grad)
        opt.step()


@pytest.mark.parametrize("model_type", ["wav2vec2", "whisper"])
def test_layerdrop_kept_without_layer_weights(model_type):
    """Last-layer features: LayerDrop skips layers as the model's own
    forward does (train mode only), and the output shape never changes."""
    enc = encoder(model_type, config=_with_layerdrop(model_type),
                  freeze=False)
    layer = enc.transformer_layers()[1]
    torch.manual_seed(0)
    enc.train()
    draws = [enc.drop_layer(1, layer) for _ in range(200)]
    assert 60 < sum(draws) < 140
    enc.eval()
    assert not any(enc.drop_layer(1, layer) for _ in range(50))
    enc.train()
    wavs, lens = batch()
    shapes = {tuple(enc(wavs, lens)[0].shape) for _ in range(6)}
    assert len(shapes) == 1


# --------------------------------------------------------------- top k ---
def _names(module, params):
    ids = {id(p) for p in params}
    return {n for n, p in module.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("layer_weights", [True, False])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("model_type,pre_norm", [
    ("wav2vec2", False), ("wav2vec2", True), ("wavlm", False),
    ("whisper", False),
])
def test_top_k_trains_exactly_the_top_layers(model_type, pre_norm, k,
                                             layer_weights):
    enc = encoder(model_type, pre_norm, freeze=False, finetune_layers=k,
                  layer_weights=layer_weights)
    model = enc.backbone()
    layers = list(enc.transformer_layers())
    expected = {f"{'encoder.' if model_type != 'whisper' else ''}layers.{i}"
                f".{n}" for i in range(3 - k, 3)
                for n, _ in layers[i].named_parameters()}
    # the final norm trains where the features pass through it
    norm = "layer_norm" if model_type == "whisper" else "encoder.layer_norm"
    if model_type == "whisper" or (pre_norm and not layer_weights):
        expected |= {f"{norm}.weight", f"{norm}.bias"}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected
    assert _names(model, enc.encoder_parameters()) == expected
    assert enc.frozen_layers == 3 - k and not enc.freeze
    # train mode: the frozen part stays in eval mode (no dropout)
    enc.train()
    for i, layer in enumerate(layers):
        assert layer.training == (i >= 3 - k)
    assert not model.training
    wavs, lens = batch()
    feats, _ = enc(wavs, lens)
    feats.pow(2).mean().backward()
    got = {n for n, p in model.named_parameters()
           if p.grad is not None and p.grad.abs().sum() > 0}
    assert got == expected


def test_finetune_layers_values():
    assert encoder("wav2vec2", freeze=False, finetune_layers=0).freeze
    assert encoder("wav2vec2", freeze=False, finetune_layers=None).freeze
    full = encoder("wav2vec2", freeze=False, finetune_layers="all")
    assert not full.freeze and not full.partial
    frozen = encoder("wav2vec2", freeze=True, finetune_layers=2)
    assert frozen.freeze and not frozen.encoder_parameters()
    for bad in (4, -1, "two", 1.5):
        with pytest.raises(ValueError, match="from 0 to 3"):
            encoder("wav2vec2", freeze=False, finetune_layers=bad)


# ------------------------------------------------- cached lower layers ---
def _cache_and_keys(tmp_path, enc, lengths):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    cache = FeatureCache(tmp_path / "cache", enc, "float32")
    starts = [0] * len(lengths)
    return cache, ([str(wav)] * len(lengths), starts, list(lengths))


@pytest.mark.parametrize("layer_weights", [True, False])
@pytest.mark.parametrize("pre_norm", [False, True])
def test_cached_partial_equals_uncached(tmp_path, pre_norm, layer_weights):
    """Top layer live from cached lower states == the whole encoder live:
    outputs, and the parameters after one training step (with dropout)."""
    lengths = (16000, 11000, 7000)
    # per_utterance "always": a group-norm encoder batched in training
    # would let the padding reach its feature encoder (test_ssl.py); the
    # cache computes each segment on its own
    live = encoder("wav2vec2", pre_norm, freeze=False, finetune_layers=1,
                   layer_weights=layer_weights, per_utterance="always",
                   config=family_config(
                       "wav2vec2", pre_norm, hidden_dropout=0.2))
    cached = copy.deepcopy(live)
    cache, keys = _cache_and_keys(tmp_path, cached, lengths)
    wavs, lens = batch(lengths)
    sigs = [w[:n] for w, n in zip(wavs, lengths)]
    # every entry holds the states below the top layer
    lower, _ = cache.features(sigs, *keys)
    assert lower.shape[:2] == ((3, 3) if layer_weights else (3, 50))
    for enc in (live, cached):
        enc.eval()
    with torch.no_grad():
        ref, ref_lens = live(wavs, lens)
        got = cached.from_cache(*cache.features(sigs, *keys))
    assert cache.hits == 3
    assert torch.allclose(got, ref, atol=1e-5)

    before = copy.deepcopy(live.state_dict())
    losses = []
    for enc, from_cache in ((live, False), (cached, True)):
        enc.train()
        opt = torch.optim.SGD(enc.parameters(), lr=0.5)
        torch.manual_seed(7)  # the same dropout masks in the top layer
        if from_cache:
            feats = enc.from_cache(*cache.features(sigs, *keys))
        else:
            feats = enc(wavs, lens)[0]
        loss = feats.pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    for (name, a), b in zip(live.named_parameters(), cached.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    after = live.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(".layers.2." in k or k == "layer_weights"
                         or "encoder.layer_norm" in k for k in moved)


def test_partial_cache_keyed_by_the_frozen_part(tmp_path):
    """The cache folder follows the frozen weights and the split, not the
    fine-tuned top layers (they change every step)."""
    enc = encoder("wav2vec2", freeze=False, finetune_layers=1,
                  layer_weights=True)
    folder = FeatureCache(tmp_path, enc).folder
    with torch.no_grad():
        enc.transformer_layers()[2].feed_forward.output_dense.bias.add_(1.0)
    assert FeatureCache(tmp_path, enc).folder == folder
    with torch.no_grad():
        enc.transformer_layers()[0].feed_forward.output_dense.bias.add_(1.0)
    assert FeatureCache(tmp_path, enc).folder != folder
    other = encoder("wav2vec2", freeze=False, finetune_layers=2,
                    layer_weights=True)
    assert FeatureCache(tmp_path, other).folder != folder
    frozen = encoder("wav2vec2", layer_weights=True)
    assert frozen.cacheable and enc.cacheable
    whisper = encoder("whisper", freeze=False, finetune_layers=1)
    assert not whisper.cacheable  # Whisper runs its frozen part live


# ---------------------------------------------------------- end to end ---
RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP",
                      "emotion_recognition")
FULL = os.path.abspath(os.path.join(RECIPE, "hparams", "am_resnet_w2v2.yaml"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from amser_sb.data.synthetic import make_iemocap_corpus

    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    make_iemocap_corpus(root, utts_per_speaker=4, sessions=(1, 2),
                        min_dur=1.0, max_dur=1.5)
    return str(root)


@pytest.fixture(scope="module")
def layerdrop_w2v2(tmp_path_factory):
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    folder = tmp_path_factory.mktemp("w2v_layerdrop")
    return build_random_wav2vec2(folder, "tiny", layerdrop=0.5)


class _Killed(RuntimeError):
    """A simulated kill -9 in the middle of an epoch."""


def _final_weights(out):
    fold = out / "speaker" / "fold_1" / "save"
    newest = max(glob.glob(str(fold / "CKPT+*")), key=os.path.getmtime)
    return torch.load(os.path.join(newest, "embedding_model.ckpt"),
                      weights_only=True)


def test_top_k_run_with_cache_resumes(corpus, layerdrop_w2v2, tmp_path,
                                      monkeypatch):
    """train.py's fold run, top layer fine-tuned from cached lower states
    (LayerDrop 0.5 in the model): killed in epoch 2 and run again, it
    ends with the weights of the uninterrupted run."""
    from amser_sb.training.brain import AMSERBrain
    from amser_sb.training.run import run_fold

    def overrides(out):
        values = tiny_run_values(
            corpus, layerdrop_w2v2, out, number_of_epochs=2, batch_size=4,
            freeze_ssl=False, ssl_finetune_layers=1, lr_ssl=0.001,
            use_feature_cache=True, feature_cache_dtype="float32",
        )
        return "\n".join(f"{k}: {v}" for k, v in values.items())

    straight = tmp_path / "straight"
    run_fold(FULL, {"noprogressbar": True}, overrides(straight))
    log = (straight / "speaker" / "fold_1" / "train_log.txt").read_text()
    assert "cache_hits" in log

    resumed = tmp_path / "resumed"
    real_fit_batch = AMSERBrain.fit_batch
    seen = {"n": 0}

    def killed_in_epoch_2(self, batch):
        if self.hparams.epoch_counter.current == 2:
            seen["n"] += 1
            if seen["n"] == 2:
                raise _Killed("kill -9")
        return real_fit_batch(self, batch)

    monkeypatch.setattr(AMSERBrain, "fit_batch", killed_in_epoch_2)
    with pytest.raises(_Killed):
        run_fold(FULL, {"noprogressbar": True}, overrides(resumed))
    monkeypatch.setattr(AMSERBrain, "fit_batch", real_fit_batch)
    torch.manual_seed(12345)
    run_fold(FULL, {"noprogressbar": True}, overrides(resumed))

    ref, got = _final_weights(straight), _final_weights(resumed)
    top = [k for k in ref if ".layers.1." in k]
    assert top, sorted(ref)[:5]
    for key in ref:
        assert torch.allclose(ref[key].float(), got[key].float(),
                              atol=1e-6), key


def test_bad_finetune_layers_is_one_line(tiny_w2v2_group, tmp_path):
    """A layer count the encoder does not have: a user error naming the
    option (the CLI prints it as one line), not a traceback."""
    from amser_sb.config.hparams_loading import RecipeError, load_hparams

    overrides = {"data_folder": str(tmp_path), "ssl_hub": tiny_w2v2_group,
                 "pretrained_folder": str(tmp_path / "pretrained"),
                 "output_root": str(tmp_path), "freeze_ssl": False,
                 "ssl_finetune_layers": 5}
    with pytest.raises(RecipeError, match="ssl_finetune_layers.*from 0 to 2"):
        load_hparams(FULL, overrides, check_data=False)
