"""ModelNet40 readers (HDF5 and .off), surface sampling, augmentation, and the synthetic shape generator."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spikelib.data.modelnet import (
    ModelNet40Dataset,
    RandomScaleShift,
    ShufflePoints,
    normalize_unit_sphere,
    read_off,
    sample_surface,
    write_off,
)
from spikelib.data.synthetic_shapes import SHAPE_CLASSES, shape_mesh, synthetic_shape, write_synthetic_shapes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    paths = write_synthetic_shapes(out, n_train=70, n_test=30, seed=4, n_points=512, per_file=32)
    return out, paths


def test_synthetic_layout(shapes):
    out, paths = shapes
    assert [p.name for p in paths["train"]] == ["ply_data_train0.h5", "ply_data_train1.h5", "ply_data_train2.h5"]
    assert [p.name for p in paths["test"]] == ["ply_data_test0.h5"]
    assert (out / "shape_names.txt").read_text().split() == list(SHAPE_CLASSES)
    assert (out / "train_files.txt").read_text().split() == [
        f"data/modelnet40_ply_hdf5_2048/ply_data_train{k}.h5" for k in range(3)]
    labels = []
    for path in paths["train"]:
        with h5py.File(path, "r") as f:
            n = f["data"].shape[0]
            assert f["data"].dtype == np.float32 and f["data"].shape == (n, 512, 3)
            assert f["normal"].dtype == np.float32 and f["normal"].shape == (n, 512, 3)
            assert f["label"].dtype == np.uint8 and f["label"].shape == (n, 1)
            radius = np.linalg.norm(f["data"][()], axis=2).max(1)
            assert np.all(np.abs(radius - 1) < 0.06)  # unit sphere up to the point noise
            assert np.allclose(np.linalg.norm(f["normal"][()], axis=2), 1, atol=1e-5)
            labels.append(f["label"][:, 0])
    counts = np.bincount(np.concatenate(labels), minlength=len(SHAPE_CLASSES))
    assert counts.max() - counts.min() <= 1


def test_synthetic_deterministic(tmp_path):
    a = write_synthetic_shapes(tmp_path / "a", 12, 4, seed=1, n_points=64)
    b = write_synthetic_shapes(tmp_path / "b", 12, 4, seed=1, n_points=64)
    c = write_synthetic_shapes(tmp_path / "c", 12, 4, seed=2, n_points=64)
    with h5py.File(a["train"][0], "r") as fa, h5py.File(b["train"][0], "r") as fb, \
            h5py.File(c["train"][0], "r") as fc:
        assert np.array_equal(fa["data"][()], fb["data"][()]) and np.array_equal(fa["label"][()], fb["label"][()])
        assert not np.array_equal(fa["data"][()], fc["data"][()])


def test_every_class_mesh_is_a_closed_outward_solid():
    rng = np.random.default_rng(0)
    for name in SHAPE_CLASSES:
        v, f = shape_mesh(name, rng)
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6  # divergence theorem: > 0 iff outward
        assert volume > 0.1, name
        pts, normals = synthetic_shape(name, 256, rng)
        assert pts.shape == normals.shape == (256, 3) and pts.dtype == np.float32


def test_hdf5_reader_round_trip(shapes):
    out, paths = shapes
    data = np.concatenate([h5py.File(p, "r")["data"][()] for p in paths["train"]])
    normal = np.concatenate([h5py.File(p, "r")["normal"][()] for p in paths["train"]])
    label = np.concatenate([h5py.File(p, "r")["label"][:, 0] for p in paths["train"]])
    raw = ModelNet40Dataset(out, "train", n_points=256, normalize=False)
    assert raw.format == "hdf5" and len(raw) == 70 and raw.class_names == list(SHAPE_CLASSES)
    for i in (0, 31, 32, 33, 64, 69):  # across file boundaries
        x, y = raw[i]
        assert x.dtype == torch.float32 and x.shape == (256, 3) and y == int(label[i])
        assert np.array_equal(x.numpy(), data[i, :256])
    with_normals = ModelNet40Dataset(out, "train", n_points=128, use_normals=True)
    x, _ = with_normals[40]
    ref = data[40, :128].astype(np.float64)
    ref = (ref - ref.mean(0)) / np.linalg.norm(ref - ref.mean(0), axis=1).max()
    assert x.shape == (128, 6)
    assert np.allclose(x[:, :3].numpy(), ref, atol=1e-6) and np.array_equal(x[:, 3:].numpy(), normal[40, :128])
    assert np.isclose(np.linalg.norm(x[:, :3].numpy(), axis=1).max(), 1, atol=1e-6)
    assert raw.is_open
    raw.close()
    assert not raw.is_open
    loader = DataLoader(raw, batch_size=16, num_workers=2)
    xs = torch.cat([b[0] for b in loader])
    assert torch.equal(xs, torch.from_numpy(data[:, :256])) and not raw.is_open  # workers used their own handles


def test_official_folder_name_and_test_split(shapes, tmp_path):
    out, paths = shapes
    inner = tmp_path / "modelnet40_ply_hdf5_2048"
    inner.mkdir()
    for p in paths["test"] + [out / "shape_names.txt"]:
        (inner / p.name).write_bytes(p.read_bytes())
    ds = ModelNet40Dataset(tmp_path, "test", n_points=512)
    assert len(ds) == 30 and ds[0][0].shape == (512, 3)


def _triangle_mesh():
    # Triangle A (area 0.5) in the plane z = 0 and triangle B (area 1.5) in the plane z = 5.
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [0, 1, 5]], dtype=np.float64)
    return v, np.array([[0, 1, 2], [3, 4, 5]])


def test_surface_sampling_is_on_the_mesh_and_area_weighted():
    v, f = _triangle_mesh()
    n = 40000
    pts, normals = sample_surface(v, f, n, np.random.default_rng(0))
    on_a = np.abs(pts[:, 2]) < 1e-12
    on_b = np.abs(pts[:, 2] - 5) < 1e-12
    assert np.all(on_a | on_b)  # distance to the mesh is 0
    assert np.all(pts[on_a, 0] >= -1e-12) and np.all(pts[on_a, 1] >= -1e-12)
    assert np.all(pts[on_a, 0] + pts[on_a, 1] <= 1 + 1e-12)
    assert np.all(pts[on_b, 0] / 3 + pts[on_b, 1] <= 1 + 1e-12) and np.all(pts[on_b, :2] >= -1e-12)
    share = on_b.mean()  # expected 1.5 / 2 = 0.75
    assert abs(share - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n)
    # uniform within a triangle: the x < 0.5 part of triangle A holds 3/4 of its area
    assert abs((pts[on_a, 0] < 0.5).mean() - 0.75) < 0.02
    assert np.allclose(normals, [0, 0, 1])


def test_cube_sampling_and_off_round_trip(tmp_path):
    quads = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    write_off(tmp_path / "cube.off", v, np.array(quads))
    verts, tris = read_off(tmp_path / "cube.off")
    assert np.array_equal(verts, v) and tris.shape == (12, 3)
    pts, normals = sample_surface(verts, tris, 6000, np.random.default_rng(1))
    assert np.allclose(np.abs(pts).max(1), 1.0, atol=1e-12)  # every point on a face of the cube
    axis = np.argmax(np.abs(pts), axis=1)
    per_face = np.bincount(2 * axis + (pts[np.arange(len(pts)), axis] > 0), minlength=6)
    assert per_face.min() > 800  # six equal faces, ~1000 each
    # ModelNet's quirk: counts on the header line; comments; polygon faces
    (tmp_path / "q.off").write_text("OFF4 1 0\n# a comment\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    verts, tris = read_off(tmp_path / "q.off")
    assert verts.shape == (4, 3) and tris.tolist() == [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "mixed.off").write_text("OFF\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 2 0\n3 0 1 2\n4 0 2 3 4\n")
    assert read_off(tmp_path / "mixed.off")[1].tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]


def test_off_dataset(tmp_path):
    root = tmp_path / "ModelNet40"
    rng = np.random.default_rng(0)
    for name in ("cone", "cube"):
        for split, k in (("train", 3), ("test", 2)):
            folder = root / name / split
            folder.mkdir(parents=True)
            for i in range(k):
                v, f = shape_mesh(name, rng)
                write_off(folder / f"{name}_{i:04d}.off", v * (i + 1), f)
    ds = ModelNet40Dataset(tmp_path, "train", n_points=300, use_normals=True, seed=7)
    assert ds.format == "off" and ds.class_names == ["cone", "cube"] and len(ds) == 6
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = ds[4]
    assert x.shape == (300, 6) and y == 1
    assert np.isclose(np.linalg.norm(x[:, :3].numpy(), axis=1).max(), 1, atol=1e-6)
    again = ModelNet40Dataset(tmp_path, "train", n_points=300, use_normals=True, seed=7, cache=False)
    assert torch.equal(again[4][0], x)  # seeded per item
    other = ModelNet40Dataset(tmp_path, "train", n_points=300, seed=8)
    assert not torch.equal(other[4][0], x[:, :3])


def test_random_scale_shift():
    pts = torch.tensor(np.random.default_rng(0).normal(size=(100, 3)), dtype=torch.float32)
    aug, twin = RandomScaleShift(seed=3), RandomScaleShift(seed=3)
    out = aug(pts)
    s, t = twin.draw()
    assert np.all((s >= 2 / 3) & (s <= 1.5)) and np.all(np.abs(t) <= 0.2)
    assert torch.allclose(out, pts * torch.tensor(s, dtype=torch.float32) + torch.tensor(t, dtype=torch.float32))
    # normals stay perpendicular to the surface: points on the plane x + y + z = 0 with normal (1, 1, 1)/sqrt(3)
    u = np.random.default_rng(1).normal(size=(50, 2))
    plane = u[:, :1] * np.array([1, -1, 0]) + u[:, 1:] * np.array([1, 1, -2])
    n = np.tile(np.ones(3) / np.sqrt(3), (50, 1))
    x6 = torch.tensor(np.concatenate([plane, n], 1), dtype=torch.float64)
    y6 = RandomScaleShift(seed=5)(x6)
    tangent = (y6[1:, :3] - y6[0, :3]).numpy()
    assert np.allclose(tangent @ y6[0, 3:].numpy(), 0, atol=1e-9)
    assert np.allclose(y6[:, 3:].norm(dim=1).numpy(), 1)
    with pytest.raises(ValueError, match="scale"):
        RandomScaleShift(scale=(0, 1))
    with pytest.raises(ValueError, match="points"):
        RandomScaleShift()(torch.zeros(10, 4))


def test_shuffle_points():
    pts = torch.arange(60, dtype=torch.float32).view(20, 3)
    out = ShufflePoints(seed=0)(pts)
    assert not torch.equal(out, pts)
    assert torch.equal(out[out[:, 0].argsort()], pts)  # same rows, new order
    assert torch.equal(ShufflePoints(seed=0)(pts), out)


def test_normalize_unit_sphere():
    p = np.random.default_rng(0).normal(size=(64, 3)) * 7 + 3
    q = normalize_unit_sphere(p)
    assert np.allclose(q.mean(0), 0) and np.isclose(np.linalg.norm(q, axis=1).max(), 1)


def test_shapes_are_learnable_from_rotation_invariant_features(tmp_path):
    """A logistic regression on D2 distance histograms (rotation invariant) is far above chance (10%)."""
    paths = write_synthetic_shapes(tmp_path, n_train=300, n_test=100, seed=0, n_points=512)

    def d2(split):
        with h5py.File(paths[split][0], "r") as f:
            data, label = f["data"][()], f["label"][:, 0]
        rng = np.random.default_rng(0)
        i, j = rng.integers(0, 512, size=(2, 2000))
        dist = np.linalg.norm(data[:, i] - data[:, j], axis=2)
        feats = np.stack([np.histogram(d, bins=24, range=(0, 2))[0] for d in dist]) / 2000.0
        radial = np.stack([np.histogram(np.linalg.norm(x, axis=1), bins=12, range=(0, 1.05))[0] for x in data]) / 512
        return torch.tensor(np.concatenate([feats, radial], 1), dtype=torch.float32), torch.tensor(label.astype(int))

    xtr, ytr = d2("train")
    xte, yte = d2("test")
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    w = torch.zeros(xtr.shape[1], 10, requires_grad=True)
    b = torch.zeros(10, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=150, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    acc = float(((xte @ w + b).argmax(1) == yte).float().mean())
    print(f"synthetic shapes, logistic regression on D2 + radial histograms: test accuracy {acc:.3f}")
    assert acc > 0.5


# ----------------------------------------------------------------------------------------------------- bad input
def test_missing_data_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        ModelNet40Dataset(tmp_path, "train")
    for part in ("ply_data_train0.h5", "shape_names.txt", "*.off", "synth-modelnet", str(tmp_path)):
        assert part in str(info.value)


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def test_bad_hdf5_files(tmp_path, shapes):
    out, paths = shapes
    data = np.zeros((3, 64, 3), dtype=np.float32)
    cases = {
        "trunc": None,
        "nolabel": dict(data=data),
        "range": dict(data=data, label=np.array([[0], [1], [40]], dtype=np.uint8)),
        "shape": dict(data=np.zeros((3, 64, 2), dtype=np.float32), label=np.zeros((3, 1), dtype=np.uint8)),
        "empty": dict(data=np.zeros((0, 64, 3), dtype=np.float32), label=np.zeros((0, 1), dtype=np.uint8)),
        "nonfinite": dict(data=np.full((3, 64, 3), np.nan, dtype=np.float32), label=np.zeros((3, 1), np.uint8)),
    }
    errors = {"trunc": (OSError, "not a readable HDF5"), "nolabel": (ValueError, "missing HDF5 dataset 'label'"),
              "range": (ValueError, "label 40 of sample 2 is out of range 0..39"),
              "shape": (ValueError, r"\[N, P, 3\]"), "empty": (ValueError, "empty data set"),
              "nonfinite": (ValueError, "non-finite")}
    for name, arrays in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        if arrays is None:
            raw = paths["test"][0].read_bytes()
            (folder / "ply_data_train0.h5").write_bytes(raw[: len(raw) // 3])
        else:
            _h5(folder / "ply_data_train0.h5", **arrays)
        exc, match = errors[name]
        with pytest.raises(exc, match=match):
            ModelNet40Dataset(folder, "train", n_points=64)[0]
    with pytest.raises(ValueError, match="fewer than n_points"):
        ModelNet40Dataset(out, "train", n_points=4096)
    folder = tmp_path / "nonormal"
    folder.mkdir()
    _h5(folder / "ply_data_train0.h5", data=data, label=np.zeros((3, 1), dtype=np.uint8))
    assert ModelNet40Dataset(folder, "train", n_points=64)[0][0].shape == (64, 3)
    with pytest.raises(ValueError, match="'normal'"):
        ModelNet40Dataset(folder, "train", n_points=64, use_normals=True)
    with pytest.raises(ValueError, match="split"):
        ModelNet40Dataset(out, "valid")
    with pytest.raises(ValueError, match="n_points"):
        ModelNet40Dataset(out, n_points=0)


def test_bad_off_files(tmp_path):
    bad = {
        "header": "PLY\n3 1 0\n",
        "truncated": "OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n",
        "index": "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
        "face": "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n",
    }
    messages = {"header": "not an OFF file", "truncated": "truncated", "index": "out of range",
                "face": "n >= 3"}
    for name, text in bad.items():
        (tmp_path / f"{name}.off").write_text(text)
        with pytest.raises(ValueError, match=messages[name]):
            read_off(tmp_path / f"{name}.off")
    v = np.zeros((3, 3))
    with pytest.raises(ValueError, match="positive finite area"):
        sample_surface(v, np.array([[0, 1, 2]]), 10, np.random.default_rng(0))


def test_bad_generator_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown shape class"):
        write_synthetic_shapes(tmp_path, 2, 2, classes=["sphere", "blob"])
    with pytest.raises(ValueError, match="n_train"):
        write_synthetic_shapes(tmp_path, 0, 2)
    with pytest.raises(ValueError, match="noise"):
        write_synthetic_shapes(tmp_path, 2, 2, noise=-1.0)
    _h5(tmp_path / "ply_data_train0.h5", data=np.zeros((1, 4, 3), np.float32))
    with pytest.raises(FileExistsError, match="not written by the synthetic shape generator"):
        write_synthetic_shapes(tmp_path, 2, 2, n_points=16)
    write_synthetic_shapes(tmp_path, 2, 2, n_points=16, overwrite=True)
    write_synthetic_shapes(tmp_path, 2, 2, n_points=16)  # synthetic files may be replaced
