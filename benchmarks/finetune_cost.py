#!/usr/bin/env python3
"""Cost of one training epoch: frozen cache, top-k layers, full fine-tune.

A random wav2vec2-base-sized encoder (12 layers of 768, the architecture
of ``facebook/wav2vec2-base``; random weights, same compute) with layer
weights, a mean-pool + linear head and SGD, on random 16 kHz clips, CPU,
float32. For each configuration it runs a first epoch (which fills the
feature cache where there is one) and then times a second, steady epoch:

* ``frozen + cache``: the paper's frozen encoder, all hidden states read
  from the feature cache (``use_feature_cache``);
* ``top-k + cache``: ``--freeze_ssl=False --ssl_finetune_layers=k``, hidden
  states ``0 .. L-k`` read from the cache, the top ``k`` layers run
  forward and backward;
* ``top-1, no cache``: the frozen lower part run live (no gradients);
* ``full fine-tune``: ``--freeze_ssl=False`` (the whole encoder).

Prints seconds per epoch and the ratio to the full fine-tune, measured in
one run.

Usage::

    python benchmarks/finetune_cost.py [--clips 8] [--seconds 4]
        [--batch 4] [--threads 2] [--size base]

Authors
 * amser-sb contributors
"""

import argparse
import tempfile
import time

import torch

from amser_sb.training.feature_cache import FeatureCache
from amser_sb.lobes import SSLBackbone
from amser_sb.lobes.encoder_registry import hf_config_dict
from amser_sb.lobes.wav2vec2 import wav2vec2_config


def build(size, **kwargs):
    """The encoder (random weights of a ``size`` wav2vec2) and a head."""
    torch.manual_seed(0)
    config = hf_config_dict(wav2vec2_config(size, "group"))
    enc = SSLBackbone(config=config, normalize=True, layer_weights=True,
                      **kwargs)
    head = torch.nn.Linear(enc.out_dim, 4)
    return enc, head


def epoch(enc, head, clips, batch, cache=None, key_file=None):
    """One training epoch; seconds of wall time."""
    params = [p for p in list(enc.parameters()) + list(head.parameters())
              if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4)
    enc.train()
    start = time.perf_counter()
    for first in range(0, len(clips), batch):
        sigs = clips[first : first + batch]
        if cache is not None:
            index = list(range(first, first + len(sigs)))
            lower, lens = cache.features(
                sigs, [key_file] * len(sigs), index,
                [i + 1 for i in index],
            )
            feats = enc.from_cache(lower, lens)
        else:
            feats, _ = enc(torch.stack(sigs), None)
        loss = torch.log_softmax(head(feats.mean(1)), -1)[:, 0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="base", choices=["base", "tiny"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    samples = int(args.seconds * 16000)
    clips = [0.1 * torch.randn(samples, generator=gen)
             for _ in range(args.clips)]
    configs = [
        ("frozen + cache", dict(freeze=True), True),
        ("top-1 + cache", dict(freeze=False, finetune_layers=1), True),
        ("top-2 + cache", dict(freeze=False, finetune_layers=2), True),
        ("top-1, no cache", dict(freeze=False, finetune_layers=1), False),
        ("full fine-tune", dict(freeze=False), False),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        key_file = f"{work}/audio.wav"
        with open(key_file, "wb") as handle:
            handle.write(b"RIFF")
        for name, kwargs, cached in configs:
            enc, head = build(args.size, **kwargs)
            cache = None
            if cached:
                cache = FeatureCache(f"{work}/cache", enc, "float16")
            first = epoch(enc, head, clips, args.batch, cache, key_file)
            steady = epoch(enc, head, clips, args.batch, cache, key_file)
            rows.append((name, first, steady))
            print(f"  {name}: epoch 1 {first:.2f} s, epoch 2 {steady:.2f} s",
                  flush=True)
    full = rows[-1][2]
    print(f"\n{args.clips} clips of {args.seconds:g} s, batch {args.batch}, "
          f"random wav2vec2-{args.size}, layer weights, CPU "
          f"{args.threads} threads")
    print("| configuration | epoch 1 (s) | later epochs (s) | vs full FT |")
    print("|---|---|---|---|")
    for name, first, steady in rows:
        print(f"| {name} | {first:.2f} | {steady:.2f} | "
              f"{steady / full:.3f} |")


if __name__ == "__main__":
    main()
