"""The amser-sb command line: dispatch and errors."""

import csv
import os

import numpy as np
import pytest
import soundfile as sf

from amser_sb.cli.main import build_parser, main


def test_prepare_iemocap_default(tmp_path):
    from amser_sb.data.synthetic import make_iemocap_corpus

    corpus = tmp_path / "IEMOCAP_full_release"
    make_iemocap_corpus(corpus, utts_per_speaker=4, min_dur=0.5, max_dur=1.0)
    save = tmp_path / "prep"
    assert main(["prepare", "--data_folder", str(corpus), "--save_folder",
                 str(save), "--protocol", "session"]) == 0
    assert (save / "label_encoder.txt").is_file()
    folds = sorted(p.name for p in (save / "session").iterdir()
                   if p.is_dir())
    assert folds == [f"fold_{k}" for k in range(1, 6)]


def test_prepare_custom_with_label_regex(tmp_path):
    data = tmp_path / "wavs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for spk in ("s1", "s2", "s3"):
        for emo in ("angry", "sad"):
            for k in range(2):
                wav = 0.3 * rng.standard_normal(8000).astype("float32")
                sf.write(data / f"{spk}_{emo}_{k}.wav", wav, 16000)
    save = tmp_path / "prep"
    status = main([
        "prepare", "--data_folder", str(data), "--save_folder", str(save),
        "--label_regex", r"_(angry|sad)_", "--speaker_regex", r"^(s\d)_",
        "--label_map", "angry=ang,sad=sad",
    ])
    assert status == 0
    with open(save / "all.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert {r["emo"] for r in rows} == {"ang", "sad"}


def test_parser_knows_every_command():
    parser = build_parser()
    for command in ("prepare", "cv", "export", "push", "classify", "demo"):
        assert command in parser._subparsers._group_actions[0].choices


def test_classify_needs_a_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["classify", str(tmp_path / "x.wav")])
    assert "--model" in capsys.readouterr().err


def test_classify_missing_model_folder_is_clear(tmp_path, capsys):
    sf.write(tmp_path / "x.wav", np.zeros(1600, "float32"), 16000)
    with pytest.raises(SystemExit) as info:
        main(["classify", str(tmp_path / "x.wav"), "--model",
              str(tmp_path)])
    assert info.value.code == 2
    assert "hyperparams.yaml" in capsys.readouterr().err
    assert os.path.isfile(tmp_path / "x.wav")
