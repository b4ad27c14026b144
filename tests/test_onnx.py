"""ONNX export (``amser-sb export-onnx``) and onnxruntime inference.

Each model folder is the recipe's model with tiny random weights, saved as
a training checkpoint and exported (no training), then exported to ONNX:
every encoder family (wav2vec2 group norm and layer norm, Whisper with its
30 s window) and every mode (fusion, concat, am_resnet, ssl: the other
families and modes in ``test_onnx_families.py``). Exports are
slow (tens of seconds each, mostly torch.export), so each folder is built
once per module and the checks share it.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from amser_sb.inference.classify import (  # noqa: E402
    classify_file,
    classify_long,
    load_classifier,
)
from amser_sb.cli import main  # noqa: E402
from amser_sb.inference.onnx_contract import (  # noqa: E402
    CARD_HEADING,
    check_clips,
    pad_batch,
)
from amser_sb.inference.onnx_export import export_onnx  # noqa: E402
from amser_sb.inference.onnx_madd import graph_madd  # noqa: E402
from amser_sb.inference.onnx_graph_encoders import (  # noqa: E402
    GraphWav2Vec2,
    GraphWhisper,
)
from amser_sb.inference.onnx_runtime import (  # noqa: E402
    OnnxModelMissingError,
    load_onnx_classifier,
)
from amser_sb.core.madd import madd  # noqa: E402

from onnx_models import (  # noqa: E402
    LABELS,
    ROOT,
    build_model_folder,
    fusion_overrides,
    torch_posteriors,
)


@pytest.fixture(scope="module")
def fusion_model(tmp_path_factory, tiny_w2v2_group):
    """fusion + wav2vec2 (group norm), 1 s segments: both ONNX branches
    (a clip shorter than a segment, and the segment grid), with int8."""
    root = str(tmp_path_factory.mktemp("onnx_fusion"))
    model_dir = build_model_folder(
        root, "am_resnet_w2v2.yaml",
        fusion_overrides(tiny_w2v2_group, root, segment_seconds=1.0),
    )
    report = export_onnx(model_dir, int8=True)
    return model_dir, report


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_audio")
    clips = check_clips([0.8, 2.7, 6.5], 16000, seed=3)
    paths = []
    for i, clip in enumerate(clips):
        path = str(folder / f"clip_{i}.wav")
        sf.write(path, clip, 16000)
        paths.append(path)
    stereo = str(folder / "stereo_8k.wav")
    sf.write(stereo, np.stack([clips[1][::2], 0.5 * clips[1][::2]], 1), 8000)
    return paths + [stereo]


# ------------------------------------------------- graph parts, no ONNX ---
def test_graph_madd_equals_madd():
    """Property: the graph MADD equals silence.madd on random batches,
    short rows, digital silence and clipping included."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        batch = 1 + trial % 3
        time = int(torch.randint(50, 3000, (1,), generator=gen))
        wavs = 0.01 * torch.randn(batch, time, generator=gen)
        burst = int(torch.randint(0, time, (1,), generator=gen))
        wavs[:, burst: burst + 500] *= 40
        if trial % 5 == 0:
            wavs[:, : time // 3] = 0  # digital silence
        if trial % 7 == 0:
            wavs = wavs.clamp(-0.2, 0.2) * 5  # clipped plateaus
        n = torch.randint(1, time + 1, (batch,), generator=gen)
        n[0] = time
        window = [400, 64, 7][trial % 3]
        ours = graph_madd(wavs, n, window, 3.0)
        _, ref = madd(wavs, n.float() / time, window, 3.0)
        assert torch.equal(ours, ref), trial


def test_graph_encoders_on_padded_batches(tiny_w2v2_group, tiny_w2v2_layer,
                                          tmp_path):
    """The encoder branches in graph form give each clip's own features in
    a padded batch (group norm over real frames, Whisper windows)."""
    from amser_sb.lobes import SSLBackbone, build_random_whisper

    whisper = build_random_whisper(tmp_path / "whisper")
    encoders = [
        SSLBackbone(tiny_w2v2_group, str(tmp_path), layer_weights=True),
        SSLBackbone(tiny_w2v2_layer, str(tmp_path), output_norm=True),
        SSLBackbone(whisper, str(tmp_path), layer_weights=True,
                    window_seconds=0.5),
    ]
    clips = check_clips([0.3, 1.1, 0.7], 16000)
    wavs, lens = pad_batch(clips)
    for encoder in encoders:
        encoder.eval()
        with torch.no_grad():
            torch.nn.init.normal_(encoder.layer_weights) if (
                encoder.layer_weights is not None) else None
            form = (GraphWhisper if "Whisper" in type(encoder).__name__
                    else GraphWav2Vec2)(encoder)
            feats, flens = form(wavs, lens)
            for i, clip in enumerate(clips):
                alone, _ = encoder(torch.from_numpy(clip)[None])
                frames = alone.shape[1]
                assert round(float(flens[i]) * feats.shape[1]) == frames
                assert torch.allclose(feats[i, :frames], alone[0],
                                      atol=1e-5), type(encoder).__name__
                assert (feats[i, frames:] == 0).all()


# ---------------------------------------------------------- the export ---
def test_export_checks_itself_and_documents_it(fusion_model):
    model_dir, report = fusion_model
    assert os.path.isfile(os.path.join(model_dir, "model.onnx"))
    assert os.path.isfile(os.path.join(model_dir, "model.int8.onnx"))
    parity = report["parity"]
    assert parity["passed"]
    assert parity["max_abs_diff_alone"] <= 1e-4
    assert parity["max_abs_diff_padded_batch"] <= 1e-4
    # clips shorter than a segment and spanning several
    assert min(parity["clip_seconds"]) < 1.0 < max(parity["clip_seconds"])
    with open(os.path.join(model_dir, "onnx.json")) as handle:
        assert json.load(handle)["parity"] == parity
    with open(os.path.join(model_dir, "README.md")) as handle:
        card = handle.read()
    assert card.count(CARD_HEADING) == 1
    assert "max |posterior difference|" in card
    session = onnxruntime.InferenceSession(
        os.path.join(model_dir, "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == list(LABELS)
    assert [i.name for i in session.get_inputs()] == ["wavs", "wav_lens"]
    assert [str(d) for d in session.get_inputs()[0].shape] != ["1", "1"]


def test_the_model_body_is_in_the_graph_once(fusion_model):
    """The ``If`` on length picks a front (MADD, segment grid); every
    convolution and weight product of the model lies after it, once."""
    import onnx

    model_dir, _ = fusion_model
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    nodes = model.graph.node
    [choice] = [node for node in nodes if node.op_type == "If"]
    for attr in choice.attribute:
        ops = {node.op_type for node in attr.g.node}
        assert not ops & {"Conv", "MatMul", "Gemm"}, (attr.name, ops)
    assert {"Conv", "MatMul"} <= {node.op_type for node in nodes}
    weights = [init for init in model.graph.initializer
               if len(init.dims) == 2]
    assert len({init.name for init in weights}) == len(weights)


@pytest.mark.parametrize("kernel,stride,pads,bias", [
    (3, 2, (0, 0), True), (2, 2, (0, 0), False), (1, 1, (0, 0), True),
    (3, 1, (1, 1), True), (3, 2, (1, 1), False), (10, 5, (2, 0), True),
    (8, 3, (0, 0), True), (4, 3, (1, 2), False), (2, 3, (0, 0), True),
])
def test_convolution_as_matmul_equals_conv(kernel, stride, pads, bias):
    """Property: the rewritten convolution gives the Conv's output, for
    odd and even lengths (a last partial window dropped) and any batch,
    kernels that are a multiple of the stride or not (a last block of
    fewer taps: one, two, or all of them)."""
    from onnx import TensorProto, helper, numpy_helper

    from amser_sb.inference.onnx_int8 import convolutions_as_matmuls

    rng = np.random.default_rng(kernel * 10 + stride)
    inits = [numpy_helper.from_array(
        rng.standard_normal((5, 6, kernel)).astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(
            rng.standard_normal(5).astype(np.float32), "b"))
        inputs.append("b")
    graph = helper.make_graph(
        [helper.make_node("Conv", inputs, ["y"], strides=[stride],
                          pads=list(pads), name="conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       [None, 6, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits)
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 20)])
    conv = onnxruntime.InferenceSession(model.SerializeToString())
    assert convolutions_as_matmuls(model, min_inputs=1) == 1
    assert "Conv" not in {node.op_type for node in model.graph.node}
    assert [i.name for i in model.graph.initializer if i.name == "w"] == []
    matmul = onnxruntime.InferenceSession(model.SerializeToString())
    for batch, time in ((1, kernel + 3), (3, 40), (2, 41)):
        x = rng.standard_normal((batch, 6, time)).astype(np.float32)
        ref = conv.run(None, {"x": x})[0]
        got = matmul.run(None, {"x": x})[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_int8_file_quantizes_the_convolutions_as_matmuls(fusion_model,
                                                         tmp_path):
    """The whole fused graph with every 1-D convolution rewritten (the
    tiny encoder's are below the size threshold, so all are forced here)
    gives float32's posteriors; its int8 file quantises them."""
    import onnx

    from amser_sb.inference.onnx_int8 import (
        convolutions_as_matmuls,
        quantize_int8,
    )

    model_dir, _ = fusion_model
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    n_conv = sum(1 for node in model.graph.node if node.op_type == "Conv"
                 and len(node.input) > 1 and any(
                     i.name == node.input[1] and len(i.dims) == 3
                     for i in model.graph.initializer))
    rewritten = convolutions_as_matmuls(model, min_inputs=1)
    assert rewritten >= 3 and rewritten <= n_conv  # the encoder's layers
    path = str(tmp_path / "matmul.onnx")
    onnx.save(model, path)
    clips = check_clips([0.61, 2.2], 16000, seed=11)
    wavs, lens = pad_batch(clips)
    feeds = {"wavs": wavs.numpy(), "wav_lens": lens.numpy()}
    ref = onnxruntime.InferenceSession(
        os.path.join(model_dir, "model.onnx")).run(None, feeds)[0]
    got = onnxruntime.InferenceSession(path).run(None, feeds)[0]
    assert np.abs(got - ref).max() <= 1e-5
    quantize_int8(path, str(tmp_path / "int8.onnx"))
    ops = {node.op_type
           for node in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".int8-")]


def test_onnx_matches_pytorch_alone_and_batched(fusion_model, tmp_path):
    """Lengths the export check did not use, single clips and one padded
    batch of 5 (each branch of the graph: all clips shorter than a segment
    and clips of several segments)."""
    model_dir, _ = fusion_model
    clf = load_classifier(model_dir, savedir=str(tmp_path / "sd"))
    onnx_clf = load_onnx_classifier(model_dir)
    clips = check_clips([0.05, 0.61, 1.0, 1.7, 3.33], 16000, seed=7)
    ref = torch_posteriors(clf, clips)
    alone = np.concatenate([onnx_clf.posteriors(c[None]) for c in clips])
    assert np.abs(alone - ref).max() <= 1e-4
    wavs, lens = pad_batch(clips)
    assert np.abs(onnx_clf.posteriors(wavs, lens) - ref).max() <= 1e-4
    wavs, lens = pad_batch(clips[:3])  # all within one segment
    assert np.abs(onnx_clf.posteriors(wavs, lens) - ref[:3]).max() <= 1e-4


def test_classify_files_and_long_audio_like_pytorch(fusion_model, audio,
                                                    tmp_path):
    model_dir, _ = fusion_model
    clf = load_classifier(model_dir, savedir=str(tmp_path / "sd"))
    onnx_clf = load_onnx_classifier(model_dir)
    for path in audio:
        ours, ref = classify_file(onnx_clf, path), classify_file(clf, path)
        assert ours.label == ref.label
        for lab in ref.posteriors:
            assert abs(ours.posteriors[lab] - ref.posteriors[lab]) <= 2e-4
    ours = classify_long(onnx_clf, audio[2], window=2.0, hop=1.0,
                         batch_size=3)
    ref = classify_long(clf, audio[2], window=2.0, hop=1.0, batch_size=3)
    assert [w.label for w in ours.windows] == [w.label for w in ref.windows]
    assert [(w.start, w.end) for w in ours.windows] == \
        [(w.start, w.end) for w in ref.windows]
    for a, b in zip(ours.windows, ref.windows):
        for lab in b.posteriors:
            assert abs(a.posteriors[lab] - b.posteriors[lab]) <= 2e-4


def test_cli_runtime_onnx_json(fusion_model, audio, capsys):
    model_dir, _ = fusion_model
    outputs = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        assert main(["classify", "--model", model_dir, "--runtime", runtime,
                     "--json", "--savedir", model_dir + "_sd",
                     audio[0], audio[2]]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        outputs[runtime] = [json.loads(line) for line in lines]
    for a, b in zip(outputs["onnx"], outputs["torch"]):
        assert a["file"] == b["file"] and a["label"] == b["label"]
        assert a["duration"] == b["duration"]
        assert max(abs(a["posteriors"][k] - b["posteriors"][k])
                   for k in LABELS) <= 2e-4
    for a, b in zip(outputs["onnx-int8"], outputs["torch"]):
        assert set(a["posteriors"]) == set(LABELS)
        assert max(abs(a["posteriors"][k] - b["posteriors"][k])
                   for k in LABELS) <= 0.05
    # long audio windowing: the same windows as the PyTorch path
    assert main(["classify", "--model", model_dir, "--runtime", "onnx",
                 "--window", "2", "--json", audio[2]]) == 0
    windowed = json.loads(capsys.readouterr().out)
    assert [w["start"] for w in windowed["windows"]] == [0, 1, 2, 3, 4, 5]


def test_missing_onnx_file_or_runtime_is_one_line(fusion_model, tmp_path,
                                                  capsys, monkeypatch):
    import shutil

    model_dir, _ = fusion_model
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    os.remove(bare / "model.int8.onnx")
    status = subprocess.run(
        [sys.executable, "-m", "amser_sb.cli", "classify", "--model",
         str(bare), "--runtime", "onnx-int8", "x.wav"],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert status.returncode == 2
    err = status.stderr.strip().splitlines()
    assert len(err) == 1 and "has no model.int8.onnx" in err[0]
    assert "amser-sb export-onnx --int8" in err[0]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(OnnxModelMissingError, match=r"amser-sb\[onnx\]"):
        load_onnx_classifier(model_dir)
    with pytest.raises(OnnxModelMissingError, match="does not exist"):
        load_onnx_classifier(str(tmp_path / "nowhere"))


def _readme_example():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if "import onnxruntime" in b]
    assert len(found) == 1, "the README's torch-free example"
    return found[0]


def test_readme_example_runs_without_torch(fusion_model, audio, tmp_path):
    """The README's onnxruntime + numpy + soundfile example, in a process
    where importing torch fails."""
    model_dir, _ = fusion_model
    code = (_readme_example()
            .replace("my_model/model.onnx",
                     os.path.join(model_dir, "model.onnx"))
            .replace("speech.wav", audio[1]))
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchaudio', "
        "'speechbrain'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    script = tmp_path / "example.py"
    script.write_text(blocker + code + "\nassert 'torch' not in sys.modules\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    onnx_clf = load_onnx_classifier(model_dir)
    expected = classify_file(onnx_clf, audio[1]).label
    assert out.stdout.split()[0] == expected


@pytest.mark.parametrize("convolutions", [True, False])
def test_int8_keeps_convolutions_float_when_asked(tmp_path, convolutions):
    """``quantize_int8(..., convolutions=False)`` (Whisper's graph form)
    leaves a large 1-D convolution a float32 ``Conv``; by default it runs
    as quantised matrix products. Either way the output stays close."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from amser_sb.inference.onnx_int8 import quantize_int8

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(
        (rng.standard_normal((8, 256, 3)) / 28).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2],
                          pads=[1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       [None, 256, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    src, dst = str(tmp_path / "f32.onnx"), str(tmp_path / "int8.onnx")
    onnx.save(helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18)]), src)
    quantize_int8(src, dst, convolutions=convolutions)
    ops = {node.op_type for node in onnx.load(dst).graph.node}
    assert ("Conv" in ops) is not convolutions
    x = rng.standard_normal((2, 256, 40)).astype(np.float32)
    ref = onnxruntime.InferenceSession(src).run(None, {"x": x})[0]
    got = onnxruntime.InferenceSession(dst).run(None, {"x": x})[0]
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()
