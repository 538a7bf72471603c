"""The bit-accurate Loihi simulator against hand-worked steps and a brute-force per-neuron integer reference."""

import pytest
import torch

from spikelib.hardware.loihi import LoihiLayer, LoihiNetwork, simulate


def _trunc_div(x: int, d: int) -> int:
    q = abs(x) // d
    return q if x >= 0 else -q


def _brute_force(net: LoihiNetwork, x: torch.Tensor):
    """Python ints, one neuron and one synapse at a time, spikes delivered through an explicit event queue."""
    T, B, _ = x.shape
    spikes_in = [[[int(x[t, b, i]) for i in range(x.shape[2])] for b in range(B)] for t in range(T)]
    out_spikes, out_u, out_v = [], [], []
    for layer in net.layers:
        n_out, n_in = layer.weight.shape
        w = layer.weight.tolist()
        d = layer.synapse_delays().tolist() if layer.delay is not None else [[0] * n_in for _ in range(n_out)]
        bias = layer.bias.tolist() if layer.bias is not None else [0] * n_out
        z_l = [[[0] * n_out for _ in range(B)] for _ in range(T)]
        u_l = [[[0] * n_out for _ in range(B)] for _ in range(T)]
        v_l = [[[0] * n_out for _ in range(B)] for _ in range(T)]
        for b in range(B):
            arrivals = {}
            for t in range(T):
                for i in range(n_in):
                    if spikes_in[t][b][i]:  # graded input: the weight times the payload
                        for o in range(n_out):
                            key = (t + 1 + d[o][i], o)
                            arrivals[key] = arrivals.get(key, 0) + w[o][i] * spikes_in[t][b][i]
            for o in range(n_out):
                u = v = 0
                for t in range(T):
                    u = _trunc_div(u * (4096 - layer.i_decay), 4096) + (arrivals.get((t, o), 0) << 6)
                    if u > 2 ** 23:
                        u -= 2 ** 24
                    elif u <= -(2 ** 23):
                        u += 2 ** 24
                    v = _trunc_div(v * (4096 - layer.v_decay), 4096) + u + (bias[o] << 6)
                    v = max(-(2 ** 23 - 1), min(2 ** 23 - 1, v))
                    z = int(v > (layer.vth << 6))
                    if z:
                        v = 0
                    z_l[t][b][o], u_l[t][b][o], v_l[t][b][o] = z, u, v
        out_spikes.append(torch.tensor(z_l, dtype=torch.float32))
        out_u.append(torch.tensor(u_l))
        out_v.append(torch.tensor(v_l))
        spikes_in = z_l
    return out_spikes, out_u, out_v


def test_hand_worked_decay_rounds_toward_zero():
    # one input spike at t=0, weight -3: arrives at t=1 (one-step latency), u = -3 << 6 = -192; u halves, v keeps 3/4
    layer = LoihiLayer(weight=torch.tensor([[-3]]), vth=10, i_decay=2048, v_decay=1024)
    x = torch.zeros(6, 1, 1)
    x[0] = 1
    r = simulate(LoihiNetwork(1, [layer]), x)
    assert r.u[0][:, 0, 0].tolist() == [0, -192, -96, -48, -24, -12]
    # v: -192; -144-96=-240; -180-48=-228; trunc(-171)-24=-195; trunc(-146.25)=-146 (not floor -147) -12 = -158
    assert r.v[0][:, 0, 0].tolist() == [0, -192, -240, -228, -195, -158]
    assert r.spikes[0].sum() == 0


def test_hand_worked_spike_reset_bias_and_delay():
    # weight 5 with delay 2: a spike at t=0 arrives at t=3; bias 1 adds 64 per step; vth 4 -> spike when v > 256
    layer = LoihiLayer(weight=torch.tensor([[5]]), vth=4, i_decay=4096, v_decay=4096, bias=torch.tensor([1]),
                       delay=torch.tensor([[2]]))
    x = torch.zeros(5, 1, 1)
    x[0] = 1
    r = simulate(LoihiNetwork(1, [layer]), x)
    assert r.u[0][:, 0, 0].tolist() == [0, 0, 0, 320, 0]
    assert r.spikes[0][:, 0, 0].tolist() == [0, 0, 0, 1, 0]
    assert r.v[0][:, 0, 0].tolist() == [64, 64, 64, 0, 64]  # 320 + 64 = 384 > 256: spike, reset to 0


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("delays", ["none", "synapse", "neuron"])
def test_matches_brute_force(delays, graded):
    g = torch.Generator().manual_seed(11)
    sizes = [9, 7, 5]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        d = None
        if delays == "synapse":
            d = torch.randint(0, 7, (b, a), generator=g)
        elif delays == "neuron":
            d = torch.randint(0, 7, (b,), generator=g)
        layers.append(LoihiLayer(weight=torch.randint(-256, 255, (b, a), generator=g), vth=200 + 100 * i,
                                 i_decay=[0, 1500][i], v_decay=[4096, 333][i],
                                 bias=torch.randint(-20, 21, (b,), generator=g), delay=d))
    net = LoihiNetwork(9, layers)
    x = (torch.rand(30, 3, 9, generator=g) < 0.35).float()
    if graded:  # graded input spikes (event counts 0..255) into the first layer
        x = x * torch.randint(1, 256, x.shape, generator=g).float()
    r = simulate(net, x)
    ref = _brute_force(net, x)
    for i in range(2):
        assert torch.equal(r.spikes[i], ref[0][i])
        assert torch.equal(r.u[i], ref[1][i])
        assert torch.equal(r.v[i], ref[2][i])
        assert r.spikes[i].sum() > 0


def test_wrap_and_clip_match_brute_force():
    layer = LoihiLayer(weight=torch.full((2, 200), 254), vth=131071, i_decay=0, v_decay=0,
                       bias=torch.tensor([4095, -4096]))
    layer.weight[1] = -256
    net = LoihiNetwork(200, [layer])
    x = (torch.rand(25, 1, 200) < 0.7).float()
    r = simulate(net, x)
    ref = _brute_force(net, x)
    assert torch.equal(r.u[0], ref[1][0]) and torch.equal(r.v[0], ref[2][0])
    assert int(r.u[0].max()) > 2 ** 22 and int(r.v[0].abs().max()) == 2 ** 23 - 1


def test_traces_optional_and_batch_independent():
    g = torch.Generator().manual_seed(2)
    net = LoihiNetwork(6, [LoihiLayer(weight=torch.randint(-100, 200, (4, 6), generator=g), vth=50, v_decay=100,
                                      delay=torch.randint(0, 4, (4, 6), generator=g))])
    x = (torch.rand(20, 4, 6, generator=g) < 0.4).float()
    full = simulate(net, x)
    fast = simulate(net, x, traces=False)
    assert fast.u[0] is None and torch.equal(full.spikes[0], fast.spikes[0])
    for b in range(4):
        assert torch.equal(simulate(net, x[:, b:b + 1]).v[0], full.v[0][:, b:b + 1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight=torch.tensor([[255, -1]])), r"weight must be in \[-256, 254\]"),
    (dict(weight=torch.tensor([[-256, -1]])), r"weight must be in \[-255, -1\]"),
    (dict(weight=torch.tensor([[256, 1]])), r"weight must be in \[0, 255\]"),
    (dict(weight=torch.zeros(2, 2, dtype=torch.long)), "all zero"),
    (dict(weight=torch.tensor([[1.5]])), "integers"),
    (dict(delay=torch.tensor([[63]])), r"delay must be in \[0, 62\]"),
    (dict(delay=torch.tensor([1, 2])), "delay must have shape"),
    (dict(bias=torch.tensor([4096])), r"bias must be in \[-4096, 4095\]"),
    (dict(vth=131073), r"vth must be in \[0, 131071\]"),  # 131072 is netx's never-spiking value
    (dict(i_decay=4097), r"i_decay must be in \[0, 4096\]"),
    (dict(v_decay=-1), r"v_decay must be in \[0, 4096\]"),
])
def test_layer_ranges_are_checked(kwargs, match):
    args = dict(weight=torch.tensor([[3]]), vth=10, name="L")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        LoihiLayer(**args)


def test_bad_network_and_input():
    layer = LoihiLayer(weight=torch.ones(3, 4, dtype=torch.long), vth=1)
    with pytest.raises(ValueError, match="takes 4 inputs"):
        LoihiNetwork(5, [layer])
    with pytest.raises(ValueError, match="non-empty"):
        LoihiNetwork(4, [])
    net = LoihiNetwork(4, [layer])
    with pytest.raises(ValueError, match=r"shape \[T, B, 4\]"):
        simulate(net, torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"integers in 0..255"):
        simulate(net, torch.full((5, 1, 4), 0.5))
    with pytest.raises(ValueError, match=r"integers in 0..255"):
        simulate(net, torch.full((5, 1, 4), 256.0))
    with pytest.raises(ValueError, match=r"integers in 0..255"):
        simulate(net, torch.full((5, 1, 4), -1.0))
    with pytest.raises(TypeError, match="LoihiNetwork"):
        simulate(layer, torch.zeros(5, 1, 4))


def _conv_as_dense(layer):
    """The [out, in] matrix of a conv layer, built by convolving every one-hot input (torch.conv2d, float64)."""
    g = layer.conv
    n_in = layer.in_features
    eye = torch.eye(n_in, dtype=torch.float64).reshape((n_in,) + g.in_shape)
    cols = torch.nn.functional.conv2d(eye, layer.weight.double(), stride=g.stride, padding=g.padding,
                                      dilation=g.dilation, groups=g.groups)
    return cols.reshape(n_in, -1).t().round().long()


def test_conv_equals_its_dense_matrix():
    from spikelib.hardware.loihi.network import ConvGeometry

    g = torch.Generator().manual_seed(3)
    conv = LoihiLayer(weight=torch.randint(-100, 200, (4, 1, 3, 2), generator=g), vth=150, i_decay=900, v_decay=300,
                      bias=torch.tensor([2, -1, 0, 3]),
                      conv=ConvGeometry((2, 5, 6), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2))
    w = _conv_as_dense(conv)
    dense = LoihiLayer(weight=w, vth=150, i_decay=900, v_decay=300,
                       bias=conv.bias.repeat_interleave(w.shape[0] // 4))
    x = (torch.rand(15, 3, 60, generator=g) < 0.4).float()
    a, b = simulate(LoihiNetwork(60, [conv]), x), simulate(LoihiNetwork(60, [dense]), x)
    assert conv.out_features == w.shape[0] == 4 * 3 * 4
    assert a.spikes[0].sum() > 0 and torch.equal(a.spikes[0], b.spikes[0]) and torch.equal(a.v[0], b.v[0])
    assert torch.equal(a.u[0], b.u[0])
