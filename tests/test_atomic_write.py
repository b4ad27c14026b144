"""Concurrent preparations: unique temporary names, one run per folder."""

import os
import threading

import pytest

from amser_sb.cli import main
from amser_sb.core.atomic_write import atomic_open
from amser_sb.data.manifest import write_csv
from amser_sb.training.run_lock import RunLock


def test_concurrent_writers_never_share_a_temporary(tmp_path):
    path = str(tmp_path / "all.csv")
    errors = []

    def write(tag):
        try:
            for _ in range(50):
                write_csv(path, [{"ID": tag, "duration": 1.0}] * 200,
                          ["ID", "duration"])
        except Exception as err:  # noqa: BLE001 - collected for the assert
            errors.append(err)

    threads = [threading.Thread(target=write, args=(t,)) for t in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    lines = open(path).read().splitlines()
    assert len(lines) == 201 and len({l.split(",")[0] for l in lines[1:]}) == 1
    assert os.listdir(tmp_path) == ["all.csv"]  # no temporary left


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(str(path)) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["x.json"]


def test_prepare_refuses_a_folder_in_use(tmp_path, capsys):
    save = tmp_path / "prep"
    with RunLock(str(save), "data preparation"):
        # another live preparation (this process's live lock counts)
        with pytest.raises(SystemExit) as info:
            main(["prepare", "--data_folder", str(tmp_path / "none"),
                  "--save_folder", str(save)])
    assert info.value.code == 2
    assert "is in use by data preparation" in capsys.readouterr().err
