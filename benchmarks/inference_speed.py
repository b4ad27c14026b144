#!/usr/bin/env python3
"""Inference real-time factor on CPU with a wav2vec2-base-size backbone.

Goal (issue 5): classifying audio with an exported model runs at a
real-time factor (RTF = processing seconds / audio seconds) of at most 0.1
on 2 CPU cores, with a wav2vec2-base-size backbone.

The model folder is built without training, the way users get one:

1. a wav2vec2 folder with exactly wav2vec2-base's architecture and random
   weights (``build_random_wav2vec2(size="base")``: same compute as the
   real checkpoint, ~94M parameters);
2. the recipe's model, built from
   ``recipes/IEMOCAP/emotion_recognition/hparams/am_resnet_w2v2.yaml``
   with hyperpyyaml (default AM-ResNet, cross-attention fusion and head;
   only the folders and ``ssl_hub`` are overridden), saved as a
   training checkpoint (``save/CKPT+.../embedding_model.ckpt``,
   ``classifier.ckpt``, a meta UA) in a fold folder next to the run's plain
   ``hyperparams.yaml`` and ``label_encoder.txt``;
3. ``amser_sb.inference.export.export_model`` writes the model folder;
4. ``amser_sb.inference.classify.load_classifier`` loads it with SpeechBrain's plain
   ``EncoderClassifier`` (offline), exactly as ``amser-sb classify`` does.

The audio is a synthetic speech-like recording (default 60 s): harmonic
"utterances" of 2 to 7 s (pitch contour, syllable-rate loudness, a little
noise) separated by short pauses, voiced most of the time, so MADD skips
few windows. Measured, in one process, after one warm-up call:

* ``whole clips``: ``classify_file`` on each utterance of the recording
  written as its own file (typical utterance lengths);
* ``long w4 h2``: ``classify_long`` with 4 s windows every 2 s (the CLI
  default for long audio: each second is processed about twice);
* ``long w4 h4``: ``classify_long`` with 4 s windows every 4 s;
* ``w4 h4 1by1`` (``--modes ...,w4h4b1``): the same, one window at a time
  (``batch_size=1``), to show what batching the windows gains.

Every mode runs for each ``--precisions`` entry: ``float32`` (as users
load it), ``int8`` (``load_classifier(..., quantize=True)``: dynamic int8
Linear layers), ``bf16`` (``bf16=True``: bfloat16 convolutional feature
encoder), ``int8+bf16``, and onnxruntime on the folder's ONNX graphs:
``onnx`` (float32 ``model.onnx``) and ``onnx-int8`` (``model.int8.onnx``),
written by ``amser_sb.inference.onnx_export.export_onnx`` when missing (its time is
printed) and run with ``--threads`` intra-op threads; all are loaded in
this process and interleaved within each mode, so load from other
processes hits them alike. Each other row's posteriors are compared with
float32's on the same clips/windows (max absolute difference, share with the same label; the
float32 median top-2 margin says how easily labels can flip: the random
weights give flat posteriors).

``seconds`` (and RTF) is wall-clock time (``time.perf_counter``); ``CPU
s`` is this process's CPU time, all threads (``time.process_time``): with
``--threads 1`` it is what one core spends, little affected by other
processes, while with more threads it includes OpenMP's spin-waiting. With
``--rounds N`` each row shows its fastest round. The machine may be
shared, so compare rows of one run only and rerun when ``uptime`` shows
little load (the header prints the load average before and after). Peak
RSS (VmHWM) is measured per precision in a fresh process that loads the
model and classifies 20 s with 4 s windows every 2 s (a full batch).

Usage::

    python benchmarks/inference_speed.py                 # base, 2 threads
    python benchmarks/inference_speed.py --precisions float32,int8+bf16
    python benchmarks/inference_speed.py --threads 1 --modes w4h4,w4h4b1
    python benchmarks/inference_speed.py --quick         # tiny backbone
    python benchmarks/inference_speed.py --model exported_model_dir
    python benchmarks/inference_speed.py --workdir /tmp/ib  # keep the model
    python benchmarks/inference_speed.py --model demo_output/model \
        --clips demo_output/manifests/wav16k --modes clips \
        --precisions float32,onnx,onnx-int8 --no-rss  # real speech

It exits with status 1 when no measured row meets the goal.

Authors
 * amser-sb contributors
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

from amser_sb.data.synthetic import (
    speech_like_recording,
    write_recording_and_clips,
)

GOAL = 0.1
SAMPLE_RATE = 16000
HERE = os.path.dirname(os.path.abspath(__file__))
RECIPE = os.path.join(
    HERE, "..", "recipes", "IEMOCAP", "emotion_recognition", "hparams",
    "am_resnet_w2v2.yaml",
)
LABELS = ("neu", "hap", "sad", "ang")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="tiny random backbone instead of base size (a cheap smoke run)",
    )
    parser.add_argument(
        "--threads", type=int, default=2,
        help="torch intra-op threads (0: torch's default)",
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="recording length"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8,
        help="windows classified together by classify_long",
    )
    parser.add_argument(
        "--precisions", default="float32,int8,bf16,int8+bf16,onnx,onnx-int8",
        help="comma-separated subset of float32, int8 (load_classifier("
        "quantize=True)), bf16 (bf16=True), int8+bf16, onnx and onnx-int8 "
        "(onnxruntime on model.onnx / model.int8.onnx, exported first)",
    )
    parser.add_argument(
        "--modes", default="clips,w4h2,w4h4",
        help="comma-separated subset of clips, w4h2, w4h4, w4h4b1 (w4h4 "
        "with one window at a time: what batching gains)",
    )
    parser.add_argument(
        "--model", default=None,
        help="an exported model folder to measure instead of the built "
        "random one (e.g. a trained model: real posterior deviations)",
    )
    parser.add_argument(
        "--clips", default=None,
        help="a folder of audio files (.wav, .flac) classified in the whole-"
        "clips mode instead of the recording's utterances (with --model: "
        "deviations and label agreement on real speech)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="interleaved rounds; the table shows each row's fastest",
    )
    parser.add_argument(
        "--no-rss", dest="rss", action="store_false",
        help="skip the peak-RSS runs (one fresh process per precision)",
    )
    parser.add_argument(
        "--rss-precisions", default=None,
        help="the precisions whose peak RSS is measured (default: all of "
        "--precisions)",
    )
    parser.add_argument(
        "--rss-worker", nargs=3, default=None, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--feat-extract-norm", default="group", choices=["group", "layer"],
        help="backbone feature-encoder norm (group: wav2vec2-base)",
    )
    parser.add_argument(
        "--workdir", default=None,
        help="folder for the backbone, fold, model and audio (reused when "
        "present; default: a temporary folder, removed afterwards)",
    )
    return parser.parse_args(argv)


def peak_rss_mib():
    """Peak resident set size of this process so far, MiB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model_folder(workdir, size, feat_extract_norm="group"):
    """A fake trained fold of the recipe's model, exported; its path.

    Arguments
    ---------
    workdir : str
        Working folder; ``w2v2_<size>/``, ``exp/`` and ``model/`` are
        written there (reused if ``model/hyperparams.yaml`` exists).
    size : str
        ``"base"`` or ``"tiny"`` backbone.
    feat_extract_norm : str
        ``"group"`` or ``"layer"``.

    Returns
    -------
    str
        The exported model folder.
    """
    from amser_sb.inference.random_model import random_model_folder
    from amser_sb.lobes import build_random_wav2vec2

    tag = f"{size}_{feat_extract_norm}"
    model_dir = os.path.join(workdir, f"model_{tag}")
    if os.path.isfile(os.path.join(model_dir, "hyperparams.yaml")):
        return model_dir
    w2v = os.path.join(workdir, f"w2v2_{tag}")
    if not os.path.isfile(os.path.join(w2v, "config.json")):
        build_random_wav2vec2(w2v, size, feat_extract_norm=feat_extract_norm)
    overrides = {
        "ssl_hub": w2v,
        "pretrained_folder": os.path.join(workdir, "pretrained"),
        "feature_cache_folder": os.path.join(workdir, "cache"),
    }
    return random_model_folder(RECIPE, overrides,
                               os.path.join(workdir, f"exp_{tag}"),
                               model_dir, LABELS)


def audio_files(folder):
    """The ``.wav`` and ``.flac`` files of ``folder``, sorted.

    Raises
    ------
    SystemExit
        One line naming the folder when it holds none.
    """
    if not os.path.isdir(folder):
        raise SystemExit(f"--clips {folder}: no such folder")
    files = sorted(
        os.path.join(folder, name) for name in os.listdir(folder)
        if name.lower().endswith((".wav", ".flac"))
    )
    if not files:
        raise SystemExit(
            f"--clips {folder}: no .wav or .flac file in it (give a folder "
            "of audio clips)"
        )
    return files


#: Precision name -> load_classifier keyword arguments (onnxruntime rows:
#: the ``--runtime`` value of ``amser-sb classify``).
PRECISIONS = {
    "float32": {},
    "int8": {"quantize": True},
    "bf16": {"bf16": True},
    "int8+bf16": {"quantize": True, "bf16": True},
    "onnx": {"runtime": "onnx"},
    "onnx-int8": {"runtime": "onnx-int8"},
}

#: Mode name -> (label, classify_long window, hop and batch size or None
#: for clips; a batch size of None is ``--batch-size``).
MODES = {
    "clips": ("whole clips", None),
    "w4h2": ("long w4 h2", (4.0, 2.0, None)),
    "w4h4": ("long w4 h4", (4.0, 4.0, None)),
    "w4h4b1": ("w4 h4 1by1", (4.0, 4.0, 1)),
}


def run_mode(clf, mode, recording, clips, batch_size):
    """Classify in one mode: audio s, wall s, CPU s, posteriors.

    Posteriors are one ``[classes]`` list per clip or per classified window.
    """
    from amser_sb.inference.classify import classify_file, classify_long

    spec = MODES[mode][1]
    start, cpu = time.perf_counter(), time.process_time()
    if spec is None:
        results = [classify_file(clf, path) for path in clips]
        audio = sum(res.duration for res in results)
        posts = [list(res.posteriors.values()) for res in results]
    else:
        res = classify_long(
            clf, recording, window=spec[0], hop=spec[1],
            batch_size=spec[2] or batch_size,
        )
        audio = res.duration
        posts = [list(w.posteriors.values()) for w in res.windows
                 if w.posteriors]
    wall = time.perf_counter() - start
    return audio, wall, time.process_time() - cpu, posts


def top2_margin(posts):
    """Median difference between the two largest posteriors."""
    import numpy as np

    a = np.sort(np.array(posts), axis=1)
    return float(np.median(a[:, -1] - a[:, -2])) if a.size else float("nan")


def deviation(posts, ref):
    """Max absolute posterior difference and share of equal labels."""
    import numpy as np

    a, b = np.array(posts), np.array(ref)
    if a.shape != b.shape or a.size == 0:
        return float("nan"), float("nan")
    same = (a.argmax(1) == b.argmax(1)).mean()
    return float(np.abs(a - b).max()), float(same)


def load(model_dir, workdir, precision, threads=0):
    """Load the exported model with one precision (own savedir); the
    onnxruntime rows export ``model.onnx`` / ``model.int8.onnx`` first
    when the folder has none."""
    from amser_sb.inference.classify import load_classifier

    runtime = PRECISIONS[precision].get("runtime")
    if runtime is not None:
        from amser_sb.inference.onnx_contract import INT8_FILE
        from amser_sb.inference.onnx_export import export_onnx
        from amser_sb.inference.onnx_runtime import load_onnx_classifier

        if not os.path.isfile(os.path.join(model_dir, INT8_FILE)):
            start = time.perf_counter()
            export_onnx(model_dir, int8=True)
            print(f"  export-onnx --int8: {time.perf_counter() - start:.0f}"
                  " s (export + parity check)", file=sys.stderr, flush=True)
        return load_onnx_classifier(model_dir, runtime, threads)
    return load_classifier(
        model_dir,
        savedir=os.path.join(
            workdir, f"sd_{os.path.basename(model_dir)}_{precision}"
        ),
        **PRECISIONS[precision],
    )


def rss_worker(args):
    """Peak RSS of one precision in this fresh process; print MiB.

    Loads the model and classifies the first 20 s of the recording with
    4 s windows every 2 s (9 windows: one full batch of 8 and one more).
    """
    import soundfile as sf

    from amser_sb.inference.classify import classify_long

    model_dir, workdir, precision = args.rss_worker
    path = os.path.join(workdir, "audio", "rss_20s.wav")
    if not os.path.isfile(path):
        wav, _ = speech_like_recording(20.0)
        sf.write(path, wav, SAMPLE_RATE)
    clf = load(model_dir, workdir, precision, args.threads)
    classify_long(clf, path, window=4.0, hop=2.0, batch_size=args.batch_size)
    print(f"{peak_rss_mib():.1f}")
    return 0


def measure_rss(args, model_dir, workdir, precision):
    """Run ``rss_worker`` in a fresh interpreter; peak RSS in MiB."""
    import subprocess

    cmd = [
        sys.executable, os.path.abspath(__file__), "--threads",
        str(args.threads), "--batch-size", str(args.batch_size),
        "--rss-worker", model_dir, workdir, precision,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"RSS worker for {precision} failed")
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_worker:
        return rss_worker(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    for name in modes:
        if name not in MODES:
            raise SystemExit(f"unknown mode {name!r}; pick from {list(MODES)}")
    args.rss_precisions = [
        p.strip() for p in (args.rss_precisions or "").split(",") if p.strip()
    ] or None
    for name in precisions + (args.rss_precisions or []):
        if name not in PRECISIONS:
            raise SystemExit(
                f"unknown precision {name!r}; pick from {list(PRECISIONS)}"
            )
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = workdir = tempfile.mkdtemp(prefix="amser_infer_")
    os.makedirs(workdir, exist_ok=True)
    try:
        return measure(args, workdir, modes, precisions)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(args, workdir, modes, precisions):
    """Build, load, time every precision x mode; print the tables."""
    import torch

    size = "tiny" if args.quick else "base"
    start = time.perf_counter()
    if args.model:
        model_dir = os.path.abspath(args.model)
        what = f"model folder {model_dir}"
    else:
        model_dir = build_model_folder(workdir, size, args.feat_extract_norm)
        what = (
            f"{size} random wav2vec2 ({args.feat_extract_norm} norm) + "
            "recipe AM-ResNet/fusion, exported"
        )
    build_s = time.perf_counter() - start
    recording, clips = write_recording_and_clips(workdir, args.seconds)
    source = f"{len(clips)} clips"
    if args.clips:
        clips = audio_files(args.clips)
        source = f"{len(clips)} clips from {os.path.abspath(args.clips)}"
    load0 = os.getloadavg()[0]

    rss = {}
    if args.rss:
        for name in args.rss_precisions or precisions:
            rss[name] = measure_rss(args, model_dir, workdir, name)
    classifiers = {}
    for name in precisions:
        clf = load(model_dir, workdir, name, args.threads)
        # warm-up: one short clip (first calls allocate and pick kernels)
        run_mode(clf, "clips", recording, clips[:1], args.batch_size)
        classifiers[name] = clf

    # Rounds interleave the precisions within each mode, so that load from
    # other processes hits them alike.
    best, posts = {}, {}
    for _ in range(args.rounds):
        for mode in modes:
            for name, clf in classifiers.items():
                audio, secs, cpu, post = run_mode(
                    clf, mode, recording, clips, args.batch_size
                )
                posts[mode, name] = post
                print(
                    f"  {MODES[mode][0]} {name}: {secs:.2f} s ({cpu:.2f} "
                    f"CPU s) for {audio:.1f} s of audio, {len(post)} "
                    f"posteriors (load {os.getloadavg()[0]:.1f})",
                    file=sys.stderr, flush=True,
                )
                inf = float("inf")
                old = best.get((mode, name), (audio, inf, inf))
                best[mode, name] = (audio, min(secs, old[1]),
                                    min(cpu, old[2]))
    rows = [(mode, name) + value for (mode, name), value in best.items()]
    load1 = os.getloadavg()[0]
    peak = peak_rss_mib()

    threads = torch.get_num_threads()
    print(
        f"inference_speed: {what}, loaded with "
        f"EncoderClassifier (onnx rows: onnxruntime); CPU, {threads} "
        "threads, "
        f"{os.cpu_count()} cores visible, load average {load0:.1f} -> "
        f"{load1:.1f}; {args.seconds:g} s speech-like recording, "
        f"{source}; classify_long batch {args.batch_size} "
        f"(model folder ready in {build_s:.0f} s)"
    )
    print()
    print("| mode        | precision | audio s | seconds |    RTF "
          f"| CPU s | goal <= {GOAL} | max abs dp vs float32 "
          "| same label |")
    print("|-------------|-----------|---------|---------|--------"
          "|-------|------------|-----------------------|------------|")
    met_any = False
    for mode, name, audio, secs, cpu in rows:
        rtf = secs / audio
        met = rtf <= GOAL
        met_any |= met
        dev, same = (
            deviation(posts[mode, name], posts[mode, "float32"])
            if "float32" in classifiers and name != "float32"
            else (float("nan"), float("nan"))
        )
        dev_s = "-" if dev != dev else f"{dev:.4f}"
        same_s = "-" if same != same else f"{100 * same:.1f}%"
        print(
            f"| {MODES[mode][0]:<11} | {name:<9} | {audio:>7.1f} "
            f"| {secs:>7.2f} | {rtf:>6.3f} | {cpu:>5.1f} "
            f"| {'met' if met else 'missed':<10} "
            f"| {dev_s:>21} | {same_s:>10} |"
        )
    print()
    ratios = []
    for mode in modes:
        ref = [r for r in rows if r[0] == mode and r[1] == "float32"]
        if not ref:
            continue
        for _, name, _, secs, _ in (r for r in rows if r[0] == mode):
            if name != "float32":
                speedup = ref[0][3] / secs
                ratios.append(f"{MODES[mode][0]} {name} {speedup:.2f}x")
    if ratios:
        print("speed-up vs float32 (same run): " + "; ".join(ratios))
    if "float32" in classifiers:
        margins = ", ".join(
            f"{MODES[mode][0]} {top2_margin(posts[mode, 'float32']):.3f}"
            for mode in modes
        )
        print(
            "float32 median top-2 posterior margin (labels flip more "
            f"easily when small): {margins}"
        )
    if rss:
        print(
            "peak RSS of a fresh process loading the model and classifying "
            "20 s (w4 h2, one full batch), MiB: "
            + ", ".join(f"{name} {mib:.0f}" for name, mib in rss.items())
        )
    print(f"this process (all models loaded): peak RSS {peak:.0f} MiB")
    return 0 if met_any else 1


if __name__ == "__main__":
    sys.exit(main())
