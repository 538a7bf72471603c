"""Exact operation counts against brute force over every spike and every synapse it reaches."""

import itertools

import pytest
import torch
from torch import nn

from spikelib.hardware.energy.counters import UnsupportedLayerError, conv_fanout_map
from spikelib.graph import declare
from spikelib.hardware.energy.counting import EnergyCounter, measure
from spikelib.layers.delay import DelayedLinear
from spikelib.layers.spike_attention import SpikeDrivenAttentionV1, SpikeDrivenAttentionV2
from spikelib.neurons import LIF
from spikelib.neurons.elm import ELM


def spikes(shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def run(model, *inputs):
    with EnergyCounter(model) as counter, torch.no_grad():
        model(*inputs)
    return counter.counts()


# ------------------------------------------------------------------------------------------------------ dense
def test_linear_exact_by_brute_force():
    lin = nn.Linear(5, 3)
    x = spikes((4, 2, 5))
    expected = 0
    for t, b, i in itertools.product(range(4), range(2), range(5)):
        if x[t, b, i] != 0:
            for j in range(3):  # every synapse the spike reaches
                expected += 1
    c = run(lin, x).layer("")
    assert c.sops == expected == int(x.sum()) * 3
    assert c.macs == 0 and c.dense_macs == 4 * 2 * 5 * 3
    assert c.in_spikes == int(x.sum()) and c.in_elements == x.numel()
    assert c.weight_reads == expected and c.adds == 4 * 2 * 3  # bias


def test_real_valued_input_counts_macs():
    lin = nn.Linear(5, 3, bias=False)
    x = torch.rand(4, 2, 5) + 0.1
    c = run(lin, x).layer("")
    assert c.sops == 0 and c.macs == c.dense_macs == 4 * 2 * 5 * 3 and c.in_spikes == 0


def test_integer_spike_counts_are_spikes_and_fractions_are_real():
    lin = nn.Linear(4, 3, bias=False)
    x = torch.tensor([[[0.0, 2.0, 1.0, 3.0]]])  # spike counts: 6 spikes
    c = run(lin, x).layer("")
    assert (c.sops, c.in_spikes, c.macs) == (6 * 3, 6, 0)
    c2 = run(lin, torch.tensor([[[0.0, 2.5, 1.0, 3.0]]])).layer("")
    assert (c2.sops, c2.macs) == (0, 12)


def test_spike_test_is_exact_on_edge_values():
    from spikelib.hardware.energy.counters import spike_stats

    assert spike_stats(torch.tensor([0.0, 1.0, -0.0, 1.0])) == (True, 2)
    assert spike_stats(torch.tensor([0.0, 3.0, 1.0], dtype=torch.float64)) == (True, 4)
    assert spike_stats(torch.tensor([True, False, True])) == (True, 2)
    assert spike_stats(torch.tensor([2, 0, 5])) == (True, 7)
    for bad in ([0.0, 1.0, 1e-30], [1.0, 0.99999994], [0.0, 0.5], [1.0, -1.0], [1.0, float("nan")],
                [1.0, float("inf")], [2.5, 1.0]):
        assert spike_stats(torch.tensor(bad))[0] is False, bad
    assert spike_stats(torch.tensor([-2, 1]))[0] is False
    ones = torch.ones(2 ** 24 + 3)  # past float32's exact integer range
    assert spike_stats(ones) == (True, 2 ** 24 + 3)


# ------------------------------------------------------------------------------------------------------- conv
def brute_conv_sops(x, cout, groups, kernel, stride, padding, dilation, mode="zeros"):
    """Loop over every output position and kernel tap; count the taps that read a spike (or any input: dense)."""
    N, C = x.shape[:2]
    spatial = x.shape[2:]
    nd = len(spatial)
    out_size = [(spatial[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in range(nd)]
    cin_g, cout_g = C // groups, cout // groups
    sops = dense = 0
    for n, o in itertools.product(range(N), range(cout)):
        g = o // cout_g
        for opos in itertools.product(*(range(s) for s in out_size)):
            for c in range(g * cin_g, (g + 1) * cin_g):
                for tap in itertools.product(*(range(k) for k in kernel)):
                    ipos = [opos[a] * stride[a] - padding[a] + tap[a] * dilation[a] for a in range(nd)]
                    if mode == "circular":
                        ipos = [p % spatial[a] for a, p in enumerate(ipos)]
                    elif any(p < 0 or p >= spatial[a] for a, p in enumerate(ipos)):
                        continue  # a zero-padding tap is no synapse
                    dense += 1
                    if x[(n, c) + tuple(ipos)] != 0:
                        sops += 1
    return sops, dense


@pytest.mark.parametrize("cfg", [
    dict(nd=2, cin=4, cout=6, k=3, stride=2, padding=1, groups=2, dilation=1),
    dict(nd=2, cin=3, cout=3, k=3, stride=1, padding=2, groups=3, dilation=2),
    dict(nd=2, cin=2, cout=4, k=2, stride=3, padding=0, groups=1, dilation=1),
    dict(nd=1, cin=2, cout=4, k=3, stride=2, padding=1, groups=1, dilation=1),
    dict(nd=3, cin=2, cout=2, k=3, stride=2, padding=1, groups=2, dilation=1),
])
def test_conv_exact_by_brute_force(cfg):
    nd = cfg["nd"]
    conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[nd]
    conv = conv_cls(cfg["cin"], cfg["cout"], cfg["k"], stride=cfg["stride"], padding=cfg["padding"],
                    groups=cfg["groups"], dilation=cfg["dilation"], bias=False)
    size = {1: (9,), 2: (7, 6), 3: (5, 4, 5)}[nd]
    x = spikes((2, cfg["cin"]) + size, seed=nd)
    rep = lambda v: (v,) * nd  # noqa: E731
    sops, dense = brute_conv_sops(x, cfg["cout"], cfg["groups"], rep(cfg["k"]), rep(cfg["stride"]),
                                  rep(cfg["padding"]), rep(cfg["dilation"]))
    c = run(conv, x).layer("")
    assert (c.sops, c.dense_macs) == (sops, dense)
    # the same number as a convolution of the spike map with an all-ones kernel
    ones = conv_cls(cfg["cin"], cfg["cout"], cfg["k"], stride=cfg["stride"], padding=cfg["padding"],
                    groups=cfg["groups"], dilation=cfg["dilation"], bias=False)
    nn.init.ones_(ones.weight)
    with torch.no_grad():
        assert int(ones(x).sum()) == sops


def test_conv_circular_padding_and_same():
    conv = nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular", bias=False)
    x = spikes((2, 2, 8), seed=3)
    sops, dense = brute_conv_sops(x, 3, 1, (3,), (1,), (1,), (1,), mode="circular")
    c = run(conv, x).layer("")
    assert (c.sops, c.dense_macs) == (sops, dense)
    same = nn.Conv2d(2, 2, 3, padding="same", bias=False)
    x2 = spikes((1, 2, 5, 5), seed=4)
    s2, d2 = brute_conv_sops(x2, 2, 1, (3, 3), (1, 1), (1, 1), (1, 1))
    c2 = run(same, x2).layer("")
    assert (c2.sops, c2.dense_macs) == (s2, d2)


def test_fanout_map_of_unpadded_stride_one_conv():
    conv = nn.Conv1d(1, 1, 3)
    f = conv_fanout_map(declare(conv), (5,), torch.device("cpu"))
    assert f.tolist() == [1, 2, 3, 2, 1]


@pytest.mark.parametrize("case", ["1x1", "stride_equals_kernel", "3x3_float32", "3x3_float64", "large_counts"])
def test_conv_count_paths_equal_a_ones_kernel_convolution(case):
    """Every way the conv counter sums ``x F`` (uniform fan-out, float32 product, float64 fallback past 2^24) gives
    the number of (spike, synapse) pairs, i.e. the sum of a float64 convolution with an all-ones kernel."""
    conv = {"1x1": nn.Conv2d(4, 6, 1), "stride_equals_kernel": nn.Conv2d(4, 6, 2, stride=2)}.get(
        case, nn.Conv2d(4, 6, 3, padding=1))
    x = spikes((3, 4, 8, 8), p=0.4, seed=7)
    if case == "3x3_float64":
        x = x.double()
        conv = conv.double()
    if case == "large_counts":  # integer spike counts: 100000 spikes per active entry, past float32's exact range
        x = x * 100000
    ones = nn.Conv2d(4, 6, conv.kernel_size, stride=conv.stride, padding=conv.padding, bias=False).double()
    nn.init.ones_(ones.weight)
    with torch.no_grad():
        expected = int(ones(x.double()).sum())
    c = run(conv, x).layer("")
    assert c.sops == expected and c.in_spikes == int(x.double().sum())
    if case == "large_counts":
        assert c.in_spikes * 9 >= 2 ** 24  # the float64 path was needed


# ------------------------------------------------------------------------------------------------------ delays
@pytest.mark.parametrize("T,dmax,delays", [(7, 4, "random"), (3, 6, "random"), (16, 4, "random"), (6, 3, "none")])
def test_delayed_linear_exact_and_matches_event_simulation(T, dmax, delays):
    """Also a sequence shorter than the largest delay (no step reaches every synapse) and one much longer."""
    B, cin, cout = 2, 4, 3
    layer = DelayedLinear(cin, cout, dmax, delays=delays, generator=torch.Generator().manual_seed(1))
    d = layer.integer_delays() if delays != "none" else torch.zeros(cout, cin, dtype=torch.long)
    x = spikes((T, B, cin), p=0.4, seed=2)
    out = torch.zeros(T, B, cout)
    expected = 0
    for t, b, i in itertools.product(range(T), range(B), range(cin)):
        if x[t, b, i] != 0:
            for j in range(cout):
                arrival = t + int(d[j, i])
                if arrival <= T - 1:  # the synapse delivers within the sequence
                    expected += 1
                    out[arrival, b, j] += layer.weight[j, i].item()
    with EnergyCounter(layer) as counter, torch.no_grad():
        y = layer(x)
    assert torch.allclose(y, out, atol=1e-5)  # the counted events are exactly the computed ones
    c = counter.counts().layer("")
    assert c.sops == expected
    assert c.dense_macs == sum(int(t + int(d[j, i]) <= T - 1) for t in range(T) for j in range(cout)
                               for i in range(cin)) * B


def _delay_sops(layer, x):
    """Brute force: every spike reaches each synapse whose integer delay keeps it inside the sequence."""
    d = layer.integer_delays()
    T = x.shape[0]
    return sum(int(t + int(d[j, i]) <= T - 1) for t, b, i in itertools.product(range(T), range(x.shape[1]),
                                                                                  range(x.shape[2]))
               if x[t, b, i] != 0 for j in range(layer.out_features))


def test_delay_changes_between_calls_are_counted_with_the_new_delays():
    """The declaration of a delay layer is reused while the layer is unchanged and renewed when its delays are
    updated in place (an optimiser step) or its mode switches, within one counter."""
    layer = DelayedLinear(4, 3, 5, delays="learn", generator=torch.Generator().manual_seed(3))
    layer.round_delays()
    x = spikes((9, 2, 4), p=0.4, seed=4)
    with EnergyCounter(layer) as counter, torch.no_grad():
        first = _delay_sops(layer, x)
        layer(x)
        layer(x)  # unchanged: the same declaration
        layer.delay.copy_(torch.full_like(layer.delay, 5.0))  # in place, as an optimiser step: every delay is 5
        second = _delay_sops(layer, x)
        layer(x)
    assert first != second
    assert counter.counts().layer("").sops == 2 * first + second
    gaussian = DelayedLinear(3, 2, 3, delays="learn", generator=torch.Generator().manual_seed(0))
    x = spikes((6, 1, 3), p=0.5, seed=5)
    every_tap = sum(2 * sum(1 for k in range(4) if t + k <= 5) for t in range(6) for i in range(3) if x[t, 0, i] != 0)
    with EnergyCounter(gaussian) as counter, torch.no_grad():
        gaussian(x)
        gaussian.round_delays()  # the mode switches to integer delays
        rounded = _delay_sops(gaussian, x)
        gaussian(x)
    assert counter.counts().layer("").sops == every_tap + rounded


def test_delayed_linear_gaussian_counts_every_tap():
    cin, cout, dmax = 3, 2, 3
    layer = DelayedLinear(cin, cout, dmax, delays="learn", generator=torch.Generator().manual_seed(0))
    for T in (5, 2, 11):
        x = spikes((T, 1, cin), p=0.5, seed=5)
        expected = sum(cout * sum(1 for k in range(dmax + 1) if t + k <= T - 1)
                       for t in range(T) for i in range(cin) if x[t, 0, i] != 0)
        assert run(layer, x).layer("").sops == expected


# ----------------------------------------------------------------------------------------------------- neurons
def test_lif_firing_rate_is_spikes_over_neurons_steps_batch():
    T, B, N = 6, 3, 10
    lif = LIF(tau=2.0, v_threshold=0.5)
    x = torch.rand(T, B, N) * 1.5
    with EnergyCounter(lif) as counter, torch.no_grad():
        s = lif(x)
    c = counter.counts().layer("")
    assert c.firing_rate == pytest.approx(float(s.sum()) / (N * T * B))
    assert c.neuron_updates == N * T * B == c.state_reads == c.state_writes
    assert c.raster is not None and c.raster.shape == (T, N)
    assert torch.equal(c.raster, s[:, 0].ne(0))


def test_elm_routed_synaptic_events():
    elm = ELM(6, 2, num_memory=4, num_branch=3, synapses_per_branch=3, routing="random",
              generator=torch.Generator().manual_seed(0))
    x = spikes((5, 2, 6), p=0.4, seed=7)
    idx, mask = elm.routing_index, elm.routing_mask
    expected = 0
    for t, b, c in itertools.product(range(5), range(2), range(6)):
        if x[t, b, c] != 0:
            for s in range(idx.numel()):  # every synapse reading this input
                if int(idx[s]) == c and (mask is None or mask[s] != 0):
                    expected += 1
    c = run(elm, x).layer("")
    assert c.sops == expected
    mlp = (3 + 4) * 8 + 8 * 4
    assert c.macs == 5 * 2 * (mlp + 4 * 2)
    assert c.neuron_updates == 5 * 2 * (9 + 4)


# --------------------------------------------------------------------------------------------------- attention
def _strong(module):
    """Weights large enough that Q, K and V fire."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.uniform_(-0.5, 1.5)
    return module


def _capture(module, names):
    store = {}
    handles = [getattr(module, n).register_forward_hook(
        lambda m, a, o, n=n: store.__setitem__(n, o.detach())) for n in names]
    return store, handles


def test_attention_v2_products_by_brute_force():
    torch.manual_seed(0)
    attn = _strong(SpikeDrivenAttentionV2(8, num_heads=2, qkv="conv1x1").eval())
    x = torch.rand(2, 2, 8, 3, 3) * 4
    store, handles = _capture(attn, ("q_lif", "k_lif"))
    counts = run(attn, x).layer("product")  # the SpikeAttentionProduct module
    for h in handles:
        h.remove()
    q, k = store["q_lif"], store["k_lif"]
    T, B, C, H, W = q.shape
    d = C // 2
    expected = 0
    for t, b, head in itertools.product(range(T), range(B), range(2)):
        for n in range(H * W):
            for i in range(d):
                ch = head * d + i
                if k[t, b, ch].flatten()[n] != 0:   # K^T V: the spike K[n, i] adds row V[n, :]
                    expected += d
                if q[t, b, ch].flatten()[n] != 0:   # Q (K^T V): the spike Q[n, i] adds row (K^T V)[i, :]
                    expected += d
    assert expected > 0
    assert counts.sops == expected
    assert counts.dense_macs == 2 * T * B * 2 * (H * W) * d * d


def test_attention_v1_column_sum_by_brute_force():
    torch.manual_seed(1)
    attn = _strong(SpikeDrivenAttentionV1(4, num_heads=2).eval())
    x = torch.rand(2, 1, 4, 2, 3) * 4
    store, handles = _capture(attn, ("k_lif", "v_lif"))
    counts = run(attn, x).layer("column_sum")  # the SpikeColumnSum module
    for h in handles:
        h.remove()
    k, v = store["k_lif"], store["v_lif"]
    expected = sum(1 for idx in itertools.product(*(range(s) for s in k.shape)) if k[idx] != 0 and v[idx] != 0)
    assert expected > 0 and counts.sops == expected


def test_model_readout_integrators_are_counted():
    """Readouts are LeakyIntegrator modules: one state update per output and step, read from their declaration."""
    from spikelib.models.mlp import SpikingMLP
    from spikelib.models.snn_delays import SNNDelays

    mlp = SpikingMLP(6, (5,), 3)
    x = spikes((7, 2, 6))
    counts = run(mlp, x)
    assert counts.layer("readout_li").neuron_updates == 7 * 2 * 3 and counts.layer("readout_li").kind == "li"
    net = SNNDelays(6, (5, 4), 3, max_delay=4, delays="random").eval()
    with torch.no_grad():
        steps = net.membrane(x).shape[0]
    assert steps > 7
    assert run(net, x).layer("readout_li").neuron_updates == steps * 2 * 3


def test_pooling_and_batchnorm_counts():
    net = nn.Sequential(nn.BatchNorm2d(2), nn.MaxPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1)).eval()
    x = torch.rand(1, 2, 5, 5)
    counts = run(net, x)
    assert counts.layer("0").norm_macs == 50  # one a x + b per element
    assert counts.layer("1").adds == (2 * 3 * 3) * 9  # every output compares its 3 x 3 window
    assert counts.layer("2").adds == 2 * 3 * 3  # every input added once
    assert counts.total("sops") == counts.total("macs") == 0


# ----------------------------------------------------------------------------------------------------- network
def test_doubling_the_spikes_doubles_the_sops():
    net = nn.Sequential(nn.Linear(6, 5), LIF(v_threshold=0.3), nn.Linear(5, 4))
    x = spikes((5, 3, 6), seed=9)
    one = run(net, x)
    two = run(net, torch.cat([x, x], 1))  # every spike of every layer appears twice
    assert one.total("sops") > 0
    assert two.total("sops") == 2 * one.total("sops")
    assert two.total("dense_macs") == 2 * one.total("dense_macs")


def test_reused_neuron_statistics_follow_in_place_changes():
    from spikelib.graph import nodes

    class Double(nn.Module):  # changes the spikes in place after the LIF layer counted them (declared as free)
        def forward(self, x):
            return x.mul_(2)

        def graph_node(self):
            return nodes.Free("Double")

    lin = nn.Linear(5, 3)
    net = nn.Sequential(LIF(v_threshold=0.3), Double(), lin)
    x = torch.rand(6, 2, 5)
    counts = run(net, x)
    spikes = counts.layer("0").out_spikes
    assert spikes > 0 and counts.layer("2").sops == 2 * spikes * 3  # counts of 2: two spikes each
    plain = run(nn.Sequential(LIF(v_threshold=0.3), nn.Linear(5, 3)), x)
    assert plain.layer("1").sops == spikes * 3


def test_measure_runs_an_eval_pass_and_counts_samples():
    net = nn.Sequential(nn.Linear(6, 5), LIF(v_threshold=0.3), nn.Dropout(0.5))
    net.train()
    data = [(spikes((4, 3, 6), seed=s), torch.zeros(3)) for s in range(3)]
    counts = measure(net, data, max_batches=2)
    assert counts.samples == 6 and net.training
    assert counts.layer("0").calls == 2
    with pytest.raises(ValueError, match="max_batches"):
        measure(net, data, max_batches=0)
    with pytest.raises(ValueError, match="empty"):
        measure(net, [])


# --------------------------------------------------------------------------------------------------- bad input
def test_unsupported_layer_is_named():
    net = nn.Sequential(nn.Linear(3, 4), nn.GRU(4, 4))
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(torch\.nn\.modules\.rnn\.GRU\)"):
        EnergyCounter(net)

    class Custom(nn.Module):  # a container that computes with a parameter of its own
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x) * self.scale

    with pytest.raises(UnsupportedLayerError, match="Custom"):
        EnergyCounter(nn.Sequential(Custom()))


def test_hooks_are_removed_after_exit_and_on_error():
    lin = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match="boom"):
        with EnergyCounter(lin):
            raise RuntimeError("boom")
    assert not lin._forward_hooks
    with EnergyCounter(lin):
        assert lin._forward_hooks
    assert not lin._forward_hooks


# ------------------------------------------------------------------------------------------------- sparse conv
def _sparse_input(T=2, C=3, seed=0, shape=(5, 4, 6), batch=2, sites=14, integer=False):
    from spikelib.sparse import SparseSpikeTensor

    g = torch.Generator().manual_seed(seed)
    coords = set()
    while len(coords) < sites:
        coords.add((int(torch.randint(batch, (1,), generator=g)),) + tuple(
            int(torch.randint(s, (1,), generator=g)) for s in shape))
    coords = torch.tensor(sorted(coords))
    feats = (torch.rand(T, sites, C, generator=g) < 0.5).float()
    if integer:
        feats = feats * torch.randint(1, 4, (T, sites, C), generator=g).float()
    return SparseSpikeTensor(feats, coords, shape, batch)


@pytest.mark.parametrize("integer", [False, True])
def test_submanifold_sparse_conv_exact_by_brute_force(integer):
    from spikelib.sparse import SubMConv3d

    x = _sparse_input(integer=integer)
    conv = SubMConv3d(3, 4, 3, dilation=1)
    active = {tuple(c.tolist()): i for i, c in enumerate(x.coords)}
    expected = 0
    T, N, C = x.features.shape
    for t, i, c in itertools.product(range(T), range(N), range(C)):
        v = int(x.features[t, i, c])
        if v == 0:
            continue
        b, *q = x.coords[i].tolist()
        for k in itertools.product(range(3), repeat=3):  # every tap: the output site this spike reaches
            p = tuple(q[a] - (k[a] - 1) for a in range(3))
            if (b,) + p in active:  # submanifold: outputs only at active sites
                expected += v * 4  # C_out synapses, v spikes
    c = run(conv, x).layer("")
    assert c.sops == expected > 0
    assert c.in_spikes == int(x.features.sum())


def test_strided_sparse_conv_exact_by_brute_force_and_dense_ones_conv():
    from spikelib.sparse import SparseConv3d

    x = _sparse_input(seed=3)
    conv = SparseConv3d(3, 2, kernel_size=2, stride=2)
    out_shape = [(s - 2) // 2 + 1 for s in x.spatial_shape]
    expected = 0
    T, N, C = x.features.shape
    for t, i, c in itertools.product(range(T), range(N), range(C)):
        if x.features[t, i, c] == 0:
            continue
        q = x.coords[i].tolist()[1:]
        for k in itertools.product(range(2), repeat=3):
            o = [(q[a] - k[a]) for a in range(3)]
            if all(v % 2 == 0 and 0 <= v // 2 < out_shape[a] for a, v in enumerate(o)):
                expected += 2
    c = run(conv, x).layer("")
    assert c.sops == expected > 0
    dense = x.dense()  # [B, C, X, Y, Z] per step: a dense conv with an all-ones kernel counts the same pairs
    ones = nn.Conv3d(3, 2, 2, stride=2, bias=False)
    nn.init.ones_(ones.weight)
    with torch.no_grad():
        total = sum(int(ones(dense[t]).sum()) for t in range(T)) if dense.dim() == 6 else int(ones(dense).sum())
    assert total == expected


# ------------------------------------------------------------------------------------------ every model counts
@pytest.mark.parametrize("name", ["spiking_mlp", "snn_delays", "elm_classifier", "meta_spikeformer_tiny_test",
                                  "maxformer_tiny_test", "e3dsnn_tiny"])
def test_every_registered_model_family_is_counted(name):
    from spikelib.models import get_model

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if name in ("spiking_mlp", "snn_delays", "elm_classifier"):
        kw = {"elm_classifier": dict(num_input=12, num_classes=3, num_memory=4)}.get(
            name, dict(in_features=12, out_features=3, hidden=[8]))
        if name == "snn_delays":
            kw.update(max_delay=4)
        model = get_model(name, **kw)
        x = (torch.rand(10, 2, 12, generator=g) < 0.3).float()
    elif name == "e3dsnn_tiny":
        model = get_model(name)
        with torch.no_grad():
            x = model.eval().voxelize([torch.rand(200, 6, generator=g) for _ in range(2)], g)
    else:
        model = get_model(name)
        x = torch.rand(1, 3, 32, 32, generator=g)
    model.eval()
    counts = run(model, x)
    assert counts.layers and counts.total("dense_macs") > 0
    for c in counts.layers:
        assert c.calls >= 1
        assert c.sops <= c.dense_macs or c.kind in ("lif", "integer_spike", "readout", "batchnorm", "pool")
        if c.spike_input and c.dense_macs:
            assert c.macs == 0 or c.kind == "elm"  # the ELM's MLP is real-valued whatever its input


def test_time_padding_hands_spike_statistics_on_without_changing_counts(monkeypatch):
    """SNN-delays pads every hidden layer's spikes with zero steps (``TimePad``); the padded tensor is a new tensor,
    but it keeps the spikes, so the next delayed layer reuses the neuron layer's count instead of scanning again."""
    import spikelib.hardware.energy.counters as counters
    import spikelib.hardware.energy.counting as counting
    from spikelib.models.snn_delays import SNNDelays

    net = SNNDelays(6, (5, 4), 3, max_delay=4, delays="random").eval()
    x = spikes((10, 2, 6), p=0.5, seed=5)
    scans = []
    real_stats = counters.input_stats
    monkeypatch.setattr(counters, "input_stats", lambda t: scans.append(tuple(t.shape)) or real_stats(t))
    with_pass_on = run(net, x)
    scanned_with = list(scans)
    scans.clear()
    monkeypatch.setattr(counting, "keeps_spikes", lambda node: False)
    without = run(net, x)
    assert with_pass_on.to_dict()["layers"] == without.to_dict()["layers"]
    assert with_pass_on.layer("synapses.1").in_spikes == with_pass_on.layer("neurons.0").out_spikes > 0
    assert len(scanned_with) == 1  # only the raw input; each padded hidden spike tensor reused its neuron's count
    assert len(scans) == 3


def test_remembered_statistics_die_with_their_tensor():
    """The memo holds weak references: once a neuron output is freed, a new tensor at the same address (same key)
    is measured, not given the old statistics."""
    import gc

    from spikelib.hardware.energy.counters import _memo_key, known_spike_stats, remember_spikes

    memo = {}
    a = torch.ones(4096)
    remember_spikes({"_memo": memo}, a, (True, 4096))
    assert known_spike_stats(a.view(64, 64), memo) == (True, 4096)
    key = _memo_key(a)
    del a
    gc.collect()
    b = torch.full((4096,), 0.5)  # often allocated where `a` was
    assert known_spike_stats(b, memo) is None
    assert key not in memo or _memo_key(b) != key


def test_one_pass_binary_scan_is_exact_and_defers_everything_else():
    """The numba scan counts binary float32 spikes and returns None for anything else (which the portable test then
    judges); spike_stats gives the same answer with or without it."""
    pytest.importorskip("numba")
    import spikelib.hardware.energy.counters as counters
    from spikelib.hardware.energy._binary_scan import binary_spike_count

    x = spikes((50, 700), p=0.2, seed=9)
    assert binary_spike_count(x) == int(x.sum())
    assert binary_spike_count(torch.zeros(10000)) == 0
    assert binary_spike_count(x.requires_grad_()) == int(x.sum())
    x = x.detach()
    for value in (0.5, -0.0, 2.0, 1.0000001, float("nan"), -1.0, 1e-45):
        y = x.clone().reshape(-1)
        y[-1] = value  # in the last block: the scan reads to the end before it can tell
        assert binary_spike_count(y) is None, value
    assert binary_spike_count(x.double()) is None  # other dtypes, small or strided tensors: the portable test
    assert binary_spike_count(x[:4]) is None
    assert binary_spike_count(x.t()) is None
    for t in (x, x * 3, torch.where(x > 0, x, torch.tensor(-0.0)), x + 0.25, torch.ones(8)):
        fast = counters.spike_stats(t)
        counters._BINARY_SCAN = lambda _t: None
        try:
            assert counters.spike_stats(t) == fast
        finally:
            counters._BINARY_SCAN = None


def test_inverse_sparse_conv_and_segmentation_network_are_counted():
    """The inverse conv sends each coarse site back to the fine sites of the strided conv's pairs: a spike at coarse
    site o reaches C_out synapses per pair (i, o); the E-3DSNN segmentation network is counted end to end."""
    from spikelib.models import get_model
    from spikelib.sparse import SparseConv3d, SparseSpikeTensor
    from spikelib.sparse.inverse_conv import SparseInverseConv3d

    fine = _sparse_input(T=1, C=3, seed=3, sites=20)
    fine = SparseSpikeTensor(fine.features[0], fine.coords, fine.spatial_shape, fine.batch_size)
    down = SparseConv3d(3, 4, 2, 2)
    coarse = down(fine)
    coarse = coarse.replace_features((torch.rand(coarse.features.shape, generator=torch.Generator().manual_seed(1))
                                      < 0.5).float())
    inv = SparseInverseConv3d(4, 2, 2, 2)
    with EnergyCounter(inv) as counter:
        inv(coarse, fine)
    c = counter.counts(samples=2).layer("")
    kmap = inv.kernel_map(fine)
    expected = sum(int(coarse.features[o].sum()) * 2 for o in kmap.out_idx.tolist())
    assert expected > 0 and c.sops == expected and c.dense_macs == 4 * 2 * len(kmap.out_idx)
    model = get_model("e3dsnn_seg_tiny").eval()
    g = torch.Generator().manual_seed(1)
    pts = torch.unique(torch.randint(0, 8, (90, 3), generator=g), dim=0)
    x = model.voxelize_coords(pts, torch.randn(len(pts), 4, generator=g), torch.zeros(len(pts), dtype=torch.long))
    counts = measure(model, [x], prepare=lambda b: (b, 1))
    assert any(layer.kind == "sparse_conv3d" and ".up" in layer.name for layer in counts.layers)


def test_event_camera_attention_counts_the_pooled_column_sum():
    from spikelib.layers.sdsa_dvs import SpikeDrivenAttentionV1DVS

    torch.manual_seed(2)
    attn = _strong(SpikeDrivenAttentionV1DVS(4, num_heads=2).eval())
    x = torch.rand(2, 1, 4, 3, 3) * 4
    store, handles = _capture(attn, ("k_lif", "v_lif"))
    counts = run(attn, x)
    for h in handles:
        h.remove()
    from spikelib.layers.sdsa_dvs import _split_heads

    k, v = (_split_heads(attn.pool(store[n]), 2) for n in ("k_lif", "v_lif"))
    expected = int(torch.count_nonzero(attn.pool(k * v)))
    assert expected > 0 and counts.layer("column_sum").sops == expected
