"""The Loihi part of a network built by the user (tests/test_any_network.py, network (a) after its max-pool) runs in
Lava bit for bit like spikelib's simulator: spikes and u/v traces of every layer at every step."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_any_network import _outputs, _spikes, loihi_part_of_a, net_c  # noqa: E402

from spikelib.hardware.loihi import export_netx, simulate  # noqa: E402
from spikelib.hardware.loihi.quantize import quantize  # noqa: E402

pytestmark = [pytest.mark.lava, pytest.mark.slow]


def test_a_loihi_part_is_bit_exact_in_lava(tmp_path):
    from spikelib.hardware.loihi.lava_runner import run_lava

    net, tail = loihi_part_of_a()
    x = _spikes((6, 2, 2, 6, 6), 0.4, 9)
    pooled = _outputs(net, x)[3][1].reshape(6, 2, -1)
    loihi, _ = quantize(tail, input_shape=(4, 3, 3))
    path = export_netx(loihi, tmp_path / "a.net")
    xin = torch.cat([pooled, torch.zeros(3, 2, pooled.shape[2])])
    sim, lava = simulate(loihi, xin), run_lava(path, xin)
    for i in range(len(loihi.layers)):
        for a, b in ((sim.spikes[i], lava.spikes[i]), (sim.u[i], lava.u[i]), (sim.v[i], lava.v[i])):
            assert torch.equal(a, b), i
    assert int(sim.spikes[0].sum()) > 0 and int(sim.v[1].abs().sum()) > 0


def test_c_per_neuron_decays_are_bit_exact_in_lava(tmp_path):
    from spikelib.hardware.loihi.lava_runner import run_lava

    loihi, _ = quantize(net_c())
    x = torch.cat([_spikes((12, 2, 8), 0.4, 12), torch.zeros(2, 2, 8)])
    path = export_netx(loihi, tmp_path / "c.net")
    sim, lava = simulate(loihi, x), run_lava(path, x)
    for i in range(len(loihi.layers)):
        for a, b in ((sim.spikes[i], lava.spikes[i]), (sim.u[i], lava.u[i]), (sim.v[i], lava.v[i])):
            assert torch.equal(a, b), i
    assert int(sim.spikes[0].sum()) > 0
