"""Models written with snnTorch, norse or spikingjelly neurons are counted through the declarations of
``spikelib.graph.peers`` (tuple outputs, state-returning modules, multi-step nodes)."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from spikelib.graph import declare, nodes
from spikelib.hardware.energy import measure


def _x(shape=(12, 3, 6), seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _check(counts, spikes, hidden=8, out=4, T=12, B=3, neuron="neuron"):
    """Exact counts: the neuron layer's updates and spikes, and the next Linear's SOPs = its spikes x C_out."""
    lif = next(c for c in counts.layers if c.out_elements)
    assert lif.neuron_updates == T * B * hidden and lif.out_spikes == int(spikes.sum()) > 0
    nxt = counts.layers[counts.layers.index(lif) + 1]
    assert nxt.kind == "linear" and nxt.sops == lif.out_spikes * out and nxt.in_spikes == lif.out_spikes


def test_peers_are_not_imported_eagerly():
    code = ("import sys, torch, spikelib\nfrom spikelib.graph import declared_layers\n"
            "declared_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))\n"
            "import spikelib.hardware.energy\n"
            "print(sorted(p for p in ('snntorch', 'norse', 'spikingjelly') if p in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_snntorch_leaky_with_tuple_outputs():
    snn = pytest.importorskip("snntorch")
    from snntorch import utils

    class Net(nn.Module):  # the snnTorch tutorial form: per-step calls, (spk, mem) tuples
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(6, 8), snn.Leaky(beta=0.8, threshold=0.3)
            self.fc2, self.lif2 = nn.Linear(8, 4), snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True, output=True)

        def forward(self, x):
            mem, out = self.lif1.reset_mem(), []
            utils.reset(self.lif2)
            self.spikes = []
            for t in range(x.shape[0]):
                spk, mem = self.lif1(self.fc1(x[t]), mem)
                self.spikes.append(spk)
                out.append(self.lif2(self.fc2(spk))[0])
            return torch.stack(out)

    net = Net()
    node = declare(net.lif1)
    assert isinstance(node, nodes.LIF) and node.reset == "soft" and node.tau == pytest.approx(5.0)
    assert not node.decay_input
    counts = measure(net, [_x()], neurobench=True)
    with torch.no_grad():
        net(_x())
    _check(counts, torch.stack(net.spikes))
    assert counts.layer("lif1").nb_membrane_updates > 0
    with pytest.raises(ValueError, match="graded_spikes_factor"):
        declare(snn.Leaky(beta=0.5, graded_spikes_factor=2.0))


def test_norse_sequence_and_cell_modules():
    norse = pytest.importorskip("norse.torch")

    class Cells(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.cell, self.fc2 = nn.Linear(6, 8), norse.LIFBoxCell(), nn.Linear(8, 4)

        def forward(self, x):
            state, out = None, []
            for t in range(x.shape[0]):
                z, state = self.cell(self.fc1(x[t]) * 40, state)
                out.append(self.fc2(z))
            return torch.stack(out)

    cells = Cells()
    assert isinstance(declare(cells.cell), nodes.LIF)
    hidden = []
    cells.cell.register_forward_hook(lambda m, a, o: hidden.append(o[0]))
    counts = measure(cells, [_x()])
    _check(counts, torch.stack(hidden))

    seq = nn.Sequential(nn.Linear(6, 8), norse.LIF(), Scale(), nn.Linear(8, 4))  # (spikes, state) of [T, B, ...]
    assert isinstance(declare(seq[1]), nodes.CubaLIF) and getattr(seq[1], "temporal", False)
    seq[0].weight.data *= 50
    with torch.no_grad():
        spikes = seq[1](seq[0](_x()))[0]
    counts = measure(seq, [_x()])
    lif = counts.layer("1")
    assert lif.neuron_updates == 2 * 12 * 3 * 8 and lif.out_spikes == int(spikes.sum()) > 0  # current + voltage
    assert counts.layer("3").sops == lif.out_spikes * 4


class Scale(nn.Module):
    """Takes the spikes of a (spikes, state) output."""

    temporal = True

    def graph_node(self):
        return nodes.Free("first", keeps_spikes=True)

    def forward(self, out):
        return out[0]


def test_spikingjelly_multi_step_nodes():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron

    net = nn.Sequential(nn.Linear(6, 8), neuron.LIFNode(tau=2.0, v_threshold=0.2, step_mode="m"), nn.Linear(8, 4))
    node = declare(net[1])
    assert isinstance(node, nodes.LIF) and node.tau == 2.0 and node.decay_input and getattr(net[1], "temporal")
    with torch.no_grad():
        spikes = net[1](net[0](_x()))
    net[1].reset()
    counts = measure(net, [_x()], neurobench=True)
    _check(counts, spikes)
    assert counts.layer("1").raster is not None  # a multi-step node is a sequence module
    assert isinstance(declare(neuron.IFNode(v_reset=None)), nodes.LIF)
