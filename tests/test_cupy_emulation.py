"""The CuPy kernels' logic, proven on the CPU: the same rendered .cu source is compiled as host C++
(spikelib/kernels/cupy/host_harness.h emulates threadIdx/blockIdx over a grid of several blocks with a remainder) and
driven through the backend's own autograd Function, then compared with the torch reference: spikes, membrane and
final state exactly in float32 (same floating-point operations in the same order), every gradient (input, initial
state, per-neuron or scalar tau and threshold) to the tolerances of the numba backend tests, over reset modes,
detach_reset, both decay forms and every surrogate; the second neuron family (QIF) against an independent torch loop;
float16/bfloat16 storage conversions bitwise against torch, and the 16-bit kernels against a float64 reference."""

import contextlib
import itertools
import math
import sys

import pytest
import torch

from spikelib.functional.lif import lif, resolve_lif_config
from spikelib.kernels import backend_calls, reset_backend_calls
from spikelib.kernels.cupy.backend import multistep, variant_key
from spikelib.kernels.cupy.emulation import HostLauncher, find_host_compiler
from spikelib.kernels.cupy.neurons import LIF_DECAY_INPUT, LIF_NO_DECAY_INPUT, QIF, SURROGATE_C
from spikelib.kernels.cupy.reference import qif_reference

pytestmark = pytest.mark.skipif(find_host_compiler() is None, reason="needs a C++ compiler (g++)")

SURROGATES = sorted(SURROGATE_C)
FLAGS = list(itertools.product(["hard", "soft"], [False, True], [True, False]))  # reset, detach_reset, decay_input
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
QIF_MODEL = QIF(a0=1.0, v_c=0.8, v_rest=0.0)


def _config(reset="hard", detach_reset=False, decay_input=True, surrogate="atan", v_reset=-0.05):
    return resolve_lif_config(reset, decay_input, detach_reset, v_reset, surrogate)


def _lif_model(config):
    return LIF_DECAY_INPUT if config.decay_input else LIF_NO_DECAY_INPUT


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    """One shared library with every variant these tests run (built once, ~5 s)."""
    keys = []
    for dtype in DTYPES:
        for (reset, detach, decay), sur in itertools.product(FLAGS, SURROGATES):
            c = _config(reset, detach, decay, sur)
            keys.append(variant_key(_lif_model(c), c, dtype))
        for reset, detach in itertools.product(["hard", "soft"], [False, True]):
            keys.append(variant_key(QIF_MODEL, _config(reset, detach), dtype))
    return HostLauncher(keys, tmp_path_factory.mktemp("slk_host"), blocks=3, threads=5)


def _case(shape=(17, 3, 11), per_neuron=True, learn=True, scale=1.6):
    T, B = shape[:2]
    feat = shape[2:]
    x = (torch.rand(shape) * scale - 0.1).requires_grad_(True)
    v0 = (torch.rand((B, *feat)) * 0.5).requires_grad_(True)
    if per_neuron:
        tau = (torch.rand(feat) * 3 + 1.2).requires_grad_(learn)
        vth = (torch.rand(feat) * 0.5 + 0.6).requires_grad_(learn)
    else:
        tau = torch.tensor(2.5).requires_grad_(learn) if learn else 2.5
        vth = torch.tensor(0.9).requires_grad_(learn) if learn else 0.9
    return x, v0, tau, vth


def _reference(x, v0, tau, vth, config):
    out = lif(x, v0, tau=tau, v_threshold=vth, v_reset=config.v_reset, reset=config.reset,
              decay_input=config.decay_input, detach_reset=config.detach_reset, surrogate=config.surrogate,
              return_membrane=True, backend="torch")
    return out.spikes, out.membrane, out.state.v


def _grads(outputs, weights, inputs):
    s, m, v = outputs
    loss = (s * weights[0]).sum() + (m * weights[1]).sum() + (v * weights[2]).sum()
    params = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return torch.autograd.grad(loss, params)


def _compare_exact(launcher, x, v0, tau, vth, config, neuron=None, reference=_reference, rtol=2e-5):
    weights = (torch.randn_like(x), torch.randn_like(x) * 0.3, torch.randn_like(v0))
    ref = reference(x, v0, tau, vth, config)
    reset_backend_calls()
    out = multistep(x, v0, tau, vth, config, True, neuron=neuron or _lif_model(config), launcher=launcher)
    assert backend_calls()["cupy_kernels/host/forward"] == 1, "the emulated kernel did not run"
    gref = _grads(ref, weights, (x, v0, tau, vth))
    gout = _grads(out, weights, (x, v0, tau, vth))
    assert backend_calls()["cupy_kernels/host/backward"] == 1
    assert torch.equal(out[0], ref[0]), "spikes differ"
    assert 0 < ref[0].sum() < ref[0].numel(), "degenerate case: no or only spikes"
    if neuron is None:
        assert torch.equal(out[1], ref[1]) and torch.equal(out[2], ref[2]), "membrane or final state differ"
    else:
        torch.testing.assert_close(out[1], ref[1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[2], ref[2], rtol=1e-5, atol=1e-6)
    assert len(gout) == len(gref) == sum(isinstance(t, torch.Tensor) and t.requires_grad for t in (x, v0, tau, vth))
    for g, r in zip(gout, gref):
        assert g.shape == r.shape and g.dtype == r.dtype
        torch.testing.assert_close(g, r, rtol=rtol, atol=rtol * max(1.0, float(r.abs().max())))


@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("reset,detach_reset,decay_input", FLAGS)
def test_lif_equals_reference(launcher, per_neuron, reset, detach_reset, decay_input):
    x, v0, tau, vth = _case(per_neuron=per_neuron)
    _compare_exact(launcher, x, v0, tau, vth, _config(reset, detach_reset, decay_input))


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_every_surrogate(launcher, surrogate, reset):
    x, v0, tau, vth = _case()
    _compare_exact(launcher, x, v0, tau, vth, _config(reset=reset, surrogate=surrogate))


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 2, 3, 4, 5), (9, 3, 4099), (6, 7)])
def test_odd_sizes_grid_stride_and_broadcast_parameters(launcher, shape):
    # 15 emulated threads in 3 blocks: every size here leaves a remainder; (9, 3, 4099) gives each thread ~820
    # neurons; (5, 2, 3, 4, 5) has per-neuron parameters broadcast from a [4, 1] tensor.
    x, v0, tau, vth = _case(shape=shape, scale=3.2)
    if len(shape) == 5:
        tau = (torch.rand(4, 1) * 3 + 1.2).requires_grad_(True)
    if shape == (1, 1, 1):
        x = torch.tensor([[[1.5]]], requires_grad=True)
        v0 = torch.tensor([[0.2]], requires_grad=True)
        vth = torch.tensor([0.7], requires_grad=True)
        config = _config(reset="soft")
        weights = (torch.ones_like(x), torch.ones_like(x), torch.ones_like(v0))
        ref = _reference(x, v0, tau, vth, config)
        out = multistep(x, v0, tau, vth, config, True, launcher=launcher)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
        for g, r in zip(_grads(out, weights, (x, v0, tau, vth)), _grads(ref, weights, (x, v0, tau, vth))):
            torch.testing.assert_close(g, r, rtol=2e-5, atol=2e-5)
        return
    _compare_exact(launcher, x, v0, tau, vth, _config(reset="soft", detach_reset=False))


def test_constant_parameters_inference_and_partial_losses(launcher):
    x, v0, tau, vth = _case(per_neuron=False, learn=False)
    config = _config(reset="soft")
    _compare_exact(launcher, x, v0, tau, vth, config)
    with torch.no_grad():
        out = multistep(x, v0, tau, vth, config, False, launcher=launcher)
    ref = _reference(x.detach(), v0.detach(), tau, vth, config)
    assert out[1] is None and not out[0].requires_grad
    assert torch.equal(out[0], ref[0]) and torch.equal(out[2], ref[2])
    x, v0, tau, vth = _case()
    for use in ("spikes_sum", "membrane", "state"):
        grads = []
        for fn in ("ref", "emu"):
            if fn == "ref":
                s, m, v = _reference(x, v0, tau, vth, config)
            else:
                s, m, v = multistep(x, v0, tau, vth, config, True, launcher=launcher)
            # spikes.sum(): the gradient arrives as an expanded scalar (strides 0) and is read as one value
            loss = {"spikes_sum": s.sum(), "membrane": m.pow(2).sum(), "state": v.sum()}[use]
            grads.append(torch.autograd.grad(loss, (x, v0, tau, vth), allow_unused=True))
        for g, r in zip(grads[1], grads[0]):
            torch.testing.assert_close(g, r, rtol=2e-5, atol=2e-5)


def test_noncontiguous_input(launcher):
    x = (torch.rand(11, 20, 3) * 2).transpose(1, 2).requires_grad_(True)  # [11, 3, 20], not contiguous
    x_ref = x.detach().clone().requires_grad_(True)
    v0 = torch.zeros(3, 20)
    config = _config()
    s, _, _ = multistep(x, v0, 2.0, 1.0, config, False, launcher=launcher)
    r, _, _ = _reference(x_ref, v0, 2.0, 1.0, config)
    assert torch.equal(s, r)
    (g,) = torch.autograd.grad((s * torch.arange(20.0)).sum(), x)
    (gr,) = torch.autograd.grad((r * torch.arange(20.0)).sum(), x_ref)
    torch.testing.assert_close(g, gr, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("reset,detach_reset", list(itertools.product(["hard", "soft"], [False, True])))
def test_second_family_qif_through_the_same_template(launcher, reset, detach_reset):
    x, v0, tau, vth = _case()
    config = _config(reset=reset, detach_reset=detach_reset)
    _compare_exact(launcher, x, v0, tau, vth, config, neuron=QIF_MODEL, reference=qif_reference, rtol=5e-5)


def test_parametric_lif_tau_gradient(launcher):
    """ParametricLIF: tau = 1/sigmoid(w) with one w per neuron; the kernel's float32 tau gradient reaches w."""
    from spikelib.neurons.lif import ParametricLIF

    layer = ParametricLIF(init_tau=2.0, shape=(11,), reset="soft", v_reset=0.0)
    with torch.no_grad():
        layer.w.add_(torch.randn(11) * 0.3)
    x = torch.rand(17, 3, 11) * 1.6
    config = layer.config
    tau = layer.tau_value()
    s, _, _ = multistep(x, torch.zeros(3, 11), tau, 1.0, config, False, launcher=launcher)
    (gw,) = torch.autograd.grad((s * torch.linspace(-1, 1, 11)).sum(), layer.w)
    sr = layer(x)
    (gr,) = torch.autograd.grad((sr * torch.linspace(-1, 1, 11)).sum(), layer.w)
    assert torch.equal(s, sr)
    assert gr.abs().max() > 0
    torch.testing.assert_close(gw, gr, rtol=2e-5, atol=2e-5 * float(gr.abs().max()))


def test_storage_conversions_bitwise_equal_torch(launcher):
    """float16/bfloat16 round-to-nearest-even (subnormals, ties, overflow, NaN) equal torch's conversions: the
    16-bit kernels store through them (the device uses cvt.rn.f16.f32 for float16; bfloat16 is this same code)."""
    vals = torch.cat([
        torch.randn(20000) * 10.0 ** torch.randint(-9, 6, (20000,)).float(),
        torch.tensor([0.0, -0.0, 65504.0, 65519.9, 65520.0, 1e6, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1.0 + 2**-11,
                      1.0 + 3 * 2**-11, 1.0 + 2**-8, 1.0 + 3 * 2**-8, float("inf"), -float("inf"), 3.0e38]),
        (torch.arange(-2048, 2048).float() + 0.5) * 2**-24,
    ])
    # One step, decay_input=False, tau=inf, v_reset=0: H = V - (V - 0)/inf + X = V + X in float32, then stored at
    # the 16-bit precision. (1) V = 0: H = X, so the stored membrane is X itself (exact round trip, nonzero values);
    # (2) V = hi, X = lo (two 16-bit parts of a float32 value): H = hi + lo is rounded by the kernel's conversion.
    config = _config(reset="hard", decay_input=False, v_reset=0.0)
    for dtype in (torch.float16, torch.bfloat16):
        x = vals.to(dtype).view(1, 1, -1)
        s, m, _ = multistep(x, torch.zeros(1, vals.numel(), dtype=dtype), float("inf"), float("inf"), config, True,
                            launcher=launcher)
        ok = torch.isfinite(x.view(-1).float()) & (x.view(-1) != 0)
        assert int(ok.sum()) > 20000
        assert torch.equal(m.view(-1)[ok].view(torch.int16), x.view(-1)[ok].view(torch.int16))
        assert not bool(s.view(-1)[ok].any())
        hi = vals.to(dtype)
        lo = (vals - hi.float()).to(dtype)
        s, m, _ = multistep(lo.view(1, 1, -1), hi.view(1, -1), float("inf"), float("inf"), config, True,
                            launcher=launcher)
        expect = (hi.float() + lo.float()).to(dtype)
        ok = torch.isfinite(hi.float()) & torch.isfinite(lo.float()) & (expect != 0)
        assert int(ok.sum()) > 20000
        assert torch.equal(m.view(-1)[ok].view(torch.int16), expect[ok].view(torch.int16))
        inexact = (hi.float() + lo.float()) != expect.float()
        assert bool((inexact & ok).any()), "no value needed rounding: the test would not test rounding"
    nan = multistep(torch.full((1, 1, 1), float("nan")), torch.zeros(1, 1), 2.0, 1.0, config, True,
                    launcher=launcher)[1]
    assert bool(torch.isnan(nan).all())


def _f64_reference_per_neuron_match(out, ref, dtype, rtol):
    """Compare 16-bit kernel outputs with the float64 reference on the neurons whose spike trains agree (a spike can
    flip where H is within rounding of the threshold); such neurons must be rare."""
    s, m, v = (t.detach() for t in out)
    rs, rm, rv = (t.detach() for t in ref)
    T = s.shape[0]
    same = (s.double() == rs).reshape(T, -1).all(0)
    assert float(same.double().mean()) > 0.97, f"too many neurons with a different spike train ({dtype})"
    for a, b in ((m, rm), (v, rv)):
        a2 = a.double().reshape(-1, same.numel())[:, same]
        b2 = b.reshape(-1, same.numel())[:, same]
        torch.testing.assert_close(a2, b2, rtol=rtol, atol=rtol * max(1.0, float(b2.abs().max())))
    return same


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_half_precision_kernels_against_float64_reference(launcher, dtype, reset):
    rtol = {torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    T, B, N = 13, 4, 37
    x = (torch.rand(T, B, N) * 1.6 - 0.1).to(dtype)
    v0 = (torch.rand(B, N) * 0.5).to(dtype)
    tau = (torch.rand(N) * 3 + 1.2).to(dtype)
    config = _config(reset=reset)
    xs = [x.clone().requires_grad_(True), x.double().requires_grad_(True)]
    taus = [tau.clone().requires_grad_(True), tau.double().requires_grad_(True)]
    out = multistep(xs[0], v0, taus[0], 0.9, config, True, launcher=launcher)
    ref = _reference(xs[1], v0.double(), taus[1], 0.9, config)
    assert out[0].dtype == dtype
    same = _f64_reference_per_neuron_match(out, ref, dtype, rtol)
    w = torch.randn(T, B, N, dtype=torch.float64)
    g = torch.autograd.grad((out[0].double() * w).sum() + out[1].double().sum(), (xs[0], taus[0]))
    gr = torch.autograd.grad((ref[0] * w).sum() + ref[1].sum(), (xs[1], taus[1]))
    gx, grx = g[0].double().reshape(T, -1)[:, same], gr[0].reshape(T, -1)[:, same]
    torch.testing.assert_close(gx, grx, rtol=4 * rtol, atol=4 * rtol * float(grx.abs().max()))
    # tau gradient: summed over the batch in float32 inside the backend, then stored in the parameter's dtype
    assert g[1].dtype == dtype
    neuron_ok = same.view(B, N).all(0)
    torch.testing.assert_close(g[1].double()[neuron_ok], gr[1][neuron_ok], rtol=8 * rtol,
                               atol=8 * rtol * float(gr[1].abs().max()))


def test_activation_memory_is_one_tensor_of_the_input(launcher):
    """Saved for backward: H (T x M of the input dtype) + the initial state + the parameters, linear in T; the torch
    reference saves several tensors per step."""
    from torch.autograd.graph import saved_tensors_hooks

    def saved_bytes(fn):
        seen = {}

        def pack(t):
            seen[t.data_ptr()] = t.numel() * t.element_size()
            return t

        with saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(seen.values())

    config = _config()
    B, N = 4, 64
    rows = []
    for T in (4, 16, 64):
        x = torch.rand(T, B, N, requires_grad=True)
        v0 = torch.zeros(B, N)
        kern = saved_bytes(lambda: multistep(x, v0, 2.0, 1.0, config, False, launcher=launcher))
        ref = saved_bytes(lambda: _reference(x, v0, 2.0, 1.0, config))
        rows.append((T, kern, ref))
        assert kern == T * B * N * 4 + B * N * 4 + 2 * 4  # H, v0, tau and v_threshold as float32 scalars
        assert ref >= 2 * T * B * N * 4
    # both grow linearly in T; the kernel saves a fixed fraction of what the reference saves
    ratios = [ref / kern for _, kern, ref in rows]
    assert all(r > 2 for r in ratios) and math.isclose(ratios[1], ratios[2], rel_tol=0.05)


def test_cupy_launcher_glue_with_a_fake_cupy(launcher, monkeypatch):
    """CupyLauncher without a GPU: a stand-in `cupy` module checks that every kernel argument has the numpy type of
    the kernel's C parameter (pointer -> uint64, float -> float32, long long -> int64), that the grid covers the
    neurons with 256-thread blocks, that the launch happens inside the device guard and on an ExternalStream made
    from torch's current stream, and then runs the kernel through the host emulation; results equal the reference."""
    import re
    import types

    import numpy as np

    from spikelib.kernels.cupy import backend as cupy_backend
    from spikelib.kernels.cupy import codegen

    log = {"launches": [], "device": [], "stream": []}

    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            log["device"].append(self.index)

        def __exit__(self, *exc):
            log["device"].pop()

    class ExternalStream:
        def __init__(self, ptr):
            self.ptr = ptr

        def __enter__(self):
            log["stream"].append(self.ptr)

        def __exit__(self, *exc):
            log["stream"].pop()

    class Kernel:
        def __init__(self, code, name):
            m = re.search(r'extern "C" __global__ void ' + name + r"\((.*?)\) \{", code, re.S)
            self.params = [p.strip() for p in m.group(1).split(",")]
            self.name = name

        def __call__(self, grid, block, args):
            assert log["device"] == [0] and log["stream"] == [4242], "launched outside the device/stream guard"
            assert len(args) == len(self.params)
            for a, p in zip(args, self.params):
                want = np.uint64 if "*" in p else np.float32 if p.startswith(("float", "const float")) else np.int64
                assert type(a) is want, f"{self.name}: {p!r} got {type(a).__name__}"
            M = int(args[6] if self.name.startswith("slk_fwd") else args[12])
            assert block == (256,) and grid == (max(1, -(-M // 256)),)
            log["launches"].append(self.name)
            fn = getattr(launcher.lib, self.name)
            values = [None if (isinstance(a, np.uint64) and int(a) == 0) else
                      int(a) if isinstance(a, (np.uint64, np.int64)) else float(a) for a in args]
            for b in range(grid[0]):  # every thread of the real grid, one after another
                for t in range(block[0]):
                    launcher._set(t, b, block[0], grid[0])
                    fn(*values)

    class RawModule:
        def __init__(self, code, options):
            assert options == codegen.COMPILE_OPTIONS
            self.code = code

        def get_function(self, name):
            return Kernel(self.code, name)

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(Device=Device, ExternalStream=ExternalStream)
    fake.RawModule = RawModule
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cupy_backend, "_cupy_missing_reason", lambda: None)
    monkeypatch.setattr(codegen, "_KERNELS", {})
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda index=None: types.SimpleNamespace(cuda_stream=4242))
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())

    x, v0, tau, vth = _case(shape=(7, 3, 300))  # 900 neurons: 4 blocks of 256 with a remainder
    config = _config(reset="soft")
    weights = (torch.randn_like(x), torch.randn_like(x) * 0.3, torch.randn_like(v0))
    out = cupy_backend.multistep(x, v0, tau, vth, config, True)
    ref = _reference(x, v0, tau, vth, config)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1]) and torch.equal(out[2], ref[2])
    for g, r in zip(_grads(out, weights, (x, v0, tau, vth)), _grads(ref, weights, (x, v0, tau, vth))):
        torch.testing.assert_close(g, r, rtol=2e-5, atol=2e-5 * max(1.0, float(r.abs().max())))
    key = variant_key(LIF_DECAY_INPUT, config, torch.float32)
    assert log["launches"] == [key.forward_name, key.backward_name]
