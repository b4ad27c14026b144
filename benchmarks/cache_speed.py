#!/usr/bin/env python3
"""Epoch time with the frozen-backbone feature cache: first vs later epochs.

Goal (issue 4): with ``freeze_wav2vec2: True`` and ``use_feature_cache:
True``, an epoch after the first takes at most 0.2x the first, with a
base-size wav2vec2.

What runs: the recipe itself (``amser_sb.cv.run_fold``, i.e. train.py's
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
* ``wav2vec2 probe, cache``: ``mode: wav2vec2`` (mean pooling + linear, the
  frozen SUPERB-style probe);
* ``fusion, no cache``: the full model recomputing the backbone every epoch
  (the reference).

An epoch's time is its training plus validation time as logged by the
Brain (``train seconds`` + ``valid seconds`` in ``train_log.txt``); the
goal's ratio is epoch k / epoch 1 of the same run. Because other processes
on a shared machine make single epochs vary, the last column also gives
each epoch over the median epoch of the no-cache run (what every epoch
would cost without the cache).

Usage::

    python benchmarks/cache_speed.py            # ~3 minutes on 2 CPU cores
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
    ("wav2vec2 probe, cache", {"mode": "wav2vec2", "use_feature_cache": True}),
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


def epoch_seconds(train_log):
    """Per-epoch (train + valid seconds, train cache misses) from a log."""
    number = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
    rows = []
    with open(train_log) as handle:
        for line in handle:
            if not line.startswith("epoch: "):
                continue
            train = float(re.search(rf"train seconds: {number}", line)[1])
            valid = float(re.search(rf"valid seconds: {number}", line)[1])
            misses = re.search(rf"train cache_misses: {number}", line)
            rows.append(
                (train, valid, int(float(misses[1])) if misses else None)
            )
    return rows


def main(argv=None):
    """Builds the data and backbone, runs every configuration, prints."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from amser_sb.cv import run_fold
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
            "wav2vec2_hub": backbone,
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
        start = time.time()
        run_fold(HPARAMS, {"noprogressbar": True}, overrides)
        wall = time.time() - start
        log = os.path.join(root, "speaker", "fold_1", "train_log.txt")
        results.append((name, epoch_seconds(log), wall))

    print()
    print(f"cache_speed: {args.size}-size random wav2vec2, "
          f"{args.utts_per_speaker} utterances/speaker x 4 speakers, "
          f"4 s segments, batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, device cpu")
    print()
    reference = statistics.median(
        t + v for name, rows, _ in results if "no cache" in name
        for t, v, _ in rows
    )
    print("| configuration | epoch | train s | valid s | epoch s "
          "| train cache misses | epoch / epoch 1 | epoch / no-cache median |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for name, rows, _ in results:
        first = rows[0][0] + rows[0][1]
        for epoch, (train, valid, misses) in enumerate(rows, start=1):
            total = train + valid
            print(f"| {name} | {epoch} | {train:.2f} | {valid:.2f} | "
                  f"{total:.2f} | {'-' if misses is None else misses} | "
                  f"{total / first:.3f} | {total / reference:.3f} |")
        if "no cache" not in name:
            worst = max((t + v) / first for t, v, _ in rows[1:])
            verdicts.append((name, worst))
    print()
    for name, worst in verdicts:
        status = "met" if worst <= GOAL else "NOT met"
        print(f"{name}: slowest later epoch = {worst:.3f} x epoch 1 "
              f"(goal <= {GOAL}): {status}")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
