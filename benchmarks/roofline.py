#!/usr/bin/env python3
"""The fastest CPU inference this machine allows: a roofline of RTF.

The inference targets (issue 19: onnxruntime real-time factor <= 0.07 in
float32 and <= 0.04 in int8, whole clips, 2 cores, wav2vec2-base size)
are bounded from below by arithmetic: the model's matrix products and
convolutions cost a fixed number of floating-point operations per second
of audio, and no runtime multiplies faster than the machine's best
matrix product. This script measures both, on the machine it runs on:

1. **Work**: the recipe's model folder at base size (the model
   ``inference_speed.py`` times: random wav2vec2-base weights, the
   recipe's default AM-ResNet, fusion and head; the same folder is reused
   with ``--workdir``) classifies the same speech-like clips of 2 to 7 s
   (``classify_file``, whole clips: MADD, the 4 s segment grid, every
   branch) under ``torch.utils.flop_counter.FlopCounterMode``, which counts
   the operations of every matrix product, convolution and attention (2
   per multiply-add); per top-level part and in all, per audio second.
2. **Peak**: the best rate of one matrix product at the shapes that carry
   most of that work (a 4 s segment, 200 frames, through the transformer's
   768 x 3072 and 3072 x 768 layers, and a feature-encoder convolution as
   1,600 frames x 1,536 inputs x 512 outputs) with ``--threads``
   threads: PyTorch float32 (``torch.matmul``), onnxruntime float32
   (``MatMul``) and onnxruntime int8 (``quantize_dynamic``'s
   ``DynamicQuantizeMatMul``, int8 weights, activations quantised per
   call), the fastest of ``--reps`` calls' mean after a warm-up.
3. **Floor**: work / peak, the real-time factor if every operation ran at
   the best rate measured and everything else (normalisation, activations,
   masking, MADD, memory copies, audio loading) cost nothing. A target
   below its floor cannot be met on this machine without removing work
   (a smaller model or lower precision); one just above it needs the rest
   of the graph to cost next to nothing.

Usage::

    python benchmarks/roofline.py                  # base size, 2 threads
    python benchmarks/roofline.py --workdir /tmp/ib  # reuse a model folder
    python benchmarks/roofline.py --quick          # tiny backbone (smoke)

The machine may be shared: the header prints the load average before and
after; the peak rates are the fastest of several calls, so load only
lowers them (raises the floor) and a rerun on a quiet machine is the
figure to quote.

Authors
 * amser-sb contributors
"""

import argparse
import logging
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from inference_speed import build_model_folder  # noqa: E402

from amser_sb.data.synthetic import write_recording_and_clips  # noqa: E402

#: issue 19's targets: onnxruntime float32 and int8, whole clips.
TARGETS = {"float32": 0.07, "int8": 0.04}

#: (rows, inner, outer) of the matrix products whose rate is measured: a
#: 4 s segment's 200 frames through wav2vec2-base's feed-forward and
#: attention projections, and its second convolution (k=3, 512 channels,
#: 1,600 frames) as a product, stride-sized blocks of taps side by side.
SHAPES = ((200, 768, 3072), (200, 3072, 768), (200, 768, 768),
          (1600, 1536, 512))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None,
                        help="keep the model folder here (reused if present)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="speech-like recording whose utterances are "
                        "the clips (inference_speed.py's default: the "
                        "same clips)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of the matrix products")
    parser.add_argument("--reps", type=int, default=20,
                        help="calls per rate measurement")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed passes over the clips (fastest kept)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny random backbone (a cheap smoke run)")
    return parser.parse_args(argv)


def count_work(classifier, clips):
    """Operations (FLOP) of classifying ``clips`` whole: total, per
    top-level module, and the audio seconds."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from amser_sb.inference.classify import classify_file

    classify_file(classifier, clips[0])  # warm-up: lazy loading is not work
    audio = 0.0
    counter = FlopCounterMode(display=False, depth=4)
    with counter, torch.no_grad():
        for path in clips:
            audio += classify_file(classifier, path).duration
    parts = {}
    for name, ops in counter.get_flop_counts().items():
        parts[name] = sum(ops.values())
    return counter.get_total_flops(), parts, audio


def measured_rtf(classifier, clips, rounds):
    """Real-time factor of ``classify_file`` on ``clips`` (fastest of
    ``rounds`` passes, after a warm-up call)."""
    from amser_sb.inference.classify import classify_file

    classify_file(classifier, clips[0])
    best = float("inf")
    for _ in range(rounds):
        start, audio = time.perf_counter(), 0.0
        for path in clips:
            audio += classify_file(classifier, path).duration
        best = min(best, (time.perf_counter() - start) / audio)
    return best


def measure_runtimes(classifier, model_dir, clips, threads, rounds):
    """``{row name: (RTF, precision of its floor)}``: PyTorch float32
    (``classifier``, the folder loaded) and the folder's exported
    onnxruntime graphs."""
    import torch

    from amser_sb.inference.onnx_contract import INT8_FILE, ONNX_FILE
    from amser_sb.inference.onnx_runtime import load_onnx_classifier

    torch.set_num_threads(threads)
    rows = {"PyTorch float32": (measured_rtf(classifier, clips, rounds),
                                "float32")}
    for name, runtime, filename, precision in (
            ("onnxruntime float32", "onnx", ONNX_FILE, "float32"),
            ("onnxruntime int8", "onnx-int8", INT8_FILE, "int8")):
        if os.path.isfile(os.path.join(model_dir, filename)):
            clf = load_onnx_classifier(model_dir, runtime, threads)
            rows[name] = (measured_rtf(clf, clips, rounds), precision)
        else:
            rows[name] = (None, precision)
    return rows


def parts_table(parts, total):
    """The largest counted modules below the model's top level, each
    counted once (a module's count includes its children)."""
    names = sorted(n for n in parts if n.count(".") == 2 and parts[n] > 0)
    rows = [(n, parts[n]) for n in names]
    rows.sort(key=lambda r: -r[1])
    rest = total - sum(f for _, f in rows)
    if rows and rest > 0.005 * total:
        rows.append(("(elsewhere)", rest))
    return rows


def torch_rate(shape, threads, reps):
    """GFLOP/s of ``torch.matmul`` at ``shape`` (rows, inner, outer)."""
    import torch

    torch.set_num_threads(threads)
    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)
    return _best_rate(lambda: torch.matmul(a, b), 2 * m * k * n, reps)


def _best_rate(call, flops, reps):
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            call()
        best = min(best, (time.perf_counter() - start) / reps)
    return flops / best / 1e9


def onnx_rates(shape, threads, reps, folder):
    """GFLOP/s (float32) and GOP/s (dynamic int8) of one onnxruntime
    ``MatMul`` at ``shape`` (rows, inner, outer)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from amser_sb.inference.onnx_compose import quiet_logger

    m, k, n = shape
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(
        (rng.standard_normal((k, n)) / k ** 0.5).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [weight],
    )
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid("", 18)])
    plain = os.path.join(folder, f"mm_{m}_{k}_{n}.onnx")
    int8 = plain.replace(".onnx", ".int8.onnx")
    onnx.save(model, plain)
    with quiet_logger(logging.getLogger()):  # its advice to pre-process
        quantize_dynamic(plain, int8, weight_type=QuantType.QInt8)
    x = rng.standard_normal((m, k)).astype(np.float32)
    rates = []
    for path in (plain, int8):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"])
        rates.append(_best_rate(lambda: session.run(None, {"x": x}),
                                2 * m * k * n, reps))
    return rates


def main(argv=None):
    args = parse_args(argv)
    load0 = os.getloadavg()[0]
    workdir = args.workdir or tempfile.mkdtemp(prefix="roofline_")
    os.makedirs(workdir, exist_ok=True)
    size = "tiny" if args.quick else "base"
    model_dir = build_model_folder(workdir, size)
    _, clips = write_recording_and_clips(workdir, args.seconds)
    from amser_sb.inference.classify import load_classifier

    classifier = load_classifier(model_dir,
                                 savedir=os.path.join(workdir, "sd_roof"))
    total, parts, audio = count_work(classifier, clips)
    per_second = total / audio / 1e9

    rates = []
    with tempfile.TemporaryDirectory() as folder:
        for shape in SHAPES:
            f32, i8 = onnx_rates(shape, args.threads, args.reps, folder)
            rates.append((shape, torch_rate(shape, args.threads, args.reps),
                          f32, i8))
    peak_torch = max(r[1] for r in rates)
    peak_f32 = max(max(r[1], r[2]) for r in rates)
    peak_i8 = max(r[3] for r in rates)
    floors = {"float32": per_second / peak_f32, "int8": per_second / peak_i8}
    measured = measure_runtimes(classifier, model_dir, clips, args.threads,
                                args.rounds)

    print(f"# Roofline of CPU inference ({size} backbone, {args.threads} "
          f"threads; {os.cpu_count()} cores visible, load average "
          f"{load0:.1f} -> {os.getloadavg()[0]:.1f})")
    print(f"model folder {model_dir}; {len(clips)} whole clips, "
          f"{audio:.1f} s of audio\n")
    print("| counted part | GFLOP per audio second | share |")
    print("|---|---:|---:|")
    for name, flops in parts_table(parts, total):
        print(f"| {name} | {flops / audio / 1e9:.3f} | "
              f"{flops / total:.1%} |")
    print(f"| **all** | **{per_second:.3f}** | 100% |\n")
    print("| matrix product (rows x inner x outer) | torch float32 GFLOP/s "
          "| onnxruntime float32 GFLOP/s | onnxruntime int8 GOP/s |")
    print("|---|---:|---:|---:|")
    for (m, k, n), t, f, i in rates:
        print(f"| {m} x {k} x {n} | {t:.0f} | {f:.0f} | {i:.0f} |")
    print()
    print("| precision | peak rate | RTF floor (every operation at the "
          "peak, nothing else) | target | target / floor |")
    print("|---|---:|---:|---:|---:|")
    for name, peak in (("float32", peak_f32), ("int8", peak_i8)):
        floor, target = floors[name], TARGETS[name]
        print(f"| {name} | {peak:.0f} | {floor:.4f} | {target:.2f} | "
              f"{target / floor:.2f}x |")
    print(f"\n(float32 peak: the best of torch {peak_torch:.0f} and "
          f"onnxruntime; a target / floor ratio below 1 cannot be met on "
          f"this machine, one near 1 leaves the rest of the graph no time)\n")
    print("| measured, same clips | RTF | floor / RTF (share of the "
          "roofline reached) |")
    print("|---|---:|---:|")
    for name, (rtf, precision) in measured.items():
        if rtf is None:
            print(f"| {name} | not exported (`amser-sb export-onnx --int8 "
                  f"{model_dir}`) | |")
        else:
            print(f"| {name} | {rtf:.4f} | {floors[precision] / rtf:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
