"""amser_sb.core.audio: one reader, one error type, every bad file named."""


import numpy as np
import pytest
import soundfile as sf
import torch

from amser_sb.core.audio import AudioError, audio_info, read_audio, wav_frames
from amser_sb.core.errors import AmserUserError


def _wav(path, frames=1600, channels=1, rate=16000, subtype="PCM_16"):
    data = 0.1 * np.random.default_rng(0).standard_normal((frames, channels))
    sf.write(str(path), data, rate, subtype=subtype)
    return str(path)


def _truncate(path, keep_frames, block=2, header=44):
    with open(path, "r+b") as fout:
        fout.truncate(header + keep_frames * block)


def test_error_type_is_a_user_error():
    assert issubclass(AudioError, AmserUserError)
    assert issubclass(AudioError, RuntimeError)


def test_info_of_a_good_file(tmp_path):
    info = audio_info(_wav(tmp_path / "a.wav", 800, 2), sample_rate=16000)
    assert (info.frames, info.samplerate, info.channels) == (800, 16000, 2)
    assert info.duration == pytest.approx(0.05)
    assert info.sample_rate == 16000


@pytest.mark.parametrize("case, reason, words", [
    ("missing", "missing audio", "does not exist"),
    ("directory", "not a file", "is a directory"),
    ("lfs", "git-lfs pointer", "git lfs pull"),
    ("garbage", "unreadable audio", "cannot read audio file"),
    ("empty", "empty audio", "0 samples"),
    ("truncated", "truncated audio", "announces 47387 frames"),
    ("rate", "wrong sample rate", "expected 16000 Hz"),
])
def test_each_problem_names_file_and_reason(tmp_path, case, reason, words):
    path = tmp_path / "x.wav"
    if case == "directory":
        path.mkdir()
    elif case == "lfs":
        path.write_text("version https://git-lfs.github.com/spec/v1\n"
                        "oid sha256:00\nsize 12\n")
    elif case == "garbage":
        path.write_bytes(b"not audio at all" * 4)
    elif case == "empty":
        _wav(path, 0)
    elif case == "truncated":
        _wav(path, 47387)
        _truncate(str(path), 14200)
    elif case == "rate":
        _wav(path, 100, rate=8000)
    with pytest.raises(AudioError) as err:
        audio_info(path, sample_rate=16000)
    assert err.value.reason == reason
    assert str(path) in str(err.value)
    assert words in str(err.value)


def test_truncated_wav_frames(tmp_path):
    path = _wav(tmp_path / "t.wav", 47387)
    assert wav_frames(path) == (47387, 47387)
    _truncate(path, 14200)
    assert sf.info(path).frames == 14200  # libsndfile says nothing
    assert wav_frames(path) == (47387, 14200)


def test_wav_frames_other_formats(tmp_path):
    assert wav_frames(_wav(tmp_path / "a.flac", 100)) is None
    stereo = _wav(tmp_path / "s.wav", 100, channels=2, subtype="FLOAT")
    assert wav_frames(stereo) == (100, 100)


def test_read_audio_is_mono_float32(tmp_path):
    path = tmp_path / "s.wav"
    data = np.stack([np.full(10, 0.5), np.full(10, -0.25)], axis=1)
    sf.write(str(path), data, 16000, subtype="FLOAT")
    wav = read_audio(path, 2, 6)
    assert wav.dtype == torch.float32 and wav.shape == (4,)
    assert torch.allclose(wav, torch.full((4,), 0.125))


def test_read_audio_out_of_range(tmp_path):
    path = _wav(tmp_path / "a.wav", 100)
    with pytest.raises(AudioError) as err:
        read_audio(path, 200, 300)
    assert err.value.reason == "segment out of range"
