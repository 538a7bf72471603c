"""NeuroBench's metrics from spikelib's counts equal NeuroBench's own values (neurobench 2.3.0 as the reference).

Networks: Linear and Conv networks with spikelib LIF neurons and their snnTorch twins (``Leaky`` with reset to zero,
``beta = 1 - 1/tau``, the same weights): the twins emit identical spikes. NeuroBench runs the snnTorch twin through
its own harness (``SNNTorchModel``: one call per time step) and the spikelib network through ``TorchModel`` with the
LIF class added as an activation module. The rule each number follows (neurobench/metrics/...):

- SynapticOperations: per Linear/Conv call, (nonzero input, nonzero weight) pairs, bias excluded, as ACs when every
  input is in {-1, 0, 1}, else MACs; Dense: every (input, weight) pair, zero padding excluded; per sample.
- ActivationSparsity: per batch 1 - nonzero/elements of the neuron outputs, weighted by batch size;
  ActivationSparsityByLayer: the same per layer over the pass.
- MembraneUpdates: every neuron at the first step of a batch, then each neuron whose membrane changed; per sample.
- NeuronOperations: membrane updates x 4 (snnTorch Leaky's cost for either reset), dense: every neuron x step x 4.
- Footprint: bytes of parameters + buffers; ParameterCount: parameter elements; ConnectionSparsity: zero weights of
  Linear/Conv layers over their weights (NeuroBench rounds it to 4 decimals).
"""

import pytest
import torch
from torch import nn

neurobench = pytest.importorskip("neurobench", reason="neurobench (test reference) is not installed: make install")
snn = pytest.importorskip("snntorch", reason="snnTorch (test reference) is not installed: make install")

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount  # noqa: E402
from neurobench.metrics.workload import (ActivationSparsity, ActivationSparsityByLayer, MembraneUpdates,  # noqa: E402
                                         NeuronOperations, SynapticOperations)
from neurobench.models import SNNTorchModel, TorchModel  # noqa: E402

import spikelib  # noqa: E402
from spikelib.hardware.energy import measure  # noqa: E402
from spikelib.hardware.energy.neurobench import neurobench_metrics, static_metrics  # noqa: E402

BETA = 0.75
THR = 0.5
STATIC = [Footprint, ParameterCount, ConnectionSparsity]
WORKLOAD = [SynapticOperations, ActivationSparsity, ActivationSparsityByLayer, MembraneUpdates, NeuronOperations]


def _lif():
    return spikelib.LIF(tau=1.0 / (1.0 - BETA), v_threshold=THR, v_reset=0.0, reset="hard", decay_input=False)


def _leaky(output=False):
    return snn.Leaky(beta=BETA, threshold=THR, init_hidden=True, reset_mechanism="zero", output=output)


class StepLoop(nn.Module):
    """The usual snnTorch model: a per-step network run over the time steps of ``[T, B, ...]``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        snn.utils.reset(self.net)
        return torch.stack([self.net(x[t])[0] for t in range(x.shape[0])])


def _networks(kind, prune):
    torch.manual_seed(0)
    if kind == "linear":
        syn = [nn.Linear(12, 16), nn.Linear(16, 5)]
        lib = nn.Sequential(syn[0], _lif(), syn[1], _lif())
        twin = nn.Sequential(_copy(syn[0]), _leaky(), _copy(syn[1]), _leaky(output=True))
    else:
        syn = [nn.Conv2d(2, 4, 3, padding=1, stride=1), nn.Linear(4 * 6 * 6, 5)]
        lib = spikelib.layers.Sequential(syn[0], _lif(), nn.Flatten(), syn[1], _lif())
        twin = nn.Sequential(_copy(syn[0]), _leaky(), nn.Flatten(), _copy(syn[1]), _leaky(output=True))
    for layer in syn:  # larger weights: every layer fires
        with torch.no_grad():
            layer.weight.mul_(3.0)
            if prune:
                layer.weight.masked_fill_(torch.rand(layer.weight.shape) < 0.5, 0.0)
    for a, b in ((syn[0], twin[0]), (syn[1], twin[3] if kind == "conv" else twin[2])):
        b.load_state_dict(a.state_dict())
    return lib, twin


def _copy(layer):
    out = type(layer)(*_args(layer))
    out.load_state_dict(layer.state_dict())
    return out


def _args(layer):
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding


def _loader(kind, real):
    g = torch.Generator().manual_seed(1)
    shape = (10, 7, 12) if kind == "linear" else (10, 7, 2, 6, 6)  # [N, T, ...] batch first, as NeuroBench reads
    x = torch.rand(shape, generator=g) * 2 if real else (torch.rand(shape, generator=g) < 0.3).float()
    data = torch.utils.data.TensorDataset(x, torch.zeros(shape[0], dtype=torch.long))
    return torch.utils.data.DataLoader(data, batch_size=4)  # batches of 4, 4, 2


def _neurobench(model, loader):
    return Benchmark(model, loader, [lambda d: d] if isinstance(model, SNNTorchModel) else
                     [lambda d: (d[0].transpose(0, 1), d[1])], [], [STATIC, WORKLOAD]).run(quiet=True)


def _check_workload(ours, ref, names):
    assert ours["SynapticOperations"] == ref["SynapticOperations"]
    assert ours["ActivationSparsity"] == pytest.approx(ref["ActivationSparsity"], rel=1e-12, abs=0)
    by_layer = {names[k]: v for k, v in ours["ActivationSparsityByLayer"].items()}
    assert by_layer == pytest.approx(dict(ref["ActivationSparsityByLayer"]), rel=1e-12, abs=0)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("real, prune", [(False, False), (True, True), (False, True)])
def test_every_neurobench_metric_equals_neurobench(kind, real, prune):
    lib, twin = _networks(kind, prune)
    loader = _loader(kind, real)
    # identical spikes: the twins are the same network
    x = next(iter(loader))[0].transpose(0, 1)
    with torch.no_grad():
        assert torch.equal(lib.eval()(x), StepLoop(twin).eval()(x))

    ref_twin = _neurobench(SNNTorchModel(_networks(kind, prune)[1]), loader)  # a new twin (snnTorch state)
    nb_lib = TorchModel(lib)
    nb_lib.add_activation_module(spikelib.LIF)
    ref_lib = _neurobench(nb_lib, loader)
    assert ref_lib["SynapticOperations"] == ref_twin["SynapticOperations"]
    if real:
        assert ref_twin["SynapticOperations"]["Effective_MACs"] > 0  # the first layer's real-valued input
    assert ref_twin["SynapticOperations"]["Effective_ACs"] > 0

    for model, ref in ((lib, ref_lib), (StepLoop(_networks(kind, prune)[1]), ref_twin)):
        static = static_metrics(model)  # before the pass: snnTorch's state buffers are still empty, as NeuroBench
        counts = measure(model, loader, neurobench=True)  # a DataLoader: batch first, declared by its collate
        assert counts.samples == 10
        ours = neurobench_metrics(counts)
        assert static["Footprint"] == ref["Footprint"]
        assert static["ParameterCount"] == ref["ParameterCount"]
        assert round(static["ConnectionSparsity"], 4) == ref["ConnectionSparsity"]  # NeuroBench rounds
        assert (static["ConnectionSparsity"] > 0) == prune
        lif_names = [c.name for c in counts.layers if c.out_elements]
        keys = list(ref["ActivationSparsityByLayer"])  # NeuroBench keys layers by their attribute name
        _check_workload(ours, ref, dict(zip(lif_names, keys)))
        assert ours["MembraneUpdates"] == ref_twin["MembraneUpdates"]
        assert ours["NeuronOperations"] == ref_twin["NeuronOperations"]
        assert not ours["not_covered"]


def test_spikelib_counts_with_neurobench_options():
    """``nonzero_weights`` and ``skip_zero_inputs`` make spikelib's SOPs and MACs NeuroBench's effective counts."""
    lib, _ = _networks("linear", prune=True)
    loader = _loader("linear", real=True)
    plain = measure(lib, loader)
    both = measure(lib, loader, nonzero_weights=True, skip_zero_inputs=True)
    nb = neurobench_metrics(both)["SynapticOperations"]
    assert both.total("sops") / both.samples == nb["Effective_ACs"]
    assert both.total("macs") / both.samples == nb["Effective_MACs"]
    assert plain.total("sops") > both.total("sops") and plain.total("macs") > both.total("macs")
    assert neurobench_metrics(plain)["SynapticOperations"] == nb  # NeuroBench's figures do not depend on them
