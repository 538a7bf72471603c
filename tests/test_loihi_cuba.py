"""The neuron Loihi runs, trained in float and deployed: CUBA-LIF (current and voltage decays, the neuron's bias) and
recurrent layers map to Loihi layers without fixing the current decay; the mapping by hand; float vs fixed accuracy
within the tolerance stated for LIF (tests/test_loihi_quantize.py); the simulator equals Lava bit for bit (marked
``lava``)."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from spikelib.hardware.loihi import export_netx, simulate
from spikelib.hardware.loihi.extract import UnsupportedLayerError, extract_float_network
from spikelib.hardware.loihi.quantize import compare_float_fixed, quantize
from spikelib.layers import Sequential, TimeReduce
from spikelib.neurons import ALIF, IF, LIF, CubaLIF, Recurrent
from spikelib.training import train_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_loihi_quantize import rate_task  # noqa: E402


def cuba_net(learn=("current_decay", "voltage_decay")):
    torch.manual_seed(0)
    net = Sequential(nn.Linear(16, 24, bias=False),
                     CubaLIF(current_decay=0.25, voltage_decay=0.125, v_threshold=1.0, learn=learn),
                     nn.Linear(24, 4, bias=False),
                     CubaLIF(current_decay=0.5, voltage_decay=0.25, v_threshold=1.0, learn=learn),
                     TimeReduce("sum"))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    return net


def test_cuba_mapping_by_hand():
    net = Sequential(nn.Linear(2, 1, bias=False), CubaLIF(current_decay=0.25, voltage_decay=0.5, v_threshold=2.0,
                                                          bias=0.5))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -0.5]]))
    loihi, report = quantize(net.eval())
    (layer,) = loihi.layers
    # lambda = 254 / max|W| = 254; weights on the even grid; the current decay is kept: iDecay = 4096 du
    assert report.layers[0]["scale"] == pytest.approx(254.0)
    assert layer.weight.tolist() == [[254, -128]] and layer.i_decay == 1024 and layer.v_decay == 2048
    assert layer.vth == 508 and layer.bias.tolist() == [127]  # the neuron's bias adds to v: lambda * 0.5


def test_cuba_and_recurrent_are_extracted_with_their_dynamics():
    fnet = extract_float_network(cuba_net().eval())
    assert [fl.current_decay for fl in fnet.layers] == [0.25, 0.5] and fnet.readout == "spikes"
    rec = Sequential(nn.Linear(6, 5), Recurrent(LIF(tau=2.0, v_threshold=0.5), 5, bias=True)).eval()
    fl = extract_float_network(rec).layers[0]
    assert fl.weight_rec.shape == (5, 5)
    assert torch.allclose(fl.bias, (rec[0].bias + rec[1].recurrent.bias).double())
    assert extract_float_network(Sequential(nn.Linear(3, 2), IF())).layers[0].tau == float("inf")
    with pytest.raises(UnsupportedLayerError, match="adaptive-threshold"):
        extract_float_network(Sequential(nn.Linear(3, 2), ALIF()))
    with pytest.raises(UnsupportedLayerError, match="synapse bias into a CUBA neuron"):
        extract_float_network(Sequential(nn.Linear(3, 2), CubaLIF(0.5, 0.5)))


@pytest.fixture(scope="module")
def trained_cuba():
    train, test = rate_task(512, 1), rate_task(256, 2)
    net = cuba_net()
    train_classifier(net, train, test, 6, 2e-2, progress=False)
    return net.eval(), test


def test_trained_cuba_network_float_vs_fixed(trained_cuba):
    net, test = trained_cuba
    du = net[1].current_decay.detach()
    assert not torch.equal(du, torch.full_like(du, 0.25))  # the decays were trained, and are exported as trained
    loihi, report = quantize(net)
    assert report.layers[0]["i_decay"] == round(4096 * float(du))
    res = compare_float_fixed(net, loihi, test)
    assert res["float_acc"] >= 0.6, res  # trained (chance 0.25)
    # the tolerance stated for LIF: at most 3 points of accuracy, at most 5% of the predictions changed
    assert abs(res["float_acc"] - res["fixed_acc"]) <= 0.03 and res["agreement"] >= 0.95, res


def test_recurrent_layer_float_vs_fixed_spikes():
    torch.manual_seed(3)
    net = Sequential(nn.Linear(8, 10), Recurrent(LIF(tau=4.0, v_threshold=0.5), 10)).eval()
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[1].recurrent.weight.mul_(2.0)
    x = (torch.rand(20, 3, 8, generator=torch.Generator().manual_seed(4)) < 0.3).float()
    loihi, _ = quantize(net)
    assert loihi.layers[0].weight_rec.shape == (10, 10)
    with torch.no_grad():
        ref = net(x)
    sim = simulate(loihi, torch.cat([x, torch.zeros(1, 3, 8)]))
    assert ref.sum() > 10 and (sim.spikes[0][1:21] == ref).float().mean() >= 0.97


@pytest.mark.lava
@pytest.mark.slow
def test_cuba_and_recurrent_bit_exact_in_lava(trained_cuba, tmp_path):
    from spikelib.hardware.loihi.lava_runner import run_lava

    net, test = trained_cuba
    x = test[0][0][:4].transpose(0, 1).contiguous()
    torch.manual_seed(5)
    rec = Sequential(nn.Linear(16, 10, bias=False),
                     Recurrent(CubaLIF(0.3, 0.2, v_threshold=0.5, bias=0.05), 10)).eval()
    with torch.no_grad():
        rec[0].weight.mul_(3.0)
    for model in (net, rec):
        loihi, _ = quantize(model)
        path = export_netx(loihi, tmp_path / "n.net")
        xin = torch.cat([x, torch.zeros(3, x.shape[1], x.shape[2])])
        sim, lava = simulate(loihi, xin), run_lava(path, xin)
        for i in range(len(loihi.layers)):
            for a, b in ((sim.spikes[i], lava.spikes[i]), (sim.u[i], lava.u[i]), (sim.v[i], lava.v[i])):
                assert torch.equal(a, b), (type(model[1]).__name__, i)
        assert int(sim.spikes[0].sum()) > 0
