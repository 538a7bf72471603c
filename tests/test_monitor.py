"""Monitor: records what chosen layers return (and their state traces) without changing the model's computation,
and leaves no hook behind."""

from typing import NamedTuple

import pytest
import torch
from torch import nn

import spikelib
from spikelib import losses
from spikelib.layers import DelayedLinear, Sequential
from spikelib.monitor import Monitor, Recorded, record
from spikelib.neurons import LIF, LIFCell, LeakyIntegrator


def _net():
    torch.manual_seed(0)
    net = Sequential(nn.Linear(6, 8), LIF(v_threshold=0.5), nn.Linear(8, 4), LIF(v_threshold=0.5),
                     LeakyIntegrator(3.0))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    return net


def _x(T=12, B=3, C=6, seed=0):
    return torch.rand(T, B, C, generator=torch.Generator().manual_seed(seed))


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_default_records_every_neuron_layer_and_leaves_no_hook():
    net, x = _net(), _x()
    with torch.no_grad():
        ref = net(x)
        h1 = net[1](net[0](x))
        h2 = net[3](net[2](h1))
    mon = Monitor(net)
    assert mon.names == ["1", "3", "4"] and not mon.active and _no_hooks(net)
    with mon:
        assert mon.active
        with torch.no_grad():
            out = net(x)
    assert torch.equal(out, ref) and _no_hooks(net) and not mon.active
    assert torch.equal(mon.trace("1"), h1) and torch.equal(mon.trace("3"), h2) and h1.sum() > 0 and h2.sum() > 0
    assert torch.equal(mon.trace("4"), ref)
    assert mon.firing_rates()["1"] == pytest.approx(float(h1.mean()))
    assert len(mon["1"]) == 1
    with torch.no_grad():
        net(x)  # not recording any more
    assert len(mon["1"]) == 1


def test_selection_by_name_type_pattern_and_module():
    net = _net()
    assert Monitor(net, LIF).names == ["1", "3"]
    assert Monitor(net, ["0", LeakyIntegrator]).names == ["0", "4"]
    assert Monitor(net, "[02]").names == ["0", "2"]
    assert Monitor(net, net[2]).names == ["2"]
    with pytest.raises(KeyError, match=r"no layer named '11'.*did you mean '1'"):
        Monitor(net, "11")
    with pytest.raises(ValueError, match="no layer of type LIFCell"):
        Monitor(net, LIFCell)
    with pytest.raises(TypeError, match="layers must hold layer names"):
        Monitor(net, [3])
    with pytest.raises(ValueError, match="no declared neuron layer"):
        Monitor(nn.Sequential(nn.Linear(2, 2)))


def test_states_recorded_and_the_model_output_unchanged():
    net, x = _net(), _x()
    with torch.no_grad():
        ref = net(x)
        direct = spikelib.lif(net[0](x), tau=2.0, v_threshold=0.5, return_membrane=True)
    with torch.no_grad():
        out, mon = record(net, x, layers=LIF, states=True)
    assert torch.equal(out, ref) and _no_hooks(net)
    rec = mon.trace("1")
    assert isinstance(rec, Recorded) and isinstance(rec.states, spikelib.LIFState)  # one form for every neuron
    assert torch.equal(rec.output, direct.spikes) and torch.equal(rec.states.v, direct.membrane)
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\) cannot return its states"):
        Monitor(net, "0", states=True)


class _Traces(NamedTuple):
    v: torch.Tensor
    i: torch.Tensor


class _TwoState(nn.Module):
    """A user's neuron with the return_states convention (keyword-only flag)."""

    temporal = True

    def forward(self, x, *, return_states=False):
        s = (x > 0.5).float()
        return (s, _Traces(x * 2, x * 3)) if return_states else s


class _AsksItself(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = LIF(v_threshold=0.3)
        self.neuron = _TwoState()

    def forward(self, x):
        s, v = self.lif(x, None, True)  # asks for the membrane itself, positionally
        return self.neuron(s + v)


def test_states_with_return_states_and_callers_that_ask_themselves():
    model, x = _AsksItself(), _x()
    with torch.no_grad():
        ref = model(x)
        out, mon = record(model, x, layers=["lif", "neuron"], states=True)
    assert torch.equal(out, ref)
    lif_rec, n_rec = mon.trace("lif"), mon.trace("neuron")
    assert torch.equal(lif_rec.states.v, model.lif(x, None, True)[1])
    assert isinstance(n_rec.states, _Traces) and torch.equal(n_rec.output, ref)
    assert torch.equal(n_rec.states.i, 3 * (lif_rec.output + lif_rec.states.v))


class _BothFlags(nn.Module):
    """The LIF interface of the neuron families: return_membrane (a tensor) and return_states (a NamedTuple)."""

    temporal = True

    def forward(self, x, state=None, return_membrane=False, return_states=False):
        s = (x > 0.5).float()
        if return_membrane:
            return s, x
        return (s, spikelib.LIFState(x)) if return_states else s


def test_return_states_is_preferred_and_both_give_the_same_record():
    x = _x()
    with torch.no_grad():
        out, mon = record(nn.Sequential(_BothFlags()), x, layers="0", states=True)
    rec = mon.trace("0")
    assert torch.equal(out, (x > 0.5).float()) and isinstance(rec.states, spikelib.LIFState)
    assert torch.equal(rec.states.v, x) and mon._flags["0"][0] == "return_states"


def test_cells_stacked_over_steps_equal_the_sequence_module():
    x = _x(T=15) * 2
    seq = LIF(tau=3.0)
    cell = LIFCell(tau=3.0)
    with torch.no_grad(), Monitor(cell, cell, states=True) as mon:
        for t in range(x.shape[0]):
            cell(x[t])
    rec = mon.trace("")
    with torch.no_grad():
        spikes, v = seq(x, return_membrane=True)
    assert rec.output.shape == (15, 3, 6)
    assert torch.equal(rec.output, spikes) and torch.allclose(rec.states.v, v) and spikes.sum() > 0


def test_any_declared_layer_and_undeclared_neighbours():
    class Custom(nn.Module):  # undeclared (tensors of its own): skipped by the default, recordable by name
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(5))

        def forward(self, x):
            return x * self.scale

    g = torch.Generator().manual_seed(0)
    net = Sequential(nn.Conv2d(2, 3, 3, padding=1), LIF(v_threshold=0.2), nn.Flatten(),
                     DelayedLinear(3 * 16, 5, 4, delays="random", generator=g), Custom(), LIF(v_threshold=0.2))
    x = _x(T=6, B=2, C=2 * 16).reshape(6, 2, 2, 4, 4)
    with torch.no_grad():
        ref = net(x)
        out, mon = record(net, x, layers=None)
        _, every = record(net, x, layers="*")
    assert mon.names == ["1", "5"] and torch.equal(out, ref)
    assert every.trace("0").shape == (12, 3, 4, 4)  # per-step conv: time folded into the batch by Sequential
    assert every.trace("3").shape == (6, 2, 5) and every.trace("4").shape == (12, 5)


def test_detach_false_lets_a_rate_regulariser_train_hidden_layers():
    net, x = _net(), _x()
    mon = Monitor(net, "1", detach=False)
    with mon:
        out = net(x)
    penalty = losses.rate_bounds(mon.trace("1"), upper=0.01)
    assert penalty > 0
    penalty.backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
    assert net[2].weight.grad is None  # the regulariser only reaches the layers before the recorded one
    assert out.requires_grad


def test_misuse_errors():
    net = _net()
    mon = Monitor(net)
    with pytest.raises(ValueError, match="nothing was recorded for layer '1'"):
        mon.trace("1")
    with pytest.raises(KeyError, match="layer '0' is not recorded"):
        mon["0"]
    with mon:
        with pytest.raises(RuntimeError, match="already recording"):
            mon.start()
    assert _no_hooks(net)
    with torch.no_grad(), mon:
        net(_x())
        net(_x(seed=1))
    assert len(mon["1"]) == 2 and mon.trace("1").shape == (24, 3, 8)  # sequence calls join along time
    mon.clear()
    assert mon["1"] == []
