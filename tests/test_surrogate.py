"""Surrogate gradients: each gradient equals the derivative of its primitive (float64 autograd), the spike function
is an exact step with that gradient, and surrogates are picklable and registered by name."""

import math
import pickle

import pytest
import torch

from spikelib.surrogate import SURROGATES, Surrogate, get_surrogate, spike

NAMES = ["atan", "sigmoid", "fast_sigmoid", "triangle", "rectangular"]


def _points(s: Surrogate) -> torch.Tensor:
    """Points in [-3/a, 3/a], avoiding the kinks of the piecewise surrogates by a margin."""
    x = torch.linspace(-3.0, 3.0, 601, dtype=torch.float64) / s.alpha
    kinks = torch.tensor([0.0, 1.0, -1.0, 0.5, -0.5], dtype=torch.float64) / s.alpha
    far = (x[:, None] - kinks[None, :]).abs().min(dim=1).values > 1e-3 / s.alpha
    return x[far]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 4.0])
def test_grad_is_derivative_of_primitive(name, alpha):
    s = get_surrogate(name, alpha)
    x = _points(s).requires_grad_(True)
    (d,) = torch.autograd.grad(s.primitive(x).sum(), x)
    torch.testing.assert_close(s.grad(x.detach()), d, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_finite_differences_of_primitive(name):
    s = get_surrogate(name, 2.0)
    x = _points(s)
    eps = 1e-6
    fd = (s.primitive(x + eps) - s.primitive(x - eps)) / (2 * eps)
    torch.testing.assert_close(s.grad(x), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_spike_forward_is_step_backward_is_surrogate(name):
    s = get_surrogate(name)
    x = torch.tensor([-1.0, -1e-9, 0.0, 1e-9, 2.0], dtype=torch.float64, requires_grad=True)
    y = spike(x, s)
    assert torch.equal(y, torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, s.grad(x.detach()))


def test_known_values():
    # ATan peak a/2, Sigmoid peak a/4, fast sigmoid peak 1, triangle peak a, rectangular a.
    z = torch.zeros(1, dtype=torch.float64)
    assert get_surrogate("atan", 2.0).grad(z).item() == pytest.approx(1.0)
    assert get_surrogate("sigmoid", 4.0).grad(z).item() == pytest.approx(1.0)
    assert get_surrogate("fast_sigmoid", 25.0).grad(z).item() == pytest.approx(1.0)
    assert get_surrogate("triangle", 3.0).grad(z).item() == pytest.approx(3.0)
    assert get_surrogate("rectangular", 3.0).grad(z).item() == pytest.approx(3.0)
    # atan at x = 1 with a = 2: 1 / (1 + pi^2)
    one = torch.ones(1, dtype=torch.float64)
    assert get_surrogate("atan", 2.0).grad(one).item() == pytest.approx(1 / (1 + math.pi**2))


@pytest.mark.parametrize("name", NAMES)
def test_pickle_roundtrip_and_equality(name):
    s = get_surrogate(name, 3.0)
    t = pickle.loads(pickle.dumps(s))
    assert t == s and hash(t) == hash(s) and t.alpha == 3.0
    assert type(t) is SURROGATES[name]


def test_registry_and_errors():
    assert get_surrogate("superspike").name == "fast_sigmoid"
    with pytest.raises(ValueError, match="unknown surrogate 'nope'"):
        get_surrogate("nope")
    with pytest.raises(TypeError, match="surrogate must be a name"):
        get_surrogate(3)
    with pytest.raises(ValueError, match="alpha must be finite and > 0"):
        get_surrogate("atan", -1.0)
    with pytest.raises(ValueError, match="alpha must be finite and > 0"):
        get_surrogate("atan", float("nan"))
    with pytest.raises(ValueError, match="not both"):
        get_surrogate(get_surrogate("atan", 2.0), alpha=3.0)
