#!/usr/bin/env python3
"""Training and inference speed of the full model on one GPU (issue 18).

Run through ``benchmarks/gpu_check.py`` (its default) or directly. The
model is the recipe's (AM-ResNet with MADD in its forward, a random
wav2vec2-base-sized encoder built from its configuration in memory,
cross-attention fusion, linear head), on 4 s segments generated on the
device, trained as the recipe trains it: Adam, forward and loss under
autocast in bf16 (SpeechBrain's ``precision: bf16``), no feature cache.

Printed:

1. training, fp32 / bf16 x frozen / fine-tuned, at each ``--batches``
   size: segments/s, median step ms, peak GiB, CUDA kernels / step and
   host syncs / step (``torch.profiler``: kernel events and
   ``cudaStreamSynchronize`` / ``cudaDeviceSynchronize`` /
   ``cudaMemcpy`` calls of one step); the best batch size per setting;
2. fused / encoder-only (mean pooling + linear head) step time at
   ``--ratio-batch``, per setting;
3. inference of the fused model under ``inference_mode``, batch
   ``--infer-batch`` x 4 s, fp32 and bf16: x real time.

Switches to compare (each also a recipe hparam): ``--no-cudnn-benchmark``,
``--channels-last``, ``--am-float32``, ``--compile`` (AM-ResNet + fusion
compiled for training; adds about a minute).

On CPU, ``--device cpu --tiny`` runs everything on a narrow encoder with
tiny sizes (a smoke test of this script; the counts are operators).

Usage::

    python benchmarks/gpu_check.py                      # defaults, < 5 min
    python benchmarks/step_check.py --device cpu --tiny # smoke test

Authors
 * amser-sb contributors
"""

import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import op_count  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true",
                        help="narrow encoder, tiny sizes (CPU smoke test)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batches", default="16,32,64,128",
                        help="batch sizes of the sweep")
    parser.add_argument("--ratio-batch", type=int, default=16)
    parser.add_argument("--infer-batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-cudnn-benchmark", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--am-float32", action="store_true")
    parser.add_argument("--extractor-float32", action="store_true",
                        help="the encoder's convolutional front end in "
                        "float32 under bf16 autocast")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--budget-s", type=float, default=200.0,
                        help="skip the rest of the sweep past this time")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seconds = min(args.seconds, 0.5)
        args.batches = "2"
        args.ratio_batch = 2
        args.infer_batch = 2
        args.warmup, args.steps = 1, 1
    return args


def build(args, kind, freeze, device):
    """(model, head, optimiser) of the recipe's shape."""
    from amser_sb.lobes import (
        AMSER,
        AMResNet,
        CrossAttentionFusion,
        EmotionClassifier,
        SSLBackbone,
    )
    from amser_sb.lobes.encoder_registry import hf_config_dict
    from amser_sb.lobes.wav2vec2 import wav2vec2_config

    torch.manual_seed(0)
    config = (op_count.narrow_config() if args.tiny
              else hf_config_dict(wav2vec2_config("base")))
    ssl = SSLBackbone(config=config, normalize=True, freeze=freeze)
    ssl.extractor_float32 = args.extractor_float32
    if kind == "baseline":
        model = AMSER(ssl=ssl, mode="ssl")
    else:
        am = AMResNet(channels_last=args.channels_last,
                      float32=args.am_float32)
        fusion = CrossAttentionFusion(am.out_dim, ssl.out_dim)
        model = AMSER(ssl, am, fusion, mode="fusion")
        if args.compile:
            model.compile_training()
    head = EmotionClassifier(model.out_dim, 4)
    model.to(device).train()
    head.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    params += list(head.parameters())
    return model, head, torch.optim.Adam(params, lr=1e-4)


def batch_of(size, seconds, device):
    gen = torch.Generator(device=device).manual_seed(0)
    wavs = 0.1 * torch.randn(size, int(seconds * 16000), generator=gen,
                             device=device)
    return (wavs, torch.ones(size, device=device),
            torch.arange(size, device=device) % 4)


def train_step(model, head, opt, data, precision):
    wavs, lens, targets = data
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(wavs.device.type, dtype=dtype,
                            enabled=dtype is not None):
            log_probs = head(model(wavs, lens)).squeeze(1)
            loss = torch.nn.functional.nll_loss(log_probs, targets)
        loss.backward()
        opt.step()

    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, device, warmup, steps):
    """Median step seconds and peak GiB."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() / 2**30
            if device.type == "cuda" else float("nan"))
    return statistics.median(times), peak


def release(device):
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def training_sweep(args, device, started):
    rows, best = [], {}
    sizes = [int(b) for b in args.batches.split(",")]
    for precision in args.precisions.split(","):
        for freeze in (True, False):
            setting = (precision, "frozen" if freeze else "fine-tuned")
            model, head, opt = build(args, "fused", freeze, device)
            for i, size in enumerate(sizes):
                if i and time.perf_counter() - started > args.budget_s:
                    print(f"[step_check] time budget: sweep of {setting} "
                          f"stops before batch {size}", flush=True)
                    break
                try:
                    step = train_step(model, head, opt,
                                      batch_of(size, args.seconds, device),
                                      precision)
                    sec, peak = time_steps(step, device, args.warmup,
                                           args.steps)
                    counts = op_count.profile_step(
                        step, device.type == "cuda", warmup=0)
                except torch.cuda.OutOfMemoryError:
                    print(f"[step_check] {setting} batch {size}: out of "
                          "memory", flush=True)
                    release(device)
                    break
                row = dict(setting=setting, batch=size, seg_s=size / sec,
                           step_ms=1000 * sec, peak=peak,
                           work=counts.get("kernels", counts["ops"]),
                           syncs=counts.get("syncs", float("nan")))
                rows.append(row)
                print(f"[step_check] {setting[0]} {setting[1]} batch "
                      f"{size}: {row['seg_s']:.1f} seg/s", flush=True)
                if row["seg_s"] > best.get(setting, {}).get("seg_s", 0):
                    best[setting] = row
            del model, head, opt
            release(device)
    return rows, best


def step_ratio(args, device):
    out = {}
    for precision in args.precisions.split(","):
        for freeze in (True, False):
            per_kind = {}
            for kind in ("baseline", "fused"):
                model, head, opt = build(args, kind, freeze, device)
                step = train_step(
                    model, head, opt,
                    batch_of(args.ratio_batch, args.seconds, device),
                    precision)
                per_kind[kind] = time_steps(step, device, args.warmup,
                                            args.steps)[0]
                del model, head, opt
                release(device)
            out[precision, "frozen" if freeze else "fine-tuned"] = (
                per_kind["fused"] / per_kind["baseline"])
    return out


def inference(args, device):
    out = {}
    model, _, _ = build(args, "fused", True, device)
    model.eval()
    wavs, lens, _ = batch_of(args.infer_batch, args.seconds, device)
    for precision in args.precisions.split(","):
        dtype = torch.bfloat16 if precision == "bf16" else None

        def forward():
            with torch.inference_mode(), torch.autocast(
                device.type, dtype=dtype, enabled=dtype is not None
            ):
                model(wavs, lens)

        sec, _ = time_steps(forward, device, args.warmup, args.steps)
        out[precision] = args.infer_batch * args.seconds / sec
    del model
    release(device)
    return out


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device (use --device cpu --tiny for a smoke "
              "test)", file=sys.stderr)
        return 2
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        args.precisions = "fp32"
    started = time.perf_counter()
    name = (torch.cuda.get_device_name(0) if device.type == "cuda"
            else "CPU")
    print(f"[step_check] {name}; {args.seconds:g} s segments; "
          f"cudnn.benchmark {not args.no_cudnn_benchmark}, channels_last "
          f"{args.channels_last}, am_float32 {args.am_float32}, compile "
          f"{args.compile}", flush=True)
    rows, best = training_sweep(args, device, started)
    ratios = step_ratio(args, device)
    xrt = inference(args, device)
    work = "kernels/step" if device.type == "cuda" else "aten ops/step"
    print()
    print(f"| precision | encoder | batch | segments/s | step ms | peak GiB "
          f"| {work} | syncs/step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mark = " **best**" if best.get(r["setting"]) is r else ""
        print(f"| {r['setting'][0]} | {r['setting'][1]} | {r['batch']}{mark}"
              f" | {r['seg_s']:.1f} | {r['step_ms']:.1f} | {r['peak']:.2f} "
              f"| {r['work']} | {r['syncs']} |")
    print()
    print("| precision | encoder | best batch | segments/s | bf16 / fp32 |")
    print("|---|---|---|---|---|")
    for setting, r in best.items():
        fp32 = best.get(("fp32", setting[1]))
        speedup = (f"{r['seg_s'] / fp32['seg_s']:.2f}"
                   if fp32 and setting[0] == "bf16" else "")
        print(f"| {setting[0]} | {setting[1]} | {r['batch']} | "
              f"{r['seg_s']:.1f} | {speedup} |")
    print()
    print(f"| precision | encoder | fused / encoder-only step "
          f"(batch {args.ratio_batch}) |")
    print("|---|---|---|")
    for (precision, enc), ratio in ratios.items():
        print(f"| {precision} | {enc} | {ratio:.2f} |")
    print()
    print(f"| precision | fused inference, batch {args.infer_batch} x "
          f"{args.seconds:g} s, x real time |")
    print("|---|---|")
    for precision, value in xrt.items():
        print(f"| {precision} | {value:,.0f} |")
    print(f"\n[step_check] {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
