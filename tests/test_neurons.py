"""Neuron modules: they bind the functional core, keep state only when asked, and reset cleanly."""

import pickle

import pytest
import torch
from torch import nn

import spikelib
from spikelib.functional import lif


def test_lif_module_equals_functional():
    m = spikelib.LIF(tau=3.0, v_threshold=0.8, reset="soft", decay_input=False, surrogate="sigmoid")
    x = torch.rand(9, 4, 5)
    assert torch.equal(m(x), lif(x, tau=3.0, v_threshold=0.8, reset="soft", decay_input=False).spikes)


def test_stateless_by_default_and_stateful_continues():
    x = torch.rand(6, 2, 3) * 2
    m = spikelib.LIF()
    assert torch.equal(m(x), m(x)), "a stateless module must not leak state between calls"
    s = spikelib.LIF(stateful=True)
    first = s(x[:3])
    second = s(x[3:])
    assert torch.equal(torch.cat([first, second]), m(x))
    spikelib.reset(s)
    assert s.state is None
    assert torch.equal(s(x[:3]), first)


def test_stateful_batch_size_change_reinitialises_and_dtype_change_errors():
    s = spikelib.LIF(stateful=True)
    s(torch.rand(4, 2, 3))
    out = s(torch.rand(4, 5, 3))  # batch size changed: starts from rest
    assert out.shape == (4, 5, 3) and s.state.shape == (5, 3)
    with pytest.raises(RuntimeError, match=r"call spikelib.reset\(model\)"):
        s(torch.rand(4, 5, 3, dtype=torch.float64))


def test_explicit_state_overrides_kept_state():
    x = torch.rand(5, 2, 3) * 2
    v0 = torch.rand(2, 3)
    m = spikelib.LIF(stateful=True)
    m(x)
    assert torch.equal(m(x, v0), lif(x, v0).spikes)
    assert torch.equal(m.state, lif(x, v0).state.v)


def test_cell_steps_equal_sequence_and_backprop_through_time():
    x = (torch.rand(7, 3, 4) * 2).requires_grad_(True)
    cell = spikelib.LIFCell(tau=2.0, surrogate="atan")
    steps = torch.stack([cell(x_t) for x_t in x.unbind(0)])
    seq = lif(x, backend="torch").spikes
    assert torch.equal(steps, seq)
    (g_cell,) = torch.autograd.grad(steps.sum(), x)
    (g_seq,) = torch.autograd.grad(lif(x).spikes.sum(), x)
    torch.testing.assert_close(g_cell, g_seq, rtol=1e-5, atol=1e-6)
    spikelib.reset(nn.Sequential(cell))
    assert cell.state is None


def test_parametric_lif_learns_tau():
    m = spikelib.ParametricLIF(init_tau=2.0, shape=(3,))
    torch.testing.assert_close(m.tau_value(), torch.full((3,), 2.0))
    x = torch.rand(8, 4, 3) * 2
    m(x).sum().backward()
    assert m.w.grad is not None and m.w.grad.abs().sum() > 0
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    before = m.tau_value().detach().clone()
    opt.step()
    assert not torch.equal(before, m.tau_value().detach())


def test_learnable_threshold_gets_gradient():
    m = spikelib.LIF(learn_threshold=True)
    m(torch.rand(8, 4, 3) * 2).sum().backward()
    assert isinstance(m.v_threshold, nn.Parameter) and m.v_threshold.grad is not None


def test_modules_pickle_and_state_dict():
    m = nn.Sequential(nn.Linear(3, 4), spikelib.ParametricLIF(shape=(4,)), spikelib.LIF(tau=torch.full((4,), 3.0)))
    m2 = pickle.loads(pickle.dumps(m))
    x = torch.rand(5, 2, 3)
    assert torch.equal(m(x), m2(x))
    assert set(m.state_dict()) == {"0.weight", "0.bias", "1.w", "2._tau"}


def test_reset_clears_nested_models():
    model = nn.Sequential(nn.Linear(3, 4), spikelib.LIF(stateful=True), nn.Sequential(spikelib.LIFCell()))
    model[1](torch.rand(3, 2, 4))
    model[2][0](torch.rand(2, 4))
    spikelib.reset(model)
    assert model[1].state is None and model[2][0].state is None
