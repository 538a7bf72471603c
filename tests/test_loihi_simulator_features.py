"""The simulator's netx features against a brute-force per-neuron integer reference: input neurons fed with graded
current and a per-sample bias, per-neuron decays, recurrent layers (netx dense_rec), periodic reset
(reset_interval/reset_offset), per-channel conv decays, and netx's non-spiking threshold; and their argument checks.
Lava equality of the same features is in test_loihi_lava_features.py."""

import pytest
import torch

from spikelib.hardware.loihi import LoihiLayer, LoihiNetwork, simulate
from spikelib.hardware.loihi.network import VTH_NEVER, ConvGeometry, InputNeurons


def _trunc_div(x: int, d: int) -> int:
    q = abs(x) // d
    return q if x >= 0 else -q


def _vec(value, n):
    return value.tolist() if isinstance(value, torch.Tensor) else [int(value)] * n


def _lif(a, i_dec, v_dec, bias, vth, reset, w_rec):
    """One neuron group, one sample: ``a[t][o]`` synaptic input (ints); returns z, u, v as lists [T][n]."""
    T, n = len(a), len(a[0])
    u, v, z_prev = [0] * n, [0] * n, [0] * n
    zs, us, vs = [], [], []
    for t in range(T):
        if reset is not None and t % reset[0] == reset[1]:
            u, v = [0] * n, [0] * n
        z_t = [0] * n
        for o in range(n):
            inp = a[t][o] + (sum(w_rec[o][j] * z_prev[j] for j in range(n)) if w_rec is not None else 0)
            uo = _trunc_div(u[o] * (4096 - i_dec[o]), 4096) + (inp << 6)
            if uo > 2 ** 23:
                uo -= 2 ** 24
            elif uo <= -(2 ** 23):
                uo += 2 ** 24
            vo = _trunc_div(v[o] * (4096 - v_dec[o]), 4096) + uo + (bias[o] << 6)
            vo = max(-(2 ** 23 - 1), min(2 ** 23 - 1, vo))
            if vo > (vth << 6):
                z_t[o], vo = 1, 0
            u[o], v[o] = uo, vo
        zs.append(z_t)
        us.append(list(u))
        vs.append(list(v))
        z_prev = z_t
    return zs, us, vs


def _brute_force(net, x, reset_interval=None, reset_offset=0, input_bias=None):
    T, B, _ = x.shape
    groups = net.neuron_groups
    out = [([], [], []) for _ in groups]
    for b in range(B):
        prev = [[int(x[t, b, i]) for i in range(x.shape[2])] for t in range(T)]
        for gi, grp in enumerate(groups):
            reset = None if reset_interval is None else (reset_interval, (reset_offset + gi) % reset_interval)
            if isinstance(grp, InputNeurons):
                n = grp.size
                bias = input_bias[b].tolist() if input_bias is not None else [0] * n
                res = _lif(prev, _vec(grp.i_decay, n), _vec(grp.v_decay, n), bias, grp.vth, reset, None)
            else:
                n_out, n_in = grp.weight.shape
                w = grp.weight.tolist()
                d = grp.synapse_delays().tolist() if grp.delay is not None else [[0] * n_in for _ in range(n_out)]
                a = [[0] * n_out for _ in range(T)]
                for t in range(T):
                    for i in range(n_in):
                        if prev[t][i]:
                            for o in range(n_out):
                                if t + 1 + d[o][i] < T:
                                    a[t + 1 + d[o][i]][o] += w[o][i] * prev[t][i]
                bias = grp.bias.tolist() if grp.bias is not None else [0] * n_out
                w_rec = grp.weight_rec.tolist() if grp.weight_rec is not None else None
                res = _lif(a, _vec(grp.i_decay, n_out), _vec(grp.v_decay, n_out), bias, grp.vth, reset, w_rec)
            for k in range(3):
                out[gi][k].append(res[k])
            prev = res[0]
    return [[torch.tensor(o[k]).transpose(0, 1) for o in out] for k in range(3)]  # [T, B, n] per group


def _feature_net(g):
    inp = InputNeurons(shape=(6,), vth=40, i_decay=torch.tensor([0, 500, 4096, 1200, 3000, 100]),
                       v_decay=torch.tensor([4096, 0, 300, 2000, 50, 800]), transform_weight=36, transform_bias=34)
    l1 = LoihiLayer(weight=torch.randint(-200, 255, (5, 6), generator=g), vth=150,
                    i_decay=torch.tensor([0, 4096, 700, 2048, 10]), v_decay=torch.tensor([100, 4096, 0, 500, 900]),
                    bias=torch.randint(-10, 11, (5,), generator=g), delay=torch.randint(0, 4, (5, 6), generator=g),
                    name="dense_delays")
    l2 = LoihiLayer(weight=torch.randint(-150, 200, (4, 5), generator=g), vth=120,
                    weight_rec=torch.randint(-256, 254, (4, 4), generator=g),
                    i_decay=torch.tensor([1000, 0, 4096, 300]), v_decay=700, name="recurrent")
    l3 = LoihiLayer(weight=torch.randint(-100, 200, (3, 4), generator=g), vth=VTH_NEVER, i_decay=0, v_decay=4096,
                    name="integrator")
    return LoihiNetwork(6, [l1, l2, l3], input_neurons=inp)


@pytest.mark.parametrize("reset", [None, (7, 0), (5, 3)])
def test_input_neurons_per_neuron_decays_recurrent_reset_match_brute_force(reset):
    g = torch.Generator().manual_seed(21)
    net = _feature_net(g)
    x = torch.randint(-400, 900, (40, 2, 6), generator=g) * (torch.rand(40, 2, 6, generator=g) < 0.3)
    bias = torch.randint(-30, 60, (2, 6), generator=g)
    ri, ro = reset if reset is not None else (None, 0)
    r = simulate(net, x, reset_interval=ri, reset_offset=ro, input_bias=bias)
    ref = _brute_force(net, x, ri, ro, bias)
    assert len(r.spikes) == 4  # input neurons + 3 layers
    for i in range(4):
        assert torch.equal(r.spikes[i], ref[0][i].float()), i
        assert torch.equal(r.u[i], ref[1][i]), i
        assert torch.equal(r.v[i], ref[2][i]), i
    for i in range(3):
        assert r.spikes[i].sum() > 0, i  # not vacuous
    assert r.spikes[3].sum() == 0 and r.v[3].abs().sum() > 0  # the integrator never spikes, but integrates
    if reset is not None:  # the reset changes the result
        assert not torch.equal(simulate(net, x, input_bias=bias).v[1], r.v[1])


def test_reset_steps_hand_worked():
    # a bias-only neuron: v grows by 64 per step and is zeroed before steps t with t % 4 == (1 + group) % 4
    layer = LoihiLayer(weight=torch.tensor([[1]]), vth=1000, v_decay=0, bias=torch.tensor([1]))
    r = simulate(LoihiNetwork(1, [layer]), torch.zeros(9, 1, 1), reset_interval=4, reset_offset=1)
    assert r.v[0][:, 0, 0].tolist() == [64, 64, 128, 192, 256, 64, 128, 192, 256]
    two = LoihiNetwork(1, [layer, LoihiLayer(weight=torch.tensor([[1]]), vth=1000, v_decay=0,
                                             bias=torch.tensor([1]))])
    r2 = simulate(two, torch.zeros(9, 1, 1), reset_interval=4, reset_offset=1)
    assert r2.v[1][:, 0, 0].tolist() == [64, 128, 64, 128, 192, 256, 64, 128, 192]  # group 1: t % 4 == 2


def test_per_channel_conv_decays_equal_per_neuron_dense():
    g = torch.Generator().manual_seed(22)
    conv = LoihiLayer(weight=torch.randint(-80, 160, (3, 2, 2, 2), generator=g), vth=120,
                      i_decay=torch.tensor([0, 900, 4096]), v_decay=torch.tensor([200, 4096, 30]),
                      bias=torch.tensor([1, 0, -2]), conv=ConvGeometry((2, 4, 5), padding=(1, 0)))
    n_in = conv.in_features
    eye = torch.eye(n_in, dtype=torch.float64).reshape((n_in,) + conv.conv.in_shape)
    w = torch.nn.functional.conv2d(eye, conv.weight.double(), padding=(1, 0)).reshape(n_in, -1).t().round().long()
    per = w.shape[0] // 3
    dense = LoihiLayer(weight=w, vth=120, i_decay=conv.i_decay.repeat_interleave(per),
                       v_decay=conv.v_decay.repeat_interleave(per), bias=conv.bias.repeat_interleave(per))
    x = (torch.rand(20, 2, n_in, generator=g) < 0.4).float()
    a, b = simulate(LoihiNetwork(n_in, [conv]), x, reset_interval=6), simulate(LoihiNetwork(n_in, [dense]), x,
                                                                                reset_interval=6)
    assert a.spikes[0].sum() > 0
    assert all(torch.equal(p, q) for p, q in zip(a.u + a.v + a.spikes, b.u + b.v + b.spikes))


def test_input_neurons_3d_feed_conv():
    inp = InputNeurons(shape=(2, 4, 4), vth=10, i_decay=torch.tensor([4096, 100]), v_decay=500)
    conv = LoihiLayer(weight=torch.ones(3, 2, 3, 3, dtype=torch.long), vth=5, conv=ConvGeometry((2, 4, 4)))
    net = LoihiNetwork(32, [conv], input_neurons=inp)
    x = torch.zeros(6, 1, 32, dtype=torch.long)
    x[0, 0, :16] = 700  # channel 0: one pulse (iDecay 4096: gone next step); channel 1: nothing
    r = simulate(net, x)
    assert r.spikes[0][0, 0, :16].all() and r.spikes[0][1:].sum() == 0 and r.spikes[0][:, 0, 16:].sum() == 0
    assert r.spikes[1][1].sum() > 0 and r.spikes[1][0].sum() == 0  # one step of synaptic latency


def test_never_spiking_threshold_even_when_saturated():
    layer = LoihiLayer(weight=torch.full((1, 300), 254), vth=VTH_NEVER, i_decay=0, v_decay=0)
    r = simulate(LoihiNetwork(300, [layer]), torch.ones(20, 1, 300))
    assert int(r.v[0].max()) == 2 ** 23 - 1 and r.spikes[0].sum() == 0
    almost = LoihiLayer(weight=torch.full((1, 300), 254), vth=131071, i_decay=0, v_decay=0)
    assert simulate(LoihiNetwork(300, [almost]), torch.ones(20, 1, 300)).spikes[0].sum() > 0


def test_argument_checks():
    g = torch.Generator().manual_seed(23)
    net = _feature_net(g)
    x = torch.zeros(5, 2, 6)
    with pytest.raises(ValueError, match=r"spikes must be in \[-131072, 131072\]"):
        simulate(net, x + 200000)
    with pytest.raises(ValueError, match="spikes must hold integers"):
        simulate(net, x + 0.5)
    with pytest.raises(ValueError, match=r"input_bias must have shape \(6,\) or \(2, 6\)"):
        simulate(net, x, input_bias=torch.zeros(3, 6))
    with pytest.raises(ValueError, match=r"input_bias must be in \[-4096, 4095\]"):
        simulate(net, x, input_bias=torch.full((6,), 5000))
    with pytest.raises(ValueError, match="reset_interval must be None"):
        simulate(net, x, reset_interval=0)
    with pytest.raises(TypeError, match="reset_offset must be an int"):
        simulate(net, x, reset_interval=3, reset_offset=1.5)
    plain = LoihiNetwork(6, net.layers)
    with pytest.raises(ValueError, match="input_bias needs a network with input neurons"):
        simulate(plain, x, input_bias=torch.zeros(6))


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_rec=torch.ones(2, 3, dtype=torch.long)), r"weight_rec must be \[out, out\] = \[2, 2\]"),
    (dict(weight_rec=torch.ones(2, 2, dtype=torch.long), delay=torch.zeros(2, 3, dtype=torch.long)),
     "recurrent layer .* cannot have delays"),
    (dict(weight=torch.full((2, 3), 255), weight_rec=-torch.ones(2, 2, dtype=torch.long)),
     r"weight must be in \[-256, 254\]"),  # netx scales both matrices together: mixed sign
    (dict(i_decay=torch.tensor([1, 2, 3])), r"i_decay must be an int or a tensor of shape \(2,\)"),
    (dict(v_decay=torch.tensor([1, 5000])), r"v_decay must be in \[0, 4096\]"),
    (dict(i_decay=1.5), "i_decay must be an int"),
])
def test_layer_feature_checks(kwargs, match):
    args = dict(weight=torch.ones(2, 3, dtype=torch.long), vth=10, name="L")
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        LoihiLayer(**args)


def test_input_neuron_checks():
    with pytest.raises(ValueError, match=r"shape must be \(n,\) or \(C, H, W\)"):
        InputNeurons(shape=(2, 3), vth=1)
    with pytest.raises(ValueError, match=r"i_decay must be an int or a tensor of shape \(2,\) \(one per channel\)"):
        InputNeurons(shape=(2, 3, 3), vth=1, i_decay=torch.zeros(18, dtype=torch.long))
    with pytest.raises(TypeError, match="transform_weight must be an int"):
        InputNeurons(shape=(3,), vth=1, transform_weight=1.5)
    layer = LoihiLayer(weight=torch.ones(2, 4, dtype=torch.long), vth=1)
    with pytest.raises(ValueError, match=r"input_neurons has 3 neurons"):
        LoihiNetwork(4, [layer], input_neurons=InputNeurons(shape=(3,), vth=1))
    conv = LoihiLayer(weight=torch.ones(1, 1, 1, 1, dtype=torch.long), vth=1, conv=ConvGeometry((1, 2, 2)))
    with pytest.raises(ValueError, match="does not match the first conv layer"):
        LoihiNetwork(4, [conv], input_neurons=InputNeurons(shape=(4,), vth=1))
