#!/usr/bin/env python3
"""Epoch time with the frozen-backbone feature cache: first vs later epochs.

Goal (issue 4): with ``freeze_ssl: True`` and ``use_feature_cache:
True``, an epoch after the first takes at most 0.2x the first, with a
base-size wav2vec2.

What runs: the recipe itself (``amser_sb.training.run.run_fold``, i.e. train.py's
steps) on a generated IEMOCAP-layout corpus (two sessions, speaker fold 1:
train on session 2, validate on Ses01M, test on Ses01F), with a randomly
initialised wav2vec2 of exactly wav2vec2-base's architecture
(``build_random_wav2vec2(size="base")``: the same compute as the real
checkpoint). Every training segment is used every epoch
(``train_segments: all``), so epoch 2 sees the same segments as epoch 1.

Configurations (each with a fresh, empty cache):

* ``fusion, cache``: the full model (AM-ResNet + wav2vec2 + cross-attention
  + classifier); AM-ResNet, fusion and classifier still train every epoch,
  only the backbone's outputs are reused;
* ``fusion, AM-ResNet frozen (stage 2), cache``: the paper's stage 2
  (``freeze_am_resnet: True``; here without loading a stage-1 checkpoint,
  which does not change the cost): both branches come from the cache, only
  fusion and classifier train;
* ``wav2vec2 probe, cache``: ``mode: wav2vec2`` (mean pooling + linear, the
  frozen SUPERB-style probe);
* ``fusion, no cache``: the full model recomputing the backbone every epoch
  (the reference).

An epoch is its training plus its validation stage, timed from the Brain's
``on_stage_start`` to ``on_stage_end``. Two clocks: **wall** time, and the
process's **CPU** time (``time.process_time``: every thread of this process,
data loading included since ``num_workers: 0``). On a shared machine the
wall clock of one epoch swings with other processes' load while the CPU
time mostly does not, so the goal's verdict is given for both. Ratios are
epoch k / epoch 1 of the same run; the last column is epoch k over the
median no-cache epoch (what every epoch costs without the cache).

Usage::

    python benchmarks/cache_speed.py            # ~5 minutes on 2 CPU cores
    python benchmarks/cache_speed.py --utts_per_speaker 24 --epochs 4

Authors
 * amser-sb contributors 2026
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

GOAL = 0.2
RECIPE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "recipes",
    "IEMOCAP",
    "emotion_recognition",
)
HPARAMS = os.path.join(RECIPE, "hparams", "am_resnet_w2v2.yaml")

CONFIGS = (
    ("fusion, cache", {"mode": "fusion", "use_feature_cache": True}),
    (
        "fusion, AM-ResNet frozen (stage 2), cache",
        {"mode": "fusion", "use_feature_cache": True, "freeze_am_resnet": True},
    ),
    ("wav2vec2 probe, cache", {"mode": "ssl", "use_feature_cache": True}),
    ("fusion, no cache", {"mode": "fusion", "use_feature_cache": False}),
)


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utts_per_speaker", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", default="base", choices=("base", "tiny"))
    parser.add_argument("--workdir", default=None,
                        help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder")
    return parser.parse_args(argv)


class StageClock:
    """Times every train and valid stage of the Brain (wall and CPU).

    Wraps ``AMSERBrain.on_stage_start`` / ``on_stage_end``; ``epochs``
    collects, per epoch, ``{"train": (wall, cpu, misses), "valid": ...}``.
    """

    def __init__(self, brain_class):
        self.brain_class = brain_class
        self.epochs = {}
        self._start = None
        self._original = (brain_class.on_stage_start, brain_class.on_stage_end)

    def __enter__(self):
        clock = self
        start_hook, end_hook = self._original

        def on_stage_start(brain, stage, epoch=None):
            start_hook(brain, stage, epoch)
            clock._start = (time.perf_counter(), time.process_time())

        def on_stage_end(brain, stage, stage_loss, epoch=None):
            wall = time.perf_counter() - clock._start[0]
            cpu = time.process_time() - clock._start[1]
            cache = brain.feature_cache
            misses = cache.misses if cache is not None else None
            if epoch is not None:
                name = "train" if stage.name == "TRAIN" else "valid"
                clock.epochs.setdefault(epoch, {})[name] = (wall, cpu, misses)
            end_hook(brain, stage, stage_loss, epoch)

        self.brain_class.on_stage_start = on_stage_start
        self.brain_class.on_stage_end = on_stage_end
        return self

    def __exit__(self, *exc):
        (self.brain_class.on_stage_start,
         self.brain_class.on_stage_end) = self._original
        return False


def main(argv=None):
    """Builds the data and backbone, runs every configuration, prints."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from amser_sb.training.brain import AMSERBrain
    from amser_sb.training.run import run_fold
    from amser_sb.data.synthetic import make_iemocap_corpus
    from amser_sb.lobes import build_random_wav2vec2

    work = args.workdir or tempfile.mkdtemp(prefix="cache_speed_")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(work, "IEMOCAP_full_release")
    if not os.path.isdir(corpus):
        make_iemocap_corpus(corpus, utts_per_speaker=args.utts_per_speaker,
                            sessions=(1, 2), min_dur=2.0, max_dur=6.0)
    backbone = os.path.join(work, f"w2v2_{args.size}")
    if not os.path.isdir(backbone):
        build_random_wav2vec2(backbone, size=args.size)

    results = []
    for name, config in CONFIGS:
        slug = re.sub(r"\W+", "_", name).strip("_")
        root = os.path.join(work, slug)
        shutil.rmtree(root, ignore_errors=True)
        values = {
            "data_folder": corpus,
            "ssl_hub": backbone,
            "output_root": root,
            "manifest_folder": os.path.join(work, "manifests"),
            "feature_cache_folder": os.path.join(root, "cache"),
            "pretrained_folder": os.path.join(work, "pretrained"),
            "prepare_sessions": "[1, 2]",
            "number_of_epochs": args.epochs,
            "batch_size": args.batch_size,
            "num_workers": 0,
            "train_segments": "all",
            "ckpt_interval_minutes": 0,
            "save_valid_confusion": False,
        }
        values.update(config)
        overrides = "\n".join(f"{k}: {v}" for k, v in values.items())
        with StageClock(AMSERBrain) as clock:
            run_fold(HPARAMS, {"noprogressbar": True}, overrides)
        rows = []
        for epoch in sorted(clock.epochs):
            train, valid = clock.epochs[epoch]["train"], clock.epochs[epoch][
                "valid"]
            rows.append((train[0] + valid[0], train[1] + valid[1], train[2]))
        results.append((name, rows))

    reference = [
        row for name, rows in results if "no cache" in name for row in rows
    ]
    ref_wall = statistics.median(r[0] for r in reference)
    ref_cpu = statistics.median(r[1] for r in reference)
    print()
    print(f"cache_speed: {args.size}-size random wav2vec2, "
          f"{args.utts_per_speaker} utterances/speaker x 4 speakers "
          f"(2-6 s), 4 s segments, batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, device cpu; epoch = train + valid")
    print()
    print("| configuration | epoch | wall s | CPU s | train cache misses "
          "| wall / epoch 1 | CPU / epoch 1 | CPU / no-cache median |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for name, rows in results:
        wall1, cpu1 = rows[0][0], rows[0][1]
        for epoch, (wall, cpu, misses) in enumerate(rows, start=1):
            print(f"| {name} | {epoch} | {wall:.2f} | {cpu:.2f} | "
                  f"{'-' if misses is None else misses} | "
                  f"{wall / wall1:.3f} | {cpu / cpu1:.3f} | "
                  f"{cpu / ref_cpu:.3f} |")
        if "no cache" not in name:
            worst_wall = max(r[0] / wall1 for r in rows[1:])
            worst_cpu = max(r[1] / cpu1 for r in rows[1:])
            verdicts.append((name, worst_wall, worst_cpu))
    print()
    print(f"no-cache median epoch: wall {ref_wall:.2f} s, CPU {ref_cpu:.2f} s")
    for name, worst_wall, worst_cpu in verdicts:
        status = "met" if max(worst_wall, worst_cpu) <= GOAL else "NOT met"
        print(f"{name}: slowest later epoch = {worst_wall:.3f} x epoch 1 "
              f"(wall), {worst_cpu:.3f} x (CPU); goal <= {GOAL}: {status}")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
