"""Export -> plain EncoderClassifier (offline, fresh process) -> classify.

Every test here uses the session's one trained tiny fold and its exported
model (``trained`` in conftest.py).
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from amser_sb.core.audio import AudioError
from amser_sb.inference.classify import (
    SILENCE_LABEL,
    ModelFolderMismatchError,
    classify_file,
    classify_long,
    load_classifier,
)
from amser_sb.inference.export import ExportError, export_model
from amser_sb.inference.run_folder import RunFolderError
from amser_sb.inference.hub import ModelFolderError, push_model, validate_model_folder

HERE = os.path.dirname(os.path.abspath(__file__))
FULL = os.path.join(HERE, "..", "recipes", "IEMOCAP", "emotion_recognition",
                    "hparams", "am_resnet_w2v2.yaml")


def _test_rows(fold):
    with open(fold / "test_predictions.csv") as handle:
        return list(csv.DictReader(handle))


def _wav_paths(root):
    with open(root / "exp" / "manifests" / "all.csv") as handle:
        return {row["ID"]: row["wav"] for row in csv.DictReader(handle)}


def test_model_folder_contents(trained):
    names = set(os.listdir(trained["model"]))
    assert {
        "hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt",
        "label_encoder.txt", "label_encoder.ckpt", "README.md",
        "training.json", "encoder",
    } <= names
    assert sorted(os.listdir(os.path.join(trained["model"], "encoder"))) \
        == ["config.json", "options.json"]
    card = open(os.path.join(trained["model"], "README.md")).read()
    assert "EncoderClassifier.from_hparams" in card
    assert "`neu`, `hap`, `sad`, `ang`" in card
    assert "| WA | UA |" in card  # this fold's test results
    info = json.load(open(os.path.join(trained["model"], "training.json")))
    assert info["labels"] == ["neu", "hap", "sad", "ang"]
    assert info["epoch"] == 1


def test_fresh_process_offline_matches_training_time(trained, tmp_path):
    """A new process, another cwd, HF offline: plain EncoderClassifier
    gives the training run's test posteriors; amser-sb's own
    ``load_classifier`` / ``classify_file`` agree; and neither imports a
    Brain, pipeline, data preparation, cross-validation, CLI or weight
    tooling module (the house's layering: inference is free of training).
    """
    rows = _test_rows(trained["fold"])
    paths = _wav_paths(trained["root"])
    files = [paths[row["ID"]] for row in rows]
    script = (
        "import json, sys, torch\n"
        "from speechbrain.inference.classifiers import EncoderClassifier\n"
        "from amser_sb.inference.classify import classify_file, "
        "load_classifier\n"
        "clf = EncoderClassifier.from_hparams(source=sys.argv[1],"
        " savedir='sd')\n"
        "out = {}\n"
        "for f in sys.argv[2:]:\n"
        "    p, s, i, lab = clf.classify_file(f)\n"
        "    out[f] = [p[0].tolist(), lab[0]]\n"
        "ours = classify_file(load_classifier(sys.argv[1], savedir='sd2'),"
        " sys.argv[2])\n"
        "print(json.dumps([out, ours.label, sorted(m for m in sys.modules"
        " if m.startswith('amser_sb'))]))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", script, trained["model"], *files],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, label, modules = json.loads(proc.stdout.strip().splitlines()[-1])
    for row, path in zip(rows, files):
        probs, label_of_row = result[path]
        expected = [float(row[f"p_{c}"]) for c in ("neu", "hap", "sad", "ang")]
        np.testing.assert_allclose(probs, expected, atol=1e-4)
        assert label_of_row == row["predicted"]
    assert label == rows[0]["predicted"]
    forbidden = [m for m in modules
                 if m.split(".")[1:2] and m.split(".")[1] in
                 ("training", "data", "cli", "weights")]
    assert not forbidden, forbidden
    assert "amser_sb.config.hparams_loading" not in modules
    assert "amser_sb.inference.classify" in modules


def test_prediction_does_not_depend_on_the_batch(trained, tmp_path):
    clf = load_classifier(trained["model"], savedir=str(tmp_path / "sd"))
    paths = sorted(_wav_paths(trained["root"]).values())[:3]
    wavs = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths]
    longest = max(w.numel() for w in wavs)
    batch = torch.zeros(len(wavs), longest)
    for i, w in enumerate(wavs):
        batch[i, : w.numel()] = w
    lens = torch.tensor([w.numel() / longest for w in wavs])
    together, _, _, _ = clf.classify_batch(batch, lens)
    for i, w in enumerate(wavs):
        alone, _, _, _ = clf.classify_batch(w.unsqueeze(0))
        torch.testing.assert_close(together[i], alone[0], atol=1e-4,
                                   rtol=0)


def test_stereo_and_other_rates(trained, tmp_path):
    import torchaudio

    clf = load_classifier(trained["model"], savedir=str(tmp_path / "sd"))
    path = sorted(_wav_paths(trained["root"]).values())[0]
    mono, sr = sf.read(path, dtype="float32")
    ref = classify_file(clf, path)
    up = torchaudio.functional.resample(torch.from_numpy(mono), sr, 44100)
    stereo = torch.stack([up, up], dim=1).numpy()
    sf.write(tmp_path / "stereo44k.wav", stereo, 44100)
    res = classify_file(clf, str(tmp_path / "stereo44k.wav"))
    assert res.label == ref.label
    for key, value in ref.posteriors.items():
        assert abs(res.posteriors[key] - value) < 0.05
    # SpeechBrain's own classify_file resamples and downmixes too
    _, _, _, lab = clf.classify_file(str(tmp_path / "stereo44k.wav"))
    assert lab[0] in ref.posteriors


def test_empty_and_silent_audio(trained, tmp_path):
    clf = load_classifier(trained["model"], savedir=str(tmp_path / "sd"))
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    with pytest.raises(AudioError, match="empty"):
        classify_file(clf, str(tmp_path / "empty.wav"))
    sf.write(tmp_path / "silent.wav", np.zeros(16000 * 10, "float32"), 16000)
    res = classify_long(clf, str(tmp_path / "silent.wav"))
    assert res.label == SILENCE_LABEL and res.posteriors == {}
    assert all(w.label == SILENCE_LABEL for w in res.windows)
    with pytest.raises(ValueError, match="empty waveform"):
        clf.classify_batch(torch.zeros(1, 100), torch.tensor([0.0]))


def test_missing_model_files_are_clear_errors(trained, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("hyperparams.yaml", "embedding_model.ckpt",
                 "classifier.ckpt"):
        (broken / name).write_bytes(
            open(os.path.join(trained["model"], name), "rb").read()
        )
    with pytest.raises(FileNotFoundError, match="label_encoder.txt"):
        load_classifier(str(broken))
    with pytest.raises(ModelFolderError, match="label_encoder.txt"):
        validate_model_folder(str(broken))
    # the plain SpeechBrain loader fails loudly too (not an empty encoder)
    (broken / "label_encoder.txt").write_text("")
    (broken / "label_encoder.ckpt").write_text("")
    from speechbrain.inference.classifiers import EncoderClassifier

    with pytest.raises(Exception):
        EncoderClassifier.from_hparams(source=str(broken),
                                       savedir=str(tmp_path / "sd2"))
    with pytest.raises(RunFolderError, match="does not exist"):
        export_model(str(tmp_path / "nope"), str(tmp_path / "out"))


def _edited_copy(model, folder, old, new):
    """A copy of a model folder with one edit of its hyperparams.yaml."""
    import shutil

    shutil.copytree(model, folder)
    path = folder / "hyperparams.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_edited_n_classes_is_one_clear_error(trained, tmp_path, capsys):
    """An edited n_classes names hyperparams.yaml and the fix, and
    ``amser-sb classify`` prints one line and exits 2 (no size-mismatch
    traceback)."""
    from amser_sb.cli import main

    edited = _edited_copy(trained["model"], tmp_path / "edited",
                          "n_classes: 4", "n_classes: 5")
    with pytest.raises(ModelFolderMismatchError) as info:
        load_classifier(str(tmp_path / "edited"),
                        savedir=str(tmp_path / "sd"))
    message = str(info.value)
    assert str(edited) in message and "set n_classes: 4" in message
    wav = sorted(_wav_paths(trained["root"]).values())[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", wav, "--model", str(tmp_path / "edited"),
              "--savedir", str(tmp_path / "sd")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("error: ") and "n_classes" in err

    # the classifier's own size edited (n_classes itself left alone): the
    # weights do not fit; still one error naming the file
    _edited_copy(trained["model"], tmp_path / "edited2",
                 "n_classes: !ref <n_classes>", "n_classes: 6")
    with pytest.raises(ModelFolderMismatchError,
                       match="hyperparams.yaml does not match the weights"):
        load_classifier(str(tmp_path / "edited2"),
                        savedir=str(tmp_path / "sd2"))


def test_classify_cli_long_recording(trained, tmp_path, capsys,
                                     monkeypatch):
    """A one-minute recording: per-window emotions with timestamps (the
    command in this process: ``test_onnx.py`` runs it as ``python -m
    amser_sb.cli``)."""
    paths = sorted(_wav_paths(trained["root"]).values())
    pieces, total = [], 0
    rng = np.random.default_rng(0)
    while total < 60 * 16000:
        wav = sf.read(paths[len(pieces) % len(paths)], dtype="float32")[0]
        gap = (1e-4 * rng.standard_normal(16000)).astype("float32")
        pieces += [wav, gap]
        total += wav.size + gap.size
    recording = np.concatenate(pieces)[: 60 * 16000]
    recording[20 * 16000 : 30 * 16000] = 0.0  # ten seconds of silence
    sf.write(tmp_path / "long.wav", recording, 16000)
    from amser_sb.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = main(["classify", str(tmp_path / "long.wav"), "--model",
                   trained["model"], "--savedir", str(tmp_path / "sd"),
                   "--window", "4", "--hop", "2", "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err[-3000:]
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["duration"] == pytest.approx(60.0)
    windows = out["windows"]
    assert len(windows) == 29  # 0-4, 2-6, ..., 56-60
    assert windows[0]["start"] == 0 and windows[-1]["end"] == 60.0
    silent = [w for w in windows if 20 <= w["start"] and w["end"] <= 30]
    assert silent and all(w["label"] == SILENCE_LABEL for w in silent)
    voiced = [w for w in windows if w["label"] != SILENCE_LABEL]
    assert len(voiced) > 20
    assert all(
        abs(sum(w["posteriors"].values()) - 1) < 1e-2 for w in voiced
    )
    assert out["label"] in ("neu", "hap", "sad", "ang")


def test_push_dry_run_validates_and_lists(trained, capsys):
    summary = push_model(trained["model"], "someone/amser-test", dry_run=True)
    assert summary["uploaded"] is False
    assert summary["labels"] == ["neu", "hap", "sad", "ang"]
    names = [rel for rel, _ in summary["files"]]
    assert "embedding_model.ckpt" in names and "hyperparams.yaml" in names
    with pytest.raises(ValueError, match="user/repo"):
        push_model(trained["model"], "not-a-repo-id", dry_run=True)


PUSH_ONLINE_SCRIPT = """
import sys

import amser_sb.inference.hub as hub

assert "huggingface_hub" not in sys.modules  # first imported while loading
calls = []
real_validate = hub.validate_model_folder


def validate_then_fake_upload(model_dir, **kwargs):
    labels = real_validate(model_dir, **kwargs)
    import huggingface_hub
    from huggingface_hub import constants

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            calls.append(constants.is_offline_mode())

        def upload_folder(self, **kwargs):
            calls.append(constants.is_offline_mode())
            return "https://example.invalid/commit"

    huggingface_hub.HfApi = FakeApi
    return labels


hub.validate_model_folder = validate_then_fake_upload
summary = hub.push_model(sys.argv[1], "someone/amser-test")
assert summary["uploaded"] and calls == [False, False], calls
print("ONLINE-OK")
"""


def test_push_uploads_online_after_offline_validation(trained, tmp_path):
    """Validation loads offline; the upload afterwards must not be offline
    (it was: huggingface_hub, first imported inside validation, kept
    HF_HUB_OFFLINE=1 for the whole process)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    script = tmp_path / "push_online.py"
    script.write_text(PUSH_ONLINE_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), trained["model"]], env=env,
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ONLINE-OK" in proc.stdout


def test_export_with_a_class_absent_from_the_test_set(trained, tmp_path):
    """Issue 17, row 2: a class with no test utterance has no recall
    (null): the export still works and its table shows '—'."""
    import shutil

    fold = tmp_path / "run" / "fold_1"
    shutil.copytree(trained["fold"], fold)
    metrics = json.loads((fold / "test_metrics.json").read_text())
    metrics["recall"]["sad"] = None
    (fold / "test_metrics.json").write_text(json.dumps(metrics))
    model = tmp_path / "model"
    export_model(str(fold), str(model))
    card = (model / "README.md").read_text()
    assert "| — |" in card and "no sad utterance" in card


def test_export_never_replaces_files_it_did_not_write(trained, tmp_path):
    """Issue 17, row 3: a folder holding a user's files is refused as it
    is; an earlier export is updated, other files in it are kept."""
    import shutil

    target = tmp_path / "mine"
    target.mkdir()
    (target / "README.md").write_text("my notes\n")
    with pytest.raises(ExportError, match="did not write .*README.md"):
        export_model(str(trained["root"] / "exp"), str(target))
    assert sorted(os.listdir(target)) == ["README.md"]
    assert (target / "README.md").read_text() == "my notes\n"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".export")]

    again = tmp_path / "again"
    shutil.copytree(trained["model"], again)
    (again / "notes.txt").write_text("kept\n")
    old = (again / "classifier.ckpt").stat().st_mtime_ns
    export_model(str(trained["root"] / "exp"), str(again))
    assert (again / "notes.txt").read_text() == "kept\n"
    assert (again / "classifier.ckpt").stat().st_mtime_ns != old

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_model(str(trained["root"] / "exp"), str(a_file))


def test_export_refuses_a_model_running_foreign_code(trained, tmp_path):
    """Row 1 for export: the folder is loaded to check it, so its YAML is
    checked first (opt-in: allow_any_yaml)."""
    import shutil

    from amser_sb.config.yaml_trust import UntrustedYamlError

    fold = tmp_path / "run" / "fold_1"
    shutil.copytree(trained["fold"], fold)
    marker = tmp_path / "ran"
    hp = fold / "hyperparams.yaml"
    import re

    text = re.sub(r"^(classifier: .*EmotionClassifier)$",
                  r"\1\n  pwned: !apply:speechbrain.dataio.dataio.os.system "
                  f"[touch {marker}]", hp.read_text(), count=1,
                  flags=re.MULTILINE)
    assert "pwned" in text
    hp.write_text(text)
    with pytest.raises(UntrustedYamlError, match="posix.system"):
        export_model(str(fold), str(tmp_path / "model"))
    assert not marker.exists()
