#!/usr/bin/env python3
"""Operators (CPU) / kernels and host syncs (CUDA) of one training step.

Issue 18's CPU-side measure of the fused model's overhead: the number of
aten operators dispatched in one training step (``zero_grad``, forward, NLL
loss, backward; every ``aten::`` event ``torch.profiler`` records, nested
ones included) of the fused model (AM-ResNet + encoder + cross-attention +
head) against the encoder-only model (the SpeechBrain recipe's: mean pooling
and a linear head) on the same batch (2 x 2 s), with the encoder frozen and
fine-tuned. Counts are deterministic. Goal: fused / encoder-only <= 1.25
frozen, <= 1.15 fine-tuned.

On CUDA the same step is profiled for GPU kernels launched and host
synchronisations (``cudaStreamSynchronize`` / ``cudaDeviceSynchronize`` /
blocking ``cudaMemcpy``) per step.

The operator count of an encoder does not depend on its width, only on its
depth, so ``--encoder narrow`` (wav2vec2-base's 7 convolutions and 12
layers at width 32, built from a configuration in memory) counts exactly
what ``--encoder base`` (the real widths) counts, in a fraction of the time.

The fused model runs eagerly and with ``AMSER.compile_training``
(AM-ResNet and the fusion compiled for the fixed-shape training segments,
the encoder eager), so one table shows the four ratios; the exit status
is 0 when, for both encoder states, one of the two meets its goal.

Usage::

    python benchmarks/op_count.py                   # narrow, eager and
                                                    # compiled (~1 min)
    python benchmarks/op_count.py --eager           # eager only (seconds)
    python benchmarks/op_count.py --compile         # compiled only
    python benchmarks/op_count.py --encoder base --device cuda

Authors
 * amser-sb contributors
"""

import argparse
import collections
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import model_speed  # noqa: E402

GOALS = {"frozen": 1.25, "fine-tuned": 1.15}
EXECUTIONS = ("eager", "compiled")
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize",
               "cudaEventSynchronize", "cudaMemcpy ")


def narrow_config(layers=12):
    """wav2vec2-base's depth and geometry at width 32 (a dict config)."""
    from amser_sb.lobes.encoder_registry import hf_config_dict
    from amser_sb.lobes.wav2vec2 import wav2vec2_config

    config = hf_config_dict(wav2vec2_config("base"))
    config.update(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_hidden_layers=layers,
        conv_dim=[32] * len(config["conv_dim"]),
        num_conv_pos_embedding_groups=16,
    )
    return config


def build_encoder(kind, freeze, device, folder=None):
    """The encoder branch: ``narrow`` (in memory) or ``base`` (folder)."""
    from amser_sb.lobes import SSLBackbone

    torch.manual_seed(0)
    if kind == "narrow":
        ssl = SSLBackbone(config=narrow_config(), normalize=True,
                          freeze=freeze)
    else:
        model_speed.ensure_backbone(folder, "group")
        ssl = SSLBackbone(folder, save_path=os.path.join(folder, "cache"),
                          freeze=freeze)
    return ssl.to(device)


def step_without_sync(model, head, batch):
    """One training step, no timing and no synchronisation of its own."""
    wavs, lens, targets = batch
    params = [p for p in model.parameters() if p.requires_grad]
    params += list(head.parameters())

    def step():
        for p in params:
            p.grad = None
        log_probs = head(model(wavs, lens)).squeeze(1)
        torch.nn.functional.nll_loss(log_probs, targets).backward()

    return step


def profile_step(step, cuda=False, warmup=2):
    """Counts of one step after ``warmup`` steps.

    Returns
    -------
    dict
        ``ops`` (aten events), ``by_name`` (Counter), and on CUDA
        ``kernels`` and ``syncs``.
    """
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        step()
    activities = [ProfilerActivity.CPU]
    if cuda:
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        step()
        if cuda:
            torch.cuda.synchronize()
    events = prof.events()
    names = collections.Counter(
        e.name for e in events if e.name.startswith("aten::")
    )
    out = {"ops": sum(names.values()), "by_name": names}
    if cuda:
        kernels = [e for e in events
                   if e.device_type == torch.autograd.DeviceType.CUDA]
        syncs = [e for e in events
                 if any(e.name.startswith(s.strip()) for s in SYNC_EVENTS)
                 and e.device_type != torch.autograd.DeviceType.CUDA]
        # the one synchronize after the step is ours
        out["kernels"] = len(kernels)
        out["syncs"] = max(0, len(syncs) - 1)
    return out


def count_configs(encoder="narrow", device="cpu", batch=2, seconds=2.0,
                  compile_branches=False, folder=None, warmup=2):
    """Counts of the four configurations: {(kind, backbone): dict}."""
    execution = "compiled" if compile_branches else "eager"
    counts = count_executions(encoder, device, batch, seconds, (execution,),
                              folder, warmup)
    return {(kind, backbone): c
            for (kind, backbone, _), c in counts.items()}


def count_executions(encoder="narrow", device="cpu", batch=2, seconds=2.0,
                     executions=EXECUTIONS, folder=None, warmup=2):
    """Counts of the baseline and of the fused model run each way.

    Arguments
    ---------
    executions : sequence of str
        ``"eager"`` and/or ``"compiled"`` (``AMSER.compile_training``:
        AM-ResNet and the fusion compiled, the encoder eager) for the
        fused model; the baseline has nothing ``compile_training``
        compiles, so it runs once, eagerly.

    Returns
    -------
    dict
        ``{(kind, backbone, execution): counts}`` (see ``profile_step``).
    """
    device = torch.device(device)
    data = model_speed.make_batch(batch, seconds, device)
    out = {}
    for backbone in ("frozen", "fine-tuned"):
        ssl = build_encoder(encoder, backbone == "frozen", device, folder)
        runs = [("baseline", "eager")]
        runs += [("fused", execution) for execution in executions]
        for kind, execution in runs:
            model, head = model_speed.build_model(kind, ssl, device)
            if execution == "compiled":
                model.compile_training()
            step = step_without_sync(model, head, data)
            out[kind, backbone, execution] = profile_step(
                step, device.type == "cuda", warmup
            )
    return out


def print_table(counts):
    """Print counts and ratios (one row per execution of the fused model).

    Arguments
    ---------
    counts : dict
        ``count_executions``'s (or ``count_configs``'s) counts.

    Returns
    -------
    bool
        True when, for each encoder state, some execution meets its goal.
    """
    counts = {key if len(key) == 3 else (*key, "eager"): c
              for key, c in counts.items()}
    cuda = "kernels" in next(iter(counts.values()))
    head = "| encoder | model | execution | aten ops/step |"
    rule = "|---|---|---|---|"
    if cuda:
        head += " CUDA kernels/step | host syncs/step |"
        rule += "---|---|"
    print(head)
    print(rule)
    for (kind, backbone, execution), c in counts.items():
        row = f"| {backbone} | {kind} | {execution} | {c['ops']} |"
        if cuda:
            row += f" {c['kernels']} | {c['syncs']} |"
        print(row)
    print()
    print("| encoder | fused execution | fused / encoder-only ops | goal |"
          + (" kernels ratio |" if cuda else ""))
    print("|---|---|---|---|" + ("---|" if cuda else ""))
    ok = True
    for backbone, goal in GOALS.items():
        base = next(c for (kind, b, _), c in counts.items()
                    if kind == "baseline" and b == backbone)
        met_any = False
        for (kind, b, execution), c in counts.items():
            if kind != "fused" or b != backbone:
                continue
            ratio = c["ops"] / base["ops"]
            met = ratio <= goal
            met_any |= met
            row = (f"| {backbone} | {execution} | {ratio:.3f} | <= {goal} "
                   f"{'met' if met else 'MISSED'} |")
            if cuda:
                row += f" {c['kernels'] / max(1, base['kernels']):.3f} |"
            print(row)
        ok &= met_any
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="narrow",
                        choices=["narrow", "base"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--compile", action="store_true",
                      help="only the fused model with AM-ResNet and the "
                      "fusion compiled (AMSER.compile_training)")
    runs.add_argument("--eager", action="store_true",
                      help="only the eager fused model (seconds)")
    parser.add_argument("--w2v-folder", default=None,
                        help="--encoder base: folder (built if missing)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=0,
                        help="also print the N operators the fused model "
                        "adds most of")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.w2v_folder
    if args.encoder == "base" and folder is None:
        import tempfile

        folder = os.path.join(tempfile.mkdtemp(prefix="amser_ops_"), "w2v")
    executions = (("compiled",) if args.compile
                  else ("eager",) if args.eager else EXECUTIONS)
    counts = count_executions(args.encoder, args.device, args.batch,
                              args.seconds, executions, folder)
    print(f"op_count: one training step, batch {args.batch} x "
          f"{args.seconds:g} s, {args.encoder} wav2vec2-base-deep encoder, "
          f"{args.device}; fused model with AM-ResNet + fusion "
          f"{' and '.join(executions)}")
    ok = print_table(counts)
    if args.top:
        for backbone in GOALS:
            for execution in executions:
                extra = (counts["fused", backbone, execution]["by_name"]
                         - counts["baseline", backbone, "eager"]["by_name"])
                print(backbone, execution, extra.most_common(args.top))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
