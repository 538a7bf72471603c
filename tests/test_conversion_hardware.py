"""Converted and IIR networks through the declared layer graph: energy counting (SOPs per inference at each T),
the Loihi mapping and NIR export (what maps, and errors that name the layer and the reason)."""

import pytest
import torch
from torch import nn

from spikelib.conversion import balance_thresholds, convert, convert_structure
from spikelib.graph import trace
from spikelib.hardware.energy import EnergyCounter
from spikelib.hardware.loihi.extract import UnsupportedLayerError, extract_float_network
from spikelib.hardware.nir import NIRConversionError, from_nir, to_nir
from spikelib.models import get_model
from spikelib.neurons import LIF


def _converted(name):
    torch.manual_seed(0)
    ann = get_model(name).eval()
    x = torch.randn(16, 1, 8, 8)
    return convert(ann, x, steps=5), x


@pytest.mark.parametrize("name", ["vgg_tiny_ann", "resnet_tiny_ann"])
def test_energy_counts_every_layer_at_every_t(name):
    snn, x = _converted(name)
    neurons = {}
    for T in (5, 3, 2, 1):
        snn.set_timesteps(T)
        with EnergyCounter(snn) as counter, torch.no_grad():
            snn(x)
        counts = counter.counts(samples=x.shape[0])
        layers = {layer.name: layer for layer in counts.layers}
        assert "net.conv1" in layers and "net.fc_out" in layers
        assert layers["net.conv1"].macs == layers["net.conv1"].dense_macs > 0  # analog input: MACs every step
        lifs = [n for n in layers if n.endswith(("act1", "act2", "neuron", "act_fc1"))]
        assert lifs
        neurons[T] = sum(layers[n].neuron_updates for n in lifs)
    # one neuron update per neuron and step: proportional to T
    assert neurons[5] == 5 * neurons[1] and neurons[3] == 3 * neurons[1]


def test_trace_sees_the_residual_additions():
    snn, _ = _converted("resnet_tiny_ann")
    graph = trace(snn, input_shape=(1, 8, 8))
    adds = graph.find(__import__("spikelib").graph.nodes.Add)
    assert [g.name for g in adds] == ["net.layer1_0.add", "net.layer2_0.add"]


@pytest.mark.parametrize("name,layer,why", [
    ("vgg_tiny_ann", "net.act1", "reset='soft'"),
    ("resnet_tiny_ann", "net.layer1_0.add", "residual addition"),
])
def test_loihi_mapping_names_the_layer(name, layer, why):
    snn, _ = _converted(name)
    with pytest.raises(UnsupportedLayerError, match=f"'{layer}'.*{why}"):
        extract_float_network(snn, input_shape=(1, 8, 8))


def test_nir_export_names_the_soft_reset_layer():
    snn, _ = _converted("vgg_tiny_ann")
    with pytest.raises(NIRConversionError, match="'net.act1': reset='soft'"):
        to_nir(snn, input_shape=(1, 8, 8))


def test_hard_reset_conversion_round_trips_through_nir():
    """With a hard-reset neuron (leak < 1) the converted network (conv, average pooling, linear, sum readout)
    exports to NIR and the re-imported network gives the same outputs."""
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(64, 10)).eval()
    snn = convert_structure(ann, neuron=lambda shape: LIF(leak=0.9, v_threshold=1.0, reset="hard"))
    x = torch.randn(16, 1, 8, 8)
    balance_thresholds(snn, x, steps=5)
    back = from_nir(to_nir(snn, input_shape=(1, 8, 8)))
    seq = x.unsqueeze(0).expand(6, 16, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(back(seq), snn(seq))
