"""netx HDF5 export/import: exact round trip, atomic write, the schema netx reads, and malformed files."""

import h5py
import numpy as np
import pytest
import torch

from spikelib.hardware.loihi import LoihiLayer, LoihiNetwork, NetxFormatError, export_netx, load_netx, simulate


def _net():
    g = torch.Generator().manual_seed(0)
    l1 = LoihiLayer(weight=torch.randint(-256, 255, (6, 5), generator=g), vth=300, i_decay=0, v_decay=4096,
                    bias=torch.randint(-4096, 4096, (6,), generator=g), delay=torch.randint(0, 63, (6, 5), generator=g),
                    name="hidden")
    l2 = LoihiLayer(weight=torch.randint(0, 256, (3, 6), generator=g), vth=131071, i_decay=4096, v_decay=17,
                    delay=torch.tensor([0, 7, 62]), name="out")
    return LoihiNetwork(5, [l1, l2], meta={"scales": [1.5, 2.0], "readout": "spikes"})


def test_round_trip_exact(tmp_path):
    net = _net()
    path = export_netx(net, tmp_path / "n.net")
    back = load_netx(path)
    assert back.input_size == 5 and back.meta == net.meta
    for a, b in zip(net.layers, back.layers):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.delay, b.delay)
        assert (a.bias is None and b.bias is None) or torch.equal(a.bias, b.bias)
        assert (a.vth, a.i_decay, a.v_decay, a.name) == (b.vth, b.i_decay, b.v_decay, b.name)
    x = (torch.rand(30, 2, 5) < 0.4).float()
    r1, r2 = simulate(net, x), simulate(back, x)
    assert all(torch.equal(p, q) for p, q in zip(r1.v, r2.v))
    assert [p.name for p in tmp_path.iterdir()] == ["n.net"]  # no temporary file left behind


def test_schema_is_what_netx_reads(tmp_path):
    path = export_netx(_net(), tmp_path / "n.net")
    with h5py.File(path, "r") as f:
        assert f["layer/0/type"][0] == b"input" and f["layer/0/shape"][()].tolist() == [5]
        assert "neuron" not in f["layer/0"]
        assert f["layer/1/type"][0] == b"dense" and f["layer/1/shape"][()].tolist() == [6]
        assert f["layer/1/weight"].shape == (6, 5) and f["layer/1/delay"].shape == (6, 5)
        assert f["layer/2/delay"].shape == (3,) and "bias" not in f["layer/2"]
        n = f["layer/1/neuron"]
        assert n["type"][0] == b"CUBA"
        assert (int(n["iDecay"][()]), int(n["vDecay"][()]), int(n["vThMant"][()])) == (0, 4096, 300)
        assert int(n["refDelay"][()]) == 1 and not bool(n["gradedSpike"][()])


def test_export_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_netx(_net(), tmp_path / "missing" / "n.net")
    with pytest.raises(TypeError, match="LoihiNetwork"):
        export_netx("net", tmp_path / "n.net")


def _write(path, build):
    with h5py.File(path, "w") as f:
        build(f)
    return path


def _dense(g, weight, vth=10, neuron_type=b"CUBA", with_neuron=True):
    g.create_dataset("type", (1,), "S10", [b"dense"])
    g.create_dataset("shape", data=np.array([len(weight)]))
    g.create_dataset("weight", data=np.asarray(weight))
    if with_neuron:
        n = g.create_group("neuron")
        n.create_dataset("type", (1,), "S10", [neuron_type])
        for k, v in (("iDecay", 4096), ("vDecay", 100), ("vThMant", vth), ("refDelay", 1)):
            n.create_dataset(k, data=v)


def _input(g, n=2):
    g.create_dataset("type", (1,), "S10", [b"input"])
    g.create_dataset("shape", data=np.array([n]))


@pytest.mark.parametrize("build, match", [
    (lambda f: f.create_group("other"), "no 'layer' group"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/2"), [[1, 2]])), "without gaps"),
    (lambda f: (_input(f.create_group("layer/0")),
                f.create_group("layer/1").create_dataset("type", (1,), "S10", [b"pool"])), "'pool' is not supported"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1, 2, 3]])),
     r"'weight' must have shape \[1, 2\] or \[2\], got \[1, 3\]"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1, 2]], neuron_type=b"SDNN")),
     r"layer 1/neuron: sigma-delta \(SDNN\) neurons are not supported"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[300, -2]])),
     r"layer 1: .*weight must be in \[-256, 254\]"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1.5, 2]])),
     "'weight' must hold integers"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1, 2]], vth=-3)),
     r"layer 1/neuron: 'vThMant' must be in \[0, 131072\], got -3"),
    (lambda f: _input(f.create_group("layer/0")), "no dense or conv layers"),
])
def test_malformed_files(tmp_path, build, match):
    path = _write(tmp_path / "bad.net", build)
    with pytest.raises(NetxFormatError, match=match):
        load_netx(path)


def test_not_hdf5_and_missing(tmp_path):
    p = tmp_path / "x.net"
    p.write_text("not hdf5")
    with pytest.raises(NetxFormatError, match="not an HDF5 file"):
        load_netx(p)
    with pytest.raises(FileNotFoundError):
        load_netx(tmp_path / "none.net")


def test_missing_neuron_field(tmp_path):
    def build(f):
        _input(f.create_group("layer/0"))
        _dense(f.create_group("layer/1"), [[1, 2]])
        del f["layer/1/neuron/vThMant"]
    with pytest.raises(NetxFormatError, match=r"layer 1/neuron: missing dataset 'vThMant'"):
        load_netx(_write(tmp_path / "b.net", build))


def test_conv_flatten_dense_round_trip(tmp_path):
    from spikelib.hardware.loihi.network import ConvGeometry

    g = torch.Generator().manual_seed(1)
    c1 = LoihiLayer(weight=torch.randint(-50, 100, (4, 2, 3, 3), generator=g), vth=100, v_decay=10,
                    bias=torch.tensor([1, 2, 3, 4]), conv=ConvGeometry((2, 6, 5), stride=(1, 2), padding=1),
                    name="c1")
    o = c1.conv.out_shape(c1.weight)
    d = LoihiLayer(weight=torch.randint(-50, 100, (3, o[0] * o[1] * o[2]), generator=g), vth=80, name="d")
    net = LoihiNetwork(60, [c1, d])
    path = export_netx(net, tmp_path / "c.net")
    with h5py.File(path, "r") as f:
        assert [f[f"layer/{i}/type"][0] for i in range(4)] == [b"input", b"conv", b"flatten", b"dense"]
        assert f["layer/0/shape"][()].tolist() == [2, 6, 5] and f["layer/1/shape"][()].tolist() == list(o)
        assert f["layer/1/stride"][()].tolist() == [1, 2] and int(f["layer/1/groups"][()]) == 1
    back = load_netx(path)
    assert back.layers[0].conv == c1.conv and torch.equal(back.layers[0].weight, c1.weight)
    x = (torch.rand(12, 2, 60) < 0.4).float()
    assert all(torch.equal(a, b) for a, b in zip(simulate(net, x).v, simulate(back, x).v))


def test_conv_needs_a_spatial_input(tmp_path):
    def build(f):
        _input(f.create_group("layer/0"), n=8)
        g = f.create_group("layer/1")
        g.create_dataset("type", (1,), "S10", [b"conv"])
        g.create_dataset("shape", data=np.array([1, 2, 2]))
        g.create_dataset("weight", data=np.ones((1, 2, 1, 1), dtype=np.int64))
    with pytest.raises(NetxFormatError, match="needs a \\(C, H, W\\) input"):
        load_netx(_write(tmp_path / "b.net", build))


# ---------------------------------------------------------------- netx features: what lava-dl writes and netx reads
def _neuron(g, i_decay=4096, v_decay=100, vth=10, neuron_type=b"CUBA"):
    n = g.create_group("neuron")
    n.create_dataset("type", data=neuron_type)  # lava-dl writes a variable-length string scalar
    for k, v in (("iDecay", i_decay), ("vDecay", v_decay), ("vThMant", vth), ("refDelay", 1)):
        n.create_dataset(k, data=np.asarray(v))
    n.create_dataset("gradedSpike", data=False)


def test_features_round_trip(tmp_path):
    """Input neurons (3-d) -> conv with per-channel decays -> flatten -> recurrent dense with per-neuron decays ->
    a non-spiking integrator: export and load back unchanged, simulate the same."""
    from spikelib.hardware.loihi.network import VTH_NEVER, ConvGeometry, InputNeurons

    g = torch.Generator().manual_seed(5)
    inp = InputNeurons(shape=(2, 5, 4), vth=30, i_decay=torch.tensor([0, 4096]), v_decay=700, transform_weight=36,
                       transform_bias=34, name="in")
    c = LoihiLayer(weight=torch.randint(-50, 100, (3, 2, 3, 3), generator=g), vth=90, i_decay=torch.tensor([1, 2, 3]),
                   v_decay=torch.tensor([0, 4096, 5]), conv=ConvGeometry((2, 5, 4), padding=1), name="c")
    r = LoihiLayer(weight=torch.randint(-50, 100, (4, 60), generator=g), vth=80,
                   weight_rec=torch.randint(-256, 254, (4, 4), generator=g), i_decay=torch.tensor([9, 8, 7, 6]),
                   name="rec")
    o = LoihiLayer(weight=torch.randint(-50, 100, (2, 4), generator=g), vth=VTH_NEVER, i_decay=0, v_decay=4096,
                   name="out")
    net = LoihiNetwork(40, [c, r, o], input_neurons=inp)
    path = export_netx(net, tmp_path / "f.net")
    with h5py.File(path, "r") as f:
        assert [f[f"layer/{i}/type"][0] for i in range(5)] == [b"input", b"conv", b"flatten", b"dense_rec", b"dense"]
        assert f["layer/0/neuron/iDecay"][()].tolist() == [0, 4096] and int(f["layer/0/weight"][()]) == 36
        assert f["layer/3/weight_rec"].shape == (4, 4)
    back = load_netx(path)
    assert repr(back.input_neurons) == repr(inp)  # all fields, tensors included
    for a, b in zip(net.layers, back.layers):
        for key in ("weight", "weight_rec", "i_decay", "v_decay", "bias"):
            va, vb = getattr(a, key), getattr(b, key)
            assert (va is None and vb is None) or torch.equal(torch.as_tensor(va), torch.as_tensor(vb)), key
        assert (a.vth, a.name, a.conv) == (b.vth, b.name, b.conv)
    x = torch.randint(-300, 800, (15, 2, 40), generator=g)
    r1, r2 = simulate(net, x, reset_interval=6), simulate(back, x, reset_interval=6)
    assert all(torch.equal(p, q) for p, q in zip(r1.v + r1.u, r2.v + r2.u)) and r1.spikes[2].sum() > 0


def test_lava_dl_file_variants(tmp_path):
    """What lava-dl's files contain: float datasets, 5-d conv weights [C_out, C_in, kh, kw, 1], an input layer with a
    neuron group and (1,)-shaped transform, a flat 1-d dense weight, a (1,) bias, a dense layer without a neuron
    group (netx: a non-spiking integrator) and per-input delays."""
    from spikelib.hardware.loihi.network import VTH_NEVER

    def build(f):
        L = f.create_group("layer")
        g = L.create_group("0")
        g.create_dataset("type", (1,), "S10", [b"input"])
        g.create_dataset("shape", data=np.array([1, 4, 4]))
        g.create_dataset("weight", data=np.array([36.0], dtype=np.float32))
        g.create_dataset("bias", data=np.array([34.0], dtype=np.float32))
        _neuron(g, vth=25, neuron_type=b"LOIHI")
        g = L.create_group("1")
        g.create_dataset("type", (1,), "S10", [b"conv"])
        g.create_dataset("shape", data=np.array([2, 2, 2]))
        g.create_dataset("weight", data=np.arange(-8, 10, dtype=np.float32).reshape(2, 1, 3, 3, 1))
        for k, v in (("stride", [2, 2]), ("padding", [1, 1]), ("dilation", [1, 1]), ("groups", 1)):
            g.create_dataset(k, data=np.array(v))
        g.create_dataset("bias", data=np.array([1.0, -2.0], dtype=np.float32))
        _neuron(g)
        L.create_group("2").create_dataset("type", (1,), "S10", [b"flatten"])
        g = L.create_group("3")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([3, 1, 1]))
        g.create_dataset("weight", data=np.arange(24, dtype=np.float32) - 12)  # flat [out * in]
        g.create_dataset("delay", data=np.arange(8, dtype=np.float32))  # per input
        _neuron(g, i_decay=[1, 2, 3])
        g = L.create_group("4")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([1]))
        g.create_dataset("weight", data=np.array([[1.0, -2.0, 3.0]]))
        g.create_dataset("bias", data=np.array([0.0]))

    net = load_netx(_write(tmp_path / "v.net", build))
    assert net.input_neurons.shape == (1, 4, 4) and net.input_neurons.transform_weight == 36
    assert net.input_neurons.transform_bias == 34 and net.input_neurons.vth == 25
    c, d, o = net.layers
    assert c.weight.shape == (2, 1, 3, 3) and c.weight[0, 0, 0, 0] == -8 and c.conv.stride == (2, 2)
    assert d.weight.shape == (3, 8) and d.weight[1, 0] == -4 and d.i_decay.tolist() == [1, 2, 3]
    assert d.delay.shape == (3, 8) and d.delay[2].tolist() == list(range(8))
    assert (o.vth, o.i_decay, o.v_decay) == (VTH_NEVER, 0, 4096) and o.bias.tolist() == [0]
    r = simulate(net, torch.full((6, 1, 16), 300))
    assert len(r.spikes) == 4 and r.spikes[0].sum() > 0


def test_git_lfs_pointer(tmp_path):
    p = tmp_path / "mnist.net"
    p.write_text("version https://git-lfs.github.com/spec/v1\n"
                 "oid sha256:9b0bbd50581dab691cf57e79898506ad2f70e015d163178ac3d13ac403fd72f3\nsize 2701856\n")
    with pytest.raises(NetxFormatError, match=r"mnist.net is a git-LFS pointer file \(132 bytes\), not the network"):
        load_netx(p)


def test_uint64_weight_does_not_wrap(tmp_path):
    def build(f):
        _input(f.create_group("layer/0"), n=2)
        _dense(f.create_group("layer/1"), np.array([[2 ** 64 - 1, 1]], dtype=np.uint64))
    with pytest.raises(NetxFormatError, match=r"layer 1: 'weight' must be in \[.*\], got \[1, 18446744073709551615\]"):
        load_netx(_write(tmp_path / "u.net", build))


def test_wrapping_input_shape_is_refused(tmp_path):
    def build(f):
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"input"])
        g.create_dataset("shape", data=np.array([2 ** 32, 2 ** 32, 2 ** 32]))  # product wraps to 0 in int64
        _dense(f.create_group("layer/1"), [[1, 2]])
    assert int(np.prod(np.array([2 ** 32] * 3))) == 0
    with pytest.raises(NetxFormatError, match=r"layer 0: 'shape' \[4294967296, 4294967296, 4294967296\] declares "
                                              r"79228162514264337593543950336 neurons, more than max_elements"):
        load_netx(_write(tmp_path / "w.net", build))


def test_huge_declared_weight_is_refused_before_reading(tmp_path):
    """A ~10 KB file declaring a 200000 x 200000 weight (chunked, never written) fails on the declared size, with no
    allocation (tracemalloc sees numpy's allocations)."""
    import tracemalloc

    def build(f):
        _input(f.create_group("layer/0"), n=200000)
        g = f.create_group("layer/1")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([200000]))
        g.create_dataset("weight", shape=(200000, 200000), dtype=np.int64, chunks=(1000, 1000), compression="gzip")
    path = _write(tmp_path / "bomb.net", build)
    assert path.stat().st_size < 20000
    tracemalloc.start()
    try:
        with pytest.raises(NetxFormatError, match=r"layer 1: 'weight' declares 40000000000 elements "
                                                  r"\[200000, 200000\], more than max_elements=268435456"):
            load_netx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20
    # a dataset that does not match the declared sizes is refused before reading, too
    with h5py.File(path, "a") as f:
        del f["layer/1/weight"]
        f["layer/1"].create_dataset("weight", shape=(200000, 3), dtype=np.int64, chunks=(1000, 3))
    with pytest.raises(NetxFormatError, match=r"'weight' must have shape \[200000, 200000\] or \[40000000000\]"):
        load_netx(path)


@pytest.mark.parametrize("kind, match", [
    (b"pool", r"layer 2: layer type 'pool' is not supported: netx \(lava-dl 0.6\) does not implement it either; "
              r"load the layers before it with num_layers=2"),
    (b"average", "'average' is not supported: netx"),
    (b"dense_comp", r"complex dense layers \('dense_comp'\) are not supported"),
])
def test_unsupported_layer_types_and_num_layers(tmp_path, kind, match):
    def build(f):
        _input(f.create_group("layer/0"))
        _dense(f.create_group("layer/1"), [[1, 2], [3, 4]])
        f.create_group("layer/2").create_dataset("type", (1,), "S10", [kind])
    path = _write(tmp_path / "p.net", build)
    with pytest.raises(NetxFormatError, match=match):
        load_netx(path)
    assert len(load_netx(path, num_layers=2).layers) == 1


@pytest.mark.parametrize("field, value, match", [
    ("iDecay", [1, 2, 3], r"^layer 1/neuron: 'iDecay' must have shape \[\] or \[1\] or \[2\], got \[3\]$"),
    ("vDecay", [1, 5000], r"^layer 1/neuron: 'vDecay' must be in \[0, 4096\], got \[1, 5000\]$"),
    ("vThMant", [1, 2], r"^layer 1/neuron: 'vThMant' must have shape \[\] or \[1\], got \[2\]$"),
    ("type", b"RF_IZ", r"resonate-and-fire neuron type 'RF_IZ' is not supported"),
    ("gradedSpike", True, "graded spikes are not supported"),
])
def test_neuron_field_errors_name_the_layer_once(tmp_path, field, value, match):
    def build(f):
        _input(f.create_group("layer/0"))
        _dense(f.create_group("layer/1"), [[1, 2], [3, 4]])
        n = f["layer/1/neuron"]
        if field in n:
            del n[field]
        n.create_dataset(field, data=np.asarray(value) if not isinstance(value, bytes) else value)
    with pytest.raises(NetxFormatError, match=match):
        load_netx(_write(tmp_path / "n.net", build))


def test_structure_errors(tmp_path):
    from spikelib.hardware.loihi.network import ConvGeometry

    c = LoihiLayer(weight=torch.ones(2, 1, 2, 2, dtype=torch.long), vth=3, conv=ConvGeometry((1, 3, 3)), name="c")
    d = LoihiLayer(weight=torch.ones(1, 8, dtype=torch.long), vth=3, name="d")
    path = export_netx(LoihiNetwork(9, [c, d]), tmp_path / "cd.net")
    with h5py.File(path, "a") as f:  # drop the flatten layer: netx cannot connect a conv to a dense layer
        f.move("layer/3", "layer/2x")
        del f["layer/2"]
        f.move("layer/2x", "layer/2")
    with pytest.raises(NetxFormatError, match="layer 2: a dense layer after 3-d neurons needs a 'flatten' layer"):
        load_netx(path)
    with pytest.raises(ValueError, match="max_elements must be an int >= 1"):
        load_netx(path, max_elements=0)

    def rec_with_delay(f):
        _input(f.create_group("layer/0"))
        _dense(f.create_group("layer/1"), [[1, 2], [3, 4]])
        f["layer/1/type"][0] = b"dense_rec"
        f["layer/1"].create_dataset("weight_rec", data=np.array([[0, 1], [1, 0]]))
        f["layer/1"].create_dataset("delay", data=np.array([1, 2]))
    with pytest.raises(NetxFormatError, match=r"^layer 1: a recurrent layer \(weight_rec\) cannot have delays"):
        load_netx(_write(tmp_path / "r.net", rec_with_delay))
