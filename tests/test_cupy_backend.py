"""The CuPy backend. Without a GPU (always run): registration, capability checks, the clear errors of an explicit
backend="cupy" that cannot run and the logged fallback of "auto". On a GPU (marked cuda, `pytest -m cuda`): outputs,
states and every gradient equal the torch reference for every variant (float32: spikes and membrane bitwise equal to
the CPU float32 reference, gradients to 2e-5; float16/bfloat16: against a float64 reference with per-dtype
tolerances), sizes that need many blocks and odd sizes, non-contiguous inputs, the sentinel proving the CuPy kernels
ran, the current stream honoured (a side stream with a pending producer), a second GPU, ParametricLIF and QIF."""

import itertools
import logging
import sys

import pytest
import torch

from spikelib.functional.lif import LIFConfig, LIFRequest, lif, resolve_lif_config
from spikelib.kernels import (BackendUnavailableError, available_backends, backend_calls, forget_backend_choices,
                              reset_backend_calls)
from spikelib.kernels.cupy import backend as cupy_backend
from spikelib.kernels.cupy.backend import check_cupy, multistep
from spikelib.kernels.cupy.neurons import QIF, SURROGATE_C
from spikelib.kernels.cupy.reference import qif_reference
from spikelib.kernels.registry import select_backend

SURROGATES = sorted(SURROGATE_C)
FLAGS = list(itertools.product(["hard", "soft"], [False, True], [True, False]))  # reset, detach_reset, decay_input
HALF_RTOL = {torch.float16: 4e-3, torch.bfloat16: 3e-2}
CUDA = torch.device("cuda")


# ---------------------------------------------------------------- without a GPU

def test_registered_above_the_cpu_backends():
    assert available_backends("lif")[0] == "cupy"


def test_explicit_cupy_on_a_cpu_tensor_says_why():
    with pytest.raises(BackendUnavailableError, match="backend 'cupy' cannot run lif: it runs on CUDA tensors only"):
        lif(torch.rand(4, 2, 3), backend="cupy")


def test_unsupported_dtype_and_surrogate_are_named():
    req = LIFRequest(torch.device("cuda", 0), torch.float64, LIFConfig(), False)
    assert "float32, float16 and bfloat16, the input is torch.float64" in check_cupy(req)
    from spikelib.surrogate import Surrogate

    class Cubic(Surrogate):
        name = ""

        def grad(self, x):
            return 3 * x**2

    req = LIFRequest(torch.device("cuda", 0), torch.float32, LIFConfig(surrogate=Cubic(1.0)), False)
    assert "Cubic has no CUDA source" in check_cupy(req)


def test_missing_cupy_names_the_extras_and_auto_logs_the_fallback(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    cupy_backend._cupy_missing_reason.cache_clear()
    forget_backend_choices()  # a choice remembered while CuPy was importable no longer holds
    try:
        req = LIFRequest(torch.device("cuda", 0), torch.float32, resolve_lif_config("soft", True, True, 0.1, "atan"),
                         False)
        reason = check_cupy(req)
        assert reason is not None and "spikelib[cuda12]" in reason and "spikelib[cuda13]" in reason
        with pytest.raises(BackendUnavailableError, match="CuPy is not importable"):
            select_backend("lif", "cupy", req, count=False)
        with caplog.at_level(logging.INFO, logger="spikelib.kernels.registry"):
            entry = select_backend("lif", "auto", req, count=False)
        assert entry.name == "torch"
        assert "skipped 'cupy' (CuPy is not importable" in caplog.text
    finally:
        cupy_backend._cupy_missing_reason.cache_clear()
        forget_backend_choices()


def test_cpu_auto_never_imports_cupy():
    reset_backend_calls()
    lif(torch.rand(4, 2, 3))
    assert "cupy" not in backend_calls("lif")


# ---------------------------------------------------------------- on a GPU

@pytest.fixture
def cupy_ready():
    reason = cupy_backend._cupy_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    reset_backend_calls()


def _case(shape, dtype, per_neuron=True, learn=True, device=None):
    device = CUDA if device is None else device
    T, B = shape[:2]
    feat = shape[2:]
    g = torch.Generator().manual_seed(hash(shape) % 2**31)
    x = (torch.rand(shape, generator=g) * 1.6 - 0.1)
    v0 = torch.rand((B, *feat), generator=g) * 0.5
    if per_neuron:
        tau = torch.rand(feat, generator=g) * 3 + 1.2
        vth = torch.rand(feat, generator=g) * 0.5 + 0.6
    else:
        tau, vth = torch.tensor(2.5), torch.tensor(0.9)
    ts = [t.to(device=device, dtype=dtype).requires_grad_(learn or i < 2) for i, t in enumerate((x, v0, tau, vth))]
    return ts


def _run(backend, ts, config, weights, reference=None):
    x, v0, tau, vth = ts
    if reference is not None:
        out = reference(x, v0, tau, vth, config)
    elif backend == "qif":
        out = multistep(x, v0, tau, vth, config, True, neuron=QIF())
    else:
        o = lif(x, v0, tau=tau, v_threshold=vth, v_reset=config.v_reset, reset=config.reset,
                decay_input=config.decay_input, detach_reset=config.detach_reset, surrogate=config.surrogate,
                return_membrane=True, backend=backend)
        out = (o.spikes, o.membrane, o.state.v)
    loss = sum((o.double() * w.to(o.device)).sum() for o, w in zip(out, weights))
    params = [t for t in ts if t.requires_grad]
    return [o.detach() for o in out], torch.autograd.grad(loss, params)


def _weights(ts):
    x, v0 = ts[0], ts[1]
    return (torch.randn(x.shape, dtype=torch.float64), torch.randn(x.shape, dtype=torch.float64) * 0.3,
            torch.randn(v0.shape, dtype=torch.float64))


def _compare_fp32(ts, config, backend="cupy", reference=None, exact=True, mixed=True):
    """float32 on the GPU against the float32 torch reference on the CPU (same operations: bitwise forward)."""
    weights = _weights(ts)
    cpu = [t.detach().cpu().requires_grad_(t.requires_grad) for t in ts]
    ref, gref = _run("torch", cpu, config, weights, reference)
    reset_backend_calls()
    out, gout = _run(backend, ts, config, weights)
    calls = backend_calls()
    if backend == "cupy":
        assert backend_calls("lif") == {"cupy": 1}
    assert calls.get("cupy_kernels/cuda/forward") == 1 and calls.get("cupy_kernels/cuda/backward") == 1
    if mixed:
        assert 0 < ref[0].sum() < ref[0].numel(), "degenerate case: no or only spikes"
    for o, r in zip(out, ref):
        if exact:
            assert torch.equal(o.cpu(), r)
        else:
            torch.testing.assert_close(o.cpu(), r, rtol=1e-5, atol=1e-5)
    for g, r in zip(gout, gref):
        assert g.dtype == r.dtype and g.shape == r.shape
        torch.testing.assert_close(g.cpu(), r, rtol=5e-5, atol=5e-5 * max(1.0, float(r.abs().max())))


def _compare_half(ts, config, dtype):
    """16-bit storage against a float64 reference on the CPU, on the neurons whose spike trains agree (a spike flips
    where H is within rounding of the threshold; such neurons must be rare)."""
    rtol = HALF_RTOL[dtype]
    weights = _weights(ts)
    ref_in = [t.detach().cpu().double().requires_grad_(t.requires_grad) for t in ts]
    ref, gref = _run("torch", ref_in, config, weights)
    out, gout = _run("cupy", ts, config, weights)
    assert all(o.dtype == dtype for o in out)
    T = out[0].shape[0]
    same = (out[0].cpu().double() == ref[0]).reshape(T, -1).all(0)
    # bfloat16 keeps 8 significant bits: a few percent of the neurons see H round across the threshold in T steps
    assert float(same.double().mean()) > (0.97 if dtype == torch.float16 else 0.9)
    for o, r in zip(out[1:], ref[1:]):
        o2, r2 = o.cpu().double().reshape(-1, same.numel())[:, same], r.reshape(-1, same.numel())[:, same]
        torch.testing.assert_close(o2, r2, rtol=rtol, atol=rtol * max(1.0, float(r2.abs().max())))
    gx, grx = gout[0].cpu().double().reshape(T, -1)[:, same], gref[0].reshape(T, -1)[:, same]
    # a step-shaped surrogate (rectangular): where the 16-bit H sits within rounding of a box edge, its gradient
    # jumps, so there a small fraction of elements may differ
    step = config.surrogate.name == "rectangular"
    _close(gx, grx, 4 * rtol, 0.999 if step else 1.0)
    # tau, v_threshold: reduced over the batch in float32; compared on the features whose whole batch agrees
    feature_ok = same.view(ts[1].shape[0], -1).all(0).view(ts[1].shape[1:])
    assert float(feature_ok.double().mean()) > (0.5 if dtype == torch.float16 else 0.2)
    for g, r in zip(gout[2:], gref[2:]):
        assert g.dtype == dtype
        _close(g.cpu().double()[feature_ok], r[feature_ok], 8 * rtol, 0.95 if step else 1.0)


def _close(g, r, rtol, min_fraction):
    atol = rtol * max(1e-30, float(r.abs().max()))
    if min_fraction >= 1.0:
        torch.testing.assert_close(g, r, rtol=rtol, atol=atol)
    else:
        close = (g - r).abs() <= atol + rtol * r.abs()
        assert float(close.double().mean()) >= min_fraction


@pytest.mark.cuda
@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("reset,detach_reset,decay_input", FLAGS)
def test_float32_equals_reference(cupy_ready, per_neuron, reset, detach_reset, decay_input):
    ts = _case((17, 3, 11), torch.float32, per_neuron)
    _compare_fp32(ts, resolve_lif_config(reset, decay_input, detach_reset, -0.05, "atan"))


@pytest.mark.cuda
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_every_surrogate_and_dtype(cupy_ready, surrogate, dtype):
    config = resolve_lif_config("soft", True, False, 0.0, surrogate)
    ts = _case((23, 8, 257), dtype)
    if dtype == torch.float32:
        _compare_fp32(ts, config)
    else:
        _compare_half(ts, config, dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reset,detach_reset,decay_input", FLAGS)
def test_half_precision_every_flag(cupy_ready, dtype, reset, detach_reset, decay_input):
    ts = _case((19, 16, 129), dtype)
    _compare_half(ts, resolve_lif_config(reset, decay_input, detach_reset, -0.05, "atan"), dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 2, 3, 4, 5), (9, 3, 4099), (4, 1000, 1031), (3, 2**21 + 7)])
def test_many_blocks_and_odd_sizes(cupy_ready, shape):
    # (4, 1000, 1031): ~1e6 neurons, 4028 blocks of 256 with a remainder; (3, 2**21 + 7): a 2-d input, 8193 blocks.
    ts = _case(shape, torch.float32, per_neuron=len(shape) > 2)
    ts[0] = (ts[0].detach() * 2).requires_grad_(True)
    _compare_fp32(ts, resolve_lif_config("hard", True, False, 0.0, "sigmoid"), mixed=ts[0].numel() > 1)


@pytest.mark.cuda
def test_noncontiguous_input_and_expanded_spike_gradient(cupy_ready):
    base = torch.rand(11, 20, 300, device=CUDA) * 2
    x = base.transpose(1, 2).requires_grad_(True)  # [11, 300, 20], not contiguous
    x_ref = x.detach().cpu().requires_grad_(True)
    s = lif(x, backend="cupy").spikes
    r = lif(x_ref, backend="torch").spikes
    assert torch.equal(s.cpu(), r)
    (g,) = torch.autograd.grad(s.sum(), x)  # stride-0 gradient read as one value
    (gr,) = torch.autograd.grad(r.sum(), x_ref)
    torch.testing.assert_close(g.cpu(), gr, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
def test_auto_picks_cupy_for_cuda_tensors(cupy_ready):
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        reset_backend_calls()
        lif(torch.rand(4, 2, 3, device=CUDA, dtype=dtype))
        assert backend_calls("lif") == {"cupy": 1}
    reset_backend_calls()
    lif(torch.rand(4, 2, 3, device=CUDA, dtype=torch.float64))
    assert backend_calls("lif") == {"torch": 1}


@pytest.mark.cuda
def test_runs_on_the_current_stream(cupy_ready):
    """On a side stream whose producer of x is still running (a sleep kernel first), the LIF must wait for it: it
    does only if it is launched on that stream (the default stream would read x before it is written)."""
    base = torch.rand(16, 64, 4096, device=CUDA) * 2
    expect = lif(base, backend="cupy", return_membrane=True)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    for _ in range(3):
        with torch.cuda.stream(side):
            torch.cuda._sleep(20_000_000)
            x = base * 1.0
            out = lif(x, backend="cupy", return_membrane=True)
        side.synchronize()
        assert torch.equal(out.spikes, expect.spikes) and torch.equal(out.membrane, expect.membrane)
    torch.cuda.synchronize()


@pytest.mark.cuda
def test_second_device(cupy_ready):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    ts = _case((9, 4, 333), torch.float32, device=torch.device("cuda", 1))
    _compare_fp32(ts, resolve_lif_config("hard", True, False, 0.0, "atan"))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_parametric_lif(cupy_ready, dtype):
    from spikelib.neurons.lif import ParametricLIF

    layer = ParametricLIF(init_tau=2.0, shape=(257,), reset="soft").to(CUDA)
    ref_layer = ParametricLIF(init_tau=2.0, shape=(257,), reset="soft", backend="torch").double()
    with torch.no_grad():
        layer.w.add_(torch.randn(257, device=CUDA) * 0.3)
        ref_layer.w.copy_(layer.w.double().cpu())
    x = torch.rand(16, 32, 257) * 1.6
    w = torch.linspace(-1, 1, 257)
    reset_backend_calls()
    s = layer(x.to(CUDA, dtype)) if dtype == torch.float32 else _half_plif(layer, x, dtype)
    assert backend_calls("lif") == {"cupy": 1}
    (gw,) = torch.autograd.grad((s.double() * w.to(CUDA, torch.float64)).sum(), layer.w)
    sr = ref_layer(x.double())
    (gr,) = torch.autograd.grad((sr * w.double()).sum(), ref_layer.w)
    tol = {torch.float32: 1e-4, torch.float16: 5e-2, torch.bfloat16: 2e-1}[dtype]
    agree = float((s.cpu().double() == sr).double().mean())
    assert agree > (0.9999 if dtype == torch.float32 else 0.99)
    torch.testing.assert_close(gw.cpu().double(), gr, rtol=tol, atol=tol * float(gr.abs().max()))


def _half_plif(layer, x, dtype):
    """ParametricLIF with 16-bit inputs: tau (float32 parameter) is cast to the input dtype, as mixed precision does."""
    tau = layer.tau_value().to(dtype)
    return lif(x.to(CUDA, dtype), tau=tau, reset="soft", backend="cupy").spikes


@pytest.mark.cuda
@pytest.mark.parametrize("reset,detach_reset", list(itertools.product(["hard", "soft"], [False, True])))
def test_qif_second_family(cupy_ready, reset, detach_reset):
    ts = _case((17, 5, 129), torch.float32)
    ts[0] = (ts[0].detach() * 0.6).requires_grad_(True)  # the quadratic term diverges for strong drive (soft reset)
    with torch.no_grad():
        assert bool(torch.isfinite(qif_reference(*[t.cpu() for t in ts], resolve_lif_config(
            reset, True, detach_reset, -0.1, "atan"))[1]).all())
    _compare_fp32(ts, resolve_lif_config(reset, True, detach_reset, -0.1, "atan"), backend="qif",
                  reference=qif_reference, exact=False)
