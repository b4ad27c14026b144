"""User errors: one line naming the file and the fix, exit status 2; a
traceback only for our bugs or with --debug."""

import contextlib
import json
import os

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


def test_classify_a_directory(trained, tmp_path, capsys, caplog):
    with contextlib.suppress(SystemExit):  # any status (a per-file error)
        main(["classify", str(tmp_path), "--model", trained["model"],
              "--savedir", str(tmp_path / "sd")])
    err = caplog.text + capsys.readouterr().err  # a process's stderr
    assert "is a directory, not an audio file" in err
    assert "Traceback" not in err


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
    text = open(FULL).read()
    assert "\nbatch_size: 32\n" in text
    bad.write_text(text.replace("\nbatch_size: 32\n", "\nbatch_size: [32\n"))
    line = _one_line_error(capsys, ["cv", str(bad), *trained["args"]],
                           "YAML")
    assert "bad.yaml" in line


def test_train_py_user_errors(trained, tmp_path, train_py):
    """--fold=99 (no such fold; no fold_99 folder left), read-only output."""
    def train(*extra):
        given = {arg.split("=")[0] for arg in extra}
        args = [a for a in trained["args"] if a.split("=")[0] not in given]
        return train_py("hparams/am_resnet_w2v2.yaml", "--noprogressbar",
                        *args, *extra)

    out_root = tmp_path / "exp"
    status, output = train(f"--output_root={out_root}", "--fold=99",
                           f"--feature_cache_folder={tmp_path / 'cache'}")
    assert status == 2, output[-2000:]
    assert "Traceback" not in output and "fold" in output
    assert not list(out_root.glob("**/fold_99"))

    readonly = tmp_path / "ro"
    readonly.mkdir()
    os.chmod(readonly, 0o500)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("running as a user who may write anywhere")
        status, output = train(f"--output_root={readonly}")
        assert status == 2, output[-2000:]
        assert "permission denied" in output
        assert "Traceback" not in output
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


# --------------------------------------------------------------------------
# issue 17: every row of its table ends in one line (exit 2), nothing lost.

def _args(trained, tmp_path, **changes):
    """The fixture's command-line overrides, output in tmp_path, changed."""
    values = dict(arg[2:].split("=", 1) for arg in trained["args"])
    values["output_root"] = str(tmp_path / "exp")
    values.update({k: str(v) for k, v in changes.items()})
    return [f"--{k}={v}" for k, v in values.items()]


def _model_copy(trained, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    return model


@pytest.mark.parametrize("tag", [
    # the bypass of the issue: an attribute walk from an allowed module
    "!apply:speechbrain.dataio.dataio.os.system [touch {marker}]",
    "!apply:torch.nn.modules.module.torch.serialization.os.system "
    "[touch {marker}]",
    "!!python/object/apply:os.system [touch {marker}]",
    "!applyref:os.system [touch {marker}]",
    "!<!apply:os.system> [touch {marker}]",
])
def test_model_folder_yaml_bypasses_are_refused(trained, tmp_path, capsys,
                                                tag):
    """Row 1: push --dry-run and classify refuse, nothing runs."""
    model = _model_copy(trained, tmp_path)
    marker = tmp_path / "ran"
    with open(model / "hyperparams.yaml", "a") as handle:
        handle.write("\npwned: " + tag.format(marker=marker) + "\n")
    _one_line_error(capsys, ["push", str(model), "u/r", "--dry-run"],
                    "hyperparams.yaml", "--allow_any_yaml", "refused")
    sf.write(tmp_path / "x.wav", np.zeros(16000, "float32"), 16000)
    line = _one_line_error(capsys, ["classify", str(tmp_path / "x.wav"),
                                    "--model", str(model), "--savedir",
                                    str(tmp_path / "sd")], "hyperparams.yaml")
    assert "YAML syntax error" not in line
    assert not marker.exists()


def test_nan_and_inf_audio_are_per_file_errors(trained, tmp_path, capsys):
    """Row 5: NaN/Inf audio is an error for that file; --json stays JSON."""
    good = tmp_path / "good.wav"
    sf.write(good, 0.1 * np.random.default_rng(0).standard_normal(16000)
             .astype("float32"), 16000, subtype="FLOAT")
    bad = []
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        wav = np.zeros(16000, "float32")
        wav[100:200] = value
        sf.write(tmp_path / name, wav, 16000, subtype="FLOAT")
        bad.append(str(tmp_path / name))
    status = main(["classify", str(good), *bad, "--json", "--model",
                   trained["model"], "--savedir", str(tmp_path / "sd")])
    out = capsys.readouterr()
    assert status == 1
    lines = out.out.strip().splitlines()

    def refuse(constant):
        raise AssertionError(f"{constant} in --json output")

    assert [json.loads(l, parse_constant=refuse)["file"] for l in lines] \
        == [str(good)]
    for path in bad:
        assert f"{path}: error: {path} holds 100 NaN or infinite" in out.err
    assert "Traceback" not in out.err


def test_push_without_network(trained, monkeypatch, capsys):
    """Row 6: offline mode, unreachable Hub: one line, nothing uploaded."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _one_line_error(capsys, ["push", trained["model"], "u/r"],
                    "HF_HUB_OFFLINE is set", "nothing of")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_token")
    _one_line_error(capsys, ["push", trained["model"], "u/r"],
                    "cannot reach the Hugging Face Hub at "
                    "http://127.0.0.1:9", "check the network")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
@pytest.mark.parametrize("name", ["embedding_model.ckpt", "classifier.ckpt"])
def test_damaged_checkpoint_in_model_folder(trained, tmp_path, capsys,
                                            damage, name):
    """Row 7: the damaged file is named, with the fix."""
    model = _model_copy(trained, tmp_path)
    path = model / name
    if damage == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
    else:
        path.write_bytes(b"\x80\x04not a checkpoint" * 50)
    sf.write(tmp_path / "x.wav", np.zeros(16000, "float32"), 16000)
    line = _one_line_error(capsys, ["classify", str(tmp_path / "x.wav"),
                                    "--model", str(model), "--savedir",
                                    str(tmp_path / "sd")],
                           f"{path} is damaged or truncated", "re-export")
    assert "weights_only" not in line


def test_truncated_encoder_weights_as_ssl_hub(trained, tiny_w2v2_group,
                                              tmp_path, capsys):
    """Row 8: the truncated safetensors file is named, with a re-fetch."""
    import shutil

    hub = tmp_path / "encoder"
    shutil.copytree(tiny_w2v2_group, hub)
    weights = hub / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(os.path.getsize(weights) // 2)
    _one_line_error(capsys, ["cv", FULL, *_args(trained, tmp_path,
                                                ssl_hub=hub)],
                    str(weights), "damaged or truncated", "fetch")


def test_unknown_class_through_train_py(trained, tmp_path, train_py):
    """Row 9: --classes with an unknown class, through train.py."""
    status, output = train_py(
        "hparams/am_resnet_w2v2.yaml", "--noprogressbar",
        *_args(trained, tmp_path), "--classes=[neu,xyz]",
        f"--manifest_folder={tmp_path / 'manifests'}")
    assert status == 2, output[-2000:]
    assert "Traceback" not in output
    line = output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "['xyz']" in line, line


def test_a_file_in_the_way_of_a_folder(trained, tmp_path, capsys):
    """Row 10: --output_root under a file; --savedir a file."""
    blocker = tmp_path / "a_file"
    blocker.write_text("mine\n")
    _one_line_error(capsys, ["cv", FULL, *_args(trained, tmp_path,
                                                output_root=blocker / "exp")],
                    str(blocker), "is a file, not a folder")
    sf.write(tmp_path / "x.wav", np.zeros(16000, "float32"), 16000)
    _one_line_error(capsys, ["classify", str(tmp_path / "x.wav"), "--model",
                             trained["model"], "--savedir", str(blocker)],
                    str(blocker), "a file of that name is in the way")
    assert blocker.read_text() == "mine\n"


def test_cuda_device_without_gpu(trained, tmp_path, capsys):
    """Row 11: --device=cuda:0 on a machine without a GPU."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _one_line_error(capsys, ["cv", FULL, *_args(trained, tmp_path),
                             "--device=cuda:0", "--folds=1"],
                    "--device=cuda:0", "no usable CUDA GPU", "--device=cpu")


def test_option_given_twice(trained, tmp_path, capsys):
    """Row 12: the repeated option is named, not a file."""
    line = _one_line_error(capsys, ["cv", FULL, *_args(trained, tmp_path),
                                    "--ssl_hub=/elsewhere"],
                           "option --ssl_hub is given 2 times", "once")
    assert "YAML syntax error" not in line and "fix the file" not in line


def test_unknown_yaml_tag_is_not_a_syntax_error(trained, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(FULL).read().replace(
        "!new:amser_sb.lobes.AMResNet", "!nwe:amser_sb.lobes.AMResNet"))
    line = _one_line_error(capsys, ["cv", str(bad),
                                    *_args(trained, tmp_path)],
                           "'!nwe:amser_sb.lobes.AMResNet'", "bad.yaml",
                           "fix its spelling")
    assert "syntax" not in line


def test_resumed_run_on_changed_data_is_refused(trained, tmp_path):
    """Row 13: a checkpoint made on other data is not resumed silently."""
    import shutil

    from amser_sb.config.user_errors import user_error_message
    from amser_sb.training.data_digest import DIGEST_FILE, DataChangedError
    from amser_sb.training.run import run_fold

    exp = tmp_path / "exp"
    shutil.copytree(trained["root"] / "exp", exp)
    fold = exp / "speaker" / "fold_1"
    assert (fold / DIGEST_FILE).is_file()
    corpus = tmp_path / "corpus"
    shutil.copytree(trained["corpus"], corpus)
    # relabel one utterance of the training data
    name = sorted((corpus / "Session2" / "dialog" / "EmoEvaluation")
                  .glob("Ses*.txt"))[0]
    lines = name.read_text(encoding="utf-8").splitlines()
    index = next(i for i, l in enumerate(lines) if l.startswith("["))
    fields = lines[index].split("\t")
    fields[2] = "ang" if fields[2] != "ang" else "sad"
    lines[index] = "\t".join(fields)
    name.write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = "\n".join(
        f"{a[2:].split('=', 1)[0]}: {a.split('=', 1)[1]}"
        for a in _args(trained, tmp_path, data_folder=corpus, output_root=exp)
    )
    before = sorted(p.name for p in (fold / "save").iterdir())
    with pytest.raises(DataChangedError) as info:
        run_fold(FULL, {"noprogressbar": True}, overrides)
    message = user_error_message(info.value)
    assert f"the data of {fold} changed" in message
    assert "train.csv" in message and "--output_root" in message
    assert sorted(p.name for p in (fold / "save").iterdir()) == before


def test_classify_messages_speak_to_users(trained, tmp_path, capsys):
    """A 10 ms file, a missing file: no data-pipeline hints; --window 0."""
    short = tmp_path / "short.wav"
    sf.write(short, 0.1 * np.ones(160, "float32"), 16000)
    status = main(["classify", str(short), str(tmp_path / "none.wav"),
                   "--model", trained["model"], "--savedir",
                   str(tmp_path / "sd")])
    err = capsys.readouterr().err
    assert status == 1
    assert f"{short} is 0.010 s long, shorter than the" in err
    assert "does not exist; check the path" in err
    assert "data preparation" not in err and "pipeline" not in err
    for value in ("0", "-1", "nan"):
        with pytest.raises(SystemExit) as info:
            main(["classify", str(short), "--model", trained["model"],
                  "--window", value])
        assert info.value.code == 2
        assert "not a positive number of seconds" in capsys.readouterr().err
