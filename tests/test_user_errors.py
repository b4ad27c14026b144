"""User errors: one line naming the file and the fix, exit status 2; a
traceback only for our bugs or with --debug."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from amser_sb.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPE = os.path.join(HERE, "..", "recipes", "IEMOCAP", "emotion_recognition")
FULL = os.path.join(RECIPE, "hparams", "am_resnet_w2v2.yaml")


def _one_line_error(capsys, argv, *needles):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("error: "), err
    for needle in needles:
        assert needle in line, line
    return line


def test_classify_a_directory(trained, tmp_path, capsys):
    out = subprocess.run(
        [sys.executable, "-m", "amser_sb.cli", "classify", str(tmp_path),
         "--model", trained["model"], "--savedir", str(tmp_path / "sd")],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert "is a directory, not an audio file" in out.stderr
    assert "Traceback" not in out.stderr


def test_incomplete_model_folder(trained, tmp_path, capsys):
    sf.write(tmp_path / "x.wav", np.zeros(1600, "float32"), 16000)
    _one_line_error(capsys, ["classify", str(tmp_path / "x.wav"), "--model",
                             str(tmp_path)], "hyperparams.yaml", "export")


def test_missing_label_encoder_ckpt_is_named(trained, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    os.remove(model / "label_encoder.ckpt")
    sf.write(tmp_path / "x.wav", np.zeros(16000, "float32"), 16000)
    _one_line_error(capsys, ["classify", str(tmp_path / "x.wav"), "--model",
                             str(model), "--savedir", str(tmp_path / "sd")],
                    "label_encoder.ckpt")


def test_push_errors(trained, tmp_path, capsys):
    _one_line_error(capsys, ["push", trained["model"], "not-a-repo",
                             "--dry-run"], "user/repo")
    _one_line_error(capsys, ["push", str(tmp_path / "none"), "u/r",
                             "--dry-run"], "is not a folder")


def test_prepare_errors(trained, tmp_path, capsys):
    _one_line_error(capsys, ["prepare", "--data_folder", trained["corpus"],
                             "--save_folder", str(tmp_path / "p"),
                             "--protocol", "foo"], "--protocol 'foo'",
                    "speaker")
    _one_line_error(capsys, ["prepare", "--data_folder",
                             str(tmp_path / "nothere"), "--save_folder",
                             str(tmp_path / "p")], "nothere")


def test_malformed_annotation_line(tmp_path, capsys):
    from amser_sb.data.corpora.iemocap import prepare_iemocap
    from amser_sb.data.synthetic import make_iemocap_corpus
    from amser_sb.config.user_errors import report_user_errors

    corpus = tmp_path / "IEMOCAP"
    make_iemocap_corpus(corpus, utts_per_speaker=2, sessions=(1,),
                        min_dur=1.0, max_dur=1.2)
    name = sorted((corpus / "Session1" / "dialog" / "EmoEvaluation")
                  .glob("Ses*.txt"))[0]
    lines = name.read_text(encoding="utf-8").splitlines()
    index = next(i for i, l in enumerate(lines) if l.startswith("["))
    lines[index] = "[3.08 - 4.4\tbroken"
    name.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        with report_user_errors():
            prepare_iemocap(str(corpus), str(tmp_path / "p"), sessions=(1,),
                            num_workers=1)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{name}:{index + 1}: malformed" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="hyperparams.yaml"):
        main(["--debug", "classify", "x.wav", "--model", str(tmp_path)])


def test_our_bugs_keep_their_traceback(monkeypatch, tmp_path):
    import amser_sb.inference.hub as hub

    def bug(*args, **kwargs):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(hub, "push_model", bug)
    with pytest.raises(KeyError):
        main(["push", str(tmp_path), "u/r"])


def test_cv_yaml_syntax_error(trained, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(FULL).read().replace("batch_size: 64",
                                             "batch_size: [64"))
    line = _one_line_error(capsys, ["cv", str(bad), *trained["args"]],
                           "YAML")
    assert "bad.yaml" in line


def test_train_py_user_errors(trained, tmp_path):
    """--fold=99 (no such fold; no fold_99 folder left), read-only output."""
    def train(*extra):
        given = {arg.split("=")[0] for arg in extra}
        args = [a for a in trained["args"] if a.split("=")[0] not in given]
        return subprocess.run(
            [sys.executable, "train.py", "hparams/am_resnet_w2v2.yaml",
             "--noprogressbar", *args, *extra],
            cwd=RECIPE, capture_output=True, text=True, timeout=300,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
        )

    out_root = tmp_path / "exp"
    proc = train(f"--output_root={out_root}", "--fold=99",
                 f"--feature_cache_folder={tmp_path / 'cache'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "fold" in proc.stderr
    assert not list(out_root.glob("**/fold_99"))

    readonly = tmp_path / "ro"
    readonly.mkdir()
    os.chmod(readonly, 0o500)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("running as a user who may write anywhere")
        proc = train(f"--output_root={readonly}")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "permission denied" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        os.chmod(readonly, 0o700)


def test_hyperparams_running_code_is_refused(trained, tmp_path, capsys):
    """!apply:os.system in a model folder's hyperparams.yaml: refused by
    push --dry-run and classify unless --allow_any_yaml."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    marker = tmp_path / "ran"
    with open(model / "hyperparams.yaml", "a") as handle:
        handle.write(f"\npwned: !apply:os.system [touch {marker}]\n")
    line = _one_line_error(capsys, ["push", str(model), "u/r", "--dry-run"],
                           "!apply:os.system", "--allow_any_yaml",
                           "hyperparams.yaml")
    sf.write(tmp_path / "x.wav", np.zeros(16000, "float32"), 16000)
    _one_line_error(capsys, ["classify", str(tmp_path / "x.wav"), "--model",
                             str(model), "--savedir", str(tmp_path / "sd")],
                    "!apply:os.system")
    assert not marker.exists(), line
    assert main(["push", str(model), "u/r", "--dry-run",
                 "--allow_any_yaml"]) == 0
    assert marker.exists()  # the explicit opt-in runs it


def test_exported_model_passes_the_yaml_check(trained):
    from amser_sb.config.yaml_trust import check_hyperparams

    check_hyperparams(os.path.join(trained["model"], "hyperparams.yaml"))
