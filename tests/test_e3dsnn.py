"""E-3DSNN: reference sizes, spike-driven structure, determinism, bad input, and CI-sized training above chance."""

import numpy as np
import pytest
import torch

from spikelib.data.modelnet import ModelNet40Dataset
from spikelib.data.synthetic_shapes import synthetic_shape, write_synthetic_shapes
from spikelib.hardware.energy import EnergyCounter
from spikelib.models import get_model, list_models
from spikelib.models.e3dsnn import E3DSNN, e3dsnn_s, e3dsnn_t, e3dsnn_tiny
from spikelib.sparse import SparseConv3d, SubMConv3d

pytestmark = pytest.mark.usefixtures("one_thread")


def make_shape(kind, p, g):
    """A point cloud ``[p, 6]`` (xyz + normal) of the synthetic shape class ``kind`` (sphere, cube, cylinder, torus)."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=g)))
    pts, normals = synthetic_shape(("sphere", "cube", "cylinder", "torus")[kind], p, rng)
    return torch.from_numpy(np.concatenate([pts, normals], 1))


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
    with EnergyCounter(m) as counter:
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
    counts = counter.counts(samples=4)
    assert counts.total("sops") > 0 and counts.total("macs") > 0
    # the stem is the only real-valued (MAC) sparse conv before the head: C_in 6 x C_out 8 per kernel-map pair
    stem = counts.layer("stem.0")
    assert stem.macs == m.stem[0].kernel_map(x).num_pairs * 6 * 8 and stem.sops == 0
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
    with pytest.raises(TypeError, match="cloud 1 must be a tensor"):
        m.forward_points([torch.randn(50, 6), [[0.0] * 6]])
    with pytest.raises(TypeError, match="floating point"):
        m.forward_points([torch.zeros(50, 6, dtype=torch.long)])
    with pytest.raises(ValueError, match="in_channels=3"):
        E3DSNN(in_channels=3)
    with pytest.raises(ValueError, match="enc_depth must have 2"):
        E3DSNN(enc_channels=(8, 16), enc_depth=(1,))
    assert E3DSNN(in_channels=3, use_normals=False, enc_channels=(8,), enc_depth=(0,), embed_channels=4)


def test_tiny_e3dsnn_trains_above_chance(tmp_path):
    """Synthetic shapes (4 classes: chance 0.25; random 3D rotations) written in the ModelNet40 HDF5 layout and read
    back with ModelNet40Dataset: 128 training clouds of 256 points, 10 epochs of Adam with a cosine schedule."""
    classes = ["sphere", "cube", "cylinder", "torus"]
    write_synthetic_shapes(tmp_path, 128, 48, seed=0, n_points=256, classes=classes)
    train = ModelNet40Dataset(tmp_path, "train", n_points=256, use_normals=True)
    test = ModelNet40Dataset(tmp_path, "test", n_points=256, use_normals=True)
    torch.manual_seed(0)
    m = e3dsnn_tiny(num_classes=len(classes))
    epochs, batch = 10, 8
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * -(-len(train) // batch))
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        m.train()
        perm = torch.randperm(len(train), generator=g).tolist()
        for i in range(0, len(train), batch):
            items = [train[j] for j in perm[i:i + batch]]
            logits = m.forward_points([p for p, _ in items], generator=g)
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([y for _, y in items]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    m.eval()
    items = [test[i] for i in range(len(test))]
    with torch.no_grad():
        pred = torch.cat([m(torch.stack([p for p, _ in items[i:i + 16]], 1)).argmax(1)
                          for i in range(0, len(items), 16)])
    acc = (pred == torch.tensor([y for _, y in items])).float().mean().item()
    print(f"tiny E-3DSNN held-out accuracy {acc:.3f} on {len(items)} synthetic shapes (chance 0.25)")
    assert acc >= 0.6, acc


def test_recipe_config_loads_through_the_run_schema():
    from pathlib import Path

    from spikelib.training.config import load_config
    from spikelib.training.trainer import build_model

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "modelnet_e3dsnn.yaml")
    assert cfg.data.dataset == "modelnet40" and cfg.data.batch_size == 16
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.1, 0.9, 0.001)
    assert cfg.optim.nesterov and (cfg.schedule.name, cfg.schedule.milestones) == ("multistep", [180.0, 240.0])
    assert cfg.train.epochs == 300 and cfg.train.label_smoothing == 0.2
    model = build_model(cfg, {"n_classes": 40})
    assert isinstance(model, E3DSNN)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in e3dsnn_t().parameters())
    assert model.coding.grid_size == 0.01 and model.margin == 96
