"""torch.compile: spikelib's fast CPU kernels are PyTorch custom operators (``spikelib::lif_numba_forward`` /
``_backward``, ``spikelib::neuron_numba_forward`` / ``_backward``) with their autograd and fake-tensor functions, so
Dynamo keeps them opaque and compiles the rest of the model, also with ``fullgraph=True``; a compiled model equals the
eager one (outputs, gradients, kept state, learnable leak/decay projections). ``torch.library.opcheck`` checks the
operators' registrations."""

import pytest
import torch
from torch import nn

import spikelib
from spikelib.kernels import backend_calls, reset_backend_calls
from spikelib.kernels.cpu.lif_numba import lif_numba_forward
from spikelib.kernels.cpu.neuron_numba import neuron_numba_forward
from spikelib.kernels.opaque import lif_config_from_key, lif_config_key, spec_from_key, spec_key


def _net(neuron_a, neuron_b):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), neuron_a, nn.Linear(16, 4), neuron_b)
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    return net


NETS = {
    "lif": lambda: _net(spikelib.LIF(), spikelib.LIF(tau=torch.full((4,), 3.0), learn_threshold=True)),
    "iir": lambda: _net(spikelib.neurons.iir_lif(v_threshold=0.5, shape=(16,)),
                        spikelib.LIF(leak=0.9, fire="ratio", reset="soft", surrogate="piecewise_linear")),
    "families": lambda: _net(spikelib.CubaLIF(current_decay=0.3, voltage_decay=0.2, learn=("current_decay",)),
                             spikelib.ALIF(tau_mem=2.0, v_threshold=0.5)),
}


class _Recorder:
    """A torch.compile backend that records the operators of the Dynamo graph and runs it with AOTAutograd."""

    def __init__(self):
        self.targets = []

    def __call__(self, gm, example_inputs):
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        self.targets += [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
        boxed = lambda g, _: make_boxed_func(g.forward)  # noqa: E731
        return aot_autograd(fw_compiler=boxed, bw_compiler=boxed)(gm, example_inputs)


def _grads(net, out):
    net.zero_grad()
    (out * torch.arange(out.numel()).view(out.shape).float().sin()).sum().backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("fullgraph", [True, False])
def test_compiled_equals_eager_and_kernels_stay_opaque(name, fullgraph):
    net = NETS[name]()
    x = torch.rand(6, 3, 8) * 3
    eager = net(x)
    ge = _grads(net, eager)
    rec = _Recorder()
    compiled = torch.compile(net, backend=rec, fullgraph=fullgraph)
    reset_backend_calls()
    out = compiled(x)
    out2 = compiled(x)  # no recompilation (fullgraph would fail on it)
    assert backend_calls() == {}  # not counted under compile: the graph below shows what runs
    assert torch.equal(out2, out)
    gc = _grads(net, out)
    assert torch.equal(out, eager) and 0 < eager.sum() < eager.numel()
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b)
    ops = [t for t in rec.targets if t.startswith("spikelib.")]
    assert ops and all(t in ("spikelib.lif_numba_forward.default", "spikelib.neuron_numba_forward.default")
                       for t in ops), rec.targets
    assert not any("numba" in t and not t.startswith("spikelib.") for t in rec.targets)


def test_projections_and_kept_state_under_compile():
    m = spikelib.CubaLIF(current_decay=0.3, voltage_decay=0.2, learn=("current_decay",), stateful=True)
    compiled = torch.compile(m, backend=_Recorder(), fullgraph=True)
    x = torch.rand(4, 2, 5)
    with torch.no_grad():
        m.current_decay.fill_(1.4)  # an optimiser step past 1 ...
    out = compiled(x)
    assert float(m.current_decay.detach()) == 1.0  # ... projected inside the compiled graph
    ref = spikelib.CubaLIF(current_decay=1.0, voltage_decay=0.2)(x)
    assert torch.equal(out, ref)
    assert m.state is not None and torch.equal(m.state.v, spikelib.CubaLIF(current_decay=1.0, voltage_decay=0.2)(
        x, return_states=True)[1].v[-1])


def test_value_checks_become_graph_assertions():
    compiled = torch.compile(lambda x, tau: spikelib.lif(x, tau=tau).spikes, backend=_Recorder(), fullgraph=True)
    x = torch.rand(3, 2, 4)
    assert torch.equal(compiled(x, torch.full((4,), 2.0)), spikelib.lif(x, tau=torch.full((4,), 2.0)).spikes)
    with pytest.raises(RuntimeError, match=r"tau must be >= 1"):
        compiled(x, torch.full((4,), 0.5))


def test_opcheck_of_the_custom_operators():
    from spikelib.functional.cuba import cuba_lif_spec
    from spikelib.functional.lif import resolve_lif_config

    config = resolve_lif_config("soft", None, False, 0.0, "sigmoid", "leak", "ratio")
    assert lif_config_from_key(lif_config_key(config), 0.0, config.surrogate.alpha) == config
    T, M = 5, 6
    x = torch.rand(T, M, dtype=torch.float64, requires_grad=True)
    args = (x, torch.zeros(M, dtype=torch.float64, requires_grad=True),
            torch.full((M,), 0.9, dtype=torch.float64, requires_grad=True),
            torch.full((M,), 0.5, dtype=torch.float64, requires_grad=True), lif_config_key(config), 0.0,
            config.surrogate.alpha, True, True)
    torch.library.opcheck(lif_numba_forward, args, test_utils=("test_schema", "test_faketensor",
                                                             "test_autograd_registration"))
    spec = cuba_lif_spec("hard", True, "triangle")
    assert spec_from_key(spec_key(spec), spec.surrogate.alpha) == spec
    p = torch.rand(4, M, dtype=torch.float64, requires_grad=True)
    args = (x, torch.zeros(2, M, dtype=torch.float64, requires_grad=True), p, spec_key(spec), spec.surrogate.alpha,
            [0.0], True)
    torch.library.opcheck(neuron_numba_forward, args, test_utils=("test_schema", "test_faketensor",
                                                                "test_autograd_registration"))


@pytest.mark.slow
def test_inductor_compiled_model_equals_eager():
    """The default compiler (inductor) on Linear + LIF and Linear + CUBA-LIF, fullgraph."""
    for name in ("lif", "families"):
        net = NETS[name]()
        x = torch.rand(6, 3, 8) * 3
        eager = net(x)
        ge = _grads(net, eager)
        out = torch.compile(net, fullgraph=True)(x)
        assert torch.equal(out, eager)
        for a, b in zip(_grads(net, out), ge):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
