"""spikelib's LIF equals the peer libraries when each is configured to the same dynamics.

spikelib's LIF (``spikelib.lif`` / ``spikelib.LIF``, see :mod:`spikelib.functional.lif`) is, per step ``t``::

    H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau      decay_input=True
    H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]        decay_input=False
    S[t] = Theta(H[t] - v_threshold)                       spike at H >= v_threshold (ties spike)
    V[t] = H[t] (1 - S) + v_reset S   (reset="hard")   or   H[t] - v_threshold S   (reset="soft")

with ``V[-1] = v_reset`` and the reset's gradient cut when ``detach_reset=True``. Below, ``th`` is ``v_threshold``.
Every "bitwise" claim is asserted here with ``torch.equal`` on random float32 and float64 inputs (several seeds,
taus and thresholds), on spikelib's torch reference over every configuration and on its numba backend over a subset
(numba equals the torch reference bitwise, see test_backends.py); gradients are asserted with
``torch.testing.assert_close``: they match to rounding, because the peers run the same chain rule in another order
(observed: about 1e-15 relative in float64, 1e-6 in float32).

spikingjelly 2.0 (``spikingjelly.activation_based``)
-----------------------------------------------------
* ``neuron.LIFNode(tau=tau, decay_input=d, v_threshold=th, v_reset=vr, surrogate_function=surrogate.ATan(),
  detach_reset=dr, step_mode="m", store_v_seq=True)`` equals
  ``spikelib.lif(x, tau=tau, decay_input=d, v_threshold=th, v_reset=vr, reset="hard", detach_reset=dr,
  surrogate="atan")``; ``v_reset=None`` (spikingjelly's soft reset) equals ``reset="soft", v_reset=0.0``.
  Spikes, the membrane trace (spikingjelly's ``v_seq``) and the final ``v`` are bitwise equal in float32 (its registered
  ``sj_lif`` operator) and float64 (its Python reference loop); input gradients match to rounding.
* Surrogates: ``surrogate.ATan(alpha=a)`` is ``"atan"`` / ``ATan(alpha=a)`` and ``surrogate.Sigmoid(alpha=a)`` is
  ``"sigmoid"`` / ``Sigmoid(alpha=a)``, with the same defaults (ATan 2, Sigmoid 4).
* ``neuron.ParametricLIFNode(init_tau, ...)`` equals ``spikelib.ParametricLIF(init_tau, ...)`` with the same ``w``
  (``tau = 1 / sigmoid(w)``): spikingjelly multiplies by ``sigmoid(w)`` where spikelib divides by ``tau``, so the
  membranes differ by rounding; the spikes are equal (asserted in float64, where a rounding-level difference cannot
  move a random input across the threshold) and the gradients for the input and ``w`` match to rounding.
* Differences: spikingjelly's default surrogate is ``Sigmoid(alpha=4)`` and spikelib's is ``"atan"``; both default
  to ``tau=2``, ``v_threshold=1``, hard reset to 0, ``decay_input=True`` and ``detach_reset=False``. spikingjelly
  requires ``tau > 1`` (a Python float), spikelib ``tau >= 1``. The tie rule is the same (``H >= th`` spikes).

norse 1.1 (``norse.torch``)
---------------------------
* ``LIF(LIFParameters(tau_mem_inv=1/tau, tau_syn_inv=1.0, v_leak=vr, v_th=th, v_reset=vr, method="super"),
  dt=1.0)`` with the initial state ``LIFFeedForwardState(v=vr, i=0)`` equals ``spikelib.lif(x, tau=tau,
  decay_input=True, v_threshold=th, v_reset=vr, reset="hard", detach_reset=False, surrogate=FastSigmoid(alpha=1))``.
  ``tau_syn_inv=1`` with ``dt=1`` makes norse's synaptic current exactly the input of the step (``i`` decays to 0
  after every step), and ``v_leak`` must equal ``v_reset`` (spikelib's resting potential is ``v_reset``).
  ``LIFBoxCell(LIFBoxParameters(tau_mem_inv=1/tau, v_leak=0, v_th=th, v_reset=0, method="super"), dt=1.0)`` stepped
  over time equals the same configuration with ``v_reset=0``; with ``reset_method=norse.torch.functional.reset
  .reset_subtract`` it equals ``reset="soft"`` (reset not detached either).
* Spikes and membrane (``record_states=True``) are bitwise equal when ``1/tau`` is exact, i.e. ``tau`` a power of two
  (norse multiplies by ``tau_mem_inv``, spikelib divides by ``tau``); for other ``tau`` they agree to rounding.
  Gradients match to rounding.
* Surrogate: norse 1.1.0's SuperSpike ignores ``alpha`` and always uses ``1 / (|x| + 1)^2``, which is spikelib's
  ``FastSigmoid(alpha=1)`` whatever ``LIFParameters.alpha`` says. ``method="tanh", alpha=2`` gives
  ``1 - tanh(2x)^2``, which is spikelib's ``Sigmoid(alpha=4)``; ``method="triangle", alpha=1`` is spikelib's
  ``Triangle(alpha=1)`` (norse's triangle scales the height by alpha but never the width, so other alphas have no
  spikelib equivalent).
* Differences: norse spikes only when ``H - th > 0`` (a tie does not spike; spikelib's does), never detaches the
  reset, and its defaults are another model: ``dt=1e-3``, ``tau_mem_inv=100``, ``tau_syn_inv=200`` (a current-based
  synapse), ``alpha=100``. Python-number parameters become float32 tensors and the default initial state is float32:
  for float64 inputs give the parameters and the state as float64 tensors, or the threshold is rounded to float32.

snnTorch 1.0 (``snntorch``)
---------------------------
snnTorch's ``Leaky`` keeps the *pre-reset* membrane ``mem = H`` and, by default (``reset_delay=True``), applies the
reset of step ``t-1`` at the start of step ``t`` from ``reset = Theta(mem[t-1] - th)`` (detached), i.e. from the
previous spike. Its step is ``H[t] = beta * V[t-1] + X[t]``: spikelib's ``decay_input=False`` with
``beta = 1 - 1/tau``.

* ``Leaky(beta=1 - 1/tau, threshold=th, reset_mechanism="zero", spike_grad=...)`` called step by step from a fresh
  state (a new ``Leaky`` or ``leaky.reset_mem()``: it keeps ``mem`` between calls) equals
  ``spikelib.lif(x, tau=tau, decay_input=False, v_threshold=th, v_reset=0.0, reset="hard", detach_reset=True)``:
  equal spikes, and snnTorch's ``mem`` is spikelib's ``H``, so ``mem * (1 - spk)`` equals spikelib's membrane ``V``.
* ``Leaky(..., reset_mechanism="zero", reset_delay=False)`` equals the same with ``detach_reset=False`` (its
  immediate reset ``mem - spk * mem`` keeps the spike's gradient), and its ``mem`` *is* spikelib's ``V``; this holds
  for any ``th > 0``.
* ``Leaky(..., reset_mechanism="subtract", reset_delay=False)`` equals ``reset="soft", detach_reset=False`` only while
  the membrane after a reset stays below the threshold (``H < 2 th``): snnTorch's guard against a double reset
  subtracts ``th`` once more *before* the next threshold test when ``V[t-1] > th``, so it then fires only at
  ``H - th > th``.
* The default ``reset_mechanism="subtract"`` (``reset_delay=True``) has no spikelib equivalent: snnTorch computes
  ``H[t] = beta H[t-1] + X[t] - th S[t-1]`` (the subtracted threshold is not decayed), spikelib (like spikingjelly)
  ``H[t] = beta (H[t-1] - th S[t-1]) + X[t]``. It is a LIF whose reset subtracts ``th / beta``.
* ``decay_input=True`` is reached by feeding ``x / tau`` (``= x * (1 - beta)``): spikes equal, membrane and gradients
  to rounding (``beta V + x/tau`` and ``V + (x - V)/tau`` round differently).
* Bitwise equality of ``H`` needs ``beta * V == V - V / tau`` exactly, which holds when ``tau`` is a power of two;
  otherwise spikes are equal and membranes agree to rounding.
* Surrogates: ``surrogate.fast_sigmoid(slope=k)`` is spikelib's ``FastSigmoid(alpha=k)`` (default 25 in both),
  ``surrogate.atan(alpha=a)`` is ``ATan(alpha=a)`` (default 2 in both).
* Differences: snnTorch spikes only when ``H - th > 0``; its spikes are float32 whatever the input dtype (so
  gradients that pass through them, from a loss on the spikes or through the reset when ``reset_delay=False``, are
  rounded to float32); ``beta`` and ``threshold`` given as Python numbers become float32
  tensors (give float64 tensors for float64 inputs); its default reset is ``"subtract"`` with ``reset_delay=True``
  and its default surrogate ``atan(alpha=2)``.

Inputs are continuous random values, so exact ties ``H == th`` (where the tie rules differ) do not occur; dedicated
tests pin each peer's tie rule.
"""

from __future__ import annotations

import importlib.util
import inspect
import math

import pytest
import torch

import spikelib
from spikelib.surrogate import ATan, FastSigmoid, Sigmoid, Triangle, get_surrogate, spike

pytestmark = pytest.mark.peers

T, B, N = 20, 4, 33
_HAS_NUMBA = importlib.util.find_spec("numba") is not None
_NUMBA = pytest.param("numba", marks=pytest.mark.skipif(not _HAS_NUMBA, reason="numba is not installed"))
BACKENDS = ["torch", _NUMBA]
GRAD_TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _input(gen: torch.Generator, dtype: torch.dtype, mean: float, std: float, shape=(T, B, N)) -> torch.Tensor:
    """Continuous random input (drawn in float64, then cast)."""
    return (mean + std * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)


def _weights(gen: torch.Generator, dtype: torch.dtype, shape=(T, B, N)) -> torch.Tensor:
    """Random loss weights that are exact in float32 (so a peer's float32 spikes do not round the gradient)."""
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype)


def _drive(decay_input: bool, tau: float, th: float) -> tuple[float, float]:
    """Mean and spread of an input that makes neurons fire at a moderate rate."""
    return (1.8 * th, 1.0 * th) if decay_input else (1.8 * th / tau, 1.0 * th / tau)


def _assert_fires(spikes: torch.Tensor) -> None:
    rate = float(spikes.detach().float().mean())
    assert 0.05 < rate < 0.9, f"test input is degenerate (firing rate {rate:.3f})"


def _grad_close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    scale = max(1.0, float(expected.abs().max()))
    tol = GRAD_TOL[dtype]
    torch.testing.assert_close(got, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)


def _spikelib_run(x, backend, weights_s, weights_v=None, **kw):
    """Run ``spikelib.lif`` on a leaf copy of ``x``; return (output, grad of x) for the weighted loss."""
    xl = x.detach().clone().requires_grad_(True)
    out = spikelib.lif(xl, return_membrane=True, backend=backend, **kw)
    loss = (out.spikes * weights_s).sum()
    if weights_v is not None:
        loss = loss + (out.membrane * weights_v).sum()
    (gx,) = torch.autograd.grad(loss, [xl])
    return out, gx


def _cases(full: list[tuple], numba_subset: list[tuple]) -> list:
    """All cases on the torch reference; a covering subset on numba (each numba case compiles a forward and a backward
    kernel, 3-5 s on a cold kernel cache; numba equals the torch reference over the full matrix in test_backends.py)."""
    params = [pytest.param("torch", *c, id="torch-" + "-".join(map(str, c))) for c in full]
    for c in numba_subset:
        params.append(pytest.param("numba", *c, id="numba-" + "-".join(map(str, c)),
                                   marks=pytest.mark.skipif(not _HAS_NUMBA, reason="numba is not installed")))
    return params


def _sj():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    return neuron, surrogate


def _norse():
    return pytest.importorskip("norse.torch")


def _snntorch():
    snntorch = pytest.importorskip("snntorch")
    import snntorch.surrogate  # noqa: F401  (submodule)

    return snntorch


# ---------------------------------------------------------------------------------------------------------------
# spikingjelly 2.0
# ---------------------------------------------------------------------------------------------------------------

_F32, _F64 = "float32", "float64"
_SJ_FULL = [
    (reset, decay, detach, sg, dt)
    for reset in ("hard", "soft")
    for decay in (True, False)
    for detach in (False, True)
    for sg in ("atan", "sigmoid")
    for dt in (_F32, _F64)
]
_SJ_NUMBA = [("hard", True, False, "atan", _F32), ("soft", False, True, "sigmoid", _F64)]
# (seed, tau, v_threshold, v_reset for the hard reset)
_SJ_SETTINGS = [(0, 2.0, 1.0, 0.0), (1, 3.0, 0.8, -0.25), (2, 1.5, 1.3, 0.0)]


@pytest.mark.parametrize(
    "backend,reset,decay_input,detach_reset,surrogate_name,dtype_name", _cases(_SJ_FULL, _SJ_NUMBA)
)
def test_spikingjelly_lif_node(backend, reset, decay_input, detach_reset, surrogate_name, dtype_name):
    neuron, sj_surrogate = _sj()
    dtype = getattr(torch, dtype_name)
    sj_sg = {"atan": sj_surrogate.ATan, "sigmoid": sj_surrogate.Sigmoid}[surrogate_name]()
    for seed, tau, th, vr in _SJ_SETTINGS:
        vr = vr if reset == "hard" else 0.0
        gen = _gen(seed)
        mean, std = _drive(decay_input, tau, th)
        x = _input(gen, dtype, mean + vr, std)
        ws, wv = _weights(gen, dtype), _weights(gen, dtype)

        node = neuron.LIFNode(tau=tau, decay_input=decay_input, v_threshold=th,
                              v_reset=vr if reset == "hard" else None, surrogate_function=sj_sg,
                              detach_reset=detach_reset, step_mode="m", store_v_seq=True)
        xs = x.detach().clone().requires_grad_(True)
        s_sj = node(xs)
        v_seq = node.v_seq
        (gx_sj,) = torch.autograd.grad((s_sj * ws).sum() + (v_seq * wv).sum(), [xs])

        out, gx = _spikelib_run(x, backend, ws, wv, tau=tau, v_threshold=th, v_reset=vr, reset=reset,
                                decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate_name)
        _assert_fires(out.spikes)
        assert s_sj.dtype == out.spikes.dtype == dtype
        assert torch.equal(out.spikes, s_sj)
        assert torch.equal(out.membrane, v_seq)
        assert torch.equal(out.state.v, node.v)
        _grad_close(gx, gx_sj, dtype)


_PLIF_FULL = [(reset, decay) for reset in ("hard", "soft") for decay in (True, False)]
_PLIF_NUMBA = [("soft", False)]


@pytest.mark.parametrize("backend,reset,decay_input", _cases(_PLIF_FULL, _PLIF_NUMBA))
def test_spikingjelly_parametric_lif(backend, reset, decay_input):
    neuron, sj_surrogate = _sj()
    dtype = torch.float64  # tau = 1/sigmoid(w) vs * sigmoid(w) round differently: float64 keeps spikes equal
    for seed, w0, th in [(0, 0.0, 1.0), (1, -0.7, 0.9), (2, 0.9, 1.2)]:
        gen = _gen(seed)
        tau0 = 1.0 + math.exp(-w0)
        mean, std = _drive(decay_input, tau0, th)
        x = _input(gen, dtype, mean, std)
        ws = _weights(gen, dtype)

        node = neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, v_threshold=th,
                                        v_reset=0.0 if reset == "hard" else None,
                                        surrogate_function=sj_surrogate.ATan(), step_mode="m").to(dtype)
        layer = spikelib.ParametricLIF(init_tau=2.0, v_threshold=th, reset=reset, decay_input=decay_input,
                                       surrogate="atan", backend=backend, stateful=True).to(dtype)
        with torch.no_grad():
            node.w.fill_(w0)
            layer.w.fill_(w0)
        assert torch.equal(layer.tau_value(), 1.0 / torch.sigmoid(node.w))

        xs = x.clone().requires_grad_(True)
        s_sj = node(xs)
        gx_sj, gw_sj = torch.autograd.grad((s_sj * ws).sum() + node.v.sum(), [xs, node.w])

        xl = x.clone().requires_grad_(True)
        s = layer(xl)
        assert layer.state is not None
        _assert_fires(s)
        assert torch.equal(s, s_sj)
        torch.testing.assert_close(layer.state, node.v.detach(), rtol=1e-12, atol=1e-13)
        # the final state kept by the module is detached: recompute it through the functional call for the loss
        v_final = spikelib.lif(xl, tau=layer.tau_value(), v_threshold=th, reset=reset, decay_input=decay_input,
                               surrogate="atan", backend=backend).state.v
        gx, gw = torch.autograd.grad((s * ws).sum() + v_final.sum(), [xl, layer.w])
        _grad_close(gx, gx_sj, dtype)
        torch.testing.assert_close(gw, gw_sj, rtol=1e-9, atol=1e-12)


def test_spikingjelly_surrogates_and_defaults():
    neuron, sj_surrogate = _sj()
    assert sj_surrogate.ATan().alpha == ATan().alpha == 2.0
    assert sj_surrogate.Sigmoid().alpha == Sigmoid().alpha == 4.0
    # documented default differences: spikingjelly's LIFNode defaults to Sigmoid, spikelib's LIF to atan
    node = neuron.LIFNode()
    assert type(node.surrogate_function) is sj_surrogate.Sigmoid and node.surrogate_function.alpha == 4.0
    assert node.tau == 2.0 and node.v_threshold == 1.0 and node.v_reset == 0.0
    assert node.decay_input is True and node.detach_reset is False
    assert spikelib.LIF().config.surrogate == ATan()
    x = torch.linspace(-2, 2, 1001, dtype=torch.float64)
    for sj_cls, ours in ((sj_surrogate.ATan, "atan"), (sj_surrogate.Sigmoid, "sigmoid")):
        for alpha in (None, 0.7, 3.0):
            sj_fn = sj_cls() if alpha is None else sj_cls(alpha=alpha)
            ours_fn = get_surrogate(ours, alpha)
            a = x.clone().requires_grad_(True)
            b = x.clone().requires_grad_(True)
            ya, yb = sj_fn(a), spike(b, ours_fn)
            assert torch.equal(ya, yb)  # Heaviside with x >= 0 spiking in both
            (ga,) = torch.autograd.grad(ya.sum(), [a])
            (gb,) = torch.autograd.grad(yb.sum(), [b])
            torch.testing.assert_close(gb, ga, rtol=1e-14, atol=1e-15)


def test_spikingjelly_tie_spikes_like_spikelib():
    neuron, sj_surrogate = _sj()
    # decay_input, tau=2, V=0: H = X/2 == 1.0 == th exactly at X = 2
    x = torch.tensor([[[2.0, 1.999, 2.001]]], dtype=torch.float64)
    node = neuron.LIFNode(tau=2.0, surrogate_function=sj_surrogate.ATan(), step_mode="m")
    s_sj = node(x)
    s = spikelib.lif(x, tau=2.0, backend="torch").spikes
    assert s_sj.flatten().tolist() == s.flatten().tolist() == [1.0, 0.0, 1.0]


# ---------------------------------------------------------------------------------------------------------------
# norse 1.1
# ---------------------------------------------------------------------------------------------------------------

_NORSE_FULL = [(dt, tau) for dt in (_F32, _F64) for tau in (2.0, 4.0, 3.0)]
_NORSE_NUMBA = [(_F64, 2.0)]


@pytest.mark.parametrize("backend,dtype_name,tau", _cases(_NORSE_FULL, _NORSE_NUMBA))
def test_norse_lif(backend, dtype_name, tau):
    norse = _norse()
    dtype = getattr(torch, dtype_name)
    exact = math.log2(tau).is_integer()
    for seed, th, vr in [(0, 1.0, 0.0), (1, 0.8, -0.2), (2, 1.3, 0.1)]:
        gen = _gen(seed)
        mean, std = _drive(True, tau, th)
        x = _input(gen, dtype, mean + vr, std)
        ws, wv = _weights(gen, dtype), _weights(gen, dtype)

        def c(v):
            return torch.tensor(v, dtype=dtype)

        p = norse.LIFParameters(tau_syn_inv=c(1.0), tau_mem_inv=c(1.0 / tau), v_leak=c(vr), v_th=c(th),
                                v_reset=c(vr), method="super", alpha=c(100.0))
        layer = norse.LIF(p, dt=1.0, record_states=True)
        state0 = norse.LIFFeedForwardState(v=torch.full((B, N), vr, dtype=dtype), i=torch.zeros(B, N, dtype=dtype))
        xn = x.clone().requires_grad_(True)
        z, states = layer(xn, state0)
        (gx_n,) = torch.autograd.grad((z * ws).sum() + (states.v * wv).sum(), [xn])

        out, gx = _spikelib_run(x, backend, ws, wv, tau=tau, v_threshold=th, v_reset=vr, reset="hard",
                                decay_input=True, detach_reset=False, surrogate=FastSigmoid(alpha=1.0))
        _assert_fires(out.spikes)
        assert z.dtype == dtype
        assert torch.equal(out.spikes, z)
        assert torch.equal(states.i, torch.zeros_like(states.i))  # tau_syn_inv=1, dt=1: no synaptic memory
        if exact:
            assert torch.equal(out.membrane, states.v)
        else:
            rtol = 1e-5 if dtype == torch.float32 else 1e-12
            torch.testing.assert_close(out.membrane, states.v, rtol=rtol, atol=rtol)
        _grad_close(gx, gx_n, dtype)


_BOX_FULL = [(reset, dt) for reset in ("hard", "soft") for dt in (_F32, _F64)]
_BOX_NUMBA = [("hard", _F64)]  # the same kernels as the norse LIF numba case


@pytest.mark.parametrize("backend,reset,dtype_name", _cases(_BOX_FULL, _BOX_NUMBA))
def test_norse_lif_box(backend, reset, dtype_name):
    norse = _norse()
    from norse.torch.functional.reset import reset_subtract, reset_value

    dtype = getattr(torch, dtype_name)
    tau = 2.0
    for seed, th in [(0, 1.0), (1, 0.7), (2, 1.4)]:
        gen = _gen(seed)
        mean, std = _drive(True, tau, th)
        x = _input(gen, dtype, mean, std)
        ws, wv = _weights(gen, dtype), _weights(gen, dtype)
        c = lambda v: torch.tensor(v, dtype=dtype)  # noqa: E731
        p = norse.LIFBoxParameters(tau_mem_inv=c(1.0 / tau), v_leak=c(0.0), v_th=c(th), v_reset=c(0.0),
                                   method="super", alpha=c(100.0),
                                   reset_method=reset_value if reset == "hard" else reset_subtract)
        cell = norse.LIFBoxCell(p, dt=1.0)
        xn = x.clone().requires_grad_(True)
        state = norse.LIFBoxFeedForwardState(v=torch.zeros(B, N, dtype=dtype))
        zs, vs = [], []
        for x_t in xn.unbind(0):
            z_t, state = cell(x_t, state)
            zs.append(z_t)
            vs.append(state.v)
        z, v = torch.stack(zs), torch.stack(vs)
        (gx_n,) = torch.autograd.grad((z * ws).sum() + (v * wv).sum(), [xn])

        out, gx = _spikelib_run(x, backend, ws, wv, tau=tau, v_threshold=th, reset=reset, decay_input=True,
                                detach_reset=False, surrogate=FastSigmoid(alpha=1.0))
        _assert_fires(out.spikes)
        assert torch.equal(out.spikes, z)
        assert torch.equal(out.membrane, v)
        _grad_close(gx, gx_n, dtype)


def test_norse_surrogates_and_defaults():
    norse = _norse()
    from norse.torch.functional.threshold import threshold

    x = torch.linspace(-2, 2, 1001, dtype=torch.float64)
    x = x[x != 0]  # the tie is tested separately
    # (norse method, norse alpha) -> spikelib surrogate; SuperSpike ignores alpha in norse 1.1.0
    pairs = [
        ("super", 100.0, FastSigmoid(alpha=1.0)),
        ("super", 3.0, FastSigmoid(alpha=1.0)),
        ("tanh", 2.0, Sigmoid(alpha=4.0)),
        ("triangle", 1.0, Triangle(alpha=1.0)),
    ]
    for method, alpha, ours in pairs:
        a = x.clone().requires_grad_(True)
        b = x.clone().requires_grad_(True)
        ya = threshold(a, method, torch.tensor(alpha, dtype=torch.float64) if method == "super" else alpha)
        yb = spike(b, ours)
        assert torch.equal(ya, yb)
        (ga,) = torch.autograd.grad(ya.sum(), [a])
        (gb,) = torch.autograd.grad(yb.sum(), [b])
        torch.testing.assert_close(gb, ga, rtol=1e-14, atol=1e-15, msg=f"norse {method} alpha={alpha}")
    # documented defaults: a different model (dt=1e-3 s, tau_mem=10 ms, current synapse tau_syn=5 ms, alpha=100)
    p = norse.LIFParameters()
    assert float(p.tau_mem_inv) == 100.0 and float(p.tau_syn_inv) == 200.0 and float(p.alpha) == 100.0
    assert p.method == "super" and float(p.v_th) == 1.0 and float(p.v_reset) == 0.0 and float(p.v_leak) == 0.0
    assert norse.LIF().dt == 0.001


def test_norse_tie_does_not_spike():
    norse = _norse()
    x = torch.tensor([[[2.0, 1.999, 2.001]]], dtype=torch.float64)  # H = X/2: a tie at X = 2
    c = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    p = norse.LIFParameters(tau_syn_inv=c(1.0), tau_mem_inv=c(0.5), v_leak=c(0.0), v_th=c(1.0), v_reset=c(0.0))
    state0 = norse.LIFFeedForwardState(v=torch.zeros(1, 3, dtype=torch.float64),
                                       i=torch.zeros(1, 3, dtype=torch.float64))
    z, _ = norse.LIF(p, dt=1.0)(x, state0)
    assert z.flatten().tolist() == [0.0, 0.0, 1.0]
    assert spikelib.lif(x, tau=2.0, backend="torch").spikes.flatten().tolist() == [1.0, 0.0, 1.0]


# ---------------------------------------------------------------------------------------------------------------
# snnTorch 1.0
# ---------------------------------------------------------------------------------------------------------------


def _snn_leaky(snntorch, tau, th, dtype, surrogate_name, **kw):
    slope = {"fast_sigmoid": snntorch.surrogate.fast_sigmoid(slope=25), "atan": snntorch.surrogate.atan(alpha=2.0)}
    return snntorch.Leaky(beta=torch.tensor(1.0 - 1.0 / tau, dtype=dtype), threshold=torch.tensor(th, dtype=dtype),
                          spike_grad=slope[surrogate_name], **kw)


def _snn_run(leaky, x):
    spk, mem = [], []
    for x_t in x.unbind(0):
        s_t, m_t = leaky(x_t)
        spk.append(s_t)
        mem.append(m_t)
    return torch.stack(spk), torch.stack(mem)


_SNN_FULL = [(sg, dt, tau) for sg in ("fast_sigmoid", "atan") for dt in (_F32, _F64) for tau in (2.0, 4.0, 5.0)]
_SNN_NUMBA = [("fast_sigmoid", _F64, 2.0)]
_SNN_SETTINGS = [(0, 1.0), (1, 0.75), (2, 1.5)]


@pytest.mark.parametrize("backend,surrogate_name,dtype_name,tau", _cases(_SNN_FULL, _SNN_NUMBA))
def test_snntorch_leaky_zero_reset(backend, surrogate_name, dtype_name, tau):
    """Default reset_delay=True, reset to zero == hard reset, decay_input=False, detach_reset=True."""
    snntorch = _snntorch()
    dtype = getattr(torch, dtype_name)
    exact = math.log2(tau).is_integer()
    for seed, th in _SNN_SETTINGS:
        gen = _gen(seed)
        mean, std = _drive(False, tau, th)
        x = _input(gen, dtype, mean, std)
        ws, wv = _weights(gen, dtype), _weights(gen, dtype)
        leaky = _snn_leaky(snntorch, tau, th, dtype, surrogate_name, reset_mechanism="zero")
        xn = x.clone().requires_grad_(True)
        spk, mem = _snn_run(leaky, xn)
        v_snn = mem * (1 - spk.detach().to(dtype))  # snnTorch keeps H; V = H (1 - S) with the reset detached
        (gx_n,) = torch.autograd.grad((spk.to(dtype) * ws).sum() + (v_snn * wv).sum(), [xn])

        out, gx = _spikelib_run(x, backend, ws, wv, tau=tau, v_threshold=th, reset="hard", decay_input=False,
                                detach_reset=True, surrogate=get_surrogate(surrogate_name))
        _assert_fires(out.spikes)
        assert spk.dtype == torch.float32  # snnTorch's spikes are float32 whatever the input dtype
        assert mem.dtype == dtype
        assert torch.equal(out.spikes, spk.to(dtype))
        if exact:
            assert torch.equal(out.membrane, v_snn)
        else:
            rtol = 1e-5 if dtype == torch.float32 else 1e-12
            torch.testing.assert_close(out.membrane, v_snn, rtol=rtol, atol=rtol)
        _grad_close(gx, gx_n, dtype)


_SNN_NODELAY_FULL = [(reset, dt) for reset in ("zero", "subtract") for dt in (_F32, _F64)]
_SNN_NODELAY_NUMBA = [("subtract", _F32)]


@pytest.mark.parametrize("backend,mechanism,dtype_name", _cases(_SNN_NODELAY_FULL, _SNN_NODELAY_NUMBA))
def test_snntorch_leaky_immediate_reset(backend, mechanism, dtype_name):
    """reset_delay=False: 'zero' == hard reset with the reset in the graph; 'subtract' == soft reset while H < 2 th."""
    snntorch = _snntorch()
    dtype = getattr(torch, dtype_name)
    tau = 2.0
    for seed, th in _SNN_SETTINGS:
        gen = _gen(seed)
        if mechanism == "zero":
            mean, std = _drive(False, tau, th)
            x = _input(gen, dtype, mean, std)
        else:  # X in [-0.5 th, 0.9 th) keeps V < th, so H = beta V + X < 2 th
            x = (th * (1.4 * torch.rand((T, B, N), generator=gen, dtype=torch.float64) - 0.5)).to(dtype)
        ws, wv = _weights(gen, dtype), _weights(gen, dtype)
        leaky = _snn_leaky(snntorch, tau, th, dtype, "fast_sigmoid", reset_mechanism=mechanism, reset_delay=False)
        xn = x.clone().requires_grad_(True)
        spk, mem = _snn_run(leaky, xn)
        (gx_n,) = torch.autograd.grad((spk.to(dtype) * ws).sum() + (mem * wv).sum(), [xn])

        out, gx = _spikelib_run(x, backend, ws, wv, tau=tau, v_threshold=th, decay_input=False, detach_reset=False,
                                reset="hard" if mechanism == "zero" else "soft", surrogate=FastSigmoid(alpha=25.0))
        _assert_fires(out.spikes)
        if mechanism == "subtract":
            h_max = float((out.membrane + th * out.spikes).detach().max())
            assert h_max < 2 * th
        assert torch.equal(out.spikes, spk.to(dtype))
        assert torch.equal(out.membrane, mem)
        # snnTorch's spikes are float32 and here its reset flows through them: the gradient is rounded to float32
        _grad_close(gx, gx_n, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_snntorch_leaky_decay_input(backend):
    """decay_input=True is snnTorch fed x / tau: equal spikes, membrane and gradients to rounding."""
    snntorch = _snntorch()
    dtype = torch.float64
    for seed, tau, th in [(0, 2.0, 1.0), (1, 3.0, 0.8), (2, 1.5, 1.2)]:
        gen = _gen(seed)
        mean, std = _drive(True, tau, th)
        x = _input(gen, dtype, mean, std)
        ws, wv = _weights(gen, dtype), _weights(gen, dtype)
        leaky = _snn_leaky(snntorch, tau, th, dtype, "fast_sigmoid", reset_mechanism="zero")
        xn = x.clone().requires_grad_(True)
        spk, mem = _snn_run(leaky, xn / tau)
        v_snn = mem * (1 - spk.detach().to(dtype))
        (gx_n,) = torch.autograd.grad((spk.to(dtype) * ws).sum() + (v_snn * wv).sum(), [xn])

        out, gx = _spikelib_run(x, backend, ws, wv, tau=tau, v_threshold=th, reset="hard", decay_input=True,
                                detach_reset=True, surrogate=FastSigmoid(alpha=25.0))
        _assert_fires(out.spikes)
        assert torch.equal(out.spikes, spk.to(dtype))
        torch.testing.assert_close(out.membrane, v_snn, rtol=1e-12, atol=1e-13)
        _grad_close(gx, gx_n, dtype)


def test_snntorch_default_subtract_is_not_spikelib_soft():
    """Documented difference: snnTorch's delayed subtraction is not decayed; spikelib's soft reset is."""
    snntorch = _snntorch()
    x = torch.tensor([1.5, 0.8], dtype=torch.float64).reshape(2, 1, 1)
    leaky = snntorch.Leaky(beta=torch.tensor(0.5, dtype=torch.float64),
                           threshold=torch.tensor(1.0, dtype=torch.float64))
    assert leaky.reset_mechanism == "subtract" and leaky.reset_delay is True
    spk, mem = _snn_run(leaky, x)
    # snnTorch: H1 = 0.5 * 1.5 + 0.8 - 1 = 0.55 (no spike); spikelib: H1 = 0.5 * (1.5 - 1) + 0.8 = 1.05 (spike)
    assert spk.flatten().tolist() == [1.0, 0.0]
    assert mem.flatten().tolist() == [1.5, 0.5 * 1.5 + 0.8 - 1.0]
    out = spikelib.lif(x, tau=2.0, reset="soft", decay_input=False, backend="torch")
    assert out.spikes.flatten().tolist() == [1.0, 1.0]
    # ... and it is a LIF whose reset subtracts th / beta:
    h, v = [], torch.zeros(1, 1, dtype=torch.float64)
    for x_t in x.unbind(0):
        h_t = 0.5 * v + x_t
        h.append(h_t)
        v = h_t - (1.0 / 0.5) * (h_t >= 1.0).to(h_t.dtype)
    assert torch.equal(torch.stack(h), mem)


def test_snntorch_immediate_subtract_differs_above_twice_threshold():
    """Documented difference: after a soft reset that leaves V > th, snnTorch subtracts th again before firing."""
    snntorch = _snntorch()
    x = torch.tensor([2.5, 1.2], dtype=torch.float64).reshape(2, 1, 1)
    leaky = snntorch.Leaky(beta=torch.tensor(0.5, dtype=torch.float64),
                           threshold=torch.tensor(1.0, dtype=torch.float64), reset_delay=False)
    spk, mem = _snn_run(leaky, x)
    # both: H0 = 2.5 spikes, V0 = 1.5. spikelib: H1 = 0.75 + 1.2 = 1.95 spikes, V1 = 0.95.
    # snnTorch: V0 > th, so it tests 0.75 + 1.2 - 1 = 0.95 (no spike) and then adds th back: mem 1.95.
    assert spk.flatten().tolist() == [1.0, 0.0]
    assert mem.flatten().tolist() == [1.5, 1.95]
    out = spikelib.lif(x, tau=2.0, reset="soft", decay_input=False, return_membrane=True, backend="torch")
    assert out.spikes.flatten().tolist() == [1.0, 1.0]
    assert out.membrane.flatten().tolist() == [1.5, 1.95 - 1.0]


def test_snntorch_surrogates_and_defaults():
    snntorch = _snntorch()
    sur = snntorch.surrogate
    assert inspect.signature(sur.fast_sigmoid).parameters["slope"].default == FastSigmoid().alpha == 25
    assert inspect.signature(sur.atan).parameters["alpha"].default == ATan().alpha == 2.0
    leaky = snntorch.Leaky(beta=0.5)
    assert leaky.reset_mechanism == "subtract" and leaky.reset_delay is True
    assert leaky.beta.dtype == torch.float32 and leaky.threshold.dtype == torch.float32  # Python numbers -> float32
    x = torch.linspace(-2, 2, 1001, dtype=torch.float64)
    x = x[x != 0]  # the tie is tested separately
    for snn_fn, ours in ((sur.fast_sigmoid(slope=25), FastSigmoid(25.0)), (sur.fast_sigmoid(slope=3), FastSigmoid(3.0)),
                         (sur.atan(alpha=2.0), ATan(2.0)), (sur.atan(alpha=0.5), ATan(0.5))):
        a = x.clone().requires_grad_(True)
        b = x.clone().requires_grad_(True)
        ya, yb = snn_fn(a), spike(b, ours)
        assert ya.dtype == torch.float32
        assert torch.equal(ya.to(torch.float64), yb)
        # feed float32-exact upstream gradients so that snnTorch's float32 spikes do not round them
        (ga,) = torch.autograd.grad(ya, [a], grad_outputs=torch.ones_like(ya))
        (gb,) = torch.autograd.grad(yb.sum(), [b])
        torch.testing.assert_close(gb, ga, rtol=1e-14, atol=1e-15)


def test_snntorch_tie_does_not_spike():
    snntorch = _snntorch()
    x = torch.tensor([[[1.0, 0.999, 1.001]]], dtype=torch.float64)  # decay_input=False, V=0: H = X, tie at X = 1
    leaky = snntorch.Leaky(beta=torch.tensor(0.5, dtype=torch.float64),
                           threshold=torch.tensor(1.0, dtype=torch.float64), reset_mechanism="zero")
    spk, _ = _snn_run(leaky, x)
    assert spk.flatten().tolist() == [0.0, 0.0, 1.0]
    assert spikelib.lif(x, tau=2.0, decay_input=False, backend="torch").spikes.flatten().tolist() == [1.0, 0.0, 1.0]
