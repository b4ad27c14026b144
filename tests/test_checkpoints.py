"""SafeCheckpointer: atomic saves, damaged checkpoints skipped on recovery."""

import errno
import glob
import logging
import os
import time

import pytest
import torch
from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS, torch_save
from speechbrain.utils.epoch_loop import EpochCounter

from amser_sb.core.checkpoints import SafeCheckpointer, check_param_file

HPARAMS = os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP",
                       "emotion_recognition", "hparams")


def _checkpointer(folder, value=0.0):
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, value)
    counter = EpochCounter(10)
    ckpter = SafeCheckpointer(
        folder, recoverables={"embedding_model": model, "counter": counter}
    )
    return ckpter, model, counter


def _save_two(folder):
    ckpter, model, counter = _checkpointer(folder)
    first = ckpter.save_checkpoint(meta={"epoch": 1})
    time.sleep(0.01)
    torch.nn.init.constant_(model.weight, 2.0)
    second = ckpter.save_checkpoint(meta={"epoch": 2})
    return first, second


def test_truncated_latest_checkpoint_falls_back(tmp_path, caplog):
    """The newest checkpoint's embedding_model.ckpt cut short (disk full):
    a rerun resumes from the one before and says which it skipped."""
    _, second = _save_two(tmp_path)
    path = second.paramfiles["embedding_model"]
    path.write_bytes(path.read_bytes()[:-200])
    ckpter, model, _ = _checkpointer(tmp_path, value=-1.0)
    with caplog.at_level(logging.WARNING):
        chosen = ckpter.recover_if_possible()
    assert chosen.meta["epoch"] == 1
    assert torch.all(model.weight == 0.0)
    assert f"skipping checkpoint {second.path}" in caplog.text
    assert "embedding_model.ckpt: damaged zip archive" in caplog.text


def test_meta_without_files_is_skipped(tmp_path, caplog):
    """SpeechBrain writes CKPT.yaml first: a save killed right after it
    left a checkpoint without parameter files."""
    _, second = _save_two(tmp_path)
    for path in second.paramfiles.values():
        os.remove(path)
    ckpter, _, _ = _checkpointer(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert ckpter.find_checkpoint().meta["epoch"] == 1
    assert "embedding_model.ckpt is missing" in caplog.text


def test_empty_file_is_damaged(tmp_path):
    (tmp_path / "x.ckpt").touch()
    assert check_param_file(tmp_path / "x.ckpt") == "empty file"


def test_disk_full_during_save_leaves_no_checkpoint(tmp_path, monkeypatch):
    ckpter, model, _ = _checkpointer(tmp_path)
    ckpter.save_checkpoint(meta={"epoch": 1})

    def disk_full(obj, path):
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(DEFAULT_SAVE_HOOKS, torch.nn.Module, disk_full)
    with pytest.raises(OSError, match="No space"):
        ckpter.save_checkpoint(meta={"epoch": 2})
    monkeypatch.setitem(DEFAULT_SAVE_HOOKS, torch.nn.Module, torch_save)
    assert os.listdir(tmp_path) == [
        os.path.basename(p) for p in glob.glob(str(tmp_path / "CKPT+*"))
    ]  # no temporary folder left either
    fresh, _, _ = _checkpointer(tmp_path)
    assert [c.meta["epoch"] for c in fresh.list_checkpoints()] == [1]


def test_interrupted_save_temporary_is_removed(tmp_path, caplog):
    ckpter, _, _ = _checkpointer(tmp_path)
    stale = tmp_path / ".tmp-CKPT+2020-01-01+00-00-00+00"
    stale.mkdir()
    (stale / "CKPT.yaml").write_text("end-of-epoch: true\n")
    assert ckpter.list_checkpoints() == []  # never taken for a checkpoint
    with caplog.at_level(logging.WARNING):
        ckpter.save_checkpoint(meta={"epoch": 1})
    assert not stale.exists() and "unfinished checkpoint save" in caplog.text


def test_named_checkpoint_is_replaced(tmp_path):
    ckpter, model, _ = _checkpointer(tmp_path)
    ckpter.save_checkpoint(meta={"epoch": 1}, name="last")
    torch.nn.init.constant_(model.weight, 5.0)
    ckpter.save_checkpoint(meta={"epoch": 2}, name="last")
    assert sorted(os.listdir(tmp_path)) == ["CKPT+last"]
    fresh, loaded, _ = _checkpointer(tmp_path)
    assert fresh.recover_if_possible().meta["epoch"] == 2
    assert torch.all(loaded.weight == 5.0)


def test_recipe_hparams_use_the_safe_checkpointer():
    for path in glob.glob(os.path.join(HPARAMS, "*.yaml")):
        text = open(path).read()
        if "checkpointer:" in text:
            assert "!new:amser_sb.core.checkpoints.SafeCheckpointer" in text, path


def test_checkpoint_without_rng_state_still_loads(tmp_path):
    """Checkpoints written before the generator states were saved."""
    from amser_sb.training.rng_state import RNGState

    _save_two(tmp_path)
    model = torch.nn.Linear(3, 2)
    ckpter = SafeCheckpointer(
        tmp_path, recoverables={"embedding_model": model,
                                "counter": EpochCounter(10)},
        optional_recoverables={"rng_state": RNGState()},
    )
    with pytest.warns(UserWarning, match="rng_state"):
        assert ckpter.recover_if_possible().meta["epoch"] == 2
    saved = ckpter.save_checkpoint(meta={"epoch": 3})
    state = torch.load(saved.paramfiles["rng_state"], weights_only=True)
    assert set(state) == {"python", "numpy", "torch", "cuda"}


def test_unused_folders_removed_alone_kept_under_torchrun(tmp_path,
                                                          monkeypatch):
    """Loading alone leaves no empty checkpoint folders; under torchrun
    (WORLD_SIZE > 1) the folders stay: another process may be inside its
    own os.makedirs of the same path at that moment."""
    model = torch.nn.Linear(2, 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    SafeCheckpointer(tmp_path / "alone" / "fold_1" / "save",
                     recoverables={"model": model})
    assert not (tmp_path / "alone").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    SafeCheckpointer(tmp_path / "ddp" / "fold_1" / "save",
                     recoverables={"model": model})
    assert (tmp_path / "ddp" / "fold_1" / "save").is_dir()
