"""Spiking transformers: spike-driven property (hooks on real forward passes), RepConv fusion, attention algebra,
operation counts, training of the tiny configurations on a synthetic image task, and bad input."""

import time

import pytest
import torch
from torch import nn

from spikelib.hardware.energy import EnergyCounter, measure
from spikelib.layers.multistep import SeqConvBN
from spikelib.layers.repconv import RepConv
from spikelib.layers.residual_mlp import ResidualSpikingMLP
from spikelib.layers.spike_attention import SpikeDrivenAttentionV1, SpikeDrivenAttentionV2, SpikingMLP2d
from spikelib.models import get_model
from spikelib.neurons.lif import LIF

TINY = {
    "meta_spikeformer_tiny_test (v2 attention)": ("meta_spikeformer_tiny_test", {}),
    "meta_spikeformer_tiny_test (v1 attention)": ("meta_spikeformer_tiny_test", {"attention": "v1"}),
    "maxformer_tiny_test (max embedding)": ("maxformer_tiny_test", {}),
    "maxformer_tiny_test (conv embedding)": ("maxformer_tiny_test", {"embedding": "conv"}),
}


def _is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def _spike_input_modules(model: nn.Module):
    """Every convolution declared spike-driven, and the attention/MLP modules (whose inputs are spikes after their
    first neuron)."""
    for name, m in model.named_modules():
        if isinstance(m, (SeqConvBN, RepConv)) and m.spike_input:
            yield name, m


@pytest.mark.parametrize("label", list(TINY))
def test_spike_driven_inputs_are_binary(label):
    name, kw = TINY[label]
    model = get_model(name, **kw).train()
    seen, bad = {}, []

    def check(tag):
        def hook(mod, args, out=None):
            t = args[0] if out is None else out
            seen[tag] = seen.get(tag, 0) + 1
            if not _is_binary(t):
                bad.append(tag)
        return hook

    handles = [m.register_forward_pre_hook(check(n)) for n, m in _spike_input_modules(model)]
    for n, m in model.named_modules():
        if isinstance(m, (SpikeDrivenAttentionV1, SpikeDrivenAttentionV2)):
            # the operands of the attention products: outputs of the Q, K, V and attention neurons
            for lif_name in ("q_lif", "k_lif", "v_lif", "attn_lif", "talking_heads_lif"):
                if hasattr(m, lif_name):
                    handles.append(getattr(m, lif_name).register_forward_hook(check(f"{n}.{lif_name}")))
    model(torch.rand(2, 3, 32, 32) * 3)
    for h in handles:
        h.remove()
    n_attn = sum(isinstance(m, (SpikeDrivenAttentionV1, SpikeDrivenAttentionV2)) for m in model.modules())
    n_mlp = sum(isinstance(m, (SpikingMLP2d, ResidualSpikingMLP)) for m in model.modules())
    print(f"\n{label}: {len(seen)} spike-driven inputs checked ({n_attn} attention, {n_mlp} MLP blocks), "
          f"non-binary: {len(bad)}")
    assert n_attn >= 1 and n_mlp >= 1 and len(seen) > 10
    assert not bad, f"non-binary spike-driven inputs: {bad}"
    # the only real-valued convolution inputs are declared as such: the image encoder and post-depthwise 1x1s
    real = [n for n, m in model.named_modules() if isinstance(m, (SeqConvBN, RepConv)) and not m.spike_input]
    assert all("features.0" in n or "pw2" in n for n in real), real


def _randomise_bn(module: nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen, dtype=m.running_mean.dtype))
            m.running_var.copy_(torch.rand(c, generator=gen, dtype=m.running_var.dtype) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(c, generator=gen, dtype=m.weight.dtype))
            m.bias.data.copy_(torch.randn(c, generator=gen, dtype=m.bias.dtype))


@pytest.mark.parametrize("post_bn", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_repconv_fused_equals_training_form(post_bn, dtype):
    g = torch.Generator().manual_seed(1)
    rc = RepConv(6, 10, post_bn=post_bn).to(dtype)
    _randomise_bn(rc, g)
    rc.eval()
    x_spk = (torch.rand(2, 3, 6, 9, 7, generator=g) < 0.3).to(dtype)
    x_real = torch.randn(2, 3, 6, 9, 7, generator=g, dtype=dtype)
    with torch.no_grad():
        ref = [rc(x_spk), rc(x_real)]
        rc.fuse()
        fused = [rc(x_spk), rc(x_real)]
    err = max(float((a - b).abs().max()) for a, b in zip(ref, fused))
    print(f"\nRepConv fused vs training form ({dtype}, post_bn={post_bn}): max abs error {err:.3g}")
    assert fused[0].shape == (2, 3, 10, 9, 7)
    assert err < (1e-4 if dtype == torch.float32 else 1e-10)


def test_repconv_pads_with_bn1_zero_value_and_passes_the_gradient_to_the_inside_only():
    """The reference's ``BNAndPadLayer``: the border holds ``BN1(0)`` from the running statistics (no gradient), the
    inside is BN1's output unchanged."""
    g = torch.Generator().manual_seed(4)
    rc = RepConv(5, 7)
    _randomise_bn(rc, g)
    y = torch.randn(3, 5, 4, 6, generator=g, requires_grad=True)
    padded = rc._pad_with_bn_zero(y)
    with torch.no_grad():
        bn = rc.bn1  # BNAndPadLayer's expression (BICLab/Spike-Driven-Transformer-V2 classification/models.py)
        t = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    border = torch.ones(6, 8, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert padded.shape == (3, 5, 6, 8) and padded.is_contiguous()
    assert torch.equal(padded[:, :, 1:-1, 1:-1], y)
    assert torch.equal(padded[:, :, border], t.view(1, 5, 1).expand(3, 5, int(border.sum())))
    grad = torch.randn(padded.shape, generator=g)
    padded.backward(grad)
    assert torch.equal(y.grad, grad[:, :, 1:-1, 1:-1])
    assert rc.bn1.weight.grad is None and rc.bn1.bias.grad is None


def test_fusing_every_repconv_keeps_the_model_output():
    g = torch.Generator().manual_seed(2)
    model = get_model("meta_spikeformer_tiny_test").to(torch.float64)
    _randomise_bn(model, g)
    model.eval()
    x = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64) * 3
    with torch.no_grad():
        ref = model(x)
        n = sum(1 for m in model.modules() if isinstance(m, RepConv) and m.fuse() is m)
        out = model(x)
    assert n == 8  # Q, K, V and projection in each of the two transformer blocks
    assert torch.allclose(out, ref, atol=1e-9), float((out - ref).abs().max())


def test_sdsa3_equals_the_explicit_attention():
    """``Q (K^T V)`` (linear in N) equals ``(Q K^T) V``; spikes of all attention neurons as a reference computes."""
    torch.manual_seed(3)
    attn = SpikeDrivenAttentionV2(8, num_heads=2, qkv="conv1x1")
    x = torch.randn(2, 3, 8, 4, 4) * 2
    got = {}
    attn.attn_lif.register_forward_pre_hook(lambda m, a: got.__setitem__("pre", a[0].detach().clone()))
    for n in ("q", "k", "v"):
        getattr(attn, f"{n}_lif").register_forward_hook(lambda m, a, o, n=n: got.__setitem__(n, o.detach()))
    attn(x)
    T, B, C, H, W = x.shape
    heads = lambda s: s.flatten(3).reshape(T, B, 2, 4, H * W).transpose(-1, -2)  # noqa: E731
    q, k, v = heads(got["q"]), heads(got["k"]), heads(got["v"])
    expl = ((q @ k.transpose(-1, -2)) @ v) * 0.125  # [T, B, h, N, d]
    expl = expl.transpose(-1, -2).reshape(T, B, C, H, W)
    assert torch.allclose(got["pre"], expl, atol=1e-5)
    assert attn.attn_lif.v_threshold == 0.5


def test_sdsa_v1_is_hadamard_and_column_sum():
    torch.manual_seed(4)
    attn = SpikeDrivenAttentionV1(8, num_heads=2)
    x = torch.randn(1, 2, 8, 3, 3) * 2
    got = {}
    attn.talking_heads_lif.register_forward_pre_hook(lambda m, a: got.__setitem__("colsum", a[0].detach()))
    attn.k_lif.register_forward_hook(lambda m, a, o: got.__setitem__("k", o.detach()))
    attn.v_lif.register_forward_hook(lambda m, a, o: got.__setitem__("v", o.detach()))
    attn(x)
    expect = (got["k"] * got["v"]).flatten(3).reshape(1, 2, 2, 4, 9).sum(-1)  # per head, per channel: sum over tokens
    assert torch.equal(got["colsum"][..., 0, :], expect)
    counts = measure(attn, [x], prepare=lambda b: (b, 2))
    assert counts.layer("column_sum").sops == int(torch.count_nonzero(got["k"] * got["v"]))


def test_neurons_have_the_reference_settings():
    model = get_model("maxformer_tiny_test")
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert lifs
    for m in lifs:
        c = m.config
        assert (m.tau_value(), c.v_reset, c.reset, c.decay_input, c.detach_reset) == (2.0, 0.0, "hard", True, True)
        assert c.surrogate.name == "sigmoid" and c.surrogate.alpha == 4.0
        assert m.v_threshold in (1.0, 0.5)
    assert sum(m.v_threshold == 0.5 for m in lifs) == 1  # one attention block


def test_op_counts():
    model = get_model("meta_spikeformer_tiny_test")  # training mode: batch statistics make the fresh model fire
    with EnergyCounter(model) as counter:
        model(torch.rand(2, 3, 32, 32))
    counts = counter.counts(samples=2)
    first = counts.layer("features.0.conv.conv")
    # the encoder's real-valued 7x7 conv (stride 2, padding 3): all MACs, over T * B = 4 samples; zero-padding taps
    # are not synapses, so the count is the all-ones convolution's sum, not 16 * 16 * 3 * 49 per output channel
    conv = model.features[0].conv.conv
    ones = torch.nn.functional.conv2d(torch.ones(1, 3, 32, 32), torch.ones(8, 3, 7, 7), stride=conv.stride,
                                      padding=conv.padding)
    assert first.macs == 4 * int(ones.sum()) and first.sops == 0
    assert first.macs < 4 * 8 * 16 * 16 * 3 * 49
    assert counts.total("sops") > 0 and counts.total("macs") >= first.macs


def _quadrant_task(n: int, gen: torch.Generator):
    """4 classes: which quadrant of a noisy 32x32 image is bright."""
    y = torch.randint(0, 4, (n,), generator=gen)
    x = 0.3 * torch.rand(n, 3, 32, 32, generator=gen)
    for i in range(n):
        r, c = divmod(int(y[i]), 2)
        x[i, :, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] += 0.7
    return x, y


@pytest.mark.parametrize("name,steps,lr", [("meta_spikeformer_tiny_test", 100, 2e-2), ("maxformer_tiny_test", 60, 1e-2)])
def test_tiny_models_learn_a_synthetic_image_task(name, steps, lr):
    # Meta-SpikeFormer's head reads the spikes of a neuron on the pooled features (as the reference; few fire at
    # initialisation), which needs the larger learning rate to learn within 100 steps
    g = torch.Generator().manual_seed(0)
    xtr, ytr = _quadrant_task(256, g)
    xte, yte = _quadrant_task(128, g)
    torch.manual_seed(0)
    model = get_model(name, num_classes=4)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0, losses = time.perf_counter(), []
    for _ in range(steps):
        idx = torch.randint(0, 256, (32,), generator=g)
        loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # so few steps are too few for BN's running averages (momentum 0.1, from running_var = 1) to forget their start with
    # the reference's small conv init; re-estimate them (cumulative average over the training set) before eval
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        for i in range(0, 256, 64):
            model(xtr[i:i + 64])
    model.eval()
    with torch.no_grad():
        acc = float((model(xte).argmax(1) == yte).float().mean())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"\n{name}: loss {first:.3f} -> {last:.3f}, test accuracy {acc:.3f} (chance 0.25), "
          f"{time.perf_counter() - t0:.1f} s")
    assert last < 0.7 * first
    assert acc > 0.6


@pytest.mark.parametrize("name", ["meta_spikeformer_tiny_test", "maxformer_tiny_test"])
def test_bad_input(name):
    model = get_model(name)
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(2, 1, 4, 32, 32))
    with pytest.raises(ValueError, match="T"):
        model(torch.rand(0, 1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        model(torch.rand(3, 32, 32))
    for T in (0, -1, 1.5):
        with pytest.raises(ValueError, match="T"):
            get_model(name, T=T)


def test_bad_configuration():
    with pytest.raises(ValueError, match="num_heads"):
        SpikeDrivenAttentionV2(10, num_heads=3)
    with pytest.raises(ValueError, match="qkv"):
        SpikeDrivenAttentionV2(8, num_heads=2, qkv="linear")
    with pytest.raises(ValueError, match="embedding"):
        get_model("maxformer_tiny_test", embedding="avg")
    with pytest.raises(ValueError, match="kernel_size"):
        get_model("maxformer_tiny_test", mixer_kernels=(9, 5))
    with pytest.raises(ValueError, match="attention"):
        get_model("meta_spikeformer_tiny_test", attention="v3")
