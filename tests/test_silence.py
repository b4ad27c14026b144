"""Tests for MADD (amser_sb.core.madd) against a brute-force reference."""

import pytest
import torch

from amser_sb.core.madd import (
    format_intervals,
    intervals_to_mask,
    madd,
    mask_to_intervals,
    parse_intervals,
    sliding_max,
    sliding_max_doubling,
)

SR = 16000


def reference_madd(
    wav, window, factor, abs_floor=1e-4, max_ratio=0.1, clip_level=0.99,
    keep="any_voiced",
):
    """Literal O(T * window) MADD for one unpadded utterance."""
    T = wav.numel()
    if T < window:
        d = float(wav.max() - wav.min())
        peak = float(wav.abs().max())
        kept = d > abs_floor or (clip_level is not None and peak >= clip_level)
        return torch.full((T,), float(kept))
    segs = [wav[i : i + window] for i in range(T - window + 1)]
    d = torch.stack([s.max() - s.min() for s in segs])
    peak = torch.stack([s.abs().max() for s in segs])
    audible = d > abs_floor
    ref = d[audible].min() if audible.any() else float("inf")
    silent = ~audible | (d < factor * ref)
    if max_ratio is not None:
        silent &= ~audible | (d < max_ratio * d.max())
    voiced = ~silent
    if clip_level is not None:
        voiced |= peak >= clip_level
    mask = torch.zeros(T)
    for j in range(T):
        cover = voiced[max(0, j - window + 1) : min(j, T - window) + 1]
        ok = bool(cover.any()) if keep == "any_voiced" else bool(cover.all())
        mask[j] = float(ok)
    return mask


def speechlike(n_sil1=800, n_voice=1600, n_sil2=800, seed=0, noise=1e-3):
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n_voice) / SR
    env = torch.hann_window(n_voice, periodic=False)
    voice = 0.4 * env.clamp(min=0.2) * torch.sin(2 * torch.pi * 150 * t)
    wav = torch.cat([torch.zeros(n_sil1), voice, torch.zeros(n_sil2)])
    return wav + noise * torch.randn(wav.shape, generator=gen)


def test_sliding_max_matches_unfold():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 257, generator=gen)
    for w in (1, 2, 7, 64, 257):
        expected = x.unfold(1, w, 1).amax(dim=2)
        assert torch.equal(sliding_max(x, w), expected)
        assert torch.equal(sliding_max_doubling(x, w), expected)


def test_compiled_madd_equals_eager():
    """Compiled, ``sliding_max`` takes the doubling path: the same mask."""
    wav = torch.stack([speechlike(seed=0), speechlike(seed=1)])
    lens = torch.tensor([1.0, 0.7])
    compiled = torch.compile(madd, backend="aot_eager", fullgraph=True,
                             dynamic=False)
    for keep in ("any_voiced", "all_voiced"):
        _, eager_mask = madd(wav, lens, window=400, keep=keep)
        _, mask = compiled(wav, lens, window=400, keep=keep)
        assert torch.equal(mask, eager_mask)
        assert 0 < int(mask.sum()) < int(eager_mask.numel())


@pytest.mark.parametrize("keep", ["any_voiced", "all_voiced"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_bruteforce_reference(seed, keep):
    wav = speechlike(n_sil1=300 + 50 * seed, n_voice=700, n_sil2=200, seed=seed)
    _, mask = madd(wav, window=64, factor=3.0, keep=keep)
    ref = reference_madd(wav, 64, 3.0, keep=keep)
    assert torch.equal(mask, ref)


def test_known_silences_are_found():
    wav = speechlike()
    processed, mask = madd(wav, window=400, factor=3.0)
    (start, end), = mask_to_intervals(mask)
    # voiced stretch is [800, 2400); voiced wins gives < window of margin
    assert 800 - 400 < start <= 800
    assert 2400 <= end < 2400 + 400
    assert torch.all(processed[mask == 0] == 0)
    assert torch.equal(processed[mask == 1], wav[mask == 1])


def test_all_voiced_rule_erodes_speech_not_silence():
    wav = speechlike()
    _, any_mask = madd(wav, window=400, keep="any_voiced")
    _, all_mask = madd(wav, window=400, keep="all_voiced")
    # every sample kept by all_voiced is kept by any_voiced
    assert torch.all(all_mask <= any_mask)
    assert all_mask.sum() < any_mask.sum()


def test_digital_silence_does_not_disable_detection():
    # exact zeros make min(d) == 0; the paper's threshold would be 0
    wav = speechlike(noise=0.0)
    wav[:800] = 0.0
    wav[2400:] = 0.0
    _, mask = madd(wav, window=400)
    assert mask[:400].sum() == 0 and mask[-400:].sum() == 0
    assert mask[1000:2200].all()


def test_all_silence_is_all_masked():
    _, mask = madd(torch.zeros(4000))
    assert mask.sum() == 0
    gen = torch.Generator().manual_seed(0)
    faint = 1e-5 * torch.randn(4000, generator=gen)  # below abs_floor
    assert madd(faint)[1].sum() == 0


def test_no_silence_keeps_everything():
    t = torch.arange(8000) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t)
    _, mask = madd(tone)
    assert mask.all()
    # without the max_ratio guard the paper's rule marks the tone silent
    _, paper = madd(tone, max_ratio=None)
    assert paper.sum() < mask.sum()


def test_clipping_plateau_is_voiced():
    wav = speechlike()
    wav[1000:2000] = 1.0  # 1000-sample clipped plateau: flat but loud
    _, mask = madd(wav, window=400)
    assert mask[1000:2000].all()
    _, unguarded = madd(wav, window=400, clip_level=None)
    assert unguarded[1000:2000].sum() < 1000


def test_shorter_than_window():
    gen = torch.Generator().manual_seed(0)
    short = 0.2 * torch.randn(100, generator=gen)
    _, mask = madd(short, window=400)
    assert mask.all()
    assert madd(torch.zeros(100), window=400)[1].sum() == 0


def test_padding_never_counts_and_is_masked():
    a = speechlike(seed=3)
    b = speechlike(n_sil1=2000, n_voice=3000, n_sil2=1000, seed=4)
    batch = torch.zeros(2, b.numel())
    batch[0, : a.numel()] = a
    batch[1] = b
    lens = torch.tensor([a.numel() / b.numel(), 1.0])
    processed, mask = madd(batch, lens)
    _, alone = madd(a)
    assert torch.equal(mask[0, : a.numel()], alone)
    assert mask[0, a.numel() :].sum() == 0
    # loud garbage in the padding region changes nothing
    batch[0, a.numel() :] = 0.9
    _, mask2 = madd(batch, lens)
    assert torch.equal(mask, mask2)


def test_batch_with_short_and_long_rows():
    long = speechlike()
    batch = torch.zeros(2, long.numel())
    batch[0] = long
    batch[1, :50] = 0.3 * torch.sin(torch.arange(50.0))  # audible, short
    lens = torch.tensor([1.0, 50 / long.numel()])
    _, mask = madd(batch, lens)
    assert torch.equal(mask[0], madd(long)[1])
    assert mask[1, :50].all() and mask[1, 50:].sum() == 0


def test_interval_round_trip():
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(500, generator=gen) > 0.5).float()
    iv = mask_to_intervals(mask)
    assert torch.equal(intervals_to_mask(iv, 500), mask)
    assert parse_intervals(format_intervals(iv)) == iv
    assert mask_to_intervals(torch.zeros(5)) == []
    assert mask_to_intervals(torch.ones(5)) == [(0, 5)]


def test_parse_intervals_rejects_malformed():
    with pytest.raises(ValueError, match="start:end"):
        parse_intervals("0-1600")
    with pytest.raises(ValueError, match="ends before"):
        parse_intervals("10:5")


def test_bad_arguments():
    with pytest.raises(ValueError, match="keep"):
        madd(torch.zeros(10), keep="maybe")
    with pytest.raises(ValueError, match="batch, time"):
        madd(torch.zeros(1, 2, 3))
