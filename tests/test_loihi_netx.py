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
     "takes 3 inputs"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1, 2]], with_neuron=False)),
     "missing 'neuron'"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1, 2]], neuron_type=b"SDNN")),
     "'SDNN' is not supported"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[300, -2]])),
     r"layer 1: .*weight must be in \[-256, 254\]"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1.5, 2]])),
     "'weight' must hold integers"),
    (lambda f: (_input(f.create_group("layer/0")), _dense(f.create_group("layer/1"), [[1, 2]], vth=-3)),
     r"vth must be in \[0, 131071\]"),
    (lambda f: _input(f.create_group("layer/0")), "no dense layers"),
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
