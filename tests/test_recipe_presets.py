"""The recipe on a corpus preset (``--dataset``), end to end.

An ERL-Spanish-style folder (``f_gio001aes.wav``: gender, emotion code,
clip number, segment letter, ``es``) with class-dependent tones at 44.1 kHz
goes through ``train.py --dataset=erl-spanish``: preparation (16 kHz
copies, grouped folds), one epoch of the fused model, test metrics, export.
"""

import json

import numpy as np
import soundfile as sf

from amser_sb.inference.export import export_model

CODES = {"gio": 330.0, "rab": 440.0, "ans": 550.0, "dis": 660.0,
         "tri": 220.0}


def _erl_folder(root, clips_per_code=6, rate=44100):
    rng = np.random.default_rng(0)
    folder = root / "ERL" / "data" / "es"
    folder.mkdir(parents=True)
    t = np.arange(int(0.8 * rate)) / rate
    for code, f0 in CODES.items():
        for k in range(clips_per_code):
            for letter in "ab"[: 1 + k % 2]:
                wav = 0.3 * np.sin(2 * np.pi * f0 * t)
                wav += 0.01 * rng.standard_normal(t.size)
                gender = "fm"[k % 2]
                name = f"{gender}_{code}{k + 1:03d}{letter}es.wav"
                sf.write(folder / name, wav.astype("float32"), rate)
    return folder


def test_train_py_with_dataset_preset(tmp_path, tiny_w2v2_group, train_py):
    data = _erl_folder(tmp_path)
    out = tmp_path / "exp"
    args = {
        "dataset": "erl-spanish",
        "protocol": "grouped",
        "n_classes": 5,
        "data_folder": data,
        "ssl_hub": tiny_w2v2_group,
        "output_root": out,
        "feature_cache_folder": tmp_path / "cache",
        "pretrained_folder": tmp_path / "pretrained",
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
    status, output = train_py(
        "hparams/am_resnet_w2v2.yaml", "--noprogressbar",
        *[f"--{k}={v}" for k, v in args.items()])
    assert status == 0, output[-3000:]
    fold = out / "grouped" / "fold_1"
    metrics = json.loads((fold / "test_metrics.json").read_text())
    assert set(metrics["recall"]) == {"hap", "sad", "ang", "fea", "dis"}
    assert (out / "manifests" / "wav16k").is_dir()  # 44.1 kHz converted
    model = tmp_path / "model"
    export_model(str(out), str(model))
    labels = json.loads((model / "training.json").read_text())["labels"]
    assert labels == ["hap", "sad", "ang", "fea", "dis"]


def test_unknown_dataset_is_a_clear_error(tmp_path, tiny_w2v2_group,
                                          train_py):
    status, output = train_py(
        "hparams/am_resnet_w2v2.yaml", "--dataset=voxceleb",
        f"--data_folder={tmp_path}", f"--ssl_hub={tiny_w2v2_group}",
        f"--output_root={tmp_path / 'exp'}",
        f"--pretrained_folder={tmp_path / 'pre'}")
    assert status != 0
    assert "unknown dataset 'voxceleb'" in output


def test_unknown_class_of_a_preset_is_a_user_error(tmp_path):
    """Issue 17, row 9: a preset's --classes error is one line (the same
    error class through train.py, amser-sb cv and amser-sb prepare)."""
    import pytest

    from amser_sb.config.user_errors import user_error_message
    from amser_sb.data.classes import ClassChoiceError
    from amser_sb.data.corpora.registry import get_corpus

    data = _erl_folder(tmp_path, clips_per_code=1, rate=16000)
    with pytest.raises(ClassChoiceError) as info:
        get_corpus("erl-spanish").prepare(
            str(data), str(tmp_path / "p"), protocol="grouped",
            classes="hap,xyz")
    line = user_error_message(info.value)
    assert line.startswith("error: classes ['xyz'] are not in")
    assert "\n" not in line
