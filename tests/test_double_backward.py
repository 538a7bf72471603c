"""Gradients of gradients (``create_graph=True``): the torch backends differentiate their own backward; a backward
computed by kernels (numba here; the CuPy ones share the guard) refuses instead of silently treating its result as a
constant, and names the layer and the fix."""

import pytest
import torch

import spikelib
from spikelib.functional.linear import linear
from spikelib.kernels import backend_calls, reset_backend_calls
from spikelib.layers.delay import DelayedLinear


def _penalised_loss(layer, x):
    """A gradient penalty: ``loss + |d loss / d x|^2`` (``create_graph=True``)."""
    out = layer(x)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum()
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    return loss + (g ** 2).sum()


def _spiking_layer(backend):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6).double(),
                               spikelib.LIF(tau=2.0, surrogate="sigmoid", backend=backend))


def test_torch_lif_differentiates_its_surrogate_gradient():
    """gradgradcheck (float64): the torch backend's first derivative (the surrogate's) is differentiated exactly. The
    reset is detached: otherwise the first derivative contains the spikes themselves (steps), whose derivative the
    surrogate replaces, so it is not the finite difference gradgradcheck compares with."""
    x = (torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.5)
    lif = spikelib.LIF(tau=2.0, surrogate="sigmoid", backend="torch", detach_reset=True)
    assert torch.autograd.gradgradcheck(lif, (x.requires_grad_(),))


def test_a_gradient_penalty_trains_through_the_torch_backend_and_reaches_the_weights():
    net = _spiking_layer("torch")
    x = torch.randn(6, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).mul(3).requires_grad_()
    _penalised_loss(net, x).backward()
    w_with = net[0].weight.grad.clone()
    net.zero_grad()
    out = net(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
    assert not torch.allclose(w_with, net[0].weight.grad)  # the penalty's own gradient arrived


@pytest.mark.parametrize("make, name", [
    (lambda: _spiking_layer("numba"), "lif (numba)"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 6).double(),
                                 spikelib.CubaLIF(current_decay=0.3, voltage_decay=0.2, backend="numba")),
     "neuron cuba_lif (numba)"),
])
def test_numba_neurons_refuse_create_graph_and_say_what_to_do(make, name):
    net = make()
    x = torch.randn(6, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).mul(3).requires_grad_()
    reset_backend_calls()
    with pytest.raises(RuntimeError, match=r"create_graph=True.*backend='torch'") as info:
        _penalised_loss(net, x)
    assert str(info.value).startswith(name)
    net(x).sum().backward()  # a first-order backward is unaffected


def test_numba_linear_and_delay_kernels_refuse_create_graph():
    x = (torch.rand(20, 3, 12, generator=torch.Generator().manual_seed(2)) < 0.05).double().requires_grad_()
    w = torch.randn(8, 12, dtype=torch.float64, requires_grad=True)
    reset_backend_calls()
    with pytest.raises(RuntimeError, match=r"^linear \(numba\).*create_graph=True"):
        out = linear(x, w, backend="numba")
        torch.autograd.grad(out.sum() + (out ** 2).sum(), x, create_graph=True)
    assert backend_calls("linear").get("numba", 0) == 1
    layer = DelayedLinear(12, 8, 4, backend="numba").double()
    with pytest.raises(RuntimeError, match=r"^delay_linear_int \(numba\).*create_graph=True"):
        _penalised_loss(layer.round_delays(), x)
    for backend in ("numba", "torch", "spectral"):  # the Gaussian delays: a constant grad_y, the penalty on weights
        layer = DelayedLinear(12, 8, 4, backend=backend).double()
        with pytest.raises(RuntimeError, match=r"^delayed_linear_gaussian: .*round_delays"):
            _penalised_loss(layer, x)


def test_integer_delays_on_the_torch_backend_differentiate_twice():
    x = (torch.rand(20, 3, 12, generator=torch.Generator().manual_seed(2)) < 0.3).double().requires_grad_()
    layer = DelayedLinear(12, 8, 4, backend="torch").double().round_delays()
    assert torch.autograd.gradgradcheck(layer, (x,))
    _penalised_loss(layer, x).backward()
    assert layer.weight.grad.abs().sum() > 0


def test_elm_fast_refuses_create_graph_and_its_torch_loop_differentiates_twice():
    from spikelib.neurons.elm import ELM

    x = torch.randn(8, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_()
    fast = ELM(5, 3, num_memory=4, backend="fast", generator=torch.Generator().manual_seed(0)).double()
    with pytest.raises(RuntimeError, match=r"^elm \(fast\).*backend='torch_loop'"):
        _penalised_loss(fast, x)
    loop = ELM(5, 3, num_memory=4, backend="torch_loop", generator=torch.Generator().manual_seed(0)).double()
    assert torch.autograd.gradgradcheck(loop, (x,))
