"""Every mode and fusion class exports without losing a module.

SpeechBrain's pretrainer loads weights with ``strict=False``: a module that
the inference hyperparams build differently from training would come back
with random weights and only a warning. For each model configuration a tiny
fold is trained (1 epoch, tiny random wav2vec2, 8-channel AM-ResNet),
exported, loaded with SpeechBrain's plain ``EncoderClassifier``, and every
parameter and buffer is compared with the trained checkpoint's.
"""

import os
import shutil

import pytest
import torch
from speechbrain.inference.classifiers import EncoderClassifier

from amser_sb.core.checkpoints import find_best_checkpoint
from amser_sb.training.run import run_fold
from amser_sb.inference.export import ExportError, check_export, export_model
from amser_sb.config.yaml_trust import disallowed_targets

HPARAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "recipes", "IEMOCAP", "emotion_recognition", "hparams")

#: (recipe file, overrides, class expected as the model's fusion)
CONFIGS = {
    "fusion-default": ("am_resnet_w2v2.yaml", {}, "GatedResidualFusion"),
    "concat": ("am_resnet_w2v2.yaml", {"mode": "concat", "fusion": "null"},
               "ConcatFusion"),
    # mode fusion with another fusion class, declared in the recipe's YAML
    # (the inference template once always built CrossAttentionFusion)
    "fusion-concat-class": ("concat_class.yaml", {}, "ConcatFusion"),
    # the paper's cross-attention alone (with the encoder skip)
    "fusion-paper-ssl-skip": ("am_resnet_w2v2.yaml",
                              {"fusion_encoder_head": "null",
                               "fusion_gated": False,
                               "fusion_ssl_skip": True},
                              "GatedResidualFusion"),
    "am_resnet": ("am_resnet.yaml", {}, None),
    "ssl": ("w2v2_baseline.yaml", {"freeze_ssl": True}, None),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from amser_sb.data.synthetic import make_iemocap_corpus

    root = tmp_path_factory.mktemp("modes") / "IEMOCAP_full_release"
    make_iemocap_corpus(root, utts_per_speaker=4, sessions=(1, 2),
                        min_dur=1.0, max_dur=1.5)
    return root


def _concat_class_recipe(path):
    """am_resnet_w2v2.yaml whose ``fusion`` is a ``ConcatFusion``."""
    with open(os.path.join(HPARAMS, "am_resnet_w2v2.yaml")) as handle:
        text = handle.read()
    start = text.index("fusion: !new:amser_sb.lobes.GatedResidualFusion")
    end = text.index("\n\n", start)
    path.write_text(
        text[:start]
        + "fusion: !new:amser_sb.lobes.ConcatFusion\n"
        "    am_dim: !ref <am_resnet_channels>\n"
        "    ssl_dim: !apply:getattr [!ref <ssl>, out_dim]"
        + text[end:]
    )
    return str(path)


def _train(corpus, w2v, out, recipe, extra):
    values = {
        "data_folder": corpus, "output_root": out,
        "prepare_sessions": "[1, 2]", "prepare_num_workers": 1,
        "number_of_epochs": 1, "batch_size": 8, "num_workers": 0,
        "segment_seconds": 1.0, "ckpt_interval_minutes": 0,
    }
    if recipe != "w2v2_baseline.yaml":
        values["am_resnet_channels"] = 8
    if recipe != "am_resnet.yaml":
        values.update(ssl_hub=w2v, feature_cache_folder=out / "cache",
                      pretrained_folder=out / "pretrained")
    if recipe in ("am_resnet_w2v2.yaml", "concat_class.yaml"):
        values.update(fusion_dim=16, fusion_heads=2, fusion_ffn_dim=32)
    values.update(extra)
    overrides = "\n".join(f"{k}: {v}" for k, v in values.items())
    path = os.path.join(HPARAMS, recipe)
    if recipe == "concat_class.yaml":
        path = _concat_class_recipe(out.parent / recipe)
    run_fold(path, {"noprogressbar": True}, overrides)
    return out / "speaker" / "fold_1"


def _assert_same_weights(model_dir, checkpoint, savedir):
    """Every parameter and buffer of the loaded folder = the checkpoint."""
    clf = EncoderClassifier.from_hparams(source=str(model_dir),
                                         savedir=str(savedir))
    loadables = clf.hparams.pretrainer.loadables
    for key in ("embedding_model", "classifier"):
        trained = torch.load(os.path.join(checkpoint, f"{key}.ckpt"),
                             map_location="cpu", weights_only=True)
        loaded = loadables[key].state_dict()
        assert set(loaded) == set(trained), key
        for name, value in trained.items():
            assert torch.equal(loaded[name], value), f"{key}.{name}"
    return clf


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_export_reproduces_every_trained_tensor(config, corpus,
                                                tiny_w2v2_group, tmp_path):
    recipe, extra, fusion_class = CONFIGS[config]
    fold = _train(corpus, tiny_w2v2_group, tmp_path / "exp", recipe, extra)
    model_dir = tmp_path / "model"
    export_model(str(fold), str(model_dir))
    # the folder passes the allow-list classify and push check
    assert disallowed_targets((model_dir / "hyperparams.yaml").read_text()) \
        == []
    best = find_best_checkpoint(str(fold / "save"))
    clf = _assert_same_weights(model_dir, best.path, tmp_path / "sd")
    segment_model = clf.mods.embedding_model.encoder
    fusion = segment_model.fusion
    assert (type(fusion).__name__ if fusion is not None else None) \
        == fusion_class
    out, _, _, _ = clf.classify_batch(0.1 * torch.randn(1, 16000))
    assert torch.allclose(out.sum(), torch.tensor(1.0), atol=1e-4)

    # A folder whose hyperparams build a module differently (no attention
    # in AM-ResNet, or no layer weights) loads with warnings only:
    # the check names what was lost.
    if config != "fusion-cross-attention":
        return
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    path = broken / "hyperparams.yaml"
    text = path.read_text()
    assert "use_attention: true" in text
    path.write_text(text.replace("use_attention: true",
                                 "use_attention: false"))
    with pytest.raises(ExportError, match="trained but not in the exported "
                       r"model \(am_resnet\.attention"):
        check_export(str(broken), best.path)


def test_export_that_loses_a_module_fails_and_writes_nothing(
        corpus, tiny_w2v2_group, tmp_path, monkeypatch):
    """The check runs inside export: nothing lands in model_dir."""
    import amser_sb.inference.export as export

    fold = _train(corpus, tiny_w2v2_group, tmp_path / "exp",
                  "am_resnet.yaml", {})
    real = export.render_inference_hparams

    def without_attention(*args, **kwargs):
        return real(*args, **kwargs).replace("use_attention: true",
                                             "use_attention: false")

    monkeypatch.setattr(export, "render_inference_hparams",
                        without_attention)
    with pytest.raises(ExportError, match="does not reproduce the trained"):
        export_model(str(fold), str(tmp_path / "model"))
    assert not (tmp_path / "model").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".export-")]
