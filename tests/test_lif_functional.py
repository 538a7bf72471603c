"""The LIF equations, checked against an independent scalar implementation, a hand-worked case and finite
differences (float64)."""

import itertools

import pytest
import torch

import spikelib
from spikelib.functional import lif

BACKENDS = ["torch", "numba"]
FLAGS = list(itertools.product(["hard", "soft"], [True, False]))  # reset, decay_input


def scalar_lif(xs, v0, tau, vth, v_reset, reset, decay_input):
    """Plain-Python LIF for one neuron, written from the published equations (no torch)."""
    v, spikes, trace = v0, [], []
    for x in xs:
        h = v + (x - (v - v_reset)) / tau if decay_input else v - (v - v_reset) / tau + x
        s = 1.0 if h >= vth else 0.0
        v = (v_reset if s else h) if reset == "hard" else h - vth * s
        spikes.append(s)
        trace.append(v)
    return spikes, trace, v


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset,decay_input", FLAGS)
def test_matches_scalar_implementation(backend, reset, decay_input):
    T, B, N = 23, 3, 5
    x = torch.rand(T, B, N, dtype=torch.float64) * 1.5
    v0 = torch.rand(B, N, dtype=torch.float64) * 0.5
    tau = torch.rand(N, dtype=torch.float64) * 4 + 1
    vth = torch.rand(N, dtype=torch.float64) + 0.5
    out = lif(x, v0, tau=tau, v_threshold=vth, v_reset=-0.1, reset=reset, decay_input=decay_input,
              return_membrane=True, backend=backend)
    for b, n in itertools.product(range(B), range(N)):
        s, tr, vf = scalar_lif(x[:, b, n].tolist(), v0[b, n].item(), tau[n].item(), vth[n].item(), -0.1, reset,
                               decay_input)
        assert out.spikes[:, b, n].tolist() == s
        assert out.membrane[:, b, n].tolist() == pytest.approx(tr, abs=1e-14)
        assert out.state.v[b, n].item() == pytest.approx(vf, abs=1e-14)
    assert out.spikes.sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_worked_case(backend):
    # Constant input 1.5, tau 2, threshold 1, from rest 0, decay_input form:
    # hard: H1 = 0.75, H2 = 0.75 + (1.5 - 0.75)/2 = 1.125 -> spike, V = 0, then periodic with period 2.
    # soft: H2 = 1.125 -> V2 = 0.125; H3 = 0.8125; H4 = 1.15625 -> V4 = 0.15625.
    x = torch.full((4, 1, 1), 1.5, dtype=torch.float64)
    hard = lif(x, tau=2.0, return_membrane=True, backend=backend)
    assert hard.spikes.flatten().tolist() == [0, 1, 0, 1]
    assert hard.membrane.flatten().tolist() == [0.75, 0.0, 0.75, 0.0]
    soft = lif(x, tau=2.0, reset="soft", return_membrane=True, backend=backend)
    assert soft.spikes.flatten().tolist() == [0, 1, 0, 1]
    assert soft.membrane.flatten().tolist() == [0.75, 0.125, 0.8125, 0.15625]
    # decay_input=False: H1 = 1.5 -> spike at once.
    nd = lif(x, tau=2.0, decay_input=False, return_membrane=True, backend=backend)
    assert nd.spikes.flatten().tolist() == [1, 1, 1, 1]


def test_threshold_tie_spikes():
    # H == v_threshold exactly spikes (spikingjelly's rule).
    x = torch.full((1, 1, 1), 2.0)
    for backend in BACKENDS:
        assert lif(x, tau=2.0, backend=backend).spikes.item() == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset,decay_input", FLAGS)
def test_tau_and_threshold_gradients_match_finite_differences(backend, reset, decay_input):
    """With detach_reset and a loss on the membrane only, the surrogate plays no part: autograd must equal the
    true derivative, which finite differences give while no spike flips (float64)."""
    T, B, N = 12, 2, 3
    x = torch.rand(T, B, N, dtype=torch.float64) * (2.2 if decay_input else 1.2)
    v0 = torch.rand(B, N, dtype=torch.float64) * 0.3
    tau = (torch.rand(N, dtype=torch.float64) * 3 + 1.5).requires_grad_(True)
    vth = (torch.rand(N, dtype=torch.float64) * 0.3 + 0.8).requires_grad_(True)

    def membrane(x_, v0_, tau_, vth_):
        return lif(x_, v0_, tau=tau_, v_threshold=vth_, reset=reset, decay_input=decay_input, detach_reset=True,
                   return_membrane=True, backend=backend).membrane

    base = lif(x, v0, tau=tau.detach(), v_threshold=vth.detach(), reset=reset, decay_input=decay_input,
               return_membrane=True, backend=backend)
    assert 0 < base.spikes.sum() < base.spikes.numel()
    inputs = (x.requires_grad_(True), v0.requires_grad_(True), tau, vth)
    assert torch.autograd.gradcheck(membrane, inputs, eps=1e-7, atol=1e-6)


def test_parametric_lif_tau_gradient_matches_finite_differences():
    """ParametricLIF's w gradient (through tau = 1/sigmoid(w)) equals finite differences of a membrane loss."""
    from spikelib.neurons.lif import ParametricLIF

    m = ParametricLIF(init_tau=3.0, shape=(4,), detach_reset=True).double()
    x = torch.rand(10, 2, 4, dtype=torch.float64)

    def loss(w):
        tau = 1.0 / torch.sigmoid(w)
        return lif(x, tau=tau, detach_reset=True, return_membrane=True).membrane.sum()

    w = m.w.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (w,), eps=1e-7, atol=1e-6)
    # and the module's own forward uses the same tau
    spikelib.reset(m)
    out = m(x)
    (g,) = torch.autograd.grad(out.sum(), m.w)
    assert torch.isfinite(g).all()


def test_a_lif_config_outside_the_equations_is_refused_wherever_it_is_made():
    from spikelib.functional.lif import LIFConfig, lif_with_config

    with pytest.raises(ValueError, match="reset must be one of"):
        LIFConfig(reset="bogus")
    with pytest.raises(ValueError, match="fire must be one of"):
        LIFConfig(fire="sometimes")
    with pytest.raises(TypeError, match="detach_reset must be a bool"):
        LIFConfig(detach_reset=1)
    with pytest.raises(ValueError, match="v_reset must be a finite real number"):
        LIFConfig(v_reset=float("nan"))
    with pytest.raises(TypeError, match="surrogate must be a Surrogate"):
        LIFConfig(surrogate="atan")
    x = torch.rand(4, 2, 3)
    with pytest.raises(TypeError, match="config must be a LIFConfig"):
        lif_with_config(x, None, 2.0, 1.0, "hard")
    out = lif_with_config(x, None, None, 1.0, LIFConfig())  # tau None means 2, as in lif()
    assert torch.equal(out.spikes, lif(x, tau=2.0).spikes)
