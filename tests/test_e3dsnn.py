"""E-3DSNN: reference sizes, spike-driven structure, determinism, bad input, and CI-sized training above chance."""

import math

import pytest
import torch

from spikelib.layers.multistep import count_ops
from spikelib.models import get_model, list_models
from spikelib.models.e3dsnn import E3DSNN, e3dsnn_s, e3dsnn_t, e3dsnn_tiny
from spikelib.sparse import SparseConv3d, SubMConv3d


def make_shape(kind, p, g):
    """A point cloud ``[p, 6]`` (xyz + normal) on a sphere (0), cube (1), cylinder (2) or torus (3), randomly
    stretched per axis and jittered (an in-test stand-in for ModelNet-style data)."""
    u, v = torch.rand(p, generator=g), torch.rand(p, generator=g)
    if kind == 0:
        n = torch.nn.functional.normalize(torch.randn(p, 3, generator=g), dim=1)
        xyz = n.clone()
    elif kind == 1:
        face = torch.randint(0, 6, (p,), generator=g)
        axis, sign = face // 2, (face % 2) * 2 - 1.0
        xyz = torch.rand(p, 3, generator=g) * 2 - 1
        xyz[torch.arange(p), axis] = sign
        n = torch.zeros(p, 3)
        n[torch.arange(p), axis] = sign
    elif kind == 2:
        th = 2 * math.pi * u
        xyz = torch.stack([torch.cos(th), torch.sin(th), v * 2 - 1], 1)
        n = torch.stack([torch.cos(th), torch.sin(th), torch.zeros(p)], 1)
    else:
        th, ph = 2 * math.pi * u, 2 * math.pi * v
        ring = 0.7 + 0.3 * torch.cos(ph)
        xyz = torch.stack([ring * torch.cos(th), ring * torch.sin(th), 0.3 * torch.sin(ph)], 1)
        n = torch.stack([torch.cos(ph) * torch.cos(th), torch.cos(ph) * torch.sin(th), torch.sin(ph)], 1)
    xyz = xyz * (0.8 + 0.4 * torch.rand(3, generator=g)) + 0.02 * torch.randn(p, 3, generator=g)
    return torch.cat([xyz, n], 1)


@pytest.fixture
def one_thread():
    """Small sparse GEMMs gain nothing from intra-op threads, and on a shared 2-core machine the spinning of a second
    OpenMP thread made this training ~20x slower; run it on one thread and restore the setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def shapes_dataset(n_per_class, points, seed, classes=4):
    g = torch.Generator().manual_seed(seed)
    return [(make_shape(k, points, g), k) for k in range(classes) for _ in range(n_per_class)]


def test_reference_sizes_and_registry():
    # the reference configs state ~1.8 M (T) and ~3 M (S) parameters
    n_t = sum(p.numel() for p in e3dsnn_t().parameters())
    n_s = sum(p.numel() for p in e3dsnn_s().parameters())
    assert 1.8e6 <= n_t < 1.9e6, n_t
    assert 3.0e6 <= n_s < 3.4e6, n_s
    for name in ("e3dsnn_tiny", "e3dsnn_t", "e3dsnn_s", "e3dsnn_base"):
        assert name in list_models()
    m = get_model("e3dsnn_tiny", num_classes=5)
    assert isinstance(m, E3DSNN) and m.final.out_channels == 5


def test_spike_driven_structure_and_op_counts():
    """Every conv declared spike-driven receives integer spikes in 0..4; only the first stem conv and the 1x1 head
    see real values; op counts come from the kernel maps."""
    m = e3dsnn_tiny(num_classes=4)
    seen = {}

    def hook(mod, inp, out):
        seen[mod] = inp[0].features.detach()

    convs = [mod for mod in m.modules() if isinstance(mod, (SubMConv3d, SparseConv3d))]
    for c in convs:
        c.register_forward_hook(hook)
    g = torch.Generator().manual_seed(0)
    clouds = [make_shape(k, 200, g) for k in range(4)]
    m.train()
    x = m.voxelize(clouds, generator=g)
    logits = m(x)
    assert logits.shape == (4, 4)
    real = [c for c in convs if not c.spike_input]
    assert real == [m.stem[0], m.final]
    for c in convs:
        f = seen[c]
        if c.spike_input:
            assert torch.equal(f, f.round()) and f.min() >= 0 and f.max() <= 4
            assert f.max() > 0
        else:
            assert not torch.equal(f, f.round())
    ops = count_ops(m)
    assert ops.acs > 0 and ops.macs > 0
    assert m.stem[0].last_ops.macs == m.stem[0].kernel_map(x).num_pairs * 6 * 8
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_eval_is_deterministic_and_batch_independent():
    m = e3dsnn_tiny(num_classes=4).eval()
    g = torch.Generator().manual_seed(1)
    clouds = [make_shape(k % 4, 300, g) for k in range(3)]
    with torch.no_grad():
        a = m.forward_points(clouds)
        b = m.forward_points(clouds)
        single = m.forward_points(clouds[1:2])
    assert torch.equal(a, b)
    with torch.no_grad():                                  # the trainer's points-first batch [P, B, C]
        c = m(torch.stack(clouds, 1))
    assert torch.equal(a, c)
    torch.testing.assert_close(a[1:2], single, rtol=1e-5, atol=1e-6)


def test_bad_input():
    m = e3dsnn_tiny(num_classes=4)
    with pytest.raises(ValueError, match="clouds is empty"):
        m.forward_points([])
    with pytest.raises(ValueError, match="empty point cloud"):
        m.forward_points([torch.zeros(0, 6)])
    with pytest.raises(ValueError, match=r"\[P, 6\]"):
        m.forward_points([torch.randn(50, 3)])
    with pytest.raises(ValueError, match=r"points first \[P, B, 3 or 6\]"):
        m(torch.randn(10, 6))
    with pytest.raises(TypeError, match="SparseSpikeTensor"):
        m("clouds")
    with pytest.raises(ValueError, match="in_channels=3"):
        E3DSNN(in_channels=3)
    with pytest.raises(ValueError, match="enc_depth must have 2"):
        E3DSNN(enc_channels=(8, 16), enc_depth=(1,))
    assert E3DSNN(in_channels=3, use_normals=False, enc_channels=(8,), enc_depth=(0,), embed_channels=4)


def test_tiny_e3dsnn_trains_above_chance(one_thread):
    """4 shape classes (chance 0.25), 64 training clouds of 256 points, 6 epochs of Adam: held-out accuracy >= 0.8."""
    torch.manual_seed(0)
    train, test = shapes_dataset(16, 256, seed=0), shapes_dataset(8, 256, seed=1)
    m = e3dsnn_tiny(num_classes=4)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        m.train()
        perm = torch.randperm(len(train), generator=g).tolist()
        for i in range(0, len(train), 8):
            batch = [train[j] for j in perm[i:i + 8]]
            logits = m.forward_points([p for p, _ in batch], generator=g)
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([y for _, y in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        pred = torch.cat([m.forward_points([p for p, _ in test[i:i + 16]]).argmax(1) for i in range(0, len(test), 16)])
    acc = (pred == torch.tensor([y for _, y in test])).float().mean().item()
    print(f"tiny E-3DSNN held-out accuracy {acc:.3f} (chance 0.25)")
    assert acc >= 0.8, acc


def test_recipe_config_loads_through_the_run_schema():
    from pathlib import Path

    from spikelib.training.config import load_config
    from spikelib.training.trainer import build_model

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "modelnet_e3dsnn.yaml")
    assert cfg.data.dataset == "modelnet40" and cfg.data.batch_size == 16
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.1, 0.9, 0.001)
    assert cfg.train.epochs == 300 and cfg.train.label_smoothing == 0.2
    model = build_model(cfg, {"n_classes": 40})
    assert isinstance(model, E3DSNN)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in e3dsnn_t().parameters())
    assert model.coding.grid_size == 0.01 and model.margin == 96
