"""The zoo's published variants: sizes of the reference constructors, input layout, distillation head, energy
counting of the new models, and bad input. Same-weight equivalence with the reference code:
tests/test_reference_equivalence.py."""

import pytest
import torch

from spikelib.hardware.energy.counting import EnergyCounter, plan_layers
from spikelib.models import get_model
from spikelib.neurons.lif import LIF, ParametricLIF

def active(model: torch.nn.Module) -> torch.nn.Module:
    """Weights that make the tiny networks fire in eval mode (the references' init is std 0.02)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 2.0 / m.weight[0].numel() ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(2.0)
                m.bias.fill_(0.5)
    return model.eval()


TINY = {"sdt_tiny_test": (2, 3, 32, 32), "maxformer_cifar_tiny_test": (2, 3, 16, 16),
        "maxformer_event_tiny_test": (3, 2, 2, 32, 32), "meta_spikeformer_tiny_test": (2, 3, 32, 32)}


def test_reference_sizes_have_the_papers_parameter_counts():
    """Parameter counts (millions) as in the papers' tables: SDT v1 (NeurIPS 2023, Table 2: 16.81, 23.37, 29.68,
    36.01, 66.34), Meta-SpikeFormer (ICLR 2024: 15.1, 31.3), Max-Former CIFAR 6.57."""
    expect = {"sdt_8_384": 16.81, "sdt_6_512": 23.37, "sdt_8_512": 29.68, "sdt_10_512": 36.01, "sdt_8_768": 66.34,
              "meta_spikeformer_15m": 15.1, "meta_spikeformer_8_384": 31.3, "maxformer_cifar": 6.57}
    for name, m in expect.items():
        n = sum(p.numel() for p in get_model(name).parameters()) / 1e6
        print(f"{name}: {n:.3f} M (paper {m})")
        assert abs(n - m) < 0.01 + 0.002 * m, name


@pytest.mark.parametrize("name", list(TINY))
def test_time_first_option_and_layout_mix_up(name):
    torch.manual_seed(0)
    model = active(get_model(name))
    T = model.T
    g = torch.Generator().manual_seed(1)
    shape = TINY[name]
    seq = torch.rand((T, 2) + tuple(shape[-3:]), generator=g)
    with torch.no_grad():
        y = model(seq)
        model.time_first = False
        y_bt = model(seq.transpose(0, 1).contiguous())
        assert torch.equal(y, y_bt)
        # a [B, T] batch given to a time-first model (and the reverse) is an error, not a silent mix-up
        with pytest.raises(ValueError, match=r"is the input in the other layout\? \(time_first=True\)"):
            model(torch.rand((T, 5) + tuple(shape[-3:])))
        model.time_first = True
        with pytest.raises(ValueError, match=r"is the input in the other layout\? \(time_first=False\)"):
            model(torch.rand((5, T) + tuple(shape[-3:])))


def test_meta_spikeformer_head_is_spike_driven_and_kd_head():
    torch.manual_seed(0)
    model = active(get_model("meta_spikeformer_tiny_test", kd=True))
    x = torch.rand(2, 3, 32, 32)
    seen = {}
    model.head.register_forward_pre_hook(lambda m, a: seen.__setitem__("head", a[0]))
    with torch.no_grad():
        y = model(x)
        a, b = model.forward_heads(x)
    assert bool(((seen["head"] == 0) | (seen["head"] == 1)).all()), "the head must read spikes"
    assert torch.allclose(y, (a + b) / 2) and not torch.equal(a, b)
    with pytest.raises(RuntimeError, match="kd=True"):
        get_model("meta_spikeformer_tiny_test").forward_heads(x)
    # the energy counter sees the head as a layer fed by spikes (accumulates, no MACs)
    with EnergyCounter(model) as counter:
        with torch.no_grad():
            model(x)
    heads = [c for c in counter.counts(samples=2).layers if c.name in ("head", "head_kd")]
    assert len(heads) == 2 and all(c.spike_input and c.macs == 0 and c.sops > 0 for c in heads)


@pytest.mark.parametrize("name,kw", [("sdt_tiny_test", {}), ("sdt_tiny_test", {"spike_mode": "plif", "dvs": True}),
                                     ("maxformer_cifar_tiny_test", {}), ("maxformer_event_tiny_test", {})])
def test_new_models_are_counted_by_the_energy_counter(name, kw):
    torch.manual_seed(0)
    model = active(get_model(name, **kw))
    plan = plan_layers(model)
    assert plan
    x = torch.rand((2,) + TINY[name][1:]) if len(TINY[name]) == 4 else torch.rand(TINY[name])
    with EnergyCounter(model) as counter:
        with torch.no_grad():
            model(x)
    counts = counter.counts(samples=2)
    assert counts.total("sops") > 0 and counts.total("dense_macs") > 0
    neurons = [m for m in model.modules() if isinstance(m, (LIF, ParametricLIF))]
    assert all(isinstance(m, ParametricLIF) for m in neurons) == (kw.get("spike_mode") == "plif")


def test_sdt_pooling_sizes_and_tet():
    m = get_model("sdt_tiny_test", pooling_stat="1111", tet=True)
    assert m.stride == 16
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 2, 10)  # [T, B, classes] for the TET loss
    with pytest.raises(ValueError, match="pooling_stat"):
        get_model("sdt_tiny_test", pooling_stat="0012")
    with pytest.raises(ValueError, match="spike_mode"):
        get_model("sdt_tiny_test", spike_mode="alif")
    with pytest.raises(ValueError, match="not divisible"):
        get_model("sdt_tiny_test")(torch.rand(1, 3, 30, 32))
    with pytest.raises(TypeError, match="time_first"):
        get_model("maxformer_event_tiny_test", time_first="no")


def test_sparse_inverse_conv_equals_the_dense_transposed_conv_at_the_fine_sites():
    from spikelib.sparse import SparseConv3d, SparseSpikeTensor
    from spikelib.sparse.inverse_conv import SparseInverseConv3d

    g = torch.Generator().manual_seed(0)
    pts = torch.unique(torch.randint(0, 9, (70, 3), generator=g), dim=0)
    coords = torch.cat([torch.zeros(len(pts), 1, dtype=torch.long), pts], 1)
    fine = SparseSpikeTensor(torch.randn(len(pts), 3, generator=g, dtype=torch.float64), coords, (9, 9, 9))
    coarse = SparseConv3d(3, 4, 2, 2).double()(fine)
    inv = SparseInverseConv3d(4, 2, 2, 2, bias=True).double()
    y = inv(coarse, fine)
    assert torch.equal(y.coords, fine.coords)
    w = inv.weight.detach().reshape(2, 2, 2, 4, 2).permute(3, 4, 0, 1, 2)  # [C_in, C_out, kx, ky, kz]
    dense = torch.nn.functional.conv_transpose3d(coarse.dense(), w, inv.bias.detach(), stride=2, output_padding=1)
    ref = dense[0][:, pts[:, 0], pts[:, 1], pts[:, 2]].t()
    assert torch.allclose(y.features, ref, atol=1e-12)
    x = coarse.features.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: inv(coarse.replace_features(f), fine).features, (x,))
    with pytest.raises(ValueError, match="sites differ"):
        inv(fine.replace_features(torch.zeros(len(pts), 4, dtype=torch.float64)), fine)


def test_e3dsnn_segmentation_gives_per_voxel_scores():
    model = get_model("e3dsnn_seg_tiny").eval()
    g = torch.Generator().manual_seed(1)
    pts = torch.unique(torch.randint(0, 8, (90, 3), generator=g), dim=0)
    x = model.voxelize_coords(pts, torch.randn(len(pts), 4, generator=g), torch.zeros(len(pts), dtype=torch.long))
    with torch.no_grad():
        assert model(x).shape == (len(pts), 5)
    with pytest.raises(ValueError, match="features"):
        model(x.replace_features(torch.zeros(len(pts), 3)))
    assert sum(p.numel() for p in get_model("e3dsnn_seg_kitti").parameters()) > 10e6  # "20M" in the reference config


def test_e3dsnn_points_first_option():
    model = get_model("e3dsnn_tiny").eval()
    g = torch.Generator().manual_seed(2)
    clouds = torch.rand(2, 100, 6, generator=g)  # [B, P, C]
    with torch.no_grad():
        a = model(clouds.transpose(0, 1))
        model.points_first = False
        b = model(clouds)
    assert torch.equal(a, b) and a.shape == (2, model.num_classes)
    with pytest.raises(TypeError, match="points_first"):
        get_model("e3dsnn_tiny", points_first=1)
