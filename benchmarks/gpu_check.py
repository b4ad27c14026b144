#!/usr/bin/env python3
"""GPU check: training and inference speed of the full model on one GPU.

By default this runs ``benchmarks/step_check.py`` (issue 18: fp32 / bf16 x
frozen / fine-tuned training steps with segments/s, step ms, peak GiB,
kernels and host syncs per step, a batch-size sweep, the fused /
encoder-only step ratio and inference x real time; under 5 minutes on one
H200; ``--help`` there). With ``--recipe``, the recipe check below:

Needs CUDA (exits with a message otherwise). What runs: the recipe's fold
(``amser_sb.training.run.run_fold``, i.e. ``train.py``) on a generated
IEMOCAP-layout corpus with a randomly initialised wav2vec2 of exactly
wav2vec2-base's architecture (``build_random_wav2vec2(size="base")``, the
compute of the real checkpoint; ``--ssl_hub`` takes a real one), the full
model (AM-ResNet + wav2vec2 + cross-attention + classifier), 4 s segments,
every segment every epoch, no feature cache (the encoder runs every step).

For each of float32 / bf16 autocast (``--precision``) and frozen /
fine-tuned encoder (``--freeze_ssl``), one run on 1 GPU (``python``) and
one on all visible GPUs (``torchrun --standalone --nproc_per_node=N``),
same per-process ``batch_size``. The training steps after the first
``--warmup`` are timed (CUDA synchronised) in every process; the table
gives, per run::

    segments/s   all processes together (the slowest process's time)
    step ms      median time of one optimiser step
    peak GiB     largest torch.cuda.max_memory_allocated of the processes
    scaling      (segments/s on N GPUs) / (N x segments/s on 1 GPU)

Usage::

    python benchmarks/gpu_check.py                  # all visible GPUs
    python benchmarks/gpu_check.py --batch_size 16 --epochs 2
    CUDA_VISIBLE_DEVICES=0,1 python benchmarks/gpu_check.py

Authors
 * amser-sb contributors 2026
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
RECIPE = os.path.join(ROOT, "recipes", "IEMOCAP", "emotion_recognition")
HPARAMS = os.path.join(RECIPE, "hparams", "am_resnet_w2v2.yaml")

# Runs one fold; times every training step after the warm-up.
WORKER = textwrap.dedent('''
    import json, os, statistics, sys, time
    import torch
    from amser_sb.training import run
    from amser_sb.training.brain import AMSERBrain
    from amser_sb.training.distributed import exit_process

    out, hparams_file, warmup, precision, *args = sys.argv[1:]
    warmup = int(warmup)
    rank = int(os.environ.get("RANK", 0))
    real_fit_batch = AMSERBrain.fit_batch
    times, sizes = [], []

    def timed_fit_batch(self, batch):
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = real_fit_batch(self, batch)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        sizes.append(len(batch.utt_id))
        return loss

    AMSERBrain.fit_batch = timed_fit_batch
    torch.cuda.reset_peak_memory_stats()
    overrides = "\\n".join(a[2:].replace("=", ": ", 1) for a in args)
    run_opts = {"noprogressbar": True, "precision": precision}
    run.run_fold(hparams_file, run_opts, overrides)
    timed, segments = times[warmup:], sum(sizes[warmup:])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({
            "seconds": sum(timed), "segments": segments,
            "step_ms": 1000 * statistics.median(timed) if timed else None,
            "steps": len(timed),
            "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30,
        }, f)
    exit_process(0)  # as train.py ends under torchrun
''')


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=8,
                        help="segments per process and step (default 8)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed first steps of each process")
    parser.add_argument("--utts_per_speaker", type=int, default=48)
    parser.add_argument("--ssl_hub", default=None,
                        help="encoder (default: random wav2vec2-base)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="processes of the DDP runs (default: GPUs)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--timeout", type=int, default=1800,
                        help="seconds per run")
    return parser.parse_args(argv)


def _run(args, workdir, corpus, ssl_hub, nproc, precision, freeze):
    """One training run; returns the processes' measurements."""
    name = f"{precision}_{'frozen' if freeze else 'tuned'}_{nproc}gpu"
    out = os.path.join(workdir, name)
    os.makedirs(out, exist_ok=True)
    worker = os.path.join(workdir, "worker.py")
    overrides = {
        "data_folder": corpus,
        "ssl_hub": ssl_hub,
        "output_root": out,
        "pretrained_folder": os.path.join(workdir, "pretrained"),
        "prepare_sessions": "[1, 2, 3]",
        "number_of_epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_segments": "all",
        "use_feature_cache": False,
        "freeze_ssl": freeze,
        "save_valid_confusion": False,
        "ckpt_interval_minutes": 0,
        "num_workers": 2,
    }
    cmd = [worker, out, HPARAMS, str(args.warmup), precision]
    cmd += [f"--{key}={value}" for key, value in overrides.items()]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *cmd]
    else:
        cmd = [sys.executable, *cmd]
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE",
                                                         "1"))
    print(f"[gpu_check] {name} ...", flush=True)
    proc = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True,
                          text=True, timeout=args.timeout)
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-3000:], file=sys.stderr)
        raise SystemExit(f"error: run {name} failed (rc {proc.returncode})")
    ranks = []
    for rank in range(nproc):
        with open(os.path.join(out, f"rank{rank}.json")) as handle:
            ranks.append(json.load(handle))
    return ranks


def _summary(ranks):
    seconds = max(r["seconds"] for r in ranks)
    segments = sum(r["segments"] for r in ranks)
    steps = [r["step_ms"] for r in ranks if r["step_ms"] is not None]
    if not seconds or not steps:
        raise SystemExit(
            "error: no timed step (raise --utts_per_speaker or --epochs, or "
            "lower --warmup)"
        )
    return {
        "seg_s": segments / seconds,
        "step_ms": max(steps),
        "peak_gib": max(r["peak_gib"] for r in ranks),
    }


def recipe_main(argv=None):
    """The recipe check (``--recipe``); returns the exit status."""
    args = _parse(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            "error: benchmarks/gpu_check.py needs CUDA (torch.cuda."
            "is_available() is False: no GPU, or a CPU-only torch build). "
            "On CPU, tests/test_ddp.py checks DDP with 2 gloo processes.",
            file=sys.stderr,
        )
        return 2
    n_gpus = torch.cuda.device_count()
    nproc = args.nproc or n_gpus
    if nproc > n_gpus:
        raise SystemExit(f"error: --nproc {nproc} > {n_gpus} visible GPUs")
    bf16 = torch.cuda.is_bf16_supported()

    from amser_sb.data.synthetic import make_iemocap_corpus
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    workdir = args.workdir or tempfile.mkdtemp(prefix="amser_gpu_check_")
    corpus = os.path.join(workdir, "IEMOCAP_full_release")
    if not os.path.isdir(corpus):
        make_iemocap_corpus(corpus, utts_per_speaker=args.utts_per_speaker,
                            sessions=(1, 2, 3), min_dur=3.0, max_dur=10.0)
    ssl_hub = args.ssl_hub or build_random_wav2vec2(
        os.path.join(workdir, "w2v2_base"), "base"
    )
    with open(os.path.join(workdir, "worker.py"), "w") as handle:
        handle.write(WORKER)
    print(f"[gpu_check] {torch.cuda.get_device_name(0)} x {n_gpus}, "
          f"batch {args.batch_size} per process, workdir {workdir}")

    rows = []
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and not bf16:
            print("[gpu_check] bf16 not supported on this GPU: skipped")
            continue
        for freeze in (True, False):
            one = _summary(_run(args, workdir, corpus, ssl_hub, 1,
                                precision, freeze))
            rows.append((precision, freeze, 1, one, 1.0))
            if nproc > 1:
                many = _summary(_run(args, workdir, corpus, ssl_hub, nproc,
                                     precision, freeze))
                rows.append((precision, freeze, nproc, many,
                             many["seg_s"] / (nproc * one["seg_s"])))

    print()
    print("| precision | encoder | GPUs | segments/s | step ms | peak GiB "
          "| scaling |")
    print("|---|---|---|---|---|---|---|")
    for precision, freeze, gpus, stats, scaling in rows:
        print(f"| {precision} | {'frozen' if freeze else 'fine-tuned'} | "
              f"{gpus} | {stats['seg_s']:.1f} | {stats['step_ms']:.1f} | "
              f"{stats['peak_gib']:.2f} | {scaling:.2f} |")
    return 0


def main(argv=None):
    """``--recipe``: the recipe runs above; otherwise the step check."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--recipe" in argv:
        argv.remove("--recipe")
        return recipe_main(argv)
    import step_check

    return step_check.main(argv)


if __name__ == "__main__":
    sys.exit(main())
