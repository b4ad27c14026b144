"""Override types are checked against the hparams file before anything runs."""

import os

import pytest

from amser_sb.config.hparams_loading import RecipeError, load_hparams
from amser_sb.config.override_types import check_override_types

FULL = os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP",
                    "emotion_recognition", "hparams", "am_resnet_w2v2.yaml")


def test_batch_size_abc_is_refused_before_preparation(tmp_path, monkeypatch):
    import amser_sb.config.hparams_loading as hparams_loading

    def no_yaml_loading(*args, **kwargs):
        raise AssertionError("the hparams were built despite a bad override")

    monkeypatch.setattr(hparams_loading, "load_hyperpyyaml", no_yaml_loading)
    with pytest.raises(RecipeError) as info:
        load_hparams(FULL, f"data_folder: {tmp_path}\nbatch_size: abc")
    text = str(info.value)
    assert text.startswith("--batch_size=abc: batch_size is an integer (32 in ")
    assert "am_resnet_w2v2.yaml" in text and "e.g. --batch_size=32" in text


@pytest.mark.parametrize("key, value", [
    ("lr", "fast"), ("use_ambiguous", "maybe"), ("use_ambiguous", 1),
    ("prepare_sessions", 3), ("number_of_epochs", 2.5),
    ("train_dataloader_options", "x"),
])
def test_wrong_types_are_named(key, value):
    problems = check_override_types(FULL, {key: value})
    assert len(problems) == 1 and problems[0].startswith(f"--{key}=")


@pytest.mark.parametrize("key, value", [
    ("batch_size", 4), ("lr", 0.01), ("lr", "1e-3"), ("lr", 1),
    ("use_ambiguous", False), ("prepare_sessions", [1, 2]),
    ("segment_seconds", None), ("data_folder", "/x"),
    ("class_weights", "balanced"), ("class_weights", [1.0, 2.0]),
    ("stage1_folder", "/runs/s1"), ("train_segments", "all"),
    ("ssl_hub", "/models/w2v2"), ("not_a_key", "left to the loader"),
])
def test_good_overrides_pass(key, value):
    assert check_override_types(FULL, {key: value}) == []
