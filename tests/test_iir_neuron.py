"""The IIR-SNN neuron (SayeedChowdhury/IIR-SNN, vgg_spiking_bnfused_biasyes.py) as options of the LIF machinery:
``leak`` charge, ``fire="ratio"`` and the damped piecewise-linear surrogate. Proofs: a small re-implementation of the
reference's forward and ``LinearSpike`` backward, written here, equals every backend (torch reference, numba kernels,
the CUDA template compiled as host C++) on spikes and membrane exactly and on the gradients of input, leak and
threshold (per layer and per neuron); every backend equals the torch reference over all reset/detach/decay/fire
combinations; float64 gradcheck of the membrane; the module trains leak and threshold and projects leak onto <= 1."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikelib
from spikelib.functional.lif import lif, resolve_lif_config
from spikelib.kernels import available_backends, backend_calls, reset_backend_calls
from spikelib.kernels.cupy.backend import multistep, variant_key
from spikelib.kernels.cupy.emulation import HostLauncher, find_host_compiler
from spikelib.kernels.cupy.neurons import lif_model
from spikelib.surrogate import PiecewiseLinear

CPU = [b for b in available_backends("lif") if b != "cupy"]
HAVE_CXX = find_host_compiler() is not None
TOL = {torch.float32: 3e-5, torch.float64: 1e-11}


class _LinearSpike(torch.autograd.Function):
    """The reference's surrogate: forward ``input > 0``, backward ``0.3 * F.threshold(1 - |input|, 0, 0)``."""

    @staticmethod
    def forward(ctx, inp):
        ctx.save_for_backward(inp)
        out = torch.zeros_like(inp)
        out[inp > 0] = 1.0
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (inp,) = ctx.saved_tensors
        return 0.3 * F.threshold(1.0 - torch.abs(inp), 0, 0) * grad_output.clone()


def _reference_layer(delta, leak, threshold):
    """One spiking layer of ``VGG_SNN_STDB.forward`` over time: ``delta[t]`` is the layer's ``W x`` at step t."""
    mem = torch.zeros_like(delta[0])
    spikes, trace = [], []
    for t in range(delta.shape[0]):
        mem = leak * mem + delta[t]
        mem_thr = (mem / threshold) - 1.0
        rst = threshold * (mem_thr > 0).float().to(mem.dtype)
        mem = mem - rst
        spikes.append(_LinearSpike.apply(mem_thr))
        trace.append(mem)
    return torch.stack(spikes), torch.stack(trace)


def _iir_config():
    return resolve_lif_config("soft", None, True, 0.0, PiecewiseLinear(0.3), decay="leak", fire="ratio")


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    if not HAVE_CXX:
        pytest.skip("needs a C++ compiler (g++)")
    keys = []
    for reset, detach, decay, sur in itertools.product(["hard", "soft"], [False, True], ["tau", "leak"],
                                                        ["atan", "piecewise_linear"]):
        c = resolve_lif_config(reset, None, detach, 0.0, sur, decay)
        keys.append(variant_key(lif_model(c.decay, c.decay_input), c, torch.float32))
    return HostLauncher(keys, tmp_path_factory.mktemp("slk_iir"), blocks=3, threads=5)


def _backends():
    return CPU + (["cupy-emulated"] if HAVE_CXX else [])


def _run(backend, x, decay, vth, config, launcher=None, v0=None):
    v0 = torch.full_like(x[0], config.v_reset) if v0 is None else v0
    if backend == "cupy-emulated":
        reset_backend_calls()
        out = multistep(x, v0, decay, vth, config, True, launcher=launcher)
        assert backend_calls()["cupy_kernels/host/forward"] == 1
        return out
    c = config
    reset_backend_calls()
    out = lif(x, v0, v_threshold=vth, v_reset=c.v_reset, reset=c.reset, decay_input=c.decay_input,
              detach_reset=c.detach_reset, surrogate=c.surrogate, fire=c.fire, return_membrane=True, backend=backend,
              **({"leak": decay} if c.decay == "leak" else {"tau": decay}))
    assert backend_calls("lif") == {backend: 1}, "the intended backend did not run"
    return out.spikes, out.membrane, out.state.v


@pytest.mark.parametrize("backend,dtype", [(b, d) for b in _backends() for d in (torch.float32, torch.float64)
                                           if b != "cupy-emulated" or d == torch.float32])  # CUDA: float32 math
@pytest.mark.parametrize("per_neuron", [False, True])
def test_every_backend_equals_the_reference_code(backend, per_neuron, dtype, request):
    launcher = request.getfixturevalue("launcher") if backend == "cupy-emulated" else None
    T, B, N = 13, 4, 9
    delta = (torch.rand(T, B, N, dtype=dtype) * 1.2 - 0.2)
    shape = (N,) if per_neuron else ()
    leak0 = (torch.rand(shape, dtype=dtype) * 0.3 + 0.7) if per_neuron else torch.tensor(0.9, dtype=dtype)
    vth0 = (torch.rand(shape, dtype=dtype) * 0.4 + 0.6) if per_neuron else torch.tensor(0.8, dtype=dtype)
    weight = torch.randn(T, B, N, dtype=dtype)
    wm = torch.randn(T, B, N, dtype=dtype)

    def grads(fn):
        x = delta.clone().requires_grad_(True)
        leak = leak0.clone().requires_grad_(True)
        vth = vth0.clone().requires_grad_(True)
        s, m = fn(x, leak, vth)
        loss = (s * weight).sum() + (m * wm).sum()
        return (s.detach(), m.detach()), torch.autograd.grad(loss, (x, leak, vth))

    (rs, rm), rg = grads(_reference_layer)
    (s, m), g = grads(lambda x, lk, th: _run(backend, x, lk, th, _iir_config(), launcher)[:2])
    assert torch.equal(s, rs) and torch.equal(m, rm)
    assert 0 < rs.sum() < rs.numel() and rs.sum(0).max() > 1
    for name, a, b in zip(("input", "leak", "threshold"), g, rg):
        assert float(b.abs().max()) > 0, name
        torch.testing.assert_close(a, b, rtol=TOL[dtype], atol=TOL[dtype] * float(b.abs().max()), msg=name)


@pytest.mark.parametrize("backend", [b for b in _backends() if b != "torch"])
@pytest.mark.parametrize("reset,detach,decay,fire", list(itertools.product(
    ["hard", "soft"], [False, True], ["tau", "leak"], ["difference", "ratio"])))
def test_backends_equal_torch_reference_all_options(backend, reset, detach, decay, fire, request):
    launcher = request.getfixturevalue("launcher") if backend == "cupy-emulated" else None
    surrogate = "piecewise_linear" if fire == "ratio" else "atan"
    config = resolve_lif_config(reset, None, detach, -0.05 if fire == "difference" else 0.0, surrogate, decay, fire)
    T, B, N = 17, 3, 11
    x = (torch.rand(T, B, N) * 1.4 - 0.1).requires_grad_(True)
    v0 = (torch.rand(B, N) * 0.5).requires_grad_(True)
    d = (torch.rand(N) * 0.5 + 0.5) if decay == "leak" else (torch.rand(N) * 3 + 1.2)
    d.requires_grad_(True)
    vth = (torch.rand(N) * 0.5 + 0.6).requires_grad_(True)
    weights = (torch.randn(T, B, N), torch.randn(T, B, N) * 0.3, torch.randn(B, N))
    outs = {}
    for b in ("torch", backend):
        s, m, v = _run(b, x, d, vth, config, launcher, v0)
        loss = (s * weights[0]).sum() + (m * weights[1]).sum() + (v * weights[2]).sum()
        outs[b] = (s, m, v, torch.autograd.grad(loss, (x, v0, d, vth)))
    (rs, rm, rv, rg), (s, m, v, g) = outs["torch"], outs[backend]
    assert torch.equal(s, rs) and torch.equal(m, rm) and torch.equal(v, rv)
    assert 0 < rs.sum() < rs.numel()
    for a, b in zip(g, rg):
        torch.testing.assert_close(a, b, rtol=3e-5, atol=3e-5 * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_membrane_gradcheck_float64(backend, reset):
    """With detach_reset and a membrane loss the surrogate plays no part: autograd is the true derivative, which
    finite differences give while no spike flips."""
    T, B, N = 12, 2, 3
    x = (torch.rand(T, B, N, dtype=torch.float64) * 0.9).requires_grad_(True)
    v0 = (torch.rand(B, N, dtype=torch.float64) * 0.3).requires_grad_(True)
    leak = (torch.rand(N, dtype=torch.float64) * 0.4 + 0.5).requires_grad_(True)
    vth = (torch.rand(N, dtype=torch.float64) * 0.3 + 0.8).requires_grad_(True)

    def membrane(x_, v0_, leak_, vth_):
        return lif(x_, v0_, leak=leak_, v_threshold=vth_, reset=reset, detach_reset=True, fire="ratio",
                   surrogate="piecewise_linear", return_membrane=True, backend=backend).membrane

    spikes = lif(x.detach(), v0.detach(), leak=leak.detach(), v_threshold=vth.detach(), fire="ratio").spikes
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.autograd.gradcheck(membrane, (x, v0, leak, vth), eps=1e-7, atol=1e-6)


def test_ratio_fires_strictly_and_difference_on_ties():
    x = torch.full((1, 1, 1), 0.75)
    assert lif(x, leak=1.0, v_threshold=0.75, fire="ratio").spikes.item() == 0.0  # u / V - 1 = 0: no spike
    assert lif(x, leak=1.0, v_threshold=0.75).spikes.item() == 1.0  # H - v_th = 0 spikes
    for backend in CPU:
        assert lif(x, leak=1.0, v_threshold=0.75, fire="ratio", backend=backend).spikes.item() == 0.0


def test_module_learns_leak_and_threshold_and_projects_leak():
    torch.manual_seed(1)
    m = spikelib.neurons.iir_lif(v_threshold=0.5, shape=(6,))
    assert isinstance(m.leak, nn.Parameter) and isinstance(m.v_threshold, nn.Parameter)
    assert m.leak.shape == m.v_threshold.shape == (6,)
    x = torch.rand(5, 3, 6)
    s, v = m(x, return_membrane=True)
    ref_s, ref_v = _reference_layer(x, m.leak.detach(), m.v_threshold.detach())
    assert torch.equal(s, ref_s) and torch.equal(v, ref_v)
    (s * torch.randn_like(s)).sum().backward()
    assert m.leak.grad.abs().sum() > 0 and m.v_threshold.grad.abs().sum() > 0
    with torch.no_grad():
        m.leak.copy_(torch.linspace(0.6, 1.1, 6))  # an optimiser step past 1 ...
    m(x)
    expect = torch.linspace(0.6, 1.1, 6).clamp(max=1.0)
    assert torch.equal(m.leak.detach(), expect)  # ... is projected before the next pass
    layer = spikelib.neurons.iir_lif(v_threshold=2.0)
    assert layer.leak.shape == () and float(layer.v_threshold.detach()) == 2.0
    assert "leak=1 (Parameter)" in repr(layer)


def test_bad_options_are_clear_errors():
    x = torch.rand(3, 2, 4)
    with pytest.raises(ValueError, match="leak must be <= 1"):
        lif(x, leak=1.5)
    with pytest.raises(ValueError, match="v_threshold must be > 0"):
        lif(x, leak=0.9, v_threshold=-1.0, fire="ratio")
    with pytest.raises(ValueError, match="either tau .* or leak"):
        lif(x, tau=2.0, leak=0.9)
    with pytest.raises(ValueError, match="decay_input=True has no meaning"):
        lif(x, leak=0.9, decay_input=True)
    with pytest.raises(ValueError, match="fire must be one of"):
        spikelib.LIF(fire="relative")
    with pytest.raises(ValueError, match="v_threshold must be > 0"):
        spikelib.LIF(leak=1.0, v_threshold=0.0, fire="ratio")
