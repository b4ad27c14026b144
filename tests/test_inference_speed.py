"""Inference speed-ups: exact window batching, opt-in int8 / bf16, CLI flags.

The model folder is the session's trained tiny model (conftest.py); the
benchmark script itself is run once, quickly, on it.
"""

import importlib.util
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from amser_sb.inference.classify import classify_file, classify_long, load_classifier
from amser_sb.inference.precision import Autocast, reduce_precision

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "benchmarks", "inference_speed.py")


def _bench():
    spec = importlib.util.spec_from_file_location("inference_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_dir(trained):
    """The session's trained tiny model, exported (conftest.py)."""
    return trained["model"]


@pytest.fixture(scope="module")
def audio(speech_audio):
    """A 13 s speech-like recording and its clips (conftest.py)."""
    return speech_audio


def _posteriors(results):
    return np.array([list(r.posteriors.values()) for r in results])


def test_classify_long_batching_is_exact(model_dir, audio, tmp_path):
    """Windows batched (equal lengths share a backbone call) == one by
    one; the last window of 13 s with hop 4 is shorter (12-13 s)."""
    clf = load_classifier(model_dir, savedir=str(tmp_path / "sd"))
    recording, _ = audio
    one = classify_long(clf, recording, window=4, hop=4, batch_size=1)
    many = classify_long(clf, recording, window=4, hop=4, batch_size=8)
    assert [(w.start, w.end) for w in many.windows] == [
        (0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 13.0)
    ]
    voiced = [w for w in one.windows if w.posteriors]
    assert len(voiced) >= 3
    np.testing.assert_allclose(
        _posteriors(many.windows), _posteriors(one.windows), atol=1e-4,
        rtol=0,
    )
    assert many.label == one.label
    with pytest.raises(ValueError, match="batch_size"):
        classify_long(clf, recording, batch_size=0)


def test_int8_and_bf16_stay_close_to_float(model_dir, audio, tmp_path):
    _, clips = audio
    ref = load_classifier(model_dir, savedir=str(tmp_path / "a"))
    fast = load_classifier(model_dir, savedir=str(tmp_path / "b"),
                           quantize=True, bf16=True)
    kinds = {m._get_name() for m in fast.mods.embedding_model.modules()}
    assert {"DynamicQuantizedLinear", "Autocast"} <= kinds
    # the head stays float
    assert type(fast.mods.classifier.linear) is torch.nn.Linear
    want = [classify_file(ref, path) for path in clips]
    got = [classify_file(fast, path) for path in clips]
    p_ref, p_got = _posteriors(want), _posteriors(got)
    assert np.abs(p_got - p_ref).max() < 0.02
    top = np.sort(p_ref, axis=1)
    clear = top[:, -1] - top[:, -2] > 0.04
    for w, g, is_clear in zip(want, got, clear):
        if is_clear:
            assert w.label == g.label


def test_a_reused_savedir_loads_the_new_model(model_dir, tmp_path):
    """SpeechBrain keeps files found in a savedir; load_classifier relinks
    them, so two model folders of the same name never mix."""
    import shutil

    other = tmp_path / "other" / os.path.basename(model_dir)
    shutil.copytree(model_dir, other)
    state = torch.load(other / "classifier.ckpt")
    state = {k: v + 1.0 for k, v in state.items()}
    torch.save(state, other / "classifier.ckpt")
    savedir = str(tmp_path / "shared")
    first = load_classifier(model_dir, savedir=savedir)
    second = load_classifier(str(other), savedir=savedir)
    for key, value in state.items():
        assert torch.equal(second.mods.classifier.state_dict()[key], value)
        assert not torch.equal(first.mods.classifier.state_dict()[key],
                               value)


def test_precision_options_check_their_inputs():
    with pytest.raises(ValueError, match="CPU"):
        load_classifier("unused", device="cuda:0", quantize=True)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="bf16 needs a wav2vec2"):
        reduce_precision(plain, bf16=True)
    quantized = reduce_precision(plain, int8=True)[0]
    assert quantized._get_name() == "DynamicQuantizedLinear"


def test_autocast_keeps_float_output_and_arguments():
    class Scale(torch.nn.Module):
        def forward(self, x, factor=1.0):
            return torch.nn.functional.linear(x, torch.eye(3)) * factor

    out = Autocast(Scale())(torch.ones(2, 3), factor=2.0)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.full((2, 3), 2.0))

    class Pair(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.linear(x, torch.eye(3)), x.sum(1).long()

    feats, lens = Autocast(Pair())(torch.ones(2, 3))
    assert feats.dtype == torch.float32 and lens.dtype == torch.int64
    assert lens.tolist() == [3, 3]


def test_cli_classify_speed_flags(model_dir, audio, tmp_path, capsys):
    from amser_sb.cli import main

    recording, _ = audio
    threads = torch.get_num_threads()
    try:
        status = main([
            "classify", recording, "--model", model_dir,
            "--savedir", str(tmp_path / "sd"), "--window", "4", "--hop",
            "4", "--batch_size", "2", "--int8", "--bf16", "--threads", "1",
            "--json",
        ])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["windows"]) == 4 and out["duration"] == 13.0


def test_benchmark_quick_run_prints_the_table(tmp_path, model_dir, capsys):
    workdir = tmp_path
    status = _bench().main([
        "--model", model_dir, "--seconds", "13", "--modes", "w4h4,clips",
        "--precisions", "float32,int8", "--workdir", str(workdir),
        "--threads", "0", "--rss-precisions", "int8",
    ])
    out = capsys.readouterr().out
    assert status in (0, 1)
    rows = [line for line in out.splitlines() if line.startswith("| long")
            or line.startswith("| whole")]
    assert len(rows) == 4
    rss = [line for line in out.splitlines()
           if line.startswith("peak RSS of a fresh process")]
    assert len(rss) == 1 and rss[0].endswith(tuple("0123456789"))
    assert "int8 " in rss[0] and "float32 " not in rss[0]
    assert "speed-up vs float32" in out
    assert f"model folder {model_dir}" in out
    wav, _ = sf.read(os.path.join(workdir, "audio", "recording_13s.wav"))
    assert wav.shape == (13 * 16000,)


def test_roofline_counts_the_work_of_whole_clips(model_dir, audio, tmp_path):
    """``benchmarks/roofline.py``: the counted work of whole clips is the
    sum of its clips' (each clip counted alone), every top-level part
    counted, and the matrix-product rates come from real sessions."""
    spec = importlib.util.spec_from_file_location(
        "roofline", os.path.join(HERE, "..", "benchmarks", "roofline.py"))
    roof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roof)
    _, clips = audio
    clips = clips[:2]
    clf = load_classifier(model_dir, savedir=str(tmp_path / "sd"))
    total, parts, seconds = roof.count_work(clf, clips)
    assert seconds == pytest.approx(sum(sf.info(c).duration for c in clips))
    alone = [roof.count_work(clf, [c])[0] for c in clips]
    assert total == sum(alone) > 0
    rows = roof.parts_table(parts, total)
    names = [name for name, _ in rows]
    assert any(name.endswith(".am_resnet") for name in names)
    # parts under 0.5% of the work (the classifier head) are left out
    assert sum(flops for _, flops in rows) == pytest.approx(total, rel=5e-3)
    rates = roof.onnx_rates((8, 16, 16), 1, 2, str(tmp_path))
    assert len(rates) == 2 and all(0 < r < float("inf") for r in rates)
