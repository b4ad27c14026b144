"""Tests of AM-ResNet: lengths, padding invariance, silence, gradients."""

import pytest
import torch
import torch.nn.functional as F

from amser_sb.lobes import AMResNet, MaskResBlock, VoicedAttention
from amser_sb.core.madd import madd


def speechlike(n, seed, silence=None):
    """Tone bursts in faint noise; ``silence=(a, b)`` zeroes samples a:b."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    f0 = 120 + 80 * torch.rand(1, generator=gen)
    wav = (
        0.3
        * torch.sin(2 * torch.pi * f0 * t)
        * (torch.sin(2 * torch.pi * 3 * t) > 0)
    )
    wav = wav + 1e-3 * torch.randn(n, generator=gen)
    if silence is not None:
        wav[silence[0] : silence[1]] = 0
    return wav


def pad_batch(wavs):
    """Zero-pad 1-D waveforms into ``[batch, time]`` + relative lengths."""
    time = max(len(w) for w in wavs)
    batch = torch.stack([F.pad(w, (0, time - len(w))) for w in wavs])
    lens = torch.tensor([len(w) / time for w in wavs])
    return batch, lens


def small_resnet(**kwargs):
    torch.manual_seed(0)
    return AMResNet(channels=16, **kwargs)


def randomise_bn(model):
    """Non-trivial running statistics so eval-mode BN shifts zeros."""
    gen = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen))
            mod.running_var.copy_(
                1 + torch.rand(mod.num_features, generator=gen)
            )
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=gen))
    return model


@pytest.mark.parametrize("n", [1, 7, 319, 320, 321, 4000, 16001])
def test_output_lengths_match_shapes(n):
    model = small_resnet().eval()
    feats, lens = model(speechlike(n, 0).unsqueeze(0))
    expected = int(model.output_lengths(torch.tensor([n]))[0])
    assert feats.shape == (1, expected, 16)
    assert lens.tolist() == [1.0]


def test_total_stride_is_320():
    model = AMResNet()
    n = torch.tensor([64000, 32000, 16000])
    assert model.output_lengths(n).tolist() == [201, 101, 51]


@pytest.mark.parametrize(
    "options",
    [{}, {"use_attention": False}, {"use_mask": False, "use_attention": False}],
    ids=["AM-ResNet", "M-ResNet", "ResNet"],
)
def test_padding_invariance(options):
    model = randomise_bn(small_resnet(**options)).eval()
    wavs = [
        speechlike(3000, 1, silence=(1000, 2000)),
        speechlike(9001, 2),
        speechlike(16000, 3, silence=(0, 3000)),
    ]
    batch, lens = pad_batch(wavs)
    with torch.no_grad():
        feats, feat_lens = model(batch, lens)
        for i, wav in enumerate(wavs):
            alone, _ = model(wav.unsqueeze(0))
            n = alone.shape[1]
            assert round(float(feat_lens[i]) * feats.shape[1]) == n
            diff = (feats[i, :n] - alone[0]).abs().max()
            assert diff < 1e-4
            assert torch.all(feats[i, n:] == 0)


def test_given_mask_equals_madd_mask():
    model = small_resnet().eval()
    batch, lens = pad_batch(
        [speechlike(8000, 4, (2000, 5000)), speechlike(12000, 5)]
    )
    _, mask = madd(batch, lens)
    with torch.no_grad():
        auto, _ = model(batch, lens)
        given, _ = model(batch, lens, mask=mask)
    assert torch.equal(auto, given)


def test_mask_shape_is_checked():
    model = small_resnet()
    with pytest.raises(ValueError, match="mask shape"):
        model(torch.zeros(2, 800), mask=torch.ones(2, 400))
    with pytest.raises(ValueError, match="batch, time"):
        model(torch.zeros(2, 1, 800))


def receptive_fields(convs, n_out):
    """Input sample interval ``[lo, hi]`` of each output frame."""
    lo = torch.arange(n_out)
    hi = torch.arange(n_out)
    for conv in reversed(convs):
        k, s, p = conv.kernel_size, conv.stride, conv.padding
        lo, hi = lo * s - p, hi * s - p + k - 1
    return lo, hi


def all_masked_frames(voiced, n_valid, lo, hi):
    """Frames whose receptive field holds no kept sample (vectorised)."""
    ones = torch.cat([torch.zeros(1), voiced[:n_valid].cumsum(0)])
    a = lo.clamp(0, n_valid)
    z = (hi + 1).clamp(0, n_valid)
    return (ones[z] - ones[a]) == 0


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_silence_stays_exactly_zero_after_every_block(train):
    model = randomise_bn(small_resnet(use_mask=True))
    model.train(train)
    wavs = [speechlike(48000, 6, silence=(8000, 40000)), speechlike(9000, 7)]
    batch, lens = pad_batch(wavs)
    sample_mask = model.input_mask(batch, lens).unsqueeze(1)
    n_samples = torch.tensor([len(w) for w in wavs])
    convs = [model.stem]
    x, m, n = model.stem(
        batch.unsqueeze(1) * sample_mask, sample_mask, n_samples
    )
    x = x * m
    for block in model.blocks:
        x, m, n = block(x, m, n)
        convs += [block.conv1, block.conv2]
        lo, hi = receptive_fields(convs, x.shape[-1])
        for b, wav in enumerate(wavs):
            silent = all_masked_frames(sample_mask[b, 0], len(wav), lo, hi)
            assert torch.all(x[b][:, silent] == 0)
            assert torch.all(x[b, :, int(n[b]) :] == 0)
            if b == 0:
                assert int(silent.sum()) > 0
    # The final BN / attention are per frame: silent frames stay 0 too.
    feats, _ = model(batch, lens)
    silent = all_masked_frames(sample_mask[0, 0], len(wavs[0]), lo, hi)
    assert 50 < int(silent.sum()) < 100
    assert torch.all(feats[0][silent] == 0)
    assert torch.all(feats[0][~silent[: feats.shape[1]]].abs().sum(-1) > 0)


def test_plain_resnet_lets_silence_through():
    """The ResNet ablation does not mask silence: BN shifts it off zero."""
    wav = speechlike(48000, 8, silence=(8000, 40000)).unsqueeze(0)
    with torch.no_grad():
        masked, _ = randomise_bn(small_resnet()).eval()(wav)
        plain, _ = randomise_bn(small_resnet(use_mask=False)).eval()(wav)
    assert torch.all(masked[0, 60:80] == 0)
    assert torch.all(plain[0, 60:80].abs().sum(-1) > 0)


def test_block_shapes_and_shortcut():
    same = MaskResBlock(16, 16, stride=1)
    assert same.shortcut is None
    down = MaskResBlock(16, 32, stride=4)
    x = torch.randn(3, 16, 101)
    y, m, n = down(x, torch.ones(3, 1, 101))
    assert y.shape == (3, 32, 26) and m.shape == (3, 1, 26)
    assert n.tolist() == [26, 26, 26]


def test_attention_weights():
    model = small_resnet().eval()
    wav = speechlike(8000, 9, silence=(2000, 6000)).unsqueeze(0)
    feats, _, weights = model(wav, return_weights=True)
    assert weights.shape == feats.shape[:2]
    assert torch.all((weights > 0) & (weights < 1))
    att = VoicedAttention(16)
    out, w = att(torch.zeros(1, 16, 5))
    assert torch.all(out == 0) and w.shape == (1, 1, 5)
    no_att = small_resnet(use_attention=False).eval()
    assert no_att.attention is None
    _, _, ones = no_att(wav, return_weights=True)
    assert torch.all(ones == 1)


@pytest.mark.parametrize("kernel", [1, 3])
def test_planar_attention_equals_its_convolution(kernel):
    """Kernel 1 runs as a weighted channel sum: the convolution's values
    and gradients within float rounding."""
    torch.manual_seed(0)
    att = VoicedAttention(64, kernel)
    x = torch.randn(2, 64, 300, requires_grad=True)
    out, w = att(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *att.parameters()])
    planar, w_planar = att.forward_planar(x.unsqueeze(2))
    planar_grads = torch.autograd.grad(planar.square().sum(),
                                       [x, *att.parameters()])
    assert (planar.squeeze(2) - out).abs().max() < 1e-6
    assert (w_planar.squeeze(2) - w).abs().max() < 1e-6
    for a, b in zip(planar_grads, grads):
        # float rounding of sums over 600 frames: relative to the largest
        # gradient (its order depends on the thread count)
        scale = float(b.abs().max())
        assert torch.allclose(a, b, atol=1e-6 * scale + 1e-6, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x16 = F.conv1d(x.detach(), torch.eye(64).unsqueeze(-1))  # bf16
        out16, w16 = att.forward_planar(x16.unsqueeze(2))
        ref16 = att(x16)[0]
    assert out16.dtype == w16.dtype == ref16.dtype == torch.bfloat16


@pytest.mark.parametrize("use_attention", [True, False])
def test_gradients_reach_every_parameter(use_attention):
    model = small_resnet(use_attention=use_attention).train()
    batch, lens = pad_batch(
        [speechlike(6000, 10, (1000, 3000)), speechlike(9000, 11)]
    )
    feats, feat_lens = model(batch, lens)
    (feats**2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_default_configuration_is_cheap():
    model = AMResNet()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 400_000
    assert [b.conv1.stride for b in model.blocks] == [4, 1, 4, 1, 4, 1]
    assert all(b.conv1.kernel_size == 7 for b in model.blocks)


@pytest.mark.parametrize("seed", range(4))
def test_padding_invariance_random_lengths(seed):
    """Property: any lengths, any batch order, features of valid frames
    equal those of the waveform alone; padding frames are exactly 0."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 12000, (4,), generator=gen).tolist()
    model = randomise_bn(small_resnet()).eval()
    wavs = [speechlike(n, seed * 10 + i) for i, n in enumerate(lengths)]
    batch, lens = pad_batch(wavs)
    with torch.no_grad():
        feats, feat_lens = model(batch, lens)
        for i, wav in enumerate(wavs):
            alone, _ = model(wav.unsqueeze(0))
            n = alone.shape[1]
            assert round(float(feat_lens[i]) * feats.shape[1]) == n
            assert (feats[i, :n] - alone[0]).abs().max() < 1e-4
            assert torch.all(feats[i, n:] == 0)


def _reference_am_resnet(model, wavs, lens):
    """AM-ResNet as it ran before issue 18: 1-D convolutions, the trunk
    cut by lengths from the convolution arithmetic at every layer."""
    from speechbrain.dataio.dataio import length_to_mask

    def trunk(conv, mask, n):
        pooled = F.max_pool1d(mask, conv.kernel_size, conv.stride,
                              conv.padding)
        n = conv.output_lengths(n)
        return pooled * length_to_mask(n, pooled.shape[-1]).unsqueeze(1), n

    time = wavs.shape[1]
    n = torch.round(lens * time).long()
    padding = length_to_mask(n, time).unsqueeze(1)
    mask = madd(wavs, lens)[1].unsqueeze(1) * padding
    m, n = trunk(model.stem, mask, n)
    x = model.stem.conv(wavs.unsqueeze(1) * mask) * m
    for block in model.blocks:
        act = F.relu(block.norm1(x) * m)
        m1, n = trunk(block.conv1, m, n)
        h = F.relu(block.norm2(block.conv1.conv(act)) * m1)
        m2, n = trunk(block.conv2, m1, n)
        h = block.conv2.conv(h)
        short = x if block.shortcut is None else block.shortcut(
            act[..., :: block.conv1.stride])
        x, m = (h + short) * m2, m2
    x = F.relu(model.norm(x) * m)
    x, _ = model.attention(x)
    return x.transpose(1, 2), n.float() / x.shape[-1]


@pytest.mark.parametrize("train", [False, True])
def test_planar_network_equals_the_1d_reference(train):
    """Values, lengths, gradients and BN statistics as before issue 18."""
    gen = torch.Generator().manual_seed(5)
    wavs = torch.stack([speechlike(9000, i, (2000, 4000)) for i in range(3)])
    lens = torch.tensor([1.0, 0.61, 0.23])
    wavs = wavs * (torch.arange(9000) < (lens * 9000).unsqueeze(1))
    new_model = randomise_bn(small_resnet()).train(train)
    ref_model = randomise_bn(small_resnet()).train(train)
    for param in ref_model.parameters():
        param.data.normal_(0, 0.2, generator=gen)
    new_model.load_state_dict(ref_model.state_dict())
    feats, feat_lens = new_model(wavs, lens)
    ref, ref_lens = _reference_am_resnet(ref_model, wavs, lens)
    assert torch.equal(feat_lens, ref_lens)
    assert torch.allclose(feats, ref, atol=1e-5, rtol=1e-4)
    feats.square().sum().backward()
    ref.square().sum().backward()
    for (name, a), b in zip(new_model.named_parameters(),
                            ref_model.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-3), name
    for (name, a), b in zip(new_model.named_buffers(), ref_model.buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


@pytest.mark.parametrize("n", [1, 9, 10, 11, 333, 4001])
def test_valid_masks_match_the_length_arithmetic(n):
    from amser_sb.lobes.masked_ops import subsample_valid

    model = small_resnet()
    valid = (torch.arange(4001) < n).float()
    lengths = torch.tensor(n)
    for conv in [model.stem] + [c for b in model.blocks
                                for c in (b.conv1, b.conv2)]:
        valid = subsample_valid(valid, conv.kernel_size, conv.stride,
                                conv.padding)
        lengths = conv.output_lengths(lengths)
        assert int(valid.sum()) == int(lengths)
        assert bool((valid[: int(lengths)] == 1).all())


def test_channels_last_and_float32_options_keep_results():
    wavs = torch.stack([speechlike(6000, i) for i in range(2)])
    lens = torch.tensor([1.0, 0.7])
    base = small_resnet().eval()
    other = small_resnet(channels_last=True, float32=True).eval()
    with torch.no_grad():
        ref, _ = base(wavs, lens)
        out, _ = other(wavs, lens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fp32, _ = other(wavs, lens)
    assert torch.allclose(out, ref, atol=1e-6)
    assert fp32.dtype == torch.float32
    assert torch.allclose(fp32, ref, atol=1e-6)
