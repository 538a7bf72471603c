"""spikelib's bit-accurate Loihi simulator == Lava (lava-nc 0.10.0 + lava-dl 0.6.0, ``fixed_pt``) bit for bit.

Every case exports a network to netx HDF5, runs it in Lava through ``netx.hdf5.Network`` and in
:func:`spikelib.hardware.loihi.simulate`, and compares spikes AND the ``u``/``v`` traces of every layer at every step.
Lava is installed by ``scripts/install_lava.sh`` (run by ``make``); without it these tests fail with the install hint.
"""

import pytest
import torch

from spikelib.hardware.loihi import LoihiLayer, LoihiNetwork, export_netx, simulate
from spikelib.hardware.loihi.lava_runner import run_lava

pytestmark = pytest.mark.lava


def _rand_spikes(T, B, n, p, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < p).float()


def _assert_same(net, x, tmp_path, min_spikes=1):
    path = export_netx(net, tmp_path / "net.h5")
    sim = simulate(net, x)
    lava = run_lava(path, x)
    assert len(lava.spikes) == len(net.layers)
    for i in range(len(net.layers)):
        for name, a, b in (("spikes", sim.spikes[i], lava.spikes[i]), ("u", sim.u[i], lava.u[i]),
                           ("v", sim.v[i], lava.v[i])):
            assert a.shape == b.shape, (i, name, a.shape, b.shape)
            mismatch = (a != b).nonzero()
            assert mismatch.numel() == 0, f"layer {i} {name}: {len(mismatch)} mismatches, first {mismatch[0].tolist()}"
        # the comparison must not be vacuous: neurons spike and the traces move
        assert int(sim.spikes[i].sum()) >= min_spikes, f"layer {i} never spiked"
        assert int(sim.u[i].abs().sum()) > 0 and int(sim.v[i].abs().sum()) > 0
    return sim


def test_per_synapse_delays_bias_two_layers(tmp_path):
    g = torch.Generator().manual_seed(1)
    l1 = LoihiLayer(weight=torch.randint(-256, 255, (16, 20), generator=g), vth=400, i_decay=1000, v_decay=300,
                    bias=torch.randint(-60, 60, (16,), generator=g),
                    delay=torch.randint(0, 9, (16, 20), generator=g), name="hidden")
    l2 = LoihiLayer(weight=torch.randint(-256, 255, (5, 16), generator=g), vth=250, i_decay=2048, v_decay=700,
                    delay=torch.randint(0, 6, (5, 16), generator=g), name="out")
    x = _rand_spikes(40, 2, 20, 0.25, 2)
    _assert_same(LoihiNetwork(20, [l1, l2]), x, tmp_path)


def test_per_neuron_delays_and_largest_delays(tmp_path):
    """Per-neuron (axonal) delays, and per-synapse delays up to netx's limit 62 (run long enough to arrive)."""
    g = torch.Generator().manual_seed(3)
    d1 = torch.randint(0, 63, (10, 8), generator=g)
    d1[0, :] = 62
    d1[1, :] = 0
    l1 = LoihiLayer(weight=torch.randint(0, 256, (10, 8), generator=g), vth=150, i_decay=3000, v_decay=200,
                    delay=d1, name="syn62")
    l2 = LoihiLayer(weight=torch.randint(-200, 255, (6, 10), generator=g), vth=100, i_decay=4096, v_decay=400,
                    delay=torch.tensor([0, 1, 5, 17, 40, 62]), name="axonal")
    x = _rand_spikes(140, 1, 8, 0.2, 4)
    sim = _assert_same(LoihiNetwork(8, [l1, l2]), x, tmp_path)
    # the delay-62 row really delivered late input: its first current is at step >= 1 + 62
    first = int((sim.u[0][:, 0, 0] != 0).nonzero()[0])
    assert first >= 63


def test_edge_decays_and_weight_limits(tmp_path):
    """iDecay/vDecay 0 (no leak) and 4096 (no memory); weights exactly at -256 and 254 (mixed sign), 255
    (excitatory layer) and -255 (inhibitory layer) with a strongly negative bias, i.e. all of netx's weight range."""
    g = torch.Generator().manual_seed(5)
    w1 = torch.randint(-256, 255, (12, 10), generator=g)
    w1[0, :5], w1[1, :5] = -256, 254
    l1 = LoihiLayer(weight=w1, vth=600, i_decay=0, v_decay=4096, bias=torch.full((12,), 3), name="i0_v4096")
    w2 = torch.randint(0, 256, (9, 12), generator=g)
    w2[:, 0] = 255
    l2 = LoihiLayer(weight=w2, vth=900, i_decay=4096, v_decay=0, name="i4096_v0_excitatory")
    w3 = -torch.randint(1, 256, (4, 9), generator=g)
    w3[:, 0] = -255
    l3 = LoihiLayer(weight=w3, vth=5, i_decay=4096, v_decay=4096, bias=torch.full((4,), 40), name="inhibitory")
    x = _rand_spikes(50, 2, 10, 0.3, 6)
    sim = _assert_same(LoihiNetwork(10, [l1, l2, l3]), x, tmp_path)
    # the inhibitory input must matter: the bias-only neuron would spike every step
    assert int(sim.spikes[2].sum()) < sim.spikes[2].numel()


def test_wrap_of_u_and_clip_of_v(tmp_path):
    """Large fan-in without leak: u passes 2^23 and wraps; v saturates at +-(2^23 - 1)."""
    n = 300
    w = torch.full((3, n), 254)
    w[1] = -256
    w[2, ::2] = -256
    l1 = LoihiLayer(weight=w, vth=131071, i_decay=0, v_decay=0, bias=torch.tensor([0, -4096, 4095]), name="wrap")
    x = _rand_spikes(30, 1, n, 0.6, 7)
    path = export_netx(LoihiNetwork(n, [l1]), tmp_path / "wrap.h5")
    sim = simulate(LoihiNetwork(n, [l1]), x)
    lava = run_lava(path, x)
    assert int(sim.u[0].max()) > 2 ** 22 and int(sim.u[0].min()) < -(2 ** 22)
    assert int(sim.v[0].abs().max()) == 2 ** 23 - 1
    for a, b in zip((sim.spikes[0], sim.u[0], sim.v[0]), (lava.spikes[0], lava.u[0], lava.v[0])):
        assert torch.equal(a, b)


def test_three_layers_without_delays(tmp_path):
    g = torch.Generator().manual_seed(8)
    sizes = [24, 32, 16, 6]
    layers = [LoihiLayer(weight=torch.randint(-128, 200, (b, a), generator=g), vth=120 + 40 * i,
                         i_decay=512 * (i + 1), v_decay=256 * (i + 1),
                         bias=torch.randint(-8, 9, (b,), generator=g) if i != 1 else None, name=f"l{i}")
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    x = _rand_spikes(35, 2, 24, 0.3, 9)
    _assert_same(LoihiNetwork(24, layers), x, tmp_path)


def test_file_exported_by_lava_dl_slayer(tmp_path):
    """A netx file written by lava-dl's own exporter (slayer CUBA Dense blocks, axonal delays) imports into
    spikelib and simulates exactly as Lava runs it."""
    import h5py

    from spikelib.hardware.loihi import load_netx
    from spikelib.hardware.loihi.lava_runner import import_lava

    import_lava()  # registers the object_detection stand-in before slayer is imported
    import lava.lib.dl.slayer as slayer

    torch.manual_seed(4)
    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03, "requires_grad": False}
    blocks = torch.nn.ModuleList([slayer.block.cuba.Dense(params, 10, 8, weight_norm=False, delay=True),
                                  slayer.block.cuba.Dense(params, 8, 4, weight_norm=False)])
    with torch.no_grad():
        x0 = (torch.rand(1, 10, 20) < 0.3).float()
        for b in blocks:
            x0 = b(x0)  # slayer needs one forward pass to know its shapes before export
        blocks[0].delay.delay.copy_(torch.randint(0, 6, blocks[0].delay.delay.shape).float())
    path = tmp_path / "slayer.net"
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i}"))
    net = load_netx(path)
    assert net.layers[0].delay is not None and int(net.layers[0].delay.max()) > 0
    x = _rand_spikes(40, 1, 10, 0.4, 10)
    sim = simulate(net, x)
    lava = run_lava(path, x)
    for i in range(2):
        assert sim.spikes[i].sum() > 0
        for a, b in zip((sim.spikes[i], sim.u[i], sim.v[i]), (lava.spikes[i], lava.u[i], lava.v[i])):
            assert torch.equal(a, b)


def test_quantised_snn_delays_model(tmp_path):
    """A quantised SNN-delays network (per-synapse delays, batch norm folded into weights and bias, non-firing
    readout) runs identically in Lava and in the simulator."""
    from spikelib.hardware.loihi.quantize import quantize
    from spikelib.models.snn_delays import SNNDelays

    g = torch.Generator().manual_seed(0)
    model = SNNDelays(16, hidden=(12, 10), out_features=3, max_delay=8, delays="random", generator=g)
    with torch.no_grad():
        for syn in list(model.synapses) + [model.readout]:
            syn.weight.mul_(3.0)
        for bn in model.norms:
            bn.running_mean.uniform_(-0.2, 0.2, generator=g)
            bn.bias.uniform_(0.0, 0.3, generator=g)
    net, _ = quantize(model.eval())
    assert all(layer.delay is not None for layer in net.layers) and net.layers[0].bias is not None
    x = _rand_spikes(30, 1, 16, 0.3, 11)
    _assert_same(net, torch.cat([x, torch.zeros(15, 1, 16)]), tmp_path, min_spikes=0)


def test_import_after_start_method_was_fixed():
    """Lava calls multiprocessing.set_start_method('fork') at import; that must not fail in a process (like the
    demo's) where the start method is already fixed."""
    import subprocess
    import sys

    code = ("import multiprocessing as mp; mp.get_start_method(); "
            "from spikelib.hardware.loihi.lava_runner import import_lava; import_lava(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_conv_layers(tmp_path):
    """Two conv layers (padding, stride (1, 2), groups 2, per-channel bias, per-channel decays in the second, which Lava
    broadcasts over its channel axis): Lava's Conv synapse is torch's cross-correlation on netx's (C_out, C_in, kh, kw)
    kernels, flattened C, H, W here and (W, H, C) in Lava."""
    from spikelib.hardware.loihi.network import ConvGeometry

    g = torch.Generator().manual_seed(12)
    c1 = LoihiLayer(weight=torch.randint(-100, 200, (4, 2, 3, 3), generator=g), vth=300, i_decay=1000, v_decay=500,
                    bias=torch.tensor([1, -2, 3, 0]), conv=ConvGeometry((2, 6, 5), stride=(1, 2), padding=1),
                    name="c1")
    c2 = LoihiLayer(weight=torch.randint(-100, 200, (6, 2, 2, 2), generator=g), vth=200,
                    i_decay=torch.tensor([0, 500, 4096, 2000, 100, 3000]),
                    v_decay=torch.tensor([300, 0, 4096, 9, 800, 1]),
                    conv=ConvGeometry(c1.conv.out_shape(c1.weight), groups=2), name="c2")
    _assert_same(LoihiNetwork(60, [c1, c2]), _rand_spikes(12, 1, 60, 0.4, 13), tmp_path)


def test_conv_flatten_dense_with_input_side_200(tmp_path):
    """conv -> flatten -> dense (Lava 0.10's ReshapePort needed install_lava.sh's NumPy 2.4 patch) on an input of side
    200 (Lava's int8 conv padding needed the other patch): Lava runs it and equals the simulator."""
    from spikelib.hardware.loihi.network import ConvGeometry

    g = torch.Generator().manual_seed(16)
    c1 = LoihiLayer(weight=torch.randint(-60, 120, (2, 1, 3, 3), generator=g), vth=200, i_decay=2000, v_decay=400,
                    bias=torch.tensor([3, -1]), conv=ConvGeometry((1, 3, 200), stride=(1, 4), padding=1), name="c")
    d = LoihiLayer(weight=torch.randint(-100, 120, (5, c1.out_features), generator=g), vth=4000, v_decay=200,
                   name="d")
    assert c1.conv.out_shape(c1.weight) == (2, 3, 50)
    _assert_same(LoihiNetwork(600, [c1, d]), _rand_spikes(8, 1, 600, 0.4, 17), tmp_path)


@pytest.mark.parametrize("delays", [False, True])
def test_graded_input_spikes(tmp_path, delays):
    """Event counts as graded input spikes (netx input_message_bits=8): the first synapse multiplies by the payload."""
    g = torch.Generator().manual_seed(14)
    d = torch.randint(0, 5, (7, 12), generator=g) if delays else None
    l1 = LoihiLayer(weight=torch.randint(-100, 200, (7, 12), generator=g), vth=2000, i_decay=800, v_decay=300,
                    delay=d, bias=torch.randint(-5, 5, (7,), generator=g), name="graded")
    l2 = LoihiLayer(weight=torch.randint(-50, 255, (3, 7), generator=g), vth=150, v_decay=600, name="out")
    x = _rand_spikes(25, 1, 12, 0.4, 15) * torch.randint(1, 256, (25, 1, 12), generator=g)
    assert x.max() > 100
    _assert_same(LoihiNetwork(12, [l1, l2]), x, tmp_path)
