"""Loihi 2 resource estimate: hand-computed layers, neuron- and memory-bound cases, chip totals, bad input."""

import pytest
import torch

from spikelib.hardware.loihi import LoihiLayer, LoihiNetwork
from spikelib.hardware.loihi.resources import LOIHI2, estimate_resources


def _shd_net():
    g = torch.Generator().manual_seed(0)
    d1 = torch.randint(0, 63, (256, 700), generator=g)
    d1[0, 0] = 62
    l1 = LoihiLayer(weight=torch.randint(-256, 255, (256, 700), generator=g), vth=100, delay=d1, name="h")
    l2 = LoihiLayer(weight=torch.randint(-256, 255, (20, 256), generator=g), vth=100,
                    delay=torch.full((20, 256), 62), name="o")
    return LoihiNetwork(700, [l1, l2])


def test_hand_computed_shd_network():
    r = estimate_resources(_shd_net())
    h, o = r.layers
    # 179200 synapses x (8 weight + 6 delay bits) + 256 x 48 state bits + 256 x 63 x 16 accumulator bits
    assert h["memory_bytes"] == (179200 * 14 + 256 * 48 + 256 * 63 * 16) // 8 == 347392
    assert h["cores"] == 3 and h["bound_by"] == "memory"  # 347392 B / 128 KiB = 2.65
    assert o["memory_bytes"] == (5120 * 14 + 20 * 48 + 20 * 63 * 16) // 8 == 11600 and o["cores"] == 1
    assert r.total["cores"] == 4 and r.total["chips"] == 1 and r.total["fits_one_chip"]
    assert r.total["synapses"] == 179200 + 5120
    assert "4 core(s)" in r.summary() and "estimates" in r.summary()


def test_neuron_bound_and_multi_chip():
    layer = LoihiLayer(weight=torch.ones(20000, 1, dtype=torch.long), vth=1, name="wide")
    r = estimate_resources(LoihiNetwork(1, [layer]))
    assert r.layers[0]["cores"] == 3 and r.layers[0]["bound_by"] == "neurons"  # ceil(20000 / 8192)
    r2 = estimate_resources(LoihiNetwork(1, [layer]), limits={"cores_per_chip": 2})
    assert r2.total["chips"] == 2 and not r2.total["fits_one_chip"]
    assert not LOIHI2["verified"]["neurons_per_core"] and LOIHI2["verified"]["cores_per_chip"]


def test_bad_input():
    with pytest.raises(TypeError, match="LoihiNetwork"):
        estimate_resources("net")
    net = _shd_net()
    with pytest.raises(KeyError, match="unknown limit 'cores'"):
        estimate_resources(net, limits={"cores": 3})
    with pytest.raises(ValueError, match="must be an int >= 1"):
        estimate_resources(net, limits={"neurons_per_core": 0})


def test_input_neurons_and_recurrent_synapses():
    from spikelib.hardware.loihi import InputNeurons

    rec = LoihiLayer(weight=torch.ones(4, 10, dtype=torch.long), weight_rec=torch.eye(4, dtype=torch.long), vth=1,
                     name="rec")
    net = LoihiNetwork(10, [rec], input_neurons=InputNeurons(shape=(10,), vth=5, name="in"))
    inp, r = estimate_resources(net).layers
    assert (inp["name"], inp["neurons"], inp["synapses"], inp["memory_bytes"]) == ("in", 10, 0, 10 * 48 // 8)
    assert r["synapses"] == 40 + 16 and r["nonzero_synapses"] == 40 + 4
    assert r["memory_bytes"] == (56 * 8 + 4 * 48) // 8
