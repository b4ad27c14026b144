"""The recipe end to end on a generated IEMOCAP-layout corpus.

Tiny everything (a 32-dim random wav2vec2, 8-channel AM-ResNet, 1 s
segments, 1-2 epochs) so that the whole file runs in about a minute or two
on two CPU cores.
"""

import json
import os
import subprocess
import sys

import pytest

from tiny_run import tiny_run_values

from amser_sb.training import cv
from amser_sb.training.brain import AMSERBrain
from amser_sb.config.hparams_loading import RecipeError, load_hparams
from amser_sb.training.run import run_fold

RECIPE = os.path.join(
    os.path.dirname(__file__), "..", "recipes", "IEMOCAP", "emotion_recognition"
)
RECIPE = os.path.abspath(RECIPE)
FULL = os.path.join(RECIPE, "hparams", "am_resnet_w2v2.yaml")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two sessions, 4 speakers, 8 utterances each (learnable classes)."""
    from amser_sb.data.synthetic import make_iemocap_corpus

    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    make_iemocap_corpus(root, utts_per_speaker=8, sessions=(1, 2),
                        min_dur=1.0, max_dur=2.0)
    return str(root)


def _overrides(corpus, w2v, out, epochs=2, **extra):
    """Command-line overrides of a tiny, fast run."""
    values = tiny_run_values(corpus, w2v, out, number_of_epochs=epochs,
                             batch_size=8, **extra)
    return [f"--{key}={value}" for key, value in values.items()]


def _yaml(args):
    """``--key=value`` arguments as the YAML override string."""
    return "\n".join(arg[2:].replace("=", ": ", 1) for arg in args)


def _epoch_lines(output_folder):
    with open(os.path.join(output_folder, "train_log.txt")) as handle:
        return [line for line in handle if line.startswith("epoch: ")]


def test_train_py_end_to_end(corpus, tiny_w2v2_group, tmp_path):
    args = _overrides(corpus, tiny_w2v2_group, tmp_path / "exp",
                      train_segments="all")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "train.py", "hparams/am_resnet_w2v2.yaml",
         "--noprogressbar", *args],
        cwd=RECIPE, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fold = tmp_path / "exp" / "speaker" / "fold_1"
    metrics = json.loads((fold / "test_metrics.json").read_text())
    for key in ("WA", "UA", "macro_F1"):
        assert 0.0 <= metrics[key] <= 100.0
    assert metrics["n_utterances"] == 5  # Ses01F's clear utterances
    assert set(metrics["recall"]) == {"neu", "hap", "sad", "ang"}
    assert metrics["epoch"] in (1, 2)
    for name in ("test_confusion.csv", "test_confusion.png",
                 "test_predictions.csv", "train_log.txt"):
        assert (fold / name).is_file(), name
    for epoch in (1, 2):
        assert (fold / "metrics" / f"valid_epoch{epoch}_confusion.png")\
            .is_file()
    lines = _epoch_lines(fold)
    assert [line.split(",")[0] for line in lines] == ["epoch: 1", "epoch: 2"]
    assert "valid UA" in lines[0] and "test UA" in (
        fold / "train_log.txt").read_text()
    # the frozen backbone was cached: epoch 2 (same segments) only hits
    assert "train cache_misses: 0" in lines[1]


class _Crash(RuntimeError):
    """A simulated interruption."""


def test_interrupted_training_resumes(corpus, tiny_w2v2_group, tmp_path,
                                      monkeypatch):
    overrides = _yaml(_overrides(corpus, tiny_w2v2_group, tmp_path / "exp"))
    real_fit_batch = AMSERBrain.fit_batch

    def crash_in_epoch_2(self, batch):
        if self.hparams.epoch_counter.current == 2:
            raise _Crash("power cut")
        return real_fit_batch(self, batch)

    monkeypatch.setattr(AMSERBrain, "fit_batch", crash_in_epoch_2)
    with pytest.raises(_Crash):
        run_fold(FULL, {"noprogressbar": True}, overrides)
    fold = tmp_path / "exp" / "speaker" / "fold_1"
    assert len(_epoch_lines(fold)) == 1
    assert not (fold / "test_metrics.json").exists()

    monkeypatch.setattr(AMSERBrain, "fit_batch", real_fit_batch)
    summary = run_fold(FULL, {"noprogressbar": True}, overrides)
    lines = _epoch_lines(fold)
    # epoch 1 is not redone; epoch 2 runs once, after the crash
    assert [line.split(",")[0] for line in lines] == ["epoch: 1", "epoch: 2"]
    assert summary["epoch"] in (1, 2) and 0 <= summary["UA"] <= 100


def test_cross_validation_two_folds(corpus, tiny_w2v2_group, tmp_path,
                                    monkeypatch, capsys):
    args = [FULL, "--protocol", "session", "--noprogressbar",
            *_overrides(corpus, tiny_w2v2_group, tmp_path / "exp", epochs=1)]
    first = cv.run_cv([*args, "--folds", "1"])
    assert [fold["fold"] for fold in first["folds"]] == [1]
    # the second call trains fold 2; the table holds both folds
    result = cv.run_cv([*args, "--folds", "2"])
    folder = tmp_path / "exp" / "session"
    assert [fold["fold"] for fold in result["folds"]] == [1, 2]
    assert [fold["test_groups"] for fold in result["folds"]] == [
        "Ses01", "Ses02"]
    saved = json.loads((folder / "results.json").read_text())
    for fold in saved["folds"]:
        assert 0.0 <= fold["UA"] <= 100.0 and fold["n_utterances"] == 10
    mean = saved["mean_std"]["UA"]["mean"]
    assert mean == pytest.approx(
        sum(fold["UA"] for fold in saved["folds"]) / 2)
    assert [fold["model_selection"] for fold in saved["folds"]] == [
        "last", "last"]  # the recipe's default, recorded by each fold
    table = (folder / "results.md").read_text()
    assert "| 1 | Ses01 | 10 |" in table and "**Mean ± std**" in table
    assert "with the last epoch's checkpoint" in " ".join(table.split())
    assert "Mean ± std" in capsys.readouterr().out

    # a second call finds both folds finished and trains nothing
    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was retrained")

    monkeypatch.setattr(cv, "run_fold", no_training)
    again = cv.run_cv(args)
    assert again["folds"] == result["folds"]
    # and through the command line: amser-sb cv ...
    from amser_sb import cli

    assert cli.main(["cv", *args]) == 0


def _cv_user_error(capsys, argv, needle):
    """cv.main(argv) ends with one line naming ``needle``, status 2."""
    with pytest.raises(SystemExit) as info:
        cv.main(argv)
    assert info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and needle in line, line


def test_unknown_override_is_a_clear_error(corpus, tiny_w2v2_group, tmp_path,
                                           capsys):
    args = _overrides(corpus, tiny_w2v2_group, tmp_path, lr_typo=0.1)
    with pytest.raises(RecipeError, match="unknown hparam override --lr_typo"):
        load_hparams(FULL, _yaml(args))
    _cv_user_error(capsys, [FULL, *args], "unknown hparam override")
    _cv_user_error(capsys, [FULL, "--fold=2", *args], "--folds, not --fold")
    # one output folder for every fold would mix the folds' results
    args = _overrides(corpus, tiny_w2v2_group, tmp_path,
                      output_folder=tmp_path / "one_folder")
    _cv_user_error(capsys, [FULL, *args], "does not end with fold_1")


def test_missing_data_folder_is_a_clear_error(tiny_w2v2_group, tmp_path):
    missing = tmp_path / "no_such_corpus"
    args = _overrides(str(missing), tiny_w2v2_group, tmp_path)
    with pytest.raises(RecipeError, match=f"data_folder {missing} does not"):
        load_hparams(FULL, _yaml(args))
    args = [a for a in args if not a.startswith("--data_folder")]
    with pytest.raises(RecipeError, match="data_folder is not set"):
        load_hparams(FULL, _yaml(args))


def test_unloadable_ssl_hub_is_a_clear_error(corpus, tmp_path,
                                                  monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = _overrides(corpus, "no-such-org/no-such-model", tmp_path)
    with pytest.raises(RecipeError) as info:
        load_hparams(FULL, _yaml(args))
    text = str(info.value)
    assert "ssl_hub='no-such-org/no-such-model'" in text
    assert "HF_HUB_OFFLINE is set" in text and "local folder" in text
    args = _overrides(corpus, str(tmp_path / "missing_w2v"), tmp_path)
    with pytest.raises(RecipeError, match="missing_w2v does not exist"):
        load_hparams(FULL, _yaml(args))


def test_every_hparams_file_loads(corpus, tiny_w2v2_group, tmp_path):
    for name in ("am_resnet.yaml", "w2v2_baseline.yaml",
                 "am_resnet_w2v2.yaml"):
        path = os.path.join(RECIPE, "hparams", name)
        with open(path) as handle:
            text = handle.read()
        # only the keys this file has (stage 1 has no wav2vec2 or fusion)
        args = [
            arg for arg in _overrides(corpus, tiny_w2v2_group, tmp_path)
            if f"\n{arg[2:].split('=')[0]}:" in text
        ]
        hparams = load_hparams(path, _yaml(args))
        assert set(hparams["modules"]) == {"embedding_model", "classifier"}
        assert set(hparams["checkpointer"].recoverables) >= {
            "embedding_model", "classifier", "counter"}
        assert hparams["label_encoder"].__class__.__name__ == (
            "CategoricalEncoder")
