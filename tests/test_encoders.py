"""The encoder interface for every family, on tiny random configurations.

wav2vec2, HuBERT, WavLM, data2vec-audio (``Wav2Vec2Encoder``) and Whisper
(``WhisperEncoder``): built from a folder through ``SSLBackbone``, rebuilt
offline from ``export_options()`` with equal state-dict keys, frame counts,
batch invariance, freezing and the optimiser's encoder parameters; Whisper
against Hugging Face's own feature extractor + encoder; a Whisper model
trained, exported and loaded by plain ``EncoderClassifier`` offline.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from amser_sb.lobes import (
    ENCODERS,
    SSLBackbone,
    SpeechEncoder,
    Wav2Vec2Encoder,
    WhisperEncoder,
    build_random_whisper,
    encoder_class,
    encoder_from_options,
)
from amser_sb.lobes.encoder_registry import EncoderSourceError, read_model_type

HERE = os.path.dirname(os.path.abspath(__file__))
FULL = os.path.join(HERE, "..", "recipes", "IEMOCAP", "emotion_recognition",
                    "hparams", "am_resnet_w2v2.yaml")

_CONV = dict(conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4),
             conv_stride=(5, 8, 8), num_conv_pos_embeddings=16,
             num_conv_pos_embedding_groups=4)
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=64, layerdrop=0.0, mask_time_prob=0.0)
FAMILIES = ["wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper"]


def _build(model_type, folder):
    """A tiny random model of a family, saved as a local HF folder."""
    if model_type == "whisper":
        return build_random_whisper(folder)
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    kwargs = dict(_TINY, **_CONV)
    if model_type == "data2vec-audio":
        kwargs["conv_pos_kernel_size"] = 16
        kwargs["num_conv_pos_embeddings"] = 16
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    return request.param, _build(request.param, root / "model"), root


def test_registry_knows_every_family():
    assert {"wav2vec2", "hubert", "wavlm", "data2vec-audio",
            "whisper"} <= set(ENCODERS)
    assert encoder_class("wavlm") is Wav2Vec2Encoder
    assert encoder_class("whisper") is WhisperEncoder
    with pytest.raises(EncoderSourceError, match="no encoder class serves"):
        encoder_class("bert")


def test_interface(family):
    model_type, folder, root = family
    assert read_model_type(folder) == model_type
    enc = SSLBackbone(folder, save_path=str(root / "cache"),
                      layer_weights=True).eval()
    assert isinstance(enc, SpeechEncoder)
    assert isinstance(enc, encoder_class(model_type))
    assert enc.out_dim == 32 and enc.n_layers == 3
    wavs = 0.1 * torch.randn(2, 16000)
    lens = torch.tensor([1.0, 0.6])
    hidden, hid_lens = enc.extract(wavs, lens)
    assert hidden.shape[:2] == (2, 3) and hidden.shape[-1] == 32
    frames = enc.frame_counts(torch.tensor([16000, 9600]))
    assert hidden.shape[2] == int(frames[0])
    assert torch.allclose(hid_lens, frames.float() / hidden.shape[2])
    # padded frames are 0
    assert hidden[1, :, int(frames[1]):].abs().max() == 0
    feats, _ = enc(wavs, lens)
    assert feats.shape == (2, hidden.shape[2], 32)
    # frozen: eval mode in train mode, no encoder parameters to optimise
    enc.train()
    assert not enc.backbone().training
    assert enc.encoder_parameters() == []
    # the identity is JSON and names the family
    identity = enc.cache_identity()
    assert json.loads(json.dumps(identity, default=str))["class"].endswith(
        type(enc).__name__
    )


def test_rebuilt_offline_from_export_options(family):
    model_type, folder, root = family
    enc = SSLBackbone(folder, save_path=str(root / "cache"),
                      layer_weights=True).eval()
    options = json.loads(json.dumps(enc.export_options()))
    rebuilt = encoder_from_options(options).eval()
    assert type(rebuilt) is type(enc)
    assert set(rebuilt.state_dict()) == set(enc.state_dict())
    missing, unexpected = rebuilt.load_state_dict(enc.state_dict())
    assert not missing and not unexpected
    wavs = 0.1 * torch.randn(1, 8000)
    a, _ = enc(wavs)
    b, _ = rebuilt(wavs)
    assert torch.allclose(a, b, atol=1e-5)


def test_batch_invariance(family):
    """A clip alone = the same clip in a padded batch (to 1e-4)."""
    model_type, folder, root = family
    enc = SSLBackbone(folder, save_path=str(root / "cache")).eval()
    torch.manual_seed(1)
    clips = [0.1 * torch.randn(n) for n in (16000, 7000, 11000)]
    longest = max(c.numel() for c in clips)
    batch = torch.zeros(len(clips), longest)
    for i, clip in enumerate(clips):
        batch[i, : clip.numel()] = clip
    lens = torch.tensor([c.numel() / longest for c in clips])
    together, _ = enc(batch, lens)
    for i, clip in enumerate(clips):
        alone, _ = enc(clip.unsqueeze(0))
        frames = alone.shape[1]
        torch.testing.assert_close(together[i, :frames], alone[0],
                                   atol=1e-4, rtol=1e-4)


def test_fine_tuned_encoder_parameters(family):
    model_type, folder, root = family
    enc = SSLBackbone(folder, save_path=str(root / "cache"), freeze=False,
                      layer_weights=True)
    params = enc.encoder_parameters()
    assert params and all(p.requires_grad for p in params)
    assert all(p is not enc.layer_weights for p in params)
    enc.train()
    feats, _ = enc(0.1 * torch.randn(2, 8000))
    feats.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_whisper_equals_hugging_face(tmp_path):
    """Whisper's own feature extractor + encoder give the same frames."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = build_random_whisper(tmp_path / "w")
    enc = SSLBackbone(folder, save_path=str(tmp_path), layer_weights=True)
    enc = enc.eval()
    wav = 0.1 * torch.randn(24000)
    ours, _ = enc.extract(wav.unsqueeze(0))
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    feats = extractor(wav.numpy(), sampling_rate=16000,
                      return_tensors="pt").input_features
    model = WhisperModel.from_pretrained(folder).eval()
    with torch.no_grad():
        ref = model.encoder(feats, output_hidden_states=True).hidden_states
    ref = torch.stack(ref, dim=1)[:, :, : ours.shape[2]]
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_whisper_long_input_and_short_window(tmp_path):
    folder = build_random_whisper(tmp_path / "w")
    enc = SSLBackbone(folder, save_path=str(tmp_path)).eval()
    # 35 s: two 30 s windows, frames of both concatenated
    long = 0.1 * torch.randn(1, 16000 * 35)
    feats, _ = enc(long)
    assert feats.shape[1] == 35 * 50
    first, _ = enc(long[:, : 16000 * 30])
    torch.testing.assert_close(feats[:, :1500], first)
    short = SSLBackbone(folder, save_path=str(tmp_path),
                        window_seconds=4.0).eval()
    out, _ = short(0.1 * torch.randn(2, 16000 * 3))
    assert out.shape == (2, 150, 32)
    with pytest.raises(ValueError, match="window_seconds"):
        SSLBackbone(folder, save_path=str(tmp_path), window_seconds=0.013)


def test_window_is_whisper_only(tmp_path):
    folder = _build("wav2vec2", tmp_path / "w2v")
    with pytest.raises(ValueError, match="Whisper"):
        SSLBackbone(folder, save_path=str(tmp_path), window_seconds=4.0)


def test_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderSourceError, match="has no config.json"):
        SSLBackbone(str(tmp_path / "empty"))


def test_whisper_model_trains_exports_and_loads_offline(tmp_path):
    """A fused Whisper model: train 1 epoch, export, plain
    EncoderClassifier in a fresh offline process = training-time scores."""
    from amser_sb.training.run import run_fold
    from amser_sb.data.synthetic import make_iemocap_corpus
    from amser_sb.inference.export import export_model

    corpus = tmp_path / "IEMOCAP_full_release"
    make_iemocap_corpus(corpus, utts_per_speaker=4, sessions=(1, 2),
                        min_dur=1.0, max_dur=2.0)
    whisper = build_random_whisper(tmp_path / "whisper")
    values = {
        "data_folder": corpus,
        "ssl_hub": whisper,
        "ssl_layer_weights": True,
        "ssl_window_seconds": 2.0,
        "output_root": tmp_path / "exp",
        "feature_cache_folder": tmp_path / "cache",
        "feature_cache_dtype": "float32",
        "pretrained_folder": tmp_path / "pretrained",
        "prepare_sessions": "[1, 2]",
        "prepare_num_workers": 1,
        "number_of_epochs": 1,
        "batch_size": 8,
        "num_workers": 0,
        "segment_seconds": 1.0,
        "am_resnet_channels": 8,
        "fusion_dim": 16,
        "fusion_heads": 2,
        "fusion_ffn_dim": 32,
        "ckpt_interval_minutes": 0,
    }
    overrides = "\n".join(f"{k}: {v}" for k, v in values.items())
    run_fold(FULL, {"noprogressbar": True}, overrides)
    fold = tmp_path / "exp" / "speaker" / "fold_1"
    model_dir = tmp_path / "model"
    export_model(str(fold), str(model_dir))
    options = json.load(open(model_dir / "encoder" / "options.json"))
    assert options["window_seconds"] == 2.0 and options["layer_weights"]
    with open(fold / "test_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))[:3]
    with open(tmp_path / "exp" / "manifests" / "all.csv") as handle:
        wav_of = {r["ID"]: r["wav"] for r in csv.DictReader(handle)}
    files = [wav_of[row["ID"]] for row in rows]
    script = (
        "import json, sys\n"
        "from speechbrain.inference.classifiers import EncoderClassifier\n"
        "clf = EncoderClassifier.from_hparams(source=sys.argv[1],"
        " savedir='sd')\n"
        "print(json.dumps([clf.classify_file(f)[0][0].tolist()"
        " for f in sys.argv[2:]]))\n"
    )
    # the encoder folder is gone: the export must not need it
    os.rename(whisper, str(tmp_path / "moved"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model_dir), *files],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs = json.loads(proc.stdout.strip().splitlines()[-1])
    for row, got in zip(rows, probs):
        expected = [float(row[f"p_{c}"]) for c in ("neu", "hap", "sad", "ang")]
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_deprecated_wav2vec2_names_still_work(tmp_path, caplog):
    from amser_sb.config.hparams_loading import RecipeError, load_hparams
    from amser_sb.config.overrides import rename_deprecated

    folder = build_random_whisper(tmp_path / "w")
    overrides = (f"wav2vec2_hub: {folder}\nfreeze_wav2vec2: True\n"
                 f"data_folder: {tmp_path}\nskip_prep: True\n"
                 f"pretrained_folder: {tmp_path / 'pre'}")
    with caplog.at_level("WARNING"):
        hparams = load_hparams(FULL, overrides, check_data=False)
    assert isinstance(hparams["ssl"], WhisperEncoder)
    assert hparams["ssl_hub"] == folder
    assert "--wav2vec2_hub is deprecated: use --ssl_hub" in caplog.text
    with pytest.raises(RecipeError, match="keep --ssl_hub"):
        load_hparams(FULL, {"wav2vec2_hub": "a", "ssl_hub": "b"})
    assert rename_deprecated("lr_wav2vec2: 0.1") == {"lr_ssl": 0.1}
