"""The synthetic SHD-like generator: official layout, determinism, speakers, and where the class information lies."""

from __future__ import annotations

import json
import os
import stat

import h5py
import numpy as np
import pytest
import torch

from spikelib.data._hdf5 import atomic_path
from spikelib.data.synthetic_shd import (
    SHD_KEYS,
    SyntheticSHDConfig,
    class_templates,
    generate_synthetic_shd,
    write_synthetic_shd,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("synshd")
    return write_synthetic_shd(out, n_train=120, n_test=40, seed=3)


def test_official_layout(files):
    for split, n in (("train", 120), ("test", 40)):
        with h5py.File(files[split], "r") as f:
            assert sorted(f.keys()) == ["extra", "labels", "spikes"]
            assert sorted(f["spikes"].keys()) == ["times", "units"]
            times, units = f["spikes/times"], f["spikes/units"]
            assert times.shape == units.shape == (n,)
            assert h5py.check_vlen_dtype(times.dtype) == np.dtype(np.float16)
            assert h5py.check_vlen_dtype(units.dtype) == np.dtype(np.uint16)
            assert f["labels"].dtype == np.uint16 and f["labels"].shape == (n,)
            assert f["extra/speaker"].dtype == np.uint16 and f["extra/speaker"].shape == (n,)
            keys = [k.decode() for k in f["extra/keys"][()]]
            assert keys == list(SHD_KEYS) and len(keys) == 20
            assert keys[:3] == ["zero", "one", "two"] and keys[10:12] == ["null", "eins"]
            meta = f["extra/meta_info"]
            assert sorted(meta.keys()) == ["age", "body_height", "gender"]
            assert meta["age"].shape == meta["gender"].shape == meta["body_height"].shape == (12,)
            info = json.loads(f.attrs["spikelib_synthetic"])
            assert info["seed"] == 3 and info["split"] == split
            labels = f["labels"][()]
            assert labels.min() >= 0 and labels.max() <= 19
            assert np.bincount(labels, minlength=20).max() - np.bincount(labels, minlength=20).min() <= 1
            for i in range(n):
                t, u = times[i], units[i]
                assert t.dtype == np.float16 and u.dtype == np.uint16 and t.shape == u.shape
                assert t.size > 500
                assert np.all(np.diff(t.astype(np.float64)) >= 0) and t.min() >= 0 and t.max() < 1.6
                assert u.max() < 700
    assert not [p for p in files["train"].parent.iterdir() if p.name.endswith(".tmp")]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(files["train"].stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_speakers_split_between_train_and_test(files):
    with h5py.File(files["train"], "r") as a, h5py.File(files["test"], "r") as b:
        train_spk, test_spk = set(a["extra/speaker"][()].tolist()), set(b["extra/speaker"][()].tolist())
    assert train_spk <= set(range(10)) and test_spk == {10, 11}
    assert len(train_spk) >= 8


def test_deterministic_by_seed(tmp_path):
    a = write_synthetic_shd(tmp_path / "a", n_train=25, n_test=5, seed=11)
    b = write_synthetic_shd(tmp_path / "b", n_train=25, n_test=5, seed=11)
    c = write_synthetic_shd(tmp_path / "c", n_train=25, n_test=5, seed=12)
    for split in ("train", "test"):
        with h5py.File(a[split], "r") as fa, h5py.File(b[split], "r") as fb, h5py.File(c[split], "r") as fc:
            assert np.array_equal(fa["labels"][()], fb["labels"][()])
            assert np.array_equal(fa["extra/speaker"][()], fb["extra/speaker"][()])
            same_c = True
            for i in range(len(fa["labels"])):
                assert np.array_equal(fa["spikes/times"][i], fb["spikes/times"][i])
                assert np.array_equal(fa["spikes/units"][i], fb["spikes/units"][i])
                ta, tc = fa["spikes/times"][i], fc["spikes/times"][i]
                same_c &= ta.shape == tc.shape and np.array_equal(ta, tc)
            assert not same_c


def test_class_vocabulary_is_fixed_by_task_seed():
    cfg = SyntheticSHDConfig()
    a, b = class_templates(cfg, 0), class_templates(cfg, 0)
    assert all(np.array_equal(x["order"], y["order"]) and np.array_equal(x["gap"], y["gap"]) for x, y in zip(a, b))
    signatures = {(tuple(t["order"]), tuple(t["direction"])) for t in a}
    assert len(signatures) == 20  # every class is a different sweep sequence
    for t in a:
        assert sorted(t["order"].tolist()) == list(range(cfg.n_bands))  # every class sweeps every band once


def _features(data, dt, pool, n_steps):
    out = []
    for t, u in zip(data["times"], data["units"]):
        k = np.minimum(np.floor(t.astype(np.float64) / dt).astype(int), n_steps - 1)
        h = np.zeros((n_steps, 700 // pool))
        np.add.at(h, (k, u.astype(int) // pool), 1.0)
        out.append(h.ravel())
    return np.log1p(np.asarray(out))


def _logistic_regression(x_train, y_train, x_test, y_test):
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xtr = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    xte = torch.tensor((x_test - mean) / std, dtype=torch.float32)
    ytr, yte = torch.tensor(y_train.astype(np.int64)), torch.tensor(y_test.astype(np.int64))
    w = torch.zeros(xtr.shape[1], 20, requires_grad=True)
    b = torch.zeros(20, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problem: one thread avoids OpenMP contention on a shared machine
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == yte).float().mean())


def test_class_lies_in_timing_not_in_counts():
    """Linear read-outs on held-out speakers: per-channel counts stay near chance (5%), time bins do not."""
    train = generate_synthetic_shd(500, seed=0, split="train")
    test = generate_synthetic_shd(200, seed=0, split="test")
    acc_counts = _logistic_regression(_features(train, 10.0, 5, 1), train["labels"],
                                      _features(test, 10.0, 5, 1), test["labels"])
    acc_binned = _logistic_regression(_features(train, 0.1, 20, 14), train["labels"],
                                      _features(test, 0.1, 20, 14), test["labels"])
    assert acc_counts < 0.15, acc_counts
    print(f"logistic regression on held-out speakers: counts {acc_counts:.3f}, 100 ms bins {acc_binned:.3f}")
    assert acc_binned > 0.8, acc_binned


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        write_synthetic_shd(tmp_path, n_train=0, n_test=1)
    with pytest.raises(TypeError, match="seed"):
        write_synthetic_shd(tmp_path, n_train=1, n_test=1, seed=1.5)
    with pytest.raises(ValueError, match="n_test_speakers"):
        generate_synthetic_shd(2, n_speakers=3, n_test_speakers=3)
    with pytest.raises(ValueError, match="split"):
        generate_synthetic_shd(2, split="valid")
    with pytest.raises(ValueError, match="warp"):
        SyntheticSHDConfig(warp=0.7)
    with pytest.raises(ValueError, match="ridge_width"):
        SyntheticSHDConfig(n_channels=40, ridge_width=5.0)
    assert not list(tmp_path.iterdir())  # nothing written on bad input


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_tonic_reads_the_file(files, tmp_path):
    """Optional peer check: tonic's SHD class reads the synthetic file (skipped when tonic is absent)."""
    tonic = pytest.importorskip("tonic")
    folder = tmp_path / "SHD"
    folder.mkdir()
    (folder / "shd_train.h5").write_bytes(files["train"].read_bytes())
    (folder / "shd_train.h5.zip").write_bytes(b"")  # tonic only checks that the archive exists
    ds = tonic.datasets.SHD(save_to=str(tmp_path), train=True)
    events, target = ds[0]
    with h5py.File(files["train"], "r") as f:
        assert int(target) == int(f["labels"][0])
        assert np.array_equal(events["x"], f["spikes/units"][0].astype(np.int64))
        assert len(ds) == 120


def test_file_needs_the_shd_sizes(tmp_path):
    with pytest.raises(ValueError, match="20 classes and 700 channels"):
        write_synthetic_shd(tmp_path, 2, 2, config=SyntheticSHDConfig(n_classes=10))
    small = generate_synthetic_shd(10, config=SyntheticSHDConfig(n_classes=10, n_channels=350))
    assert max(int(u.max()) for u in small["units"]) < 350 and int(small["labels"].max()) == 9
