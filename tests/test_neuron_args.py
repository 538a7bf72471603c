"""Neuron arguments are checked at construction with errors that name the argument, and learnable parameters passed
in stay learnable (#23): a tau or threshold given as an nn.Parameter is registered as given and trained; a plain
tensor that requires grad is an error instead of being detached silently."""

import math

import pytest
import torch
from torch import nn

import spikelib


@pytest.mark.parametrize("make,exc,match", [
    (lambda: spikelib.LIF(tau="fast"), TypeError, "tau must be a real number, a tensor or an nn.Parameter, got str"),
    (lambda: spikelib.LIF(tau=float("nan")), ValueError, "tau must be a finite number"),
    (lambda: spikelib.LIF(tau=0.5), ValueError, r"tau must be >= 1 \(the decay per step is 1 - 1/tau\)"),
    (lambda: spikelib.LIF(tau=torch.tensor([2.0, math.inf])), ValueError, "tau contains NaN or inf"),
    (lambda: spikelib.LIF(tau=torch.tensor([2, 3])), TypeError, "tau must be a floating-point tensor"),
    (lambda: spikelib.LIF(v_threshold=True), TypeError, "v_threshold must be a real number"),
    (lambda: spikelib.LIF(v_threshold=torch.tensor([])), ValueError, "v_threshold is an empty tensor"),
    (lambda: spikelib.LIF(backend="fastest"), ValueError, r"backend must be 'auto' or one of \["),
    (lambda: spikelib.LIF(learn_threshold="yes"), TypeError, "learn .* must be a bool"),
    (lambda: spikelib.LIF(leak=1.2), ValueError, "leak must be <= 1"),
    (lambda: spikelib.ParametricLIF(init_tau=math.inf), ValueError, "init_tau must be a number > 1 and finite"),
    (lambda: spikelib.ParametricLIF(init_tau=2.0, shape=(0,)), ValueError, "shape must be a sequence of ints >= 1"),
    (lambda: spikelib.ParametricLIF(init_tau=2.0, shape="ab"), ValueError, "shape must be a sequence of ints"),
    (lambda: spikelib.LIFCell(tau=torch.tensor([0.5, 2.0])), ValueError, "tau must be >= 1"),
    (lambda: spikelib.LIFCell(v_threshold=float("nan")), ValueError, "v_threshold must be a finite number"),
    (lambda: spikelib.CubaLIF(current_decay=-0.1, voltage_decay=0.5), ValueError, "current_decay must be >= 0"),
    (lambda: spikelib.ALIF(tau_adapt=0.5), ValueError, "tau_adapt must be >= 1"),
    (lambda: spikelib.Izhikevich(tau=0.0), ValueError, "tau must be > 0"),
    (lambda: spikelib.IF(reset="zero"), ValueError, r"reset must be one of \['hard', 'soft'\]"),
    (lambda: spikelib.IF(backend="numba!"), ValueError, "backend must be 'auto' or one of"),
    (lambda: spikelib.IF(v_reset=math.inf), ValueError, "v_reset must be a finite number"),
])
def test_bad_arguments_fail_at_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("attr,kwargs", [("_tau", "tau"), ("v_threshold", "v_threshold")])
def test_parameters_passed_in_stay_learnable(attr, kwargs):
    p = nn.Parameter(torch.full((3,), 2.0 if kwargs == "tau" else 0.6))
    m = spikelib.LIF(**{kwargs: p})
    assert getattr(m, attr) is p and any(q is p for q in m.parameters())
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    x = torch.rand(12, 4, 3) * 1.5
    loss = (m(x, return_membrane=True)[1] ** 2).sum()
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    before = p.detach().clone()
    opt.step()
    assert not torch.equal(before, p.detach())
    assert "Parameter" in repr(m)
    cell = spikelib.LIFCell(**{kwargs: p})
    assert any(q is p for q in cell.parameters())


def test_tensor_requiring_grad_is_an_error_not_a_silent_copy():
    for kw in ("tau", "v_threshold"):
        t = torch.full((3,), 2.0, requires_grad=True)
        with pytest.raises(TypeError, match=f"{kw} requires grad but is not an nn.Parameter"):
            spikelib.LIF(**{kw: t})
    fixed = spikelib.LIF(tau=torch.full((3,), 2.0))
    assert "_tau" in dict(fixed.named_buffers()) and not list(fixed.parameters())


def test_repr_of_every_configuration():
    for m in (spikelib.LIF(tau=torch.full((3,), 2.0)), spikelib.LIF(learn_threshold=True), spikelib.ParametricLIF(),
              spikelib.LIFCell(), spikelib.neurons.iir_lif(shape=(4,)), spikelib.ParametricLIFCell(shape=(2,))):
        assert type(m).__name__ in repr(m)
