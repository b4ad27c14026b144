"""Multi-process training (DDP, ``torchrun``) on CPU with gloo.

Two processes with per-process batch B/2 against one process with batch
B, on the tiny generated corpus of ``test_recipe.py``: the same parameters
after two epochs (with LayerDrop in the two-process run's encoder
configuration, which layer weights must neutralise), the same optimiser
groups, every training item once per epoch, files written once; and a
killed run that resumes, the top layer fine-tuned from cached lower states
under LayerDrop. Each launch is a real ``torchrun --standalone
--nproc_per_node=2`` of a small worker script (about 15 s each on two
cores; the one-process reference runs in the test's process).
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from tiny_run import tiny_run_values

from amser_sb.training.distributed import ShardedBatchSampler

RECIPE = os.path.abspath(os.path.join(
    os.path.dirname(__file__), "..", "recipes", "IEMOCAP",
    "emotion_recognition",
))
FULL = os.path.join(RECIPE, "hparams", "am_resnet_w2v2.yaml")

#: The run each process makes (a script under torchrun, a function here).
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "ddp_worker.py")


def _no_dropout_w2v2(folder, layerdrop=0.0):
    """The tiny random wav2vec2 without dropout: two processes draw other
    dropout masks than one, so parameters could not be compared. With
    ``layerdrop``: that LayerDrop rate in its configuration."""
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    path = build_random_wav2vec2(folder, "tiny", feat_extract_norm="group")
    config_file = os.path.join(path, "config.json")
    with open(config_file) as handle:
        config = json.load(handle)
    for key in list(config):
        if key.endswith("dropout") or key == "layerdrop":
            config[key] = 0.0
    config["mask_time_prob"] = 0.0
    config["layerdrop"] = layerdrop
    with open(config_file, "w") as handle:
        json.dump(config, handle)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Corpus, no-dropout wav2vec2 and the worker script."""
    from amser_sb.data.synthetic import make_iemocap_corpus

    root = tmp_path_factory.mktemp("ddp")
    corpus = root / "IEMOCAP_full_release"
    make_iemocap_corpus(corpus, utts_per_speaker=8, sessions=(1, 2),
                        min_dur=1.0, max_dur=2.0)
    w2v = _no_dropout_w2v2(root / "w2v")
    layerdrop = _no_dropout_w2v2(root / "w2v_layerdrop", layerdrop=0.5)
    return {"corpus": str(corpus), "w2v": w2v, "root": root,
            "w2v_layerdrop": layerdrop}


def _args(setup, out, batch_size, **extra):
    """``--key=value`` overrides of a tiny run (``tiny_run_values``)."""
    values = tiny_run_values(
        setup["corpus"], setup["w2v"], out, number_of_epochs=2,
        batch_size=batch_size, train_segments="all", **extra,
    )
    return [f"--{key}={value}" for key, value in values.items()]


def _failure(proc):
    """The failed run's output: rank 0's error lines first (torchrun
    interleaves the ranks), then the tail."""
    text = proc.stdout + proc.stderr
    first = [line for line in text.splitlines()
             if "[rank0]" in line or line.startswith(("Error", "Traceback"))]
    return "\n".join(first[-40:]) + "\n--- tail ---\n" + text[-3000:]


def _launch(setup, out, mode, args, nproc, env_extra=None, check=True):
    """Runs the worker on ``nproc`` processes (``torchrun``)."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", WORKER, mode, str(out), FULL, *args]
    proc = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True,
                          text=True, timeout=int(os.environ.get("DDP_TEST_TIMEOUT", 300)))
    if check:
        assert proc.returncode == 0, _failure(proc)
    return proc


def _run_here(monkeypatch, out, mode, args):
    """The one-process reference: the worker's run in this process (one
    thread, as each torchrun process), which saves an interpreter's start."""
    from ddp_worker import run

    out.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(RECIPE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run(mode, str(out), FULL, args) == 0
    finally:
        torch.set_num_threads(threads)


def _last_checkpoint(fold):
    """State dicts of the epoch-2 checkpoint of a fold folder."""
    import speechbrain as sb

    ckpt = sb.utils.checkpoints.Checkpointer(str(fold / "save"))\
        .find_checkpoint(max_key="epoch")
    assert ckpt.meta["epoch"] == 2
    return {
        name: torch.load(os.path.join(ckpt.path, f"{name}.ckpt"),
                         map_location="cpu")
        for name in ("embedding_model", "classifier")
    }


def _seen(out, rank):
    with open(out / f"seen_rank{rank}.json") as handle:
        return json.load(handle)


def _groups(out, rank):
    with open(out / f"groups_rank{rank}.json") as handle:
        return json.load(handle)


def _train_lines(fold):
    text = (fold / "train_log.txt").read_text().splitlines()
    return [line.split(",")[0] for line in text if line.startswith("epoch")]


@pytest.mark.parametrize("n_items,batch,world", [
    (10, 2, 2), (9, 2, 2), (8, 4, 2), (13, 3, 4), (7, 2, 3), (5, 1, 5),
    (32, 4, 2), (3, 8, 2),
])
def test_sharded_batches_cover_every_item_once(n_items, batch, world):
    shards = [list(ShardedBatchSampler(range(n_items), batch, r, world))
              for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # same number of steps
    flat = [i for s in shards for b in s for i in b]
    assert sorted(flat) == list(range(n_items))
    assert all(len(b) >= 1 for s in shards for b in s)
    if n_items % (batch * world) == 0 or n_items % (batch * world) >= world:
        # the steps are the one-process batches of batch * world
        one = [list(range(n_items))[k:k + batch * world]
               for k in range(0, n_items, batch * world)]
        steps = [sorted(i for s in shards for i in s[k])
                 for k in range(len(shards[0]))]
        assert steps == one


def test_sharded_batches_too_few_items():
    with pytest.raises(ValueError, match="at least one item"):
        list(ShardedBatchSampler(range(1), 2, 0, 2))
    with pytest.raises(ValueError, match="batch_size >= 2"):
        list(ShardedBatchSampler(range(3), 1, 0, 2))


#: The fine-tuned encoder alone, mean-pooled (no BatchNorm, whose batch
#: statistics are per process), its layers weighed.
SSL_ALONE = {"mode": "ssl", "ssl_pooling": "null", "ssl_layer_weights": True,
             "freeze_ssl": False, "lr_ssl": 0.0005}


def _with_layerdrop(setup, args):
    """``args`` with the encoder whose configuration has LayerDrop 0.5."""
    return [a.replace(setup["w2v"], setup["w2v_layerdrop"]) for a in args]


def test_two_processes_with_layerdrop_equal_one_process(setup, monkeypatch):
    """``SSL_ALONE`` (the whole encoder fine-tuned, layer weights) on 2
    processes x batch 4, its configuration with LayerDrop 0.5, ends where
    1 process x batch 8 without LayerDrop ends: the processes share the
    work as one process would, and no layer is ever skipped when layer
    weights combine the hidden states (a skipped layer would change the
    parameters)."""
    one, two = setup["root"] / "one", setup["root"] / "two"
    _run_here(monkeypatch, one, "fold", _args(setup, one, 8, **SSL_ALONE))
    _launch(setup, two, "fold",
            _with_layerdrop(setup, _args(setup, two, 4, **SSL_ALONE)),
            nproc=2)

    # the same parameters after two epochs (4 + 4 steps)
    fold = ("speaker", "fold_1")
    ref = _last_checkpoint(one.joinpath(*fold))
    got = _last_checkpoint(two.joinpath(*fold))
    for module in ref:
        assert ref[module].keys() == got[module].keys()
        for key, value in ref[module].items():
            if value.is_floating_point():
                assert torch.allclose(value, got[module][key], atol=1e-5), \
                    (module, key)

    # the optimiser's groups: as one process (lr and lr_ssl)
    single = _groups(one, 0)
    for rank in (0, 1):
        groups = _groups(two, rank)
        assert groups["groups"] == single["groups"]
        assert groups["find_unused"] is True
    assert [g["name"] for g in single["groups"]] == ["model", "ssl"]
    assert single["groups"][1]["lr"] == 0.0005

    # every training item once per epoch, and the 1-process batches
    ranks = [_seen(two, 0), _seen(two, 1)]
    ref_seen = _seen(one, 0)
    assert len(ranks[0]) == len(ranks[1]) == len(ref_seen)
    for epoch in (1, 2):
        ref_batches = [ids for e, ids in ref_seen if e == epoch]
        shards = [[ids for e, ids in r if e == epoch] for r in ranks]
        union = [sorted(a + b) for a, b in zip(*shards)]
        assert union == [sorted(ids) for ids in ref_batches]
        flat = [i for s in shards for ids in s for i in ids]
        assert len(flat) == len(set(flat))  # no item twice

    # files once: one line per epoch, one test line, one experiment log
    fold_two = two.joinpath(*fold)
    lines = _train_lines(fold_two)
    assert lines[:2] == ["epoch: 1", "epoch: 2"] and len(lines) == 3
    assert lines[2].startswith("epoch loaded")
    log = (fold_two / "log.txt").read_text()
    assert log.count("Beginning experiment!") == 1
    assert log.count("Going into epoch 2") == 1
    # validation/test metrics are those of the one-process run
    ref_test = json.loads(
        (one.joinpath(*fold) / "test_metrics.json").read_text())
    test = json.loads((fold_two / "test_metrics.json").read_text())
    for key in ("WA", "UA", "macro_F1", "n_utterances"):
        assert test[key] == pytest.approx(ref_test[key], abs=1e-6)


def test_cv_on_two_processes_resumes_after_a_kill(setup):
    """amser-sb cv under torchrun, killed in epoch 2 and run again: the
    fused model (AM-ResNet trained too) with the encoder's top layer
    fine-tuned from cached lower states, LayerDrop 0.5 in the encoder's
    configuration. Both runs complete their epochs (every step has all
    hidden states), the top layer alone trains at ``lr_ssl``, and the
    resumed run does not redo epoch 1."""
    out = setup["root"] / "cv"
    args = ["--protocol", "session", "--folds", "1", *_with_layerdrop(
        setup, _args(setup, out, 4, freeze_am_resnet=False,
                     freeze_ssl=False, lr_ssl=0.0005,
                     ssl_finetune_layers=1, feature_cache_dtype="float32"))]
    killed = _launch(setup, out, "cv", args, nproc=2,
                     env_extra={"CRASH_EPOCH": "2"}, check=False)
    assert killed.returncode != 0
    log = killed.stdout + killed.stderr
    assert "SystemExit" in log or "exitcode  : 3" in log, log[-4000:]
    fold = out / "session" / "fold_1"
    assert _train_lines(fold) == ["epoch: 1"]
    assert not (fold / "test_metrics.json").exists()
    groups = _groups(out, 0)["groups"]
    assert [g["name"] for g in groups] == ["model", "ssl"]
    assert groups[1]["n_params"] == 16  # one layer of the tiny model
    assert groups[1]["lr"] == 0.0005

    _launch(setup, out, "cv", args, nproc=2)
    # resumed: epoch 1 not redone, epoch 2 once, then the test
    lines = _train_lines(fold)
    assert lines[:2] == ["epoch: 1", "epoch: 2"] and len(lines) == 3
    assert lines[2].startswith("epoch loaded")
    assert all(e == 2 for e, _ in _seen(out, 0))
    assert "cache_hits" in (fold / "train_log.txt").read_text()
    _last_checkpoint(fold)
    checkpoints = [d for d in os.listdir(fold / "save")
                   if d.startswith("CKPT")]
    assert 1 <= len(checkpoints) <= 2  # best UA and latest, one set
    results = out / "session"
    assert sorted(p for p in os.listdir(results) if p.startswith("results")) \
        == ["results.json", "results.md"]
    table = json.loads((results / "results.json").read_text())
    assert [f["fold"] for f in table["folds"]] == [1]
