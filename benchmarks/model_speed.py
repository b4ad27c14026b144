#!/usr/bin/env python3
"""Training-step cost of the fused model vs. a SpeechBrain-recipe baseline.

Goal (issue 3): one training step (forward + backward) of the full model
(AM-ResNet + wav2vec2 + cross-attention fusion + linear head) costs at most
1.15x the step of the SpeechBrain IEMOCAP recipe's model (the same wav2vec2,
mean pooling over valid frames, linear head) on the same batch, in step time
and in peak memory, with the backbone frozen and fine-tuned.

The backbone is a wav2vec2-base-sized model built from a config with random
weights (``build_random_wav2vec2(size="base")``: exactly wav2vec2-base's
architecture, so the same compute as the real checkpoint; LayerDrop off so
every step runs all 12 layers). The fused model runs MADD inside its forward
(no precomputed mask: the dearer case).

Measurements (the machine this was written on is shared, so timing uses
paired, interleaved runs):

* **step time**: wall time, or with ``--clock cpu`` this process's CPU
  time (steadier on a shared machine; meant for ``--threads 1``, the
  default, as busy-waiting threads otherwise count). All four
  configurations live in one process, sharing one backbone instance per
  backbone setting; each round runs one step of every configuration back
  to back (after ``--warmup`` rounds). A step is ``zero_grad``,
  forward, NLL loss, backward (no optimiser update); on CUDA the device is
  synchronised around it. The table gives the median and minimum over
  ``--rounds``; the time ratio is the median over rounds of fused /
  baseline from the same round (paired, so load from other processes that
  varies between rounds cancels out), with the ratio of minima beside it.
* **peak memory**: each configuration runs again in a fresh subprocess.
  On CPU: the process's peak resident set size (VmHWM) during the measured
  steps; the peak is reset (``/proc/self/clear_refs``, Linux >= 4.0) after
  the model is built and warmed up, so loading the checkpoint does not
  count; everything resident counts (libraries, parameters, activations,
  gradients). Where the reset is not possible, the lifetime peak
  (``ru_maxrss``) is shown and marked ``*``. On CUDA:
  ``torch.cuda.max_memory_allocated`` during the measured steps.

Usage::

    python benchmarks/model_speed.py                 # CPU, batch 2 x 4 s
    python benchmarks/model_speed.py --clock cpu     # busy machine
    python benchmarks/model_speed.py --device cuda --batch 8

It exits with status 1 when the goal is missed.

Authors
 * amser-sb contributors
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import op_count  # noqa: E402

GOAL = 1.15


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared machine two "
        "OpenMP threads wait on each other at every small operation, which "
        "penalises the model with more, smaller operations; 0: torch's "
        "default)",
    )
    parser.add_argument(
        "--w2v-folder",
        default=None,
        help="wav2vec2-base-sized folder (built here if missing; default: "
        "a temporary folder, removed afterwards)",
    )
    parser.add_argument(
        "--feat-extract-norm", default="group", choices=["group", "layer"]
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="step time as wall time (default) or as this process's CPU "
        "time (less sensitive to other processes on a shared machine; "
        "best with --threads 1)",
    )
    parser.add_argument(
        "--am-strides",
        default=None,
        help="AM-ResNet block strides, comma-separated (default: the "
        "AMResNet default, 4,1,4,1,4,1)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def reset_peak_rss():
    """Reset VmHWM; True on success (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib(reset_ok):
    """Peak RSS in MiB since the last reset (or the process's lifetime)."""
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_ssl(folder, freeze, device):
    """The wav2vec2 branch, shared by the fused model and the baseline."""
    import torch

    from amser_sb.lobes import SSLBackbone

    torch.manual_seed(0)
    save_path = os.path.join(folder, "sb_cache")
    return SSLBackbone(folder, save_path=save_path, freeze=freeze).to(device)


def build_model(kind, ssl, device, strides=None):
    """Embedding model + classifier head around ``ssl``."""
    import torch

    from amser_sb.lobes import (
        AMSER,
        AMResNet,
        CrossAttentionFusion,
        EmotionClassifier,
    )

    torch.manual_seed(1)
    if kind == "baseline":
        model = AMSER(ssl=ssl, mode="ssl")
    else:
        am = AMResNet() if strides is None else AMResNet(strides=strides)
        fusion = CrossAttentionFusion(am.out_dim, ssl.out_dim)
        model = AMSER(ssl, am, fusion, mode="fusion")
    head = EmotionClassifier(model.out_dim, 4)
    model.to(device).train()
    head.to(device).train()
    return model, head


def make_batch(batch, seconds, device):
    """Speech-like waveforms (gated tones in faint noise), full length."""
    import torch

    gen = torch.Generator().manual_seed(0)
    n = int(seconds * 16000)
    t = torch.arange(n) / 16000
    wavs = []
    for i in range(batch):
        f0 = 100 + 20 * i
        gate = (torch.sin(2 * torch.pi * 1.5 * t + i) > -0.3).float()
        wav = 0.3 * torch.sin(2 * torch.pi * f0 * t) * gate
        wavs.append(wav + 1e-3 * torch.randn(n, generator=gen))
    wavs = torch.stack(wavs).to(device)
    lens = torch.ones(batch, device=device)
    targets = torch.arange(batch, device=device) % 4
    return wavs, lens, targets


def make_step(model, head, batch):
    """A closure running one training step; returns its wall time."""
    import torch

    wavs, lens, targets = batch
    params = [p for p in model.parameters() if p.requires_grad]
    params += list(head.parameters())
    cuda = wavs.is_cuda

    def step():
        if cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        for p in params:
            p.grad = None
        log_probs = head(model(wavs, lens)).squeeze(1)
        loss = torch.nn.functional.nll_loss(log_probs, targets)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu_start

    step.trainable = sum(p.numel() for p in params)
    step.bare = op_count.step_without_sync(model, head, batch)
    return step


def am_strides(args):
    """``--am-strides`` as a tuple of ints, or None for the default."""
    if not args.am_strides:
        return None
    return tuple(int(s) for s in args.am_strides.split(","))


def setup_torch(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def memory_worker(args):
    """Peak memory of one configuration; print one JSON line."""
    import torch

    device = setup_torch(args)
    kind, backbone = args.worker.split(",")
    ssl = build_ssl(args.w2v_folder, backbone == "frozen", device)
    step = make_step(
        *build_model(kind, ssl, device, am_strides(args)),
        make_batch(args.batch, args.seconds, device),
    )
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        exact = True
    else:
        import gc

        gc.collect()
        exact = reset_peak_rss()
    for _ in range(2):
        step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mib(exact)
    print(json.dumps({"peak_mib": peak, "exact": exact}))


def measure_memory(args, kind, backbone):
    """Run ``memory_worker`` for one configuration in a fresh interpreter."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        f"{kind},{backbone}",
        "--w2v-folder",
        args.w2v_folder,
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
    ]
    if args.am_strides:
        cmd += ["--am-strides", args.am_strides]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"memory worker {kind}/{backbone} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_time(args):
    """Interleaved step times of all configurations: {config: [s, ...]}."""
    device = setup_torch(args)
    clock = 1 if args.clock == "cpu" else 0
    batch = make_batch(args.batch, args.seconds, device)
    steps, times = {}, {}
    for backbone in ("frozen", "fine-tuned"):
        ssl = build_ssl(args.w2v_folder, backbone == "frozen", device)
        for kind in ("baseline", "fused"):
            steps[kind, backbone] = make_step(
                *build_model(kind, ssl, device, am_strides(args)), batch
            )
    for config in steps:
        times[config] = []
    for round_ in range(args.warmup + args.rounds):
        for config, step in steps.items():
            elapsed = step()
            if round_ >= args.warmup:
                times[config].append(elapsed[clock])
    trainable = {config: step.trainable for config, step in steps.items()}
    trainable["counts"] = {
        config: op_count.profile_step(step.bare, device.type == "cuda", 0)
        for config, step in steps.items()
    }
    return times, trainable


def ensure_backbone(folder, norm):
    """Build the wav2vec2-base-sized random folder unless present."""
    from amser_sb.lobes import build_random_wav2vec2

    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    return build_random_wav2vec2(folder, "base", feat_extract_norm=norm)


def describe(args):
    import torch

    if args.device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    threads = args.threads or torch.get_num_threads()
    return f"CPU, {threads} threads, {os.cpu_count()} cores visible"


def report(args, times, trainable, memory, build_s):
    """Print the tables; return True if the goal is met."""
    counts = trainable.pop("counts")
    print(
        f"model_speed: one training step (forward + backward), batch "
        f"{args.batch} x {args.seconds:g} s, wav2vec2-base-sized random "
        f"backbone ({args.feat_extract_norm} norm), {describe(args)}; "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up, "
        f"{args.clock} clock, AM-ResNet strides "
        f"{args.am_strides or '4,1,4,1,4,1'} "
        f"(backbone folder ready in {build_s:.0f} s)"
    )
    mem = "peak GPU alloc" if args.device.startswith("cuda") else "peak RSS"
    cuda = args.device.startswith("cuda")
    work = "kernels/step | syncs/step" if cuda else "aten ops/step"
    print(
        f"| backbone   | model    | step median (s) | step min (s) "
        f"| {mem} (MiB) | trainable params | {work} |"
    )
    print(
        "|------------|----------|-----------------|--------------"
        f"|{'-' * (len(mem) + 8)}|------------------|"
        + ("---|---|" if cuda else "---|")
    )
    for (kind, backbone), ts in times.items():
        mib = memory[kind, backbone]
        star = "" if mib["exact"] else "*"
        print(
            f"| {backbone:<10} | {kind:<8} "
            f"| {statistics.median(ts):>15.3f} | {min(ts):>12.3f} "
            f"| {mib['peak_mib']:>{len(mem) + 5}.0f}{star:1} "
            f"| {trainable[kind, backbone]:>16,} | "
            + (
                f"{counts[kind, backbone]['kernels']} | "
                f"{counts[kind, backbone]['syncs']} |"
                if cuda
                else f"{counts[kind, backbone]['ops']} |"
            )
        )
    print()
    print(
        "| backbone   | time ratio (paired median) | time ratio (min) "
        f"| memory ratio | goal <= {GOAL} | ops ratio |"
    )
    print(
        "|------------|----------------------------|------------------"
        "|--------------|--------------|-----------|"
    )
    ok = True
    for backbone in ("frozen", "fine-tuned"):
        base = times["baseline", backbone]
        fused = times["fused", backbone]
        paired = statistics.median(fused[i] / base[i] for i in range(len(base)))
        by_min = min(fused) / min(base)
        m_ratio = (
            memory["fused", backbone]["peak_mib"]
            / memory["baseline", backbone]["peak_mib"]
        )
        met = paired <= GOAL and m_ratio <= GOAL
        ok &= met
        key = "kernels" if cuda else "ops"
        o_ratio = counts["fused", backbone][key] / max(
            1, counts["baseline", backbone][key]
        )
        print(
            f"| {backbone:<10} | {paired:>26.3f} | {by_min:>16.3f} "
            f"| {m_ratio:>12.3f} | {'met' if met else 'MISSED':<12} "
            f"| {o_ratio:>9.3f} |"
        )
    return ok


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return memory_worker(args)
    tmp = None
    if args.w2v_folder is None:
        tmp = tempfile.mkdtemp(prefix="amser_bench_")
        args.w2v_folder = os.path.join(tmp, "w2v2_base_random")
    try:
        start = time.perf_counter()
        ensure_backbone(args.w2v_folder, args.feat_extract_norm)
        build_s = time.perf_counter() - start
        memory = {
            (kind, backbone): measure_memory(args, kind, backbone)
            for backbone in ("frozen", "fine-tuned")
            for kind in ("baseline", "fused")
        }
        times, trainable = measure_time(args)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if report(args, times, trainable, memory, build_s) else 1


if __name__ == "__main__":
    sys.exit(main())
