"""Networks that exist nowhere in spikelib.models, built here from spikelib layers only, go through every tool that
reads the declared layer graph: energy counts equal a brute-force count; NIR export -> from_nir gives identical
spikes; norse and snnTorch run the exported graph with identical spikes where they support its nodes; the parts a
Loihi chip can run quantise, export to netx and simulate (bit-exactly against Lava in tests/test_loihi_lava.py's
way, marked ``lava``); the parts it cannot run are a clear error naming the layer and why.

(a) Conv2d -> BN -> LIF -> max-pool -> flatten -> DelayedLinear -> LIF -> leaky readout
(b) a residual block ``x + f(x)`` of Linear/LIF, written as arithmetic in a forward
(c) ParametricLIF with per-neuron tau in a chain
"""

import itertools

import pytest
import torch
from torch import nn

from spikelib.hardware.energy import measure
from spikelib.hardware.loihi import export_netx, load_netx, simulate
from spikelib.hardware.loihi.extract import UnsupportedLayerError, extract_float_network
from spikelib.hardware.loihi.quantize import quantize
from spikelib.layers import DelayedLinear, Sequential
from spikelib.neurons import LIF, LeakyIntegrator, ParametricLIF


def _spikes(shape, p, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def net_a(pool: str = "max") -> Sequential:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pooling = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2, divisor_override=1)
    net = Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), LIF(v_threshold=0.5), pooling, nn.Flatten(),
                     DelayedLinear(36, 6, 4, delays="random", generator=g), LIF(v_threshold=0.5),
                     LeakyIntegrator(2.0))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[1].running_mean.uniform_(-0.2, 0.2, generator=g)
        net[1].running_var.uniform_(0.5, 1.5, generator=g)
        net[5].weight.mul_(2.0)
    return net.eval()


class ResidualNet(nn.Module):
    """(b): ``h = LIF(W1 x); y = LIF(h + LIF(W2 h))`` with the sum written in ``forward``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.inp, self.n1 = nn.Linear(8, 10), LIF(v_threshold=0.4)
        self.body, self.n2 = nn.Linear(10, 10), LIF(v_threshold=0.4)
        self.out = LIF(v_threshold=0.8, tau=3.0)
        with torch.no_grad():
            self.inp.weight.mul_(4.0)
            self.body.weight.mul_(4.0)

    def forward(self, x):
        h = self.n1(self.inp(x))
        return self.out(h + self.n2(self.body(h)))


def net_c(decay_input: bool = True) -> Sequential:
    torch.manual_seed(2)
    kw = dict(v_threshold=0.5, decay_input=decay_input)
    net = Sequential(nn.Linear(8, 12), ParametricLIF(init_tau=2.0, shape=(12,), **kw),
                     nn.Linear(12, 5), ParametricLIF(init_tau=3.0, shape=(5,), **kw))
    with torch.no_grad():
        net[1].w.copy_(-torch.log(torch.linspace(1.2, 6.0, 12) - 1.0))  # per-neuron tau 1.2 .. 6
        net[0].weight.mul_(4.0 if decay_input else 1.0)
        net[2].weight.abs_().mul_(4.0 if decay_input else 1.0)
    return net.eval()


def _outputs(net, x):
    """Outputs of every child of a Sequential, recorded with hooks."""
    store = {}
    handles = [m.register_forward_hook(lambda m, a, o, i=i: store.__setitem__(i, (a[0].detach(), o.detach())))
               for i, m in enumerate(net)]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return store


# ------------------------------------------------------------------------------------------------------ energy
def _brute_conv_sops(x, conv):
    """Every spike at an input position counts once per (output position, tap) reaching it, times C_out."""
    T, B, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    total = 0
    for t, b, c, oh, ow, i, j in itertools.product(range(T), range(B), range(C), range(Ho), range(Wo), range(kh),
                                                   range(kw)):
        h, w = oh * sh - ph + i, ow * sw - pw + j
        if 0 <= h < H and 0 <= w < W and x[t, b, c, h, w] != 0:
            total += conv.out_channels
    return total


def _brute_delayed_sops(x, layer):
    T = x.shape[0]
    d = layer.integer_delays()
    return sum(int(((d[:, i] <= T - 1 - t)).sum()) for t, b, i in itertools.product(
        range(T), range(x.shape[1]), range(x.shape[2])) if x[t, b, i] != 0)


def test_a_energy_counts_equal_brute_force():
    net = net_a()
    x = _spikes((5, 2, 2, 6, 6), 0.4, 3)
    seen = _outputs(net, x)
    counts = measure(net, [x], prepare=lambda b: (b, 2))
    conv_in, conv_out = seen[0]
    assert counts.layer("0").sops == _brute_conv_sops(conv_in.reshape(5, 2, 2, 6, 6), net[0]) > 0
    assert counts.layer("0").adds == conv_out.numel()  # one bias addition per output
    assert counts.layer("1").norm_macs == seen[1][0].numel()
    lif_in, lif_out = seen[2]
    assert counts.layer("2").neuron_updates == lif_in.numel() and counts.layer("2").out_spikes == int(lif_out.sum())
    assert counts.layer("3").adds == seen[3][1].numel() * 4  # every max-pool output compares a 2 x 2 window
    dl_in = seen[5][0]
    assert counts.layer("5").sops == _brute_delayed_sops(dl_in, net[5]) > 0
    assert counts.layer("6").neuron_updates == seen[6][0].numel()
    assert counts.layer("7").neuron_updates == seen[7][0].numel() and counts.layer("7").kind == "li"


def test_b_residual_energy_counts_equal_brute_force():
    net = ResidualNet().eval()
    x = _spikes((6, 3, 8), 0.4, 4)
    h = net.n1(net.inp(x))
    s2 = net.n2(net.body(h))
    counts = measure(net, [x], prepare=lambda b: (b, 3))
    assert counts.layer("inp").sops == int(x.sum()) * 10
    assert counts.layer("body").sops == int(h.sum()) * 10 > 0
    assert counts.layer("out").neuron_updates == (h + s2).numel()
    assert counts.total("sops") == int(x.sum()) * 10 + int(h.sum()) * 10


def test_c_parametric_lif_per_neuron_tau_energy_counts():
    net = net_c()
    x = _spikes((6, 3, 8), 0.4, 5)
    seen = _outputs(net, x)
    counts = measure(net, [x], prepare=lambda b: (b, 3))
    assert counts.layer("0").sops == int(x.sum()) * 12
    assert counts.layer("2").sops == int(seen[1][1].sum()) * 5 > 0
    assert counts.layer("3").out_spikes == int(seen[3][1].sum())


# --------------------------------------------------------------------------------------------------------- NIR
def test_a_nir_round_trip_and_the_max_pool_error():
    nir = pytest.importorskip("nir")
    from spikelib.hardware.nir import NIRConversionError, from_nir, to_nir

    with pytest.raises(NIRConversionError, match=r"layer '3' \(pool, MaxPool2d\).*average"):
        to_nir(net_a("max"), input_shape=(2, 6, 6))
    net = net_a("sum")
    graph = to_nir(net, input_shape=(2, 6, 6))
    assert isinstance(graph.nodes["3"], nir.SumPool2d) and "1" not in graph.nodes  # batch norm folded into conv
    back = from_nir(graph)
    x = _spikes((8, 3, 2, 6, 6), 0.4, 6)
    ours, theirs = _outputs(net, x), _outputs(back, x)
    assert torch.equal(ours[6][1], theirs[5][1]) and ours[6][1].sum() > 0  # the LIF after the delays: same spikes
    assert torch.allclose(ours[7][1], theirs[6][1], atol=1e-5)  # the leaky readout's membrane (BN folded: rounding)


def test_b_residual_nir_round_trip_and_peers():
    pytest.importorskip("nir")
    from spikelib.hardware.nir import from_nir, to_nir

    net = ResidualNet().eval()
    graph = to_nir(net)
    assert sorted(e for e in graph.edges if e[1] == "out") == [("n1", "out"), ("n2", "out")]  # NIR sums the edges
    back = from_nir(graph)
    x = _spikes((10, 3, 8), 0.4, 7)
    with torch.no_grad():
        ref = net(x)
        assert torch.equal(back(x), ref) and ref.sum() > 0
    norse = pytest.importorskip("norse.torch")
    with torch.no_grad():
        state, outs = None, []
        peer = norse.from_nir(graph, dt=1e-4)
        for t in range(x.shape[0]):
            o, state = peer(x[t], state)
            outs.append(o)
    assert torch.equal(torch.stack(outs), ref)


def test_c_parametric_lif_nir_round_trip_and_peers():
    pytest.importorskip("nir")
    from spikelib.hardware.nir import from_nir, to_nir

    net = net_c()
    graph = to_nir(net)
    assert graph.nodes["1"].tau.shape == (12,) and len(set(graph.nodes["1"].tau.tolist())) == 12
    x = _spikes((12, 3, 8), 0.4, 8)
    with torch.no_grad():
        ref = net(x)
        assert torch.equal(from_nir(graph)(x), ref) and ref.sum() > 0
    norse = pytest.importorskip("norse.torch")
    with torch.no_grad():
        state, outs = None, []
        peer = norse.from_nir(graph, dt=1e-4)
        for t in range(x.shape[0]):
            o, state = peer(x[t], state)
            outs.append(o)
    assert torch.equal(torch.stack(outs), ref)


def test_c_snntorch_runs_per_neuron_tau_where_it_can():
    """snnTorch 1.0's importer folds NIR's input scaling ``r dt / tau`` into the threshold with ONE value per layer
    (``np.unique(w_scale)[0]``, snntorch/import_nir.py): per-neuron tau runs identically when the scaling is 1
    (``decay_input=False``: ``r = tau / dt``), and differently with ``decay_input=True`` (documented difference)."""
    pytest.importorskip("nir")
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    from spikelib.hardware.nir import to_nir

    x = _spikes((12, 3, 8), 0.4, 8)
    for decay_input in (False, True):
        net = net_c(decay_input)
        peer = import_from_nir(to_nir(net))
        with torch.no_grad():
            ref = net(x)
            out = torch.stack([o if isinstance(o, torch.Tensor) else o[0] for o in (peer(x[t]) for t in range(12))])
        assert ref.sum() > 10
        assert torch.equal(out, ref) is (not decay_input)


# ------------------------------------------------------------------------------------------------------- Loihi
def test_loihi_errors_name_the_layer_and_why():
    with pytest.raises(UnsupportedLayerError, match=r"layer '3' \(pool, MaxPool2d\).*pooling"):
        quantize(net_a(), input_shape=(2, 6, 6))
    with pytest.raises(UnsupportedLayerError, match=r"layer 'ResidualNet:add' \(add\).*residual addition"):
        quantize(ResidualNet().eval())
    with pytest.raises(UnsupportedLayerError, match=r"layer '1': per-neuron v_threshold"):
        quantize(Sequential(nn.Linear(3, 2), LIF(v_threshold=torch.tensor([0.5, 1.0]))))


def test_c_per_neuron_tau_maps_to_per_neuron_decays():
    """ParametricLIF's per-neuron tau becomes per-neuron vDecay; the chip's hidden spikes are the float ones."""
    net = net_c()
    x = _spikes((12, 3, 8), 0.4, 11)
    loihi, report = quantize(net)
    v_decay = loihi.layers[0].v_decay
    tau = 1.0 / torch.sigmoid(net[1].w.detach().double())
    assert torch.equal(v_decay, torch.round(4096.0 / tau).long()) and len(set(v_decay.tolist())) > 1
    assert "vDecay per neuron" in report.summary()
    with torch.no_grad():
        hidden = net[:2](x)
    sim = simulate(loihi, torch.cat([x, torch.zeros(2, 3, 8)]))
    assert hidden.sum() > 0 and (sim.spikes[0][1:13] == hidden).float().mean() >= 0.97


def loihi_part_of_a():
    """The part of (a) a chip can run: what follows the max-pool (flatten -> delayed synapses -> LIF -> readout)."""
    net = net_a()
    return net, Sequential(*list(net)[4:]).eval()


def test_a_loihi_part_quantises_exports_and_simulates_like_float():
    net, tail = loihi_part_of_a()
    x = _spikes((6, 4, 2, 6, 6), 0.4, 9)
    pooled = _outputs(net, x)[3][1].reshape(6, 4, 4, 3, 3)  # the spikes the chip's part receives
    fnet = extract_float_network(tail, input_shape=(4, 3, 3))
    assert [fl.name for fl in fnet.layers] == ["1", "3"] and fnet.readout == "membrane"
    assert torch.equal(fnet.layers[1].weight, torch.eye(6, dtype=torch.float64))  # the readout reads the LIF 1:1
    loihi, _ = quantize(tail, input_shape=(4, 3, 3))
    back = load_netx(export_netx(loihi, __import__("tempfile").mkdtemp() + "/a.net"))
    flat = pooled.reshape(6, 4, -1)
    pad = torch.zeros(2, 4, flat.shape[2])
    sim = simulate(back, torch.cat([flat, pad]))
    with torch.no_grad():
        hidden = tail[:3](pooled)
    assert hidden.sum() > 0
    assert (sim.spikes[0][1:7] == hidden).float().mean() >= 0.97  # one step of synaptic latency on the chip


# ------------------------------------------------------------------------------------ a new layer kind in one file
class GainDense(nn.Module):
    """A user's own layer kind: one class with a graph_node() method, no registration anywhere."""

    def __init__(self, n_in: int, n_out: int, gain: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.5)
        self.gain = gain

    def forward(self, x):
        return x @ (self.gain * self.weight).t()

    def graph_node(self):
        from spikelib.graph import nodes

        return nodes.Affine(self.gain * self.weight.detach())


def test_a_new_layer_kind_needs_only_its_own_class():
    torch.manual_seed(3)
    net = Sequential(GainDense(6, 8, 3.0), LIF(v_threshold=0.5), GainDense(8, 4, 3.0), LIF(v_threshold=0.5)).eval()
    x = _spikes((10, 2, 6), 0.4, 10)
    seen = _outputs(net, x)
    counts = measure(net, [x], prepare=lambda b: (b, 2))
    assert counts.layer("0").sops == int(x.sum()) * 8 and counts.layer("2").sops == int(seen[1][1].sum()) * 4 > 0
    net_q, _ = quantize(net)
    assert [tuple(layer.weight.shape) for layer in net_q.layers] == [(8, 6), (4, 8)]
    nir = pytest.importorskip("nir")
    from spikelib.hardware.nir import from_nir, to_nir

    graph = to_nir(net)
    assert isinstance(graph.nodes["0"], nir.Linear)
    with torch.no_grad():
        assert torch.equal(from_nir(graph)(x), net(x))
