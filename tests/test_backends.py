"""Every backend equals the torch reference: spikes, membrane and final state exactly (the fast CPU kernels do the
same floating-point operations in the same order), and every gradient (input, initial state, tau, threshold) to
rounding, across reset modes, detach, decay forms, scalar and per-neuron parameters, dtypes and odd sizes; plus a
check that the intended backend really ran, and the registry's selection and errors."""

import itertools
import sys

import pytest
import torch

from spikelib.functional import lif
from spikelib.kernels import (
    BackendUnavailableError,
    available_backends,
    backend_calls,
    reset_backend_calls,
)

# CPU backends only: "cupy" runs on CUDA tensors (tests/test_cupy_backend.py, tests/test_cupy_emulation.py).
FAST = [b for b in available_backends("lif") if b not in ("torch", "cupy")]
SURROGATES = ["atan", "sigmoid", "fast_sigmoid", "triangle", "rectangular"]
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-11, atol=1e-11)}


def _case(dtype, per_neuron, shape=(17, 3, 11), learn=True):
    T, B = shape[:2]
    feat = shape[2:]
    x = (torch.rand(shape, dtype=dtype) * 1.6 - 0.1).requires_grad_(True)
    v0 = (torch.rand((B, *feat), dtype=dtype) * 0.5).requires_grad_(True)
    if per_neuron:
        tau = (torch.rand(feat, dtype=dtype) * 3 + 1.2).requires_grad_(learn)
        vth = (torch.rand(feat, dtype=dtype) * 0.5 + 0.6).requires_grad_(learn)
    else:
        tau = torch.tensor(2.5, dtype=dtype).requires_grad_(learn) if learn else 2.5
        vth = torch.tensor(0.9, dtype=dtype).requires_grad_(learn) if learn else 0.9
    return x, v0, tau, vth


def _run(backend, x, v0, tau, vth, weights, **kw):
    reset_backend_calls()
    out = lif(x, v0, tau=tau, v_threshold=vth, return_membrane=True, backend=backend, **kw)
    assert backend_calls("lif") == {backend: 1}, "the intended backend did not run"
    ws, wm, wv = weights
    loss = (out.spikes * ws).sum() + (out.membrane * wm).sum() + (out.state.v * wv).sum()
    params = [t for t in (x, v0, tau, vth) if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(loss, params)
    return out, grads


def _compare(backend, dtype, x, v0, tau, vth, **kw):
    weights = (torch.randn_like(x), torch.randn_like(x) * 0.3, torch.randn_like(v0))
    ref, gref = _run("torch", x, v0, tau, vth, weights, **kw)
    out, gout = _run(backend, x, v0, tau, vth, weights, **kw)
    assert torch.equal(out.spikes, ref.spikes)
    assert torch.equal(out.membrane, ref.membrane)
    assert torch.equal(out.state.v, ref.state.v)
    assert 0 < ref.spikes.sum() < ref.spikes.numel()
    for g, r in zip(gout, gref):
        scale = max(1.0, float(r.abs().max()))
        torch.testing.assert_close(g, r, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("reset,detach_reset,decay_input", list(itertools.product(["hard", "soft"], [False, True],
                                                                                    [True, False])))
def test_backend_equals_reference(backend, dtype, per_neuron, reset, detach_reset, decay_input):
    x, v0, tau, vth = _case(dtype, per_neuron)
    _compare(backend, dtype, x, v0, tau, vth, reset=reset, detach_reset=detach_reset, decay_input=decay_input,
             v_reset=-0.05)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_backend_equals_reference_every_surrogate(backend, surrogate):
    x, v0, tau, vth = _case(torch.float64, True)
    _compare(backend, torch.float64, x, v0, tau, vth, surrogate=surrogate)


@pytest.mark.parametrize("backend", FAST)
def test_constant_parameters_without_grad(backend):
    x, v0, tau, vth = _case(torch.float32, False, learn=False)
    _compare(backend, torch.float32, x, v0, tau, vth, reset="soft")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("decay", ["tau_input", "tau", "leak"])
@pytest.mark.parametrize("reset,detach_reset", [("hard", False), ("hard", True), ("soft", False), ("soft", True)])
def test_number_parameters_run_the_scalar_kernels_and_equal_per_neuron_tensors(dtype, decay, reset, detach_reset):
    # tau / v_threshold given as numbers take the kernel variant that reads them once ("scalar_params"); the same
    # values as per-neuron tensors take the array variant: both equal the reference, and each other bit for bit.
    shape = (13, 3, 4099)  # several chunks on two threads
    x = (torch.rand(shape, dtype=dtype) * 1.6 - 0.1).requires_grad_(True)
    v0 = (torch.rand(shape[1:], dtype=dtype) * 0.5).requires_grad_(True)
    kw = dict(reset=reset, detach_reset=detach_reset, v_reset=-0.05, surrogate="sigmoid")
    number = {"leak": 0.7} if decay == "leak" else {"tau": 2.7}
    if decay != "leak":
        kw["decay_input"] = decay == "tau_input"
    name = "leak" if decay == "leak" else "tau"
    tensors = {name: torch.full(shape[2:], number[name], dtype=dtype), "v_threshold": torch.full(shape[2:], 0.9,
                                                                                                 dtype=dtype)}
    weights = (torch.randn_like(x), torch.randn_like(x) * 0.3, torch.randn_like(v0))
    results = {}
    for label, backend, params in (("reference", "torch", dict(number, v_threshold=0.9)),
                                   ("scalar", "numba", dict(number, v_threshold=0.9)),
                                   ("arrays", "numba", tensors)):
        reset_backend_calls()
        out = lif(x, v0, return_membrane=True, backend=backend, **params, **kw)
        loss = (out.spikes * weights[0]).sum() + (out.membrane * weights[1]).sum() + (out.state.v * weights[2]).sum()
        results[label] = (out, torch.autograd.grad(loss, (x, v0)))
        if backend == "numba":
            expected = "scalar_params" if label == "scalar" else "neuron_params"
            assert backend_calls("lif.numba") == {expected: 1}, "the intended kernel variant did not run"
    (ref, gref), (sc, gsc), (ar, gar) = results["reference"], results["scalar"], results["arrays"]
    assert 0 < ref.spikes.sum() < ref.spikes.numel()
    for out in (sc, ar):
        assert torch.equal(out.spikes, ref.spikes) and torch.equal(out.membrane, ref.membrane)
        assert torch.equal(out.state.v, ref.state.v)
    for g, a, r in zip(gsc, gar, gref):
        assert torch.equal(g, a)
        torch.testing.assert_close(g, r, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * max(1.0, float(r.abs().max())))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 2, 3, 4, 5), (9, 3, 4099)])
def test_odd_sizes_and_many_chunks(backend, shape):
    # (9, 3, 4099): 12297 neurons -> several parallel chunks with a remainder; (5, 2, 3, 4, 5): conv-like shape.
    x, v0, tau, vth = _case(torch.float32, True, shape=shape)
    x = (x.detach() * 2).requires_grad_(True)
    weights = (torch.randn_like(x), torch.randn_like(x) * 0.3, torch.randn_like(v0))
    ref, gref = _run("torch", x, v0, tau, vth, weights)
    out, gout = _run(backend, x, v0, tau, vth, weights)
    assert torch.equal(out.spikes, ref.spikes) and torch.equal(out.membrane, ref.membrane)
    for g, r in zip(gout, gref):
        torch.testing.assert_close(g, r, rtol=2e-5, atol=2e-5 * max(1.0, float(r.abs().max())))


@pytest.mark.parametrize("backend", FAST)
def test_noncontiguous_input_and_broadcast_grad(backend):
    base = torch.rand(11, 20, 3) * 2
    x = base.transpose(1, 2).requires_grad_(True)  # [11, 3, 20], not contiguous
    outs = {}
    for b in ("torch", backend):
        xb = x.detach().clone().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True)
        s = lif(xb, backend=b).spikes
        s.sum().backward()  # grad of a sum arrives as an expanded (stride-0) tensor
        outs[b] = (s, xb.grad)
    assert torch.equal(outs["torch"][0], outs[backend][0])
    torch.testing.assert_close(outs[backend][1], outs["torch"][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", FAST)
def test_spikes_only_loss_and_membrane_only_loss(backend):
    x, v0, tau, vth = _case(torch.float64, True)
    for use in ("spikes", "membrane", "state"):
        grads = {}
        for b in ("torch", backend):
            out = lif(x, v0, tau=tau, v_threshold=vth, return_membrane=True, backend=b)
            loss = {"spikes": out.spikes.sum(), "membrane": out.membrane.pow(2).sum(), "state": out.state.v.sum()}[use]
            grads[b] = torch.autograd.grad(loss, (x, v0, tau, vth), allow_unused=True)
        for g, r in zip(grads[backend], grads["torch"]):
            torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("backend", FAST)
def test_inference_mode_runs_without_saving(backend):
    x = torch.rand(8, 4, 6)
    with torch.no_grad():
        out = lif(x, backend=backend, return_membrane=True)
    ref = lif(x, backend="torch", return_membrane=True)
    assert not out.spikes.requires_grad
    assert torch.equal(out.spikes, ref.spikes) and torch.equal(out.membrane, ref.membrane)


def test_auto_picks_fast_cpu_path_for_float32_and_reference_for_half():
    reset_backend_calls()
    lif(torch.rand(4, 2, 3))
    assert backend_calls("lif") == {"numba": 1}
    reset_backend_calls()
    lif(torch.rand(4, 2, 3, dtype=torch.bfloat16))
    assert backend_calls("lif") == {"torch": 1}


def test_explicit_backend_that_cannot_run_says_why():
    with pytest.raises(BackendUnavailableError, match="float32 and float64.*bfloat16"):
        lif(torch.rand(4, 2, 3, dtype=torch.bfloat16), backend="numba")
    with pytest.raises(ValueError, match="unknown backend 'cuda_magic'"):
        lif(torch.rand(4, 2, 3), backend="cuda_magic")


def test_custom_surrogate_without_kernel_source_falls_back():
    from spikelib.surrogate import Surrogate

    class Cubic(Surrogate):
        name = ""

        def primitive(self, x):
            return x**3

        def grad(self, x):
            return 3 * x**2

    reset_backend_calls()
    lif(torch.rand(4, 2, 3), surrogate=Cubic(1.0))
    assert backend_calls("lif") == {"torch": 1}
    with pytest.raises(BackendUnavailableError, match="kernel_source"):
        lif(torch.rand(4, 2, 3), surrogate=Cubic(1.0), backend="numba")


def test_missing_numba_gives_install_hint(monkeypatch):
    from spikelib.functional.lif import LIFConfig, LIFRequest
    from spikelib.kernels.cpu.lif_numba import check_numba

    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    reason = check_numba(LIFRequest(torch.device("cpu"), torch.float32, LIFConfig(), False))
    assert reason is not None and "pip install" in reason and "spikelib[fast]" in reason


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_thread_count_does_not_change_results(monkeypatch, threads):
    x = (torch.rand(9, 3, 4099) * 2).requires_grad_(True)
    ref = lif(x, backend="torch", return_membrane=True)
    (gref,) = torch.autograd.grad(ref.spikes.sum() + ref.membrane.sum(), x)
    monkeypatch.setenv("SPIKELIB_NUM_THREADS", threads)
    out = lif(x, backend="numba", return_membrane=True)
    (g,) = torch.autograd.grad(out.spikes.sum() + out.membrane.sum(), x)
    assert torch.equal(out.spikes, ref.spikes) and torch.equal(out.membrane, ref.membrane)
    torch.testing.assert_close(g, gref, rtol=2e-5, atol=2e-5)


def test_bad_thread_override_is_reported(monkeypatch):
    monkeypatch.setenv("SPIKELIB_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="SPIKELIB_NUM_THREADS must be an integer >= 1, got 'many'"):
        lif(torch.rand(9, 3, 4099), backend="numba")
