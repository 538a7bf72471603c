"""The declared layer graph: declarations of every layer kind, the walker, the tracer (edges, per-sample shapes,
residual sums, arithmetic outside declared layers), the time-first containers and clear errors."""

import pytest
import torch
from torch import nn

from spikelib.graph import (GraphStructureError, TraceError, UndeclaredLayerError, declare, declared_layers, nodes,
                            register_declaration, trace)
from spikelib.layers import (Add, ChannelDelay, DelayedLinear, GraphNetwork, Residual, Sequential, TimePad,
                             TimeReduce)
from spikelib.neurons import LIF, LeakyIntegrator, LIFCell, ParametricLIF


def test_declarations_describe_what_each_layer_computes():
    lin = nn.Linear(3, 2)
    node = declare(lin)
    assert isinstance(node, nodes.Affine) and node.weight is not lin.weight and torch.equal(node.weight, lin.weight)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, bias=False)
    c = declare(conv)
    assert (c.ndim, c.stride, c.padding, c.groups, c.bias, c.kernel_size) == (2, (2, 2), (1, 1), 2, None, (3, 3))
    lif = declare(LIF(tau=3.0, v_threshold=0.5, reset="soft", decay_input=False))
    assert (lif.tau, lif.v_threshold, lif.reset, lif.decay_input) == (3.0, 0.5, "soft", False)
    plif = declare(ParametricLIF(init_tau=3.0, shape=(4,)))
    assert plif.tau.shape == (4,) and torch.allclose(plif.tau, torch.full((4,), 3.0)) and not plif.tau.requires_grad
    assert isinstance(declare(LIFCell()), nodes.LIF)
    assert declare(LeakyIntegrator(4.0, decay_input=False)).describe() == \
        "li(tau=4, decay_input=False, v_leak=0, r=1)"
    bn = declare(nn.BatchNorm1d(3).eval())
    assert isinstance(bn, nodes.BatchNorm) and not bn.training and bn.eps == 1e-5
    assert declare(nn.BatchNorm1d(3)).training
    pool = declare(nn.MaxPool2d(2))
    assert (pool.op, pool.kernel_size, pool.stride) == ("max", (2, 2), (2, 2))
    assert isinstance(declare(nn.Dropout()), nodes.Free) and isinstance(declare(nn.Flatten()), nodes.Flatten)
    assert declare(TimePad(3)).steps == 3 and declare(TimeReduce("mean")).op == "mean"
    assert isinstance(declare(Add()), nodes.Add)
    assert declare(ChannelDelay(torch.tensor([0, 2]))).delay.tolist() == [0, 2]
    assert declare(nn.Sequential(nn.Linear(2, 2))) is None  # a container declares nothing


def test_delayed_linear_declares_its_current_form():
    layer = DelayedLinear(4, 3, max_delay=5, generator=torch.Generator().manual_seed(0))
    gauss = declare(layer)
    assert gauss.mode == "gaussian" and gauss.delay.is_floating_point()
    rounded = declare(layer.round_delays())
    assert rounded.mode == "integer" and torch.equal(rounded.delay, layer.integer_delays())
    assert declare(DelayedLinear(4, 3, 5, delays="none")).mode == "none"


def test_walker_names_undeclared_layers_and_walks_containers():
    class Block(nn.Module):  # a container: no tensors of its own
        def __init__(self):
            super().__init__()
            self.lin, self.lif = nn.Linear(3, 3), LIF()

        def forward(self, x):
            return self.lif(self.lin(x))

    names = [n for n, _, _ in declared_layers(nn.Sequential(Block(), nn.Linear(3, 2)))]
    assert names == ["0.lin", "0.lif", "1"]

    class Scaled(nn.Module):  # computes with a parameter of its own: cannot be walked into
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.lin = nn.Linear(2, 2)

    with pytest.raises(UndeclaredLayerError, match=r"'0' \(.*Scaled\).*graph_node\(\)") as err:
        declared_layers(nn.Sequential(Scaled(), nn.GRU(2, 2)))
    assert "'1' (torch.nn.modules.rnn.GRU)" in str(err.value)  # every undeclared layer is named


def test_register_declaration_for_a_class_one_cannot_edit():
    class Foreign(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(UndeclaredLayerError):
        declared_layers(Foreign())
    register_declaration(Foreign, lambda m: nodes.Free("Foreign"))
    assert isinstance(declared_layers(Foreign())[0][2], nodes.Free)
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_declaration(int, lambda m: None)


def test_trace_of_a_custom_forward_with_residual_arithmetic():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.n1, self.l2, self.n2 = nn.Linear(5, 5), LIF(), nn.Linear(5, 5), LIF()

        def forward(self, x):
            h = self.n1(self.l1(x))
            return self.n2(h + self.l2(h))  # a residual sum written as arithmetic

    g = trace(Net())
    assert g.edges == [("input", "l1"), ("l1", "n1"), ("n1", "l2"), ("n1", "Net:add"), ("l2", "Net:add"),
                       ("Net:add", "n2"), ("n2", "output")]
    assert isinstance(g.nodes["Net:add"].node, nodes.Add)
    assert all(gn.out_shape == (5,) and gn.steps == 3 for gn in g.layers())


def test_trace_per_sample_shapes_time_padding_and_readout():
    net = Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), LIF(), nn.MaxPool2d(2), nn.Flatten(),
                     TimePad(2), DelayedLinear(36, 5, 3, delays="random"), LIF(), LeakyIntegrator(2.0),
                     TimeReduce("mean"))
    g = trace(net, input_shape=(2, 6, 6), steps=4, batch=3)
    shapes = {name: (gn.out_shape, gn.steps) for name, gn in g.nodes.items()}
    assert shapes["input"] == ((2, 6, 6), 4) and shapes["0"] == ((4, 6, 6), 4) and shapes["3"] == ((4, 3, 3), 4)
    assert shapes["4"] == ((36,), 4) and shapes["5"] == ((36,), 6) and shapes["6"] == ((5,), 6)
    assert shapes["9"] == ((5,), None) and g.output.inputs == ["9"]
    assert [gn.name for gn in g.chain()] == [str(i) for i in range(10)]


def test_trace_records_arithmetic_outside_layers_and_consumers_name_it():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.lif = nn.Linear(4, 4), LIF()

        def forward(self, x):
            return self.lif(torch.tanh(self.lin(x)))

    g = trace(Scale())
    fn = g.nodes["Scale:tanh"]
    assert isinstance(fn.node, nodes.Function) and fn.inputs == ["lin"] and g.nodes["lif"].inputs == ["Scale:tanh"]
    with pytest.raises(GraphStructureError, match=r"computes `tanh` in the forward\(\) of 'Scale'.*read by lif"):
        g.check_no_functions("NIR export")


def test_views_that_reorder_elements_are_not_taken_for_the_producer():
    class Transposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.lif = nn.Linear(4, 4), LIF()

        def forward(self, x):
            return self.lif(self.lin(x).transpose(0, 1).contiguous().transpose(0, 1))

    g = trace(Transposed())
    assert g.nodes["lif"].inputs != ["lin"]  # a permuted layout is recorded as a function, not a direct edge
    assert any(isinstance(gn.node, nodes.Function) for gn in g.layers())


def test_trace_leaves_kept_state_and_names_calls_of_a_shared_layer():
    shared = nn.Linear(4, 4)
    lif = LIF(stateful=True)
    lif(torch.rand(2, 3, 4))
    kept = lif.state.clone()
    g = trace(Sequential(shared, LIF(), shared, lif))
    assert torch.equal(lif.state, kept)
    assert [n for n in g.nodes if n.startswith("0") or n.startswith("2")] == ["0", "0#1"]


def test_trace_errors_are_clear():
    with pytest.raises(TraceError, match=r"time first.*spikelib.layers.Sequential"):
        trace(nn.Sequential(nn.Conv2d(1, 1, 3), LIF()), input_shape=(1, 5, 5))
    with pytest.raises(ValueError, match="input_shape is needed"):
        trace(Sequential(nn.Conv2d(1, 1, 3), LIF()))
    with pytest.raises(ValueError, match="batch .* must be >= 2"):
        trace(nn.Linear(3, 3), torch.rand(4, 1, 3))


def test_sequential_folds_time_for_per_step_layers():
    torch.manual_seed(0)
    conv, lif = nn.Conv2d(2, 3, 3, padding=1), LIF(v_threshold=0.2)
    x = torch.rand(5, 2, 2, 4, 4)
    y = Sequential(conv, lif, nn.Flatten(), TimeReduce("sum"))(x)
    ref = lif(conv(x.flatten(0, 1)).reshape(5, 2, 3, 4, 4)).flatten(2).sum(0)
    assert torch.equal(y, ref) and y.shape == (2, 48)


def test_residual_and_graph_network_equal_their_arithmetic():
    torch.manual_seed(1)
    lin, lif = nn.Linear(4, 4), LIF(v_threshold=0.3)
    x = torch.rand(6, 2, 4)
    assert torch.equal(Residual(lin, lif)(x), x + lif(lin(x)))
    lin2 = nn.Linear(4, 4)
    net = GraphNetwork({"a": lin, "b": lif, "c": lin2}, {"a": ["input"], "b": ["a"], "c": ["input", "b"]}, ["c", "b"])
    s = lif(lin(x))
    assert torch.equal(net(x), lin2(x + s) + s)
    g = trace(net)
    assert isinstance(g.nodes["joins.c"].node, nodes.Add) and sorted(g.nodes["joins.c"].inputs) == ["input", "nodes.b"]
    with pytest.raises(ValueError, match="cycle"):
        GraphNetwork({"a": lin, "b": lif}, {"a": ["b"], "b": ["a"]}, ["b"])
    with pytest.raises(ValueError, match="shape"):
        Add()(torch.zeros(2), torch.zeros(3))
