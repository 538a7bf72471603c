"""NIR export/import: exact round trips through files, peers (norse 1.1, snnTorch 1.0) running spikelib's graphs with
the same spikes, spikelib running the graphs they export, and bad input."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from spikelib.hardware.nir import (  # noqa: E402
    CubaLIF,
    NIRConversionError,
    from_nir,
    read_nir,
    to_nir,
    write_nir,
)
from spikelib.layers import ChannelDelay, Sequential  # noqa: E402
from spikelib.models import SpikingMLP  # noqa: E402
from spikelib.models.snn_delays import SNNDelays  # noqa: E402
from spikelib.neurons import LIF  # noqa: E402


def _spikes(T, B, shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B) + tuple(shape), generator=g) < p).float()


def _through_file(graph, tmp_path, name="g.nir"):
    path = write_nir(graph, tmp_path / name)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    return read_nir(path)


def _same_graph(a, b):
    assert set(a.nodes) == set(b.nodes) and sorted(a.edges) == sorted(b.edges)
    for k, na in a.nodes.items():
        nb = b.nodes[k]
        assert type(na) is type(nb), k
        if isinstance(na, nir.NIRGraph):
            _same_graph(na, nb)
            continue
        for field in ("weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset", "delay", "tau_syn",
                      "tau_mem", "w_in", "kernel_size", "stride", "padding"):
            if hasattr(na, field):
                assert np.array_equal(np.asarray(getattr(na, field)), np.asarray(getattr(nb, field))), (k, field)


def _all_typed(graph):
    for k, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            _all_typed(node)
        for t in (node.input_type, node.output_type):
            assert all(v is not None and len(np.asarray(v)) > 0 for v in t.values()), (k, t)


def _mlp(readout):
    torch.manual_seed(0)
    model = SpikingMLP(10, hidden=(12, 8), out_features=3, tau=4.0, readout=readout, tau_out=2.0, init_gain=4.0)
    with torch.no_grad():
        for lin in list(model.linears) + [model.out]:
            lin.weight.mul_(4.0)
        model.out.weight.mul_(3.0)
    return model.eval()


@pytest.mark.parametrize("readout", ["membrane", "spikes"])
def test_spiking_mlp_round_trip_exact(tmp_path, readout):
    model = _mlp(readout)
    graph = to_nir(model)
    _all_typed(graph)
    back = from_nir(_through_file(graph, tmp_path))
    x = _spikes(25, 4, (10,))
    with torch.no_grad():
        out, ref = back(x), model(x)
    assert torch.equal(out, ref)  # the readout over time (mean membrane / spike count) is rebuilt from the metadata
    hidden = back[:4]
    with torch.no_grad():
        h_ref = model.lifs[1](model._linear(model.linears[1], model.lifs[0](model._linear(model.linears[0], x))))
        assert torch.equal(hidden(x), h_ref) and h_ref.sum() > 0
    _same_graph(graph, to_nir(back))  # export -> import -> export gives the same graph, parameter for parameter


def test_conv_pool_flatten_delay_cuba_round_trip(tmp_path):
    torch.manual_seed(1)
    cuba = CubaLIF(tau_syn=np.full(6, 3.0), tau_mem=np.full(6, 5.0), r=np.full(6, 2.0), v_leak=np.zeros(6),
                   v_threshold=np.full(6, 0.2), v_reset=np.zeros(6), w_in=np.full(6, 1.5))
    model = Sequential(
        nn.Conv2d(2, 4, 3, padding=1), LIF(tau=2.0, v_threshold=0.3), nn.AvgPool2d(2),
        nn.AvgPool2d(2, divisor_override=1), nn.Flatten(), ChannelDelay(torch.arange(16) % 5),
        nn.Linear(16, 6, bias=False), cuba)
    with torch.no_grad():
        model[0].weight.abs_().mul_(2.0)
        model[6].weight.abs_().mul_(4.0)
    graph = to_nir(model, input_shape=(2, 8, 8))
    _all_typed(graph)
    assert isinstance(graph.nodes["3"], nir.SumPool2d) and isinstance(graph.nodes["2"], nir.AvgPool2d)
    back = from_nir(_through_file(graph, tmp_path))
    x = _spikes(12, 3, (2, 8, 8), p=0.4)
    with torch.no_grad():
        ref, out = model(x), back(x)
    assert ref.sum() > 0 and torch.equal(out, ref)
    _same_graph(graph, to_nir(back, input_shape=(2, 8, 8)))


def test_snn_delays_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    model = SNNDelays(12, hidden=(10,), out_features=3, max_delay=6, delays="random", generator=g)
    with torch.no_grad():
        for syn in list(model.synapses) + [model.readout]:
            syn.weight.mul_(3.0)
        model.norms[0].running_mean.uniform_(-0.2, 0.2, generator=g)
        model.norms[0].bias.uniform_(0.0, 0.3, generator=g)
    model.eval()
    graph = to_nir(model)
    sub = graph.nodes["synapses_0"]
    assert isinstance(sub, nir.NIRGraph) and any(isinstance(n, nir.Delay) for n in sub.nodes.values())
    back = from_nir(_through_file(graph, tmp_path))
    # per-synapse delays survive exactly (where the weight is not zero)
    d0 = back.synapses_0.integer_delays()
    assert torch.equal(d0, model.synapses[0].integer_delays())
    x = _spikes(20, 4, (12,))
    with torch.no_grad():
        ref = model(x)  # the zero time padding and the softmax-sum readout are rebuilt from the metadata
        out = back(x)
    assert torch.allclose(out, ref, atol=1e-5)  # batch norm folded into the weights: float rounding only
    assert back.nir_metadata["spikelib_time_pad"] == {"input": 3, "neurons_0": 3}
    assert [type(m).__name__ for m in back] == ["TimePad", "DelayedLinear", "LIF", "TimePad", "DelayedLinear",
                                                "LeakyIntegrator", "TimeReduce"]
    _same_graph(graph, to_nir(back))


def _peer_net(decay_input):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(10, 16), LIF(tau=4.0, v_threshold=0.5, decay_input=decay_input),
                          nn.Linear(16, 5), LIF(tau=2.0, v_threshold=0.5, decay_input=decay_input))
    with torch.no_grad():
        model[0].weight.mul_(6.0)
        model[2].weight.mul_(6.0)
    return model


def _run_norse(module, x):
    state, outs = None, []
    for t in range(x.shape[0]):
        o, state = module(x[t], state)
        outs.append(o)
    return torch.stack(outs).detach()


def _run_snntorch(module, x):
    outs = [module(x[t]) for t in range(x.shape[0])]
    return torch.stack([o if isinstance(o, torch.Tensor) else o[0] for o in outs]).detach()  # (spikes, membrane)


def test_norse_runs_spikelib_graph():
    norse = pytest.importorskip("norse.torch")
    x = _spikes(30, 5, (10,))
    model = _peer_net(decay_input=True)
    with torch.no_grad():
        ref = model(x)
    out = _run_norse(norse.from_nir(to_nir(model), dt=1e-4), x)
    assert ref.sum() > 20 and torch.equal(out, ref)
    # documented difference: norse ignores NIR's r, so a decay_input=False graph runs as decay_input=True there
    model_f = _peer_net(decay_input=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out_f = _run_norse(norse.from_nir(to_nir(model_f), dt=1e-4, ignore_warnings=True), x)
    with torch.no_grad():
        assert not torch.equal(out_f, model_f(x))
        for m in model_f:
            if isinstance(m, LIF):
                m.config = type(m.config)(**{**m.config.__dict__, "decay_input": True})
        assert torch.equal(out_f, model_f(x))


@pytest.mark.parametrize("decay_input", [True, False])
def test_snntorch_runs_spikelib_graph(decay_input, capsys):
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    x = _spikes(30, 5, (10,))
    model = _peer_net(decay_input)
    with torch.no_grad():
        ref = model(x)
    out = _run_snntorch(import_from_nir(to_nir(model)), x)
    assert ref.sum() > 20 and torch.equal(out, ref)


def test_spikelib_runs_snntorch_graph():
    snn = pytest.importorskip("snntorch")
    from snntorch import utils as sutils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(3)
    leaky = dict(reset_mechanism="zero", init_hidden=True, reset_delay=False)
    # snnTorch's exporter needs per-neuron parameters (REFERENCES.md)
    net = nn.Sequential(nn.Linear(10, 8), snn.Leaky(beta=torch.full((8,), 0.75), threshold=torch.full((8,), 0.5),
                                                    **leaky),
                        nn.Linear(8, 4), snn.Leaky(beta=torch.full((4,), 0.5), threshold=torch.full((4,), 0.5),
                                                   output=True, **leaky))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    x = _spikes(30, 5, (10,))
    graph = export_to_nir(net, x[0, 0])
    sutils.reset(net)
    ref = torch.stack([net(x[t])[0] for t in range(30)]).detach()
    with torch.no_grad():
        out = from_nir(graph)(x)
    assert ref.sum() > 20 and torch.equal(out, ref)


def test_spikelib_runs_norse_graph():
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(4)
    lif = lambda inv: norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(inv),  # noqa: E731
                                                              v_th=torch.tensor(0.3)))
    net = norse.SequentialState(nn.Linear(10, 8), lif(250.0), nn.Linear(8, 4), lif(500.0))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    x = _spikes(30, 5, (10,))
    graph = norse.to_nir(net, x[0])
    ref = _run_norse(net, x)
    # norse 1.1 writes tau = dt / tau_mem_inv (dt = 1e-3): tau in steps times dt^2, so import with dt = 1e-6
    with torch.no_grad():
        out = from_nir(graph, dt=1e-6)(x)
    assert ref.sum() > 10 and torch.equal(out, ref)


def test_bad_input(tmp_path):
    with pytest.raises(NIRConversionError, match=r"undeclared layer\(s\) '1' \(torch.nn.modules.rnn.GRU\)"):
        to_nir(nn.Sequential(nn.Linear(3, 3), nn.GRU(3, 3)))
    with pytest.raises(NIRConversionError, match=r"layer '1'.*reset='soft'"):
        to_nir(nn.Sequential(nn.Linear(3, 3), LIF(reset="soft")))
    with pytest.raises(NIRConversionError, match="input_shape is needed"):
        to_nir(nn.Sequential(nn.Conv2d(1, 1, 3), LIF()))
    with pytest.raises(ValueError, match="dt must be"):
        to_nir(_peer_net(True), dt=0.0)
    g = to_nir(_peer_net(True))
    cyclic = nir.NIRGraph(nodes=dict(g.nodes), edges=list(g.edges) + [("3", "0")], type_check=False)
    with pytest.raises(ValueError, match="cycle through"):
        from_nir(cyclic)
    odd = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                              "th": nir.Threshold(np.ones(3)),
                              "output": nir.Output(output_type={"output": np.array([3])})},
                       edges=[("input", "th"), ("th", "output")])
    with pytest.raises(NIRConversionError, match=r"node 'th' \(Threshold\) has no spikelib counterpart"):
        from_nir(odd)
    frac = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                               "d": nir.Delay(np.array([1.5e-4, 1e-4, 0.0])),
                               "output": nir.Output(output_type={"output": np.array([3])})},
                        edges=[("input", "d"), ("d", "output")])
    with pytest.raises(NIRConversionError, match="whole numbers of steps"):
        from_nir(frac, dt=1e-4)
    with pytest.raises(FileNotFoundError):
        read_nir(tmp_path / "missing.nir")
    with pytest.raises(TypeError, match="nir.NIRGraph"):
        from_nir(42)


def test_nothing_is_clamped_or_imported_broken():
    """issue #23: NaN tau/threshold, negative delays and delays beyond the sub-graph's maximum are errors on import."""
    graph = to_nir(_peer_net(True))
    graph.nodes["1"].tau[0] = np.nan
    with pytest.raises(NIRConversionError, match=r"node '1': tau holds NaN"):
        from_nir(graph)
    graph = to_nir(_peer_net(True))
    graph.nodes["3"].v_threshold[:] = np.inf
    with pytest.raises(NIRConversionError, match=r"node '3': v_threshold holds NaN or infinite"):
        from_nir(graph)
    neg = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                              "d": nir.Delay(np.array([-1e-4, 1e-4, 0.0])),
                              "output": nir.Output(output_type={"output": np.array([3])})},
                       edges=[("input", "d"), ("d", "output")])
    with pytest.raises(NIRConversionError, match="must be >= 0 steps"):
        from_nir(neg, dt=1e-4)
    g = torch.Generator().manual_seed(0)
    model = SNNDelays(4, hidden=(3,), out_features=2, max_delay=3, delays="random", generator=g).eval()
    graph = to_nir(model)
    sub = graph.nodes["synapses_0"]
    sub.metadata["spikelib_max_delay"] = 0 if int(model.synapses[0].integer_delays().max()) else -1
    with pytest.raises(NIRConversionError, match="exceeds the sub-graph's spikelib_max_delay"):
        from_nir(graph)


def test_if_and_cuba_neurons_round_trip(tmp_path):
    """spikelib's IF exports as NIR's IF (r = 1/dt) and CubaLIF (Loihi's form) as NIR's CubaLIF with unit gains; both
    import back to the same modules, spike for spike."""
    from spikelib.neurons import IF
    from spikelib.neurons import CubaLIF as Cuba

    torch.manual_seed(6)
    model = Sequential(nn.Linear(6, 8, bias=False), Cuba(current_decay=torch.linspace(0.1, 0.8, 8),
                                                          voltage_decay=0.3, v_threshold=0.4, bias=0.02),
                       nn.Linear(8, 4), IF(v_threshold=0.6))
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(3.0)
    graph = to_nir(model)
    assert isinstance(graph.nodes["1"], nir.CubaLIF) and isinstance(graph.nodes["3"], nir.IF)
    back = from_nir(_through_file(graph, tmp_path))
    assert [type(m).__name__ for m in back] == ["Linear", "CubaLIF", "Linear", "IF"]
    x = _spikes(20, 3, (6,), p=0.4)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(back(x), ref) and ref.sum() > 0
        assert torch.equal(back[:2](x), model[:2](x))
