"""Segments, audio reading, voiced masks and soft targets of the pipeline."""

import csv
import logging
import os
import random

import numpy as np
import pytest
import soundfile
import torch
from speechbrain.dataio.batch import PaddedBatch

from amser_sb.core.audio import AudioError, read_segment
from amser_sb.inference.export import read_run_hparams
from amser_sb.training.pipeline import (
    ManifestError,
    build_segment_dataset,
    segment_bounds,
    segment_options,
    voiced_mask,
)

SR = 16000
LABELS = ["neu", "hap", "sad", "ang"]
RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP",
                      "emotion_recognition", "hparams", "am_resnet_w2v2.yaml")
#: The recipe's data options (the YAML is their one source).
OPTIONS = segment_options(read_run_hparams(RECIPE))


def _dataset(path, stage="train", **options):
    """``build_segment_dataset`` with the recipe's options, some changed."""
    return build_segment_dataset(path, LABELS, stage,
                                 **dict(OPTIONS, **options))
COLUMNS = ["ID", "duration", "wav", "spk_id", "session", "emo", "soft_neu",
           "soft_hap", "soft_sad", "soft_ang", "ambiguous", "voiced"]


@pytest.mark.parametrize("seed", range(30))
def test_segment_grid_properties(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 5000)
    length = rng.randint(1, 1200)
    hop = rng.choice([None, rng.randint(1, length)])
    bounds = segment_bounds(n, length, hop)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for start, stop in bounds:
        assert 0 <= start < stop <= n
        assert stop - start == min(length, n)
    starts = [start for start, _ in bounds]
    assert starts == sorted(set(starts))
    # no gap: every sample is covered
    covered = np.zeros(n, bool)
    for start, stop in bounds:
        covered[start:stop] = True
    assert covered.all()
    # grid starts are multiples of the hop, except the end-aligned last one
    step = hop or length
    assert all(s % step == 0 for s in starts[:-1])


def test_whole_utterance_segments():
    assert segment_bounds(12345, None) == [(0, 12345)]
    assert segment_bounds(12345, 0) == [(0, 12345)]
    with pytest.raises(ValueError):
        segment_bounds(0, 10)


def _write(path, data, sr=SR, subtype="FLOAT"):
    soundfile.write(str(path), np.asarray(data, dtype=np.float32), sr,
                    subtype=subtype)
    return str(path)


def test_read_segment_and_errors(tmp_path):
    path = _write(tmp_path / "ok.wav", np.arange(100) / 100)
    assert torch.allclose(read_segment(path, 10, 13),
                          torch.tensor([0.10, 0.11, 0.12]))
    assert read_segment(path).shape == (100,)
    stereo = tmp_path / "stereo.wav"
    soundfile.write(str(stereo), np.stack([np.ones(10), np.zeros(10)], 1)
                    .astype(np.float32), SR, subtype="FLOAT")
    assert torch.allclose(read_segment(str(stereo)), torch.full((10,), 0.5))

    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="garbage.wav"):
        read_segment(str(garbage))
    with pytest.raises(AudioError, match="missing.wav"):
        read_segment(str(tmp_path / "missing.wav"))
    empty = _write(tmp_path / "empty.wav", np.zeros(0))
    with pytest.raises(AudioError, match="empty.wav: empty"):
        read_segment(empty)
    slow = _write(tmp_path / "slow.wav", np.zeros(80), sr=8000)
    with pytest.raises(AudioError, match="slow.wav: sample rate 8000 Hz"):
        read_segment(slow)
    with pytest.raises(AudioError, match="beyond the end"):
        read_segment(path, 200, 300)


def test_voiced_mask_cuts_intervals():
    mask = voiced_mask("0:3 10:12", 2, 10)
    assert mask.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert voiced_mask("", 0, 4).tolist() == [0, 0, 0, 0]
    assert voiced_mask([(0, 100)], 50, 3).tolist() == [1, 1, 1]


def _manifest(tmp_path, rows, name="train.csv"):
    """Write a manifest; rows: (id, n_samples, emo, soft, ambiguous, voiced)."""
    path = tmp_path / name
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for utt, n, emo, soft, amb, voiced in rows:
            wav = _write(tmp_path / f"{utt}.wav",
                         np.linspace(0, 1, n, endpoint=False))
            writer.writerow([utt, n / SR, wav, "Ses01F", "Ses01", emo, *soft,
                             amb, voiced])
    return str(path)


ROWS = [
    # 2.5 s, voiced in the middle
    ("u1", 40000, "hap", [0, 1, 0, 0], 0, "8000:24000"),
    # 0.5 s
    ("u2", 8000, "sad", [0, 0.25, 0.75, 0], 0, "0:8000"),
    # ambiguous, 1 s
    ("u3", 16000, "", [0.5, 0.5, 0, 0], 1, "0:16000"),
]


def _items(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_eval_dataset_uses_every_segment_and_drops_ambiguous(tmp_path,
                                                             caplog):
    path = _manifest(tmp_path, ROWS)
    with caplog.at_level(logging.INFO, logger="amser_sb.training.pipeline"):
        data = _dataset(path, stage="valid",
                        segment_seconds=1.0)
    assert "leaving out 1 ambiguous of 3" in caplog.text
    items = _items(data)
    # u1: 2.5 s in 1 s segments: 0-1, 1-2, 1.5-2.5 ; u2: one 0.5 s segment
    assert [(i["utt_id"], i["seg_start"], i["seg_stop"]) for i in items] == [
        ("u1", 0, 16000), ("u1", 16000, 32000), ("u1", 24000, 40000),
        ("u2", 0, 8000)]
    first, last = items[0], items[2]
    assert torch.allclose(first["sig"][:3], torch.tensor([0, 1, 2]) / 40000)
    assert torch.allclose(last["sig"][0], torch.tensor(24000 / 40000))
    # voiced 8000:24000 cut to each segment
    assert first["mask"].sum() == 8000 and first["mask"][8000] == 1
    assert first["mask"][7999] == 0
    assert items[1]["mask"][:8000].sum() == 8000
    assert items[1]["mask"][8000:].sum() == 0
    assert last["mask"].sum() == 0
    assert items[0]["emo_encoded"] == 1 and items[3]["emo_encoded"] == 2
    assert items[3]["soft_target"].tolist() == [0, 0.25, 0.75, 0]


def test_train_random_segments_one_item_per_utterance(tmp_path):
    path = _manifest(tmp_path, ROWS)
    data = _dataset(path, stage="train",
                    segment_seconds=1.0)
    assert len(data) == 3  # ambiguous kept for training
    grid = {(0, 16000), (16000, 32000), (24000, 40000)}
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        item = data[0]
        start, stop = item["seg_start"], item["seg_stop"]
        seen.add((start, stop))
        # the signal is that segment's samples
        assert item["sig"][0] == pytest.approx(start / 40000, abs=1e-6)
    assert seen == grid  # every grid segment is drawn, nothing else
    ambiguous = data[2]
    assert ambiguous["emo_encoded"] == -1
    assert ambiguous["soft_target"].tolist() == [0.5, 0.5, 0, 0]


def test_train_all_segments_hard_targets_and_no_ambiguous(tmp_path, caplog):
    path = _manifest(tmp_path, ROWS)
    with caplog.at_level(logging.INFO, logger="amser_sb.training.pipeline"):
        data = _dataset(
            path, stage="train", segment_seconds=1.0,
            train_segments="all", use_ambiguous=False, target_type="hard",
        )
    assert "use_ambiguous is False" in caplog.text
    items = _items(data)
    assert len(items) == 4
    assert items[3]["soft_target"].tolist() == [0, 0, 1, 0]  # one-hot sad


def test_without_voiced_mask_and_whole_utterances(tmp_path):
    path = _manifest(tmp_path, ROWS)
    data = _dataset(path, stage="test",
                    segment_seconds=None, use_voiced_mask=False)
    items = _items(data)
    assert [i["sig"].shape[0] for i in items] == [40000, 8000]
    assert all(bool(i["mask"].all()) for i in items)


def test_batches_pad_signals_and_masks(tmp_path):
    path = _manifest(tmp_path, ROWS)
    data = _dataset(path, stage="valid",
                    segment_seconds=1.0)
    batch = PaddedBatch(_items(data))
    wavs, lens = batch.sig
    assert wavs.shape == (4, 16000)
    assert torch.allclose(lens, torch.tensor([1.0, 1.0, 1.0, 0.5]))
    assert batch.mask.data[3, 8000:].sum() == 0
    assert batch.emo_encoded.tolist() == [1, 1, 1, 2]
    assert batch.soft_target.data.shape == (4, 4)
    assert batch.seg_start.tolist() == [0, 16000, 24000, 0]


def test_manifest_errors(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        _dataset(str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,wav,emo\nx,y,neu\n")
    with pytest.raises(ManifestError, match="lacks columns"):
        _dataset(str(bad))
    path = _manifest(tmp_path, [("u9", 8000, "fru", [1, 0, 0, 0], 0, "")])
    with pytest.raises(ManifestError, match="'fru' is not one of"):
        _dataset(path)
    path = _manifest(tmp_path, [("u8", 8000, "", [0, 0, 0, 0], 1, "")],
                     name="zero.csv")
    with pytest.raises(ManifestError, match="every soft_<label>"):
        _dataset(path)
    # a manifest row whose audio went missing names the file
    path = _manifest(tmp_path, ROWS[:1], name="gone.csv")
    (tmp_path / "u1.wav").unlink()
    with pytest.raises(AudioError, match="u1.wav"):
        _dataset(path)


def test_dynamic_batches_by_duration(tmp_path):
    from amser_sb.training.pipeline import loader_options

    rows = [(f"d{k}", 8000 * (k + 1), "neu", [1, 0, 0, 0], 0, "")
            for k in range(6)]  # 0.5 .. 3 s
    data = _dataset(_manifest(tmp_path, rows),
                    stage="train", segment_seconds=None)
    hparams = {
        "train_dataloader_options": {"batch_size": 2, "num_workers": 0},
        "eval_dataloader_options": {"batch_size": 2},
        "dynamic_batching": True,
        "max_batch_length": 4.0,
        "num_buckets": 2,
        "seed": 42,
    }
    assert loader_options(hparams, data, "valid") == {"batch_size": 2}
    options = loader_options(hparams, data, "train")
    batches = list(options["batch_sampler"])
    durations = [data.data[data.data_ids[i]]["duration"] for i in range(6)]
    assert sorted(i for batch in batches for i in batch) == list(range(6))
    assert all(sum(durations[i] for i in batch) <= 4.0 or len(batch) == 1
               for batch in batches)
    hparams["dynamic_batching"] = False
    assert loader_options(hparams, data, "train") == {
        "batch_size": 2, "num_workers": 0}


def test_a_test_speaker_in_valid_is_refused(tmp_path):
    from amser_sb.training.pipeline import check_held_out

    def write(stage, speakers):
        with open(tmp_path / f"{stage}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["ID", "spk_id", "session"])
            for k, spk in enumerate(speakers):
                writer.writerow([f"{stage}{k}", spk, spk[:5]])

    write("train", ["Ses02F", "Ses02M"])
    write("valid", ["Ses01M"])
    write("test", ["Ses01F"])
    check_held_out(str(tmp_path), "speaker")  # clean
    with pytest.raises(ManifestError, match="session.*Ses01.*valid"):
        check_held_out(str(tmp_path), "session")
    write("valid", ["Ses01M", "Ses01F"])
    with pytest.raises(ManifestError, match=r"\['Ses01F'\] also in valid"):
        check_held_out(str(tmp_path), "speaker")
