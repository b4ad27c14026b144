"""ONNX export of every encoder family and mode (``amser-sb export-onnx``).

Beside the fusion model of ``test_onnx.py`` (group-norm wav2vec2, segment
grid, int8): the layer-norm wav2vec2 alone with layer weights, AM-ResNet
alone, and concatenation with Whisper's 30 s window; each
exported, loaded with onnxruntime and compared with PyTorch. Its own file,
so that pytest-xdist can run it beside ``test_onnx.py``.
"""

import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from onnx_models import (  # noqa: E402
    build_model_folder,
    fusion_overrides,
    torch_posteriors,
)

from amser_sb.inference.classify import load_classifier  # noqa: E402
from amser_sb.inference.onnx_contract import (  # noqa: E402
    check_clips,
    pad_batch,
)
from amser_sb.inference.onnx_export import export_onnx  # noqa: E402
from amser_sb.inference.onnx_runtime import load_onnx_classifier  # noqa: E402


CONFIGS = {
    "ssl-w2v2-layer-norm": ("w2v2_baseline.yaml", "layer",
                            {"ssl_layer_weights": True,
                             "segment_seconds": None}),
    "am_resnet": ("am_resnet.yaml", None,
                  {"am_resnet_channels": 8, "segment_seconds": None}),
    "concat-whisper-30s": ("am_resnet_w2v2.yaml", "whisper",
                           {"mode": "concat", "fusion": None,
                            "ssl_layer_weights": True,
                            "segment_seconds": None}),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_family_and_mode_exports_and_matches(
        config, tmp_path, tiny_w2v2_layer, capfd):
    from amser_sb.lobes import build_random_whisper

    recipe, family, extra = CONFIGS[config]
    root = str(tmp_path)
    overrides = dict(extra)
    if family is not None:
        hub = tiny_w2v2_layer if family == "layer" else build_random_whisper(
            tmp_path / "whisper")
        if recipe == "w2v2_baseline.yaml":  # the encoder alone
            overrides.update(
                ssl_hub=hub,
                pretrained_folder=os.path.join(root, "pretrained"),
                feature_cache_folder=os.path.join(root, "cache"),
            )
        else:
            overrides.update(fusion_overrides(hub, root))
    model_dir = build_model_folder(root, recipe, overrides)
    report = export_onnx(model_dir)
    assert report["parity"]["passed"]
    # a session opened as the torch-free example opens it (default
    # logging) has nothing to warn about (it did: unfoldable CastLike)
    import onnxruntime

    capfd.readouterr()
    onnxruntime.InferenceSession(os.path.join(model_dir, "model.onnx"))
    assert "W:onnxruntime" not in capfd.readouterr().err
    clf = load_classifier(model_dir, savedir=str(tmp_path / "sd"))
    onnx_clf = load_onnx_classifier(model_dir)
    clips = check_clips([0.9, 2.2], 16000, seed=5)
    ref = torch_posteriors(clf, clips)
    wavs, lens = pad_batch(clips)
    assert np.abs(onnx_clf.posteriors(wavs, lens) - ref).max() <= 1e-4
