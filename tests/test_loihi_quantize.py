"""Float -> Loihi quantisation: the mapping by hand, float vs quantised agreement on trained networks, layer by layer
spike agreement for SNN-delays (delays, folded batch norm), QAT recovery, and bad input."""

import copy

import pytest
import torch
from torch import nn

from spikelib.hardware.loihi import simulate
from spikelib.hardware.loihi.extract import UnsupportedLayerError, extract_float_network
from spikelib.hardware.loihi.quantize import (
    QuantizationRangeError,
    compare_float_fixed,
    fixed_point_logits,
    quantize,
)
from spikelib.layers import Sequential
from spikelib.layers.delay import DelayedLinear
from spikelib.models import SpikingMLP
from spikelib.models.snn_delays import SNNDelays
from spikelib.neurons import LIF
from spikelib.training import train_classifier
from spikelib.training.finetune import finetune_quantized


def rate_task(n, seed, T=30, C=16, K=4, low=0.05, high=0.11):
    """K classes; class k raises the firing rate of channel group k (a task a small MLP learns to ~85-90%)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    p = torch.full((n, 1, C), low)
    for k in range(K):
        p[y == k, :, k * (C // K):(k + 1) * (C // K)] = high
    x = (torch.rand(n, T, C, generator=g) < p).float()
    return list(zip(x.split(64), y.split(64)))


@pytest.fixture(scope="module")
def trained():
    train, test = rate_task(512, 1), rate_task(256, 2)
    torch.manual_seed(0)
    model = SpikingMLP(16, hidden=(24,), out_features=4, tau=4.0, readout="membrane", tau_out=2.0, init_gain=4.0)
    train_classifier(model, train, test, 6, 2e-2, progress=False)
    return model.eval(), train, test


def test_mapping_by_hand():
    model = SpikingMLP(2, hidden=(1,), out_features=1, tau=4.0, readout="spikes", tau_out=2.0)
    with torch.no_grad():
        model.linears[0].weight.copy_(torch.tensor([[0.5, -1.0]]))
        model.linears[0].bias.fill_(0.1)
        model.out.weight.fill_(2.0)
        model.out.bias.zero_()
    net, report = quantize(model.eval())
    l0, l1 = net.layers
    # c W = W / tau = [0.125, -0.25]; lambda = 254 / 0.25 = 1016; lambda c W = [127, -254] -> even grid [128, -254]
    assert report.layers[0]["scale"] == pytest.approx(1016.0)
    assert l0.weight.tolist() == [[128, -254]]
    assert l0.bias.tolist() == [round(1016 * 0.1 / 4)]  # bias enters with c = 1/tau too: 25.4 -> 25
    assert l0.vth == 1016 and l0.v_decay == 1024 and l0.i_decay == 4096
    # output layer: c W = 2/2 = 1, lambda = 254, threshold 1 -> vth 254, tau_out 2 -> vDecay 2048
    assert l1.weight.tolist() == [[254]] and l1.vth == 254 and l1.v_decay == 2048
    assert net.meta["readout"] == "spikes"
    # (128 - 127) / lambda * tau
    assert report.layers[0]["weight"]["max_abs_error"] == pytest.approx(4 / 1016, rel=1e-6)


def test_threshold_limits_the_scale():
    model = nn.Sequential(nn.Linear(3, 2, bias=False), LIF(tau=2.0, v_threshold=1000.0, decay_input=False))
    net, report = quantize(model)
    assert report.layers[0]["scale"] == pytest.approx(131071 / 1000.0)
    assert net.layers[0].vth == 131071


def test_trained_network_float_vs_fixed(trained):
    model, _, test = trained
    net, report = quantize(model)
    res = compare_float_fixed(model, net, test)
    assert res["float_acc"] >= 0.75, res  # the network is trained (chance: 0.25)
    # stated tolerance: 8-bit quantisation costs at most 3 points of accuracy and changes <= 5% of the predictions
    assert abs(res["float_acc"] - res["fixed_acc"]) <= 0.03, res
    assert res["agreement"] >= 0.95, res
    assert not report.clipped and "scale" in report.summary()


def test_qat_recovers_low_bit_accuracy(trained):
    model, train, test = trained
    model = copy.deepcopy(model)
    net2, _ = quantize(model, weight_bits=2)
    before = compare_float_fixed(model, net2, test)
    torch.manual_seed(1)
    finetune_quantized(model, train, epochs=4, lr=1e-2, weight_bits=2)
    net2, _ = quantize(model, weight_bits=2)
    after = compare_float_fixed(model, net2, test)
    assert before["fixed_acc"] < before["float_acc"] - 0.05, before  # 2-bit weights hurt without fine-tuning
    assert after["fixed_acc"] >= before["fixed_acc"] + 0.05, (before, after)
    assert after["agreement"] >= 0.95, after  # the fine-tuned weights sit on the grid: float == fixed closely
    # the weights really are on the 2-bit grid: 4 distinct values per layer at most (-256, -128, 0, 128 x scale)
    assert all(len(torch.unique(layer.weight)) <= 4 for layer in net2.layers)


def _snn_delays(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = SNNDelays(12, hidden=(10,), out_features=3, max_delay=6, delays="random", generator=g, dropout=0.2)
    with torch.no_grad():
        for syn in list(model.synapses) + [model.readout]:
            syn.weight.mul_(3.0)
        bn = model.norms[0]
        bn.running_mean.copy_(torch.rand(10, generator=g) * 0.4 - 0.2)
        bn.running_var.copy_(torch.rand(10, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(10, generator=g) + 0.5)
        bn.bias.copy_(torch.rand(10, generator=g) * 0.4)
    return model.eval()


def test_snn_delays_hidden_spikes_match_float():
    """Delays and folded batch norm: the quantised hidden layer spikes as the float one, one step later."""
    model = _snn_delays()
    x = (torch.rand(25, 4, 12, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    spikes = {}
    model.neurons[0].register_forward_hook(lambda m, i, o: spikes.setdefault("h", o))
    with torch.no_grad():
        model(x)
    net, report = quantize(model)
    assert net.layers[0].delay is not None and net.layers[0].delay.shape == (10, 12)
    assert net.layers[0].bias is not None  # from the batch norm
    T_f = spikes["h"].shape[0]
    xp = torch.cat([x, torch.zeros(T_f - 25 + 2, 4, 12)])
    fixed = simulate(net, xp).spikes[0][1:1 + T_f]
    assert spikes["h"].sum() > 20
    assert (fixed == spikes["h"]).float().mean() >= 0.99
    logits = fixed_point_logits(net, x)
    with torch.no_grad():
        ref = model(x)
    assert logits.shape == ref.shape == (4, 3)
    assert torch.allclose(logits.sum(1), ref.sum(1))  # sum_t softmax over the same number of steps
    assert (logits - ref).abs().max() <= 0.05 * ref.sum(1)[0]  # within 5% of the T' steps summed
    assert torch.equal(logits.argmax(1), ref.argmax(1))


def test_unsupported_layers_are_named():
    with pytest.raises(UnsupportedLayerError, match=r"layer '0' \(conv, Conv1d\).*1-d/3-d convolution"):
        extract_float_network(Sequential(nn.Conv1d(2, 2, 3), LIF()), input_shape=(2, 5))
    with pytest.raises(UnsupportedLayerError, match="time first.*spikelib.layers.Sequential"):
        extract_float_network(nn.Sequential(nn.Conv1d(2, 2, 3), LIF()), input_shape=(2, 5))
    with pytest.raises(UnsupportedLayerError, match=r"layer '1'.*reset='soft'"):
        extract_float_network(nn.Sequential(nn.Linear(2, 2), LIF(reset="soft")))
    with pytest.raises(UnsupportedLayerError, match="per-neuron v_threshold"):
        extract_float_network(nn.Sequential(nn.Linear(2, 2), LIF(v_threshold=torch.tensor([0.5, 1.0]))))
    with pytest.raises(UnsupportedLayerError, match=r"layer '2' \(pool, AvgPool1d\).*pooling"):
        extract_float_network(nn.Sequential(nn.Linear(2, 2), LIF(), nn.AvgPool1d(2), nn.Linear(1, 2), LIF()))
    with pytest.raises(UnsupportedLayerError, match="training mode"):
        extract_float_network(_snn_delays().train())
    with pytest.raises(UnsupportedLayerError, match="GRU"):
        extract_float_network(nn.GRU(2, 2))


def test_out_of_range_needs_clip():
    model = nn.Sequential(DelayedLinear(4, 3, max_delay=80, delays="random", bias=True), LIF(decay_input=False))
    with torch.no_grad():
        model[0].delay.copy_(torch.tensor([[70.0, 1, 2, 3]] * 3))
        model[0].bias.fill_(100.0)
    with pytest.raises(QuantizationRangeError, match=r"(?s)bias: 3 values outside \[-4096, 4095\].*delay: 3 values"):
        quantize(model)
    with pytest.raises(QuantizationRangeError, match=r"weight: \d+ values outside \[-256, 254\]"):
        quantize(nn.Sequential(nn.Linear(4, 3, bias=False), LIF(decay_input=False)), scales=[1e6])
    net, report = quantize(model, clip=True)
    assert report.clipped
    assert report.layers[0]["bias"]["clipped"] == 3 and report.layers[0]["delay"]["clipped"] == 3
    assert int(net.layers[0].delay.max()) == 62 and int(net.layers[0].bias.max()) == 4095
    assert "3 clipped" in report.summary()
    with pytest.raises(ValueError, match="weight_bits"):
        quantize(model, weight_bits=9)


def test_conv_network_hidden_spikes_match_float():
    """nn.Conv2d -> LIF -> Flatten -> Linear -> LIF (run time first by spikelib.layers.Sequential) quantises to a netx
    conv layer whose spikes are the float ones, one step later; layer by layer."""
    torch.manual_seed(5)
    model = Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=(1, 2)), LIF(tau=2.0, v_threshold=0.5),
                       nn.Flatten(), nn.Linear(4 * 6 * 3, 5), LIF(tau=2.0, v_threshold=0.5)).eval()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[3].weight.mul_(4.0)
    x = (torch.rand(20, 3, 2, 6, 5, generator=torch.Generator().manual_seed(6)) < 0.35).float()
    net, _ = quantize(model, input_shape=(2, 6, 5))
    assert net.layers[0].conv is not None and net.layers[0].bias.shape == (4,)
    with torch.no_grad():
        hidden = model[:2](x).reshape(20, 3, -1)
        out = model(x)
    fixed = simulate(net, torch.cat([x.reshape(20, 3, -1), torch.zeros(2, 3, 60)]))
    assert hidden.sum() > 50 and out.sum() > 5
    assert (fixed.spikes[0][1:21] == hidden).float().mean() >= 0.99
    assert (fixed.spikes[1][2:22] == out).float().mean() >= 0.97
    with pytest.raises(UnsupportedLayerError, match="input_shape is needed: the first layer '0' \\(Conv2d\\)"):
        quantize(model)


def test_non_finite_and_outlier_weights_are_refused_or_warned(caplog):
    """issue #23: an inf weight, a NaN and a 1e30 outlier."""
    for bad in (float("inf"), float("nan")):
        model = nn.Sequential(nn.Linear(4, 32), LIF())
        with torch.no_grad():
            model[0].weight[0, 0] = bad
        with pytest.raises(QuantizationRangeError, match="NaN or infinite"):
            quantize(model.eval())
    model = nn.Sequential(nn.Linear(4, 32), LIF(v_threshold=1.0))
    with torch.no_grad():
        model[0].weight[0, 0] = 1e30
    with pytest.raises(QuantizationRangeError, match="threshold rounds to 0.*outliers"):
        quantize(model.eval())
    model = nn.Sequential(nn.Linear(4, 32), LIF(v_threshold=10.0))
    with torch.no_grad():
        model[0].weight.uniform_(-0.1, 0.1)
        model[0].weight[0, 0] = 200.0
    with caplog.at_level("WARNING"):
        quantize(model.eval())
    assert "round to 0" in caplog.text and "outliers" in caplog.text
