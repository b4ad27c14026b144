"""RunLock: one live run per output folder, stale locks cleared."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from amser_sb.training.run_lock import (
    LOCK_NAME,
    RunLock,
    RunLockError,
    exclusive_output_folder,
    locked_folder,
)

HOLD = (
    "import sys, time\n"
    "from amser_sb.training.run_lock import RunLock\n"
    "lock = RunLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path):
    """Another live process holding the lock on tmp_path / 'run'."""
    folder = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), "--fold=1"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_second_live_run_is_refused(holder):
    folder, proc = holder
    with pytest.raises(RunLockError) as info:
        RunLock(str(folder)).acquire()
    text = str(info.value)
    assert f"pid {proc.pid}" in text and socket.gethostname() in text
    assert "--fold=1" in text and str(folder / LOCK_NAME) in text


def test_train_fold_is_refused_before_doing_anything(holder):
    from amser_sb.training.run import train_fold

    folder, _ = holder
    with pytest.raises(RunLockError, match="is in use by training"):
        train_fold({"output_folder": str(folder)}, "unused.yaml")


def test_lock_of_a_killed_run_is_cleared(holder, caplog):
    folder, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with caplog.at_level(logging.WARNING):
        with RunLock(str(folder)) as lock:
            info = json.load(open(lock.path))
            assert info["pid"] == os.getpid()
    assert "stale lock" in caplog.text
    assert f"process {proc.pid} is no longer running" in caplog.text
    assert not (folder / LOCK_NAME).exists()


def test_lock_of_another_host_is_kept(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "started": "t", "command": "c"}))
    with pytest.raises(RunLockError, match="on elsewhere"):
        RunLock(str(tmp_path)).acquire()
    assert (tmp_path / LOCK_NAME).exists()


def test_runs_one_after_another_in_one_process(tmp_path):
    calls = []

    @exclusive_output_folder
    def run(hparams):
        calls.append(os.path.isfile(os.path.join(hparams["output_folder"],
                                                 LOCK_NAME)))

    run({"output_folder": str(tmp_path)})
    run({"output_folder": str(tmp_path)})
    assert calls == [True, True]
    assert not (tmp_path / LOCK_NAME).exists()


def test_only_rank_zero_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with locked_folder(str(tmp_path)) as lock:
        assert lock is None and not (tmp_path / LOCK_NAME).exists()
    monkeypatch.setenv("RANK", "0")
    with locked_folder(str(tmp_path)) as lock:
        assert lock is not None and (tmp_path / LOCK_NAME).exists()


def test_unreadable_young_lock_is_respected_old_one_cleared(tmp_path):
    path = tmp_path / LOCK_NAME
    path.write_text("")
    with pytest.raises(RunLockError, match="a run that is starting"):
        RunLock(str(tmp_path)).acquire()
    old = time.time() - 3600
    os.utime(path, (old, old))
    RunLock(str(tmp_path)).acquire().release()
