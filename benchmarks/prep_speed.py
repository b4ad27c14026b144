#!/usr/bin/env python3
"""Speed of the IEMOCAP preparation on an IEMOCAP-size generated corpus.

Goal (issue 2): a corpus of 10,000 utterances, about 12 h of 16 kHz audio,
prepared in under 60 s on 2 cores (>= 700x real time).

The corpus is generated once (``amser_sb.data.synthetic``, same layout and
clutter as the release: 5 sessions, 10 speakers, AppleDouble files,
evaluator subfolders) into ``--corpus`` and reused by later runs with the
same size. Each run then times, on a fresh save folder:

* ``prep (cold)``: parse, label, read + check every wav, MADD on every used
  one, write all.csv, skipped.csv and the folds;
* ``prep (rerun)``: the same call again (stamp check only);
* ``folds only``: a second protocol on the same manifests.

Usage::

    python benchmarks/prep_speed.py [--corpus DIR] [--num_workers 2]

Authors
 * amser-sb contributors
"""

import argparse
import json
import logging
import os
import shutil
import tempfile
import time

from amser_sb.data.corpora.iemocap import prepare_iemocap
from amser_sb.data.manifest import read_csv
from amser_sb.data.synthetic import make_iemocap_corpus

SPEAKERS = 10
SAMPLE_RATE = 16000


def corpus_spec(utterances, hours):
    """Generation arguments for ``utterances`` totalling about ``hours``."""
    mean = hours * 3600 / utterances
    spread = min(mean - 1.0, 2.3)
    return {
        "utts_per_speaker": utterances // SPEAKERS,
        "min_dur": round(mean - spread, 3),
        "max_dur": round(mean + spread, 3),
        "seed": 0,
    }


def ensure_corpus(folder, spec, workers):
    """Generate the corpus unless ``folder`` already holds this spec."""
    marker = os.path.join(folder, "bench_corpus.json")
    if os.path.isfile(marker):
        with open(marker) as fin:
            if json.load(fin) == spec:
                return None
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    make_iemocap_corpus(folder, num_workers=workers, **spec)
    elapsed = time.perf_counter() - t0
    with open(marker, "w") as fout:
        json.dump(spec, fout)
    return elapsed


def audio_hours(all_csv, used_only=False):
    """Hours of audio listed in ``all.csv`` (optionally only used rows)."""
    rows = read_csv(all_csv)
    if used_only:
        rows = [r for r in rows if r["status"] == "used"]
    return len(rows), sum(float(r["duration"]) for r in rows) / 3600


def main(argv=None):
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.path.join(
        tempfile.gettempdir(), "amser_sb_bench_iemocap"),
        help="corpus folder (generated once, then reused)")
    parser.add_argument("--save_folder", default=None,
                        help="prep output (default: a fresh temp folder)")
    parser.add_argument("--utterances", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--num_workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    spec = corpus_spec(args.utterances, args.hours)
    gen = ensure_corpus(args.corpus, spec, args.num_workers)
    if gen is not None:
        print(f"generated corpus in {gen:.1f} s -> {args.corpus}")
    else:
        print(f"reusing corpus {args.corpus}")
    save = args.save_folder or tempfile.mkdtemp(prefix="amser_prep_")
    shutil.rmtree(save, ignore_errors=True)

    timings = []
    for label, kw in (
        ("prep (cold)", {}),
        ("prep (rerun)", {}),
        ("folds only (session)", {"protocol": "session"}),
    ):
        t0 = time.perf_counter()
        prepare_iemocap(args.corpus, save, num_workers=args.num_workers, **kw)
        timings.append((label, time.perf_counter() - t0))

    n_all, hours_all = audio_hours(os.path.join(save, "all.csv"))
    n_used, hours_used = audio_hours(os.path.join(save, "all.csv"), True)
    print(
        f"\nIEMOCAP-layout corpus: {n_all} utterances, {hours_all:.2f} h; "
        f"{n_used} used ({hours_used:.2f} h, MADD run on these); "
        f"{args.num_workers} workers, {os.cpu_count()} CPUs visible\n"
    )
    header = (f"| {'step':<22} | {'utterances':>10} | {'audio hours':>11} "
              f"| {'seconds':>8} | {'x real time':>11} |")
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1])
          + "|")
    for label, seconds in timings:
        print(f"| {label:<22} | {n_all:>10} | {hours_all:>11.2f} "
              f"| {seconds:>8.2f} | {hours_all * 3600 / seconds:>10.0f}x |")
    if args.save_folder is None:
        shutil.rmtree(save, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
