"""ANN -> SNN conversion (spikelib.conversion): thresholds against an independent step-by-step computation of
IIR-SNN's rule (SayeedChowdhury/IIR-SNN snncifar_bnfused.py find_threshold with vgg_spiking_bnfused_biasyes.py
VGG_SNN_STDB.forward(find_max_mem=True)), batch-norm folding, structure, errors."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from spikelib.conversion import (ConversionError, balance_thresholds, convert, convert_structure, neuron_thresholds,
                                 reference_percentile)
from spikelib.models import get_model
from spikelib.models.iir_blocks import ResidualBlock


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.1)
    return model


def _ann(name, dtype=torch.float64, **kw):
    torch.manual_seed(3)
    ann = _randomise_bn(get_model(name, **kw)).to(dtype).eval()
    with torch.no_grad():  # larger linear weights than the reference's N(0, 0.01) init, so the later layers spike
        for m in ann.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(20.0)
    return ann


# ---------------------------------------------------------------------------------------- independent reference
def _kth(t, q):
    """The reference's percentile(): kthvalue of the flattened tensor, k = 1 + round(0.01 q (n - 1))."""
    k = 1 + round(0.01 * float(q) * (t.numel() - 1))
    return t.reshape(-1).kthvalue(k).values.item()


def _fold(conv, bn):
    """absorb_bn.py: w * gamma / sqrt(var + eps), (b - mean) / sqrt(var + eps) * gamma + beta."""
    var_sqrt = torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * (bn.weight / var_sqrt).reshape(-1, *([1] * (conv.weight.dim() - 1)))
    b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return w, (b - bn.running_mean) / var_sqrt * bn.weight + bn.bias


class _Stop(Exception):
    pass


class StepReference:
    """Runs the ANN's structure step by step as the reference's SNN does (one dict of membranes, soft reset by
    ``threshold * (mem / threshold - 1 > 0)``, leak 1), written independently of spikelib's layers."""

    def __init__(self, ann):
        self.ann = ann
        self.thresholds = {}  # ReLU module -> threshold

    def synapse(self, m, bn, x):
        if bn is not None:
            w, b = _fold(m, bn)
        else:
            w, b = m.weight, m.bias
        if isinstance(m, nn.Conv2d):
            return F.conv2d(x, w, b, m.stride, m.padding)
        return F.linear(x, w, b)

    def neuron(self, relu, current):
        if self.measure is relu:
            p = _kth(current, self.q)
            if p > self.max_mem:
                self.max_mem = p
            raise _Stop
        th = self.thresholds[relu]
        mem = self.mem.get(relu, 0.0) * 1.0 + current
        mem_thr = mem / th - 1.0
        self.mem[relu] = mem - th * (mem_thr > 0).double()
        return (mem_thr > 0).double()

    def seq(self, modules, x):
        modules = list(modules)
        i, current = 0, None
        while i < len(modules):
            m = modules[i]
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bn = modules[i + 1] if i + 1 < len(modules) and isinstance(modules[i + 1], nn.BatchNorm2d) else None
                current = self.synapse(m, bn, x)
                x = current
                i += 2 if bn is not None else 1
                continue
            if isinstance(m, nn.ReLU):
                x = self.neuron(m, current)
            elif isinstance(m, nn.AvgPool2d):
                x = F.avg_pool2d(x, m.kernel_size, m.stride)
            elif isinstance(m, nn.Flatten):
                x = x.reshape(x.shape[0], -1)
            elif isinstance(m, ResidualBlock):
                skip = x if m.shortcut is None else self.seq(m.shortcut, x)
                x = self.neuron(m.relu, self.seq(m.body, x) + skip)
            elif not isinstance(m, nn.Dropout):  # dropout: eval mode, mask of ones
                raise AssertionError(type(m))
            i += 1
        return x

    def relus(self):
        order = []
        for m in self.ann.modules():
            if isinstance(m, nn.ReLU):
                order.append(m)
        return order  # registration order = execution order for these models

    def thresholds_for(self, x, steps, q=90.0):
        self.q = q
        out = []
        for relu in self.relus():
            self.measure, self.max_mem, self.mem = relu, 0.0, {}
            for _ in range(steps):
                try:
                    self.seq(self.ann, x)
                except _Stop:
                    pass
            th = self.max_mem if self.max_mem != 0 else 0.1
            self.thresholds[relu] = th
            out.append(th)
        self.measure = None
        return out


# ------------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", ["vgg_tiny_ann", "resnet_tiny_ann"])
@pytest.mark.parametrize("q", [90.0, 99.0])
def test_thresholds_equal_the_reference_rule(name, q):
    ann = _ann(name)
    x = torch.randn(32, 1, 8, 8, dtype=torch.float64)
    expected = StepReference(ann).thresholds_for(x, steps=12, q=q)
    snn = convert(ann, x, steps=12, percentile=q)
    got = list(neuron_thresholds(snn).values())
    assert len(got) == len(expected) == sum(isinstance(m, nn.ReLU) for m in ann.modules())
    assert all(t > 0 for t in expected) and len(set(expected)) == len(expected)  # every layer got its own value
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-12, atol=0)


def test_thresholds_do_not_depend_on_the_chunk_size():
    ann = _ann("vgg_tiny_ann")
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    a = list(neuron_thresholds(convert(ann, x, steps=9, chunk=1)).values())
    b = list(neuron_thresholds(convert(ann, x, steps=9, chunk=4)).values())
    c = list(neuron_thresholds(convert(ann, x, steps=9)).values())
    assert a == b == c


def test_max_method_scale_and_zero_fallback():
    ann = _ann("vgg_tiny_ann")
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    expected = StepReference(ann).thresholds_for(x, steps=5, q=100.0)
    got = list(neuron_thresholds(convert(ann, x, steps=5, method="max")).values())
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-12, atol=0)
    scaled = list(neuron_thresholds(convert(ann, x, steps=5, method="max", scale=0.5)).values())
    # the scale applies after balancing (previous layers are measured with unscaled thresholds, as the reference)
    torch.testing.assert_close(torch.tensor(scaled), 0.5 * torch.tensor(expected), rtol=1e-12, atol=0)
    # a layer whose currents are never positive gets 0.1 (the reference's max_act == 0 case)
    with torch.no_grad():
        ann.conv1.weight.zero_()
        ann.bn1.bias.fill_(-1.0)
    assert list(neuron_thresholds(convert(ann, x, steps=3)).values())[0] == 0.1


def test_reference_percentile_matches_kthvalue():
    x = torch.randn(10001)
    for q in (0.0, 1.0, 50.0, 90.0, 99.95, 100.0):
        assert reference_percentile(x, q) == _kth(x, q)
    # Python's round-half-to-even decides the rank, as in the reference
    y = torch.arange(5.0)  # n - 1 = 4: q = 12.5 -> 0.5 -> round to 0 -> k = 1
    assert reference_percentile(y, 12.5) == 0.0 and reference_percentile(y, 37.5) == 2.0


@pytest.mark.parametrize("ann_name,snn_name", [("vgg_tiny_ann", "vgg_tiny_snn"), ("resnet_tiny_ann", "resnet_tiny_snn"),
                                               ("vgg_ann", "vgg_snn")])
def test_structure_matches_the_registered_snn(ann_name, snn_name):
    kw = {"cfg": "vgg5", "hidden": (32,), "image_size": 16} if ann_name == "vgg_ann" else {}
    snn = convert_structure(get_model(ann_name, **kw).eval())
    twin = get_model(snn_name, **kw)
    got = {k: tuple(v.shape) for k, v in snn.state_dict().items()}
    assert got == {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    twin.load_state_dict(snn.state_dict())


def test_batchnorm_folding_gives_the_ann_currents():
    ann = _ann("resnet_tiny_ann")
    snn = convert_structure(ann)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    ref = ann.bn1(ann.conv1(x))
    torch.testing.assert_close(snn.net.conv1(x), ref, rtol=1e-12, atol=1e-12)
    block = ann.layer2_0
    y = torch.randn(4, 8, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(snn.net.layer2_0.shortcut.conv(y), block.shortcut(y), rtol=1e-12, atol=1e-12)


def test_large_t_matches_a_linear_ann_exactly_in_the_limit():
    """A 1-layer ReLU net with thresholds above every current: the spike count converges to relu(I) / V."""
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3, bias=False)).double().eval()
    x = torch.randn(20, 6, dtype=torch.float64)
    snn = convert(ann, x, steps=4, method="max", timesteps=4000)
    v = list(neuron_thresholds(snn).values())[0]
    with torch.no_grad():
        counts_rate = snn(x) / 4000  # sum_t W s[t] / T -> W relu(I) / V
        expected = ann(x) / v
    torch.testing.assert_close(counts_rate, expected, atol=2e-3 * float(expected.abs().max()), rtol=0)


def test_per_neuron_thresholds():
    ann = _ann("vgg_tiny_ann")
    x = torch.randn(8, 1, 8, 8, dtype=torch.float64)
    snn = convert(ann, x, steps=3, per_neuron=True)
    assert tuple(snn.net.act1.v_threshold.shape) == (16, 8, 8)
    assert tuple(snn.net.act_fc1.leak.shape) == (64,)
    layer = list(neuron_thresholds(convert(ann, x, steps=3)).values())
    assert bool((snn.net.act1.v_threshold == layer[0]).all())


@pytest.mark.parametrize("bad,match", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)), "'2' \\(MaxPool2d\\): max pooling"),
    (nn.Sequential(nn.Linear(4, 4), nn.GELU()), "'1' \\(GELU\\): only ReLU"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4)), "'2' \\(BatchNorm1d\\): a batch norm converts"),
    (nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4)), "'1' \\(LSTM\\): no conversion rule"),
])
def test_unconvertible_layers_are_named(bad, match):
    with pytest.raises(ConversionError, match=match):
        convert_structure(bad.eval())


def test_training_mode_and_bad_arguments():
    ann = get_model("vgg_tiny_ann")
    with pytest.raises(ConversionError, match="training mode"):
        convert_structure(ann)
    ann.eval()
    x = torch.randn(4, 1, 8, 8)
    for kw, match in [({"percentile": 0}, "percentile"), ({"percentile": 101}, "percentile"),
                      ({"method": "mean"}, "method"), ({"steps": 0}, "steps"), ({"scale": -1.0}, "scale"),
                      ({"chunk": 0}, "chunk")]:
        with pytest.raises(ValueError, match=match):
            convert(ann, x, **kw)
    with pytest.raises(ValueError, match="calibration is on"):
        convert(ann, x.double())


def test_direct_input_and_timesteps():
    snn = get_model("vgg_tiny_snn", timesteps=3)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        a = snn(x)
        b = snn(x.unsqueeze(0).expand(3, 2, 1, 8, 8))
        snn.set_timesteps(1)
        c = snn(x)
    assert torch.equal(a, b) and c.shape == (2, 10)
    with pytest.raises(ValueError, match="static batch"):
        snn(torch.randn(8, 8))
    with pytest.raises(ValueError, match="timesteps"):
        snn.set_timesteps(0)


def test_sequence_dropout_mask_is_fixed_over_time():
    from spikelib.models.iir_blocks import SequenceDropout

    d = SequenceDropout(0.5).train()
    y = d(torch.ones(6, 3, 40))
    assert torch.equal(y[0], y[5]) and set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(d.eval()(y), y)
    with pytest.raises(ValueError, match="p must"):
        SequenceDropout(1.0)


def test_thresholds_leave_the_model_as_it_was():
    ann = _ann("vgg_tiny_ann", dtype=torch.float32)
    x = torch.randn(8, 1, 8, 8)
    snn = convert_structure(ann).train()
    states = [m.stateful for m in snn.modules() if hasattr(m, "stateful")]
    balance_thresholds(snn, x, steps=3)
    assert snn.training and [m.stateful for m in snn.modules() if hasattr(m, "stateful")] == states
    assert all(getattr(m, "state", None) is None for m in snn.modules())
    assert all(math.isfinite(v) and v > 0 for v in neuron_thresholds(snn).values())


def test_normalize_bias_makes_the_conversion_exact_at_large_t():
    """With biases divided by the scale of the spikes they join, rate * lambda -> the ANN's output; the reference's
    rule (biases as they are) stays off however long it runs."""
    torch.manual_seed(2)
    ann = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(),
                        nn.Linear(12, 3)).double().eval()
    _randomise_bn_1d = ann[1]
    with torch.no_grad():
        _randomise_bn_1d.running_mean.uniform_(-0.5, 0.5)
        _randomise_bn_1d.running_var.uniform_(0.5, 2.0)
        _randomise_bn_1d.bias.uniform_(-0.3, 0.3)
        ann[3].bias.uniform_(-0.5, 0.5)
    x = torch.randn(64, 10, dtype=torch.float64)
    with torch.no_grad():
        ref = ann(x)
    errors = {}
    for normalize in (False, True):
        snn = convert(ann, x, method="max", steps=50, timesteps=3000, normalize_bias=normalize)
        lam = 1.0
        for v in neuron_thresholds(snn).values():
            lam *= v
        with torch.no_grad():
            out = snn(x) / 3000 * lam
        errors[normalize] = float((out - ref).abs().max() / ref.abs().max())
    assert errors[True] < 0.02 < errors[False]


def test_normalize_bias_handles_chains_only():
    ann = _ann("resnet_tiny_ann")
    with pytest.raises(ValueError, match="normalize_bias handles chains.*'net.layer1_0.add'"):
        convert(ann, torch.randn(4, 1, 8, 8, dtype=torch.float64), steps=2, normalize_bias=True)
