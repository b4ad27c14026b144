"""A run resumed after an interruption equals the uninterrupted run, bit
for bit, with dropout and random training segments on (the generators'
states are checkpointed: ``amser_sb.training.rng_state``)."""

import glob
import os
import re

import pytest
import torch

from tiny_run import tiny_run_values

from amser_sb.training.brain import AMSERBrain
from amser_sb.training.run import run_fold

RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes", "IEMOCAP",
                      "emotion_recognition")
FULL = os.path.abspath(os.path.join(RECIPE, "hparams", "am_resnet_w2v2.yaml"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from amser_sb.data.synthetic import make_iemocap_corpus

    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    # up to 2.5 s utterances with 1 s segments: several segments to pick from
    make_iemocap_corpus(root, utts_per_speaker=6, sessions=(1, 2),
                        min_dur=1.0, max_dur=2.5)
    return str(root)


def _overrides(corpus, w2v, out):
    values = tiny_run_values(
        corpus, w2v, out, number_of_epochs=3, batch_size=4,
        train_segments="random", fusion_dropout=0.3, use_feature_cache=False,
    )
    return "\n".join(f"{k}: {v}" for k, v in values.items())


class _Killed(RuntimeError):
    """A simulated kill -9 in the middle of an epoch."""


def _final_weights(out):
    fold = out / "speaker" / "fold_1" / "save"
    newest = max(glob.glob(str(fold / "CKPT+*")), key=os.path.getmtime)
    return {
        name: torch.load(os.path.join(newest, f"{name}.ckpt"),
                         weights_only=True)
        for name in ("embedding_model", "classifier")
    }


def test_resumed_run_equals_uninterrupted(corpus, tiny_w2v2_group, tmp_path,
                                          monkeypatch):
    straight = tmp_path / "straight"
    run_fold(FULL, {"noprogressbar": True},
             _overrides(corpus, tiny_w2v2_group, straight))

    resumed = tmp_path / "resumed"
    overrides = _overrides(corpus, tiny_w2v2_group, resumed)
    real_fit_batch = AMSERBrain.fit_batch
    seen = {"n": 0}

    def killed_in_epoch_2(self, batch):
        if self.hparams.epoch_counter.current == 2:
            seen["n"] += 1
            if seen["n"] == 2:  # after one step of epoch 2
                raise _Killed("kill -9")
        return real_fit_batch(self, batch)

    monkeypatch.setattr(AMSERBrain, "fit_batch", killed_in_epoch_2)
    with pytest.raises(_Killed):
        run_fold(FULL, {"noprogressbar": True}, overrides)
    monkeypatch.setattr(AMSERBrain, "fit_batch", real_fit_batch)
    # a fresh start would draw new generator states
    torch.manual_seed(12345)
    run_fold(FULL, {"noprogressbar": True}, overrides)

    a, b = _final_weights(straight), _final_weights(resumed)
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
    assert _epoch_stats(straight) == _epoch_stats(resumed)
    assert len(_epoch_stats(straight)) == 3


def _epoch_stats(out):
    """The per-epoch lines of train_log.txt without the timings."""
    text = (out / "speaker" / "fold_1" / "train_log.txt").read_text()
    return [
        re.sub(r"\w+ seconds: [^,]*,? ?", "", line)
        for line in text.splitlines()
        if line.startswith("epoch: ")
    ]
