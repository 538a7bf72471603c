"""SHD/SSC reader: exact binning against numpy histograms, pooling, workers, caching, splits and bad files."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spikelib.data.shd import SHDDataset, SSCDataset, bin_events, pad_collate, train_val_split
from spikelib.data.synthetic_shd import write_synthetic_shd


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(out, n_train=60, n_test=20, seed=5)
    return out


def _write(path, times, units, labels, keys=None, speaker=None, times_dtype=np.float16):
    """An SHD-layout file written directly with h5py (independent of spikelib's writer)."""
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.dtype(times_dtype)))
        u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, dtype=times_dtype)
            u[i] = np.asarray(ui, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if keys is not None:
            f.create_dataset("extra/keys", data=np.array([k.encode() for k in keys]))
        if speaker is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speaker, dtype=np.uint16))
    return path


def _reference(path, i, dt, n_steps, pool):
    """Independent binning: numpy histogram2d over explicit bin edges."""
    with h5py.File(path, "r") as f:
        t = f["spikes/times"][i].astype(np.float64)
        u = f["spikes/units"][i].astype(np.float64)
    if n_steps is None:
        n_steps = int(t.max() // dt) + 1
    edges = np.arange(n_steps + 1) * dt
    keep = t < edges[-1]  # bins are half-open [k dt, (k+1) dt); numpy's last bin would also take t == T dt
    t, u = t[keep], u[keep]
    h, _, _ = np.histogram2d(t, u, bins=[edges, np.arange(0, 701, pool)])
    return h


@pytest.mark.parametrize("bin_ms,channels_out,max_time", [(10.0, 700, 1.4), (10.0, 140, 1.4), (4.0, 35, 0.5),
                                                          (25.0, 140, None)])
def test_binning_equals_numpy_histogram(shd_dir, bin_ms, channels_out, max_time):
    ds = SHDDataset(shd_dir, "train", bin_ms=bin_ms, channels_out=channels_out, max_time=max_time)
    pool = 700 // channels_out
    for i in range(0, len(ds), 7):
        x, y = ds[i]
        n_steps = None if max_time is None else int(np.ceil(max_time / (bin_ms / 1000) - 1e-9))
        ref = _reference(ds.path, i, bin_ms / 1000, n_steps, pool)
        assert x.dtype == torch.float32 and x.shape == ref.shape
        assert np.array_equal(x.numpy(), ref)
        assert y == int(ds.labels[i]) and isinstance(y, int)
    ds.close()


def _spikingjelly_fixed_duration():
    """spikingjelly 2.0's own ``_integrate_events_by_fixed_duration`` (datasets/shd.py), taken from the installed
    package at test time. ``import spikingjelly.datasets`` needs torchvision (absent here), so the two pure-numpy
    functions are compiled from the installed file's source on their own."""
    import ast
    import importlib.util
    import math
    from pathlib import Path

    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("spikingjelly is not installed")
    source_file = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "shd.py"
    if not source_file.is_file():
        pytest.skip(f"{source_file} not found")
    tree = ast.parse(source_file.read_text())
    wanted = {"_integrate_events_by_fixed_duration", "_integrate_events_segment_to_frame"}
    funcs = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in wanted]
    if {f.name for f in funcs} != wanted:
        pytest.skip("this spikingjelly version has no _integrate_events_by_fixed_duration")
    namespace = {"np": np, "math": math}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), str(source_file), "exec"), namespace)
    return namespace["_integrate_events_by_fixed_duration"]


def test_first_spike_origin_matches_spikingjelly(shd_dir):
    """Peer check: spikingjelly's fixed-duration SHD frames (what SNN-delays trained on) == time_origin='first_spike'."""
    integrate = _spikingjelly_fixed_duration()
    ds = SHDDataset(shd_dir, "train", bin_ms=10.0, max_time=None, time_origin="first_spike")
    checked = 0
    for i in range(len(ds)):
        t, u = ds.events(i)
        span = (t[-1] - t[0]) / 0.01
        if abs(span - round(span)) < 1e-6:  # spikingjelly puts a last spike on a bin edge into the bin before
            continue
        ref = integrate({"t": t, "x": u}, 10, 700)  # float64 times, ms bins
        assert np.array_equal(ds[i][0].numpy(), ref)
        checked += 1
    assert checked >= 50


def test_n_bins_and_spikes_beyond_max_time(tmp_path):
    path = _write(tmp_path / "shd_train.h5", [[0.0, 0.0999, 0.1, 0.35, 0.9]], [[0, 699, 5, 6, 7]], [3],
                  times_dtype=np.float32)  # float16 would round 0.1 down to 0.09998
    ds = SHDDataset(path, n_bins=4, max_time=0.4)  # bins of 0.1 s; the spike at 0.9 s is dropped
    x, y = ds[0]
    assert x.shape == (4, 700) and y == 3
    assert x.sum() == 4 and x[0, 0] == 1 and x[0, 699] == 1 and x[1, 5] == 1 and x[3, 6] == 1
    assert torch.equal(torch.from_numpy(bin_events(*ds.events(0), dt=0.1, n_steps=4)), x)


def test_channel_pooling_equals_manual_sums(shd_dir):
    full = SHDDataset(shd_dir, "test", channels_out=700)
    pooled = SHDDataset(shd_dir, "test", channels_out=140)
    for i in range(len(full)):
        a, _ = full[i]
        b, _ = pooled[i]
        assert torch.equal(a.reshape(a.shape[0], 140, 5).sum(-1), b)


def test_dataloader_workers_and_handles(shd_dir):
    ds = SHDDataset(shd_dir, "train", channels_out=140)
    assert not ds.is_open  # the constructor closes what it opened
    loader = DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    xs, ys = zip(*list(loader))
    assert not ds.is_open  # the workers opened their own handles; the parent never did
    x = torch.cat(xs)
    assert x.shape == (60, 140, 140)
    direct = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(x, direct) and torch.equal(torch.cat(ys), torch.as_tensor(ds.labels))
    assert ds.is_open
    again = torch.cat([b[0] for b in DataLoader(ds, batch_size=16, num_workers=2)])  # parent holds a handle now
    assert torch.equal(again, direct) and ds.is_open and ds[5][0].shape == (140, 140)
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone.is_open and torch.equal(clone[3][0], ds[3][0])
    ds.close()
    clone.close()
    assert not ds.is_open
    assert h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE) == 0  # no HDF5 file left open here


def test_pad_collate_variable_length(shd_dir):
    ds = SHDDataset(shd_dir, "test", channels_out=140, max_time=None)
    items = [ds[i] for i in range(5)]
    lengths = [x.shape[0] for x, _ in items]
    assert len(set(lengths)) > 1
    x, y, lens = pad_collate(items, return_lengths=True)
    assert x.shape == (5, max(lengths), 140) and lens.tolist() == lengths
    for b, (xi, yi) in enumerate(items):
        assert torch.equal(x[b, : lengths[b]], xi) and x[b, lengths[b]:].abs().sum() == 0 and y[b] == yi
    x2, y2 = next(iter(DataLoader(ds, batch_size=5, collate_fn=pad_collate)))
    assert torch.equal(x2, x) and torch.equal(y2, y)
    with pytest.raises(ValueError, match="empty batch"):
        pad_collate([])


def test_memory_and_disk_cache(shd_dir, tmp_path):
    cache = tmp_path / "cache"
    plain = SHDDataset(shd_dir, "train", channels_out=140)
    first = SHDDataset(shd_dir, "train", channels_out=140, cache=cache)
    a = [first[i][0] for i in range(len(first))]
    first.close()
    folders = list(cache.iterdir())
    assert len(folders) == 1 and len(list(folders[0].glob("*.npy"))) == len(first)
    assert not list(folders[0].glob("*.tmp"))
    second = SHDDataset(shd_dir, "train", channels_out=140, cache=cache)
    b = [second[i][0] for i in range(len(second))]
    assert not second.is_open  # every item came from the cache, the HDF5 file was never opened
    assert all(torch.equal(p, q) and torch.equal(p, plain[i][0]) for i, (p, q) in enumerate(zip(a, b)))
    SHDDataset(shd_dir, "train", channels_out=35, cache=cache)[0]  # other binning -> other key
    assert len(list(cache.iterdir())) == 2
    damaged = folders[0] / "3.npy"
    damaged.write_bytes(b"\x93NUMPY garbage")  # e.g. a crash before the data reached the disk
    third = SHDDataset(shd_dir, "train", channels_out=140, cache=cache)
    assert torch.equal(third[3][0], a[3]) and np.load(damaged).shape == (140, 140)  # rebuilt
    mem = SHDDataset(shd_dir, "train", channels_out=140, cache="memory")
    m0 = mem[0][0]
    m0.zero_()  # items are copies: changing one does not change the cache
    assert torch.equal(mem[0][0], a[0])


def test_transform_is_applied(shd_dir):
    ds = SHDDataset(shd_dir, "test", channels_out=140, transform=lambda x: x * 2)
    plain = SHDDataset(shd_dir, "test", channels_out=140)
    assert torch.equal(ds[0][0], plain[0][0] * 2)


def test_train_val_split(shd_dir):
    ds = SHDDataset(shd_dir, "train", channels_out=140)
    train, val = train_val_split(ds, val_fraction=0.2, seed=1, by="speaker")
    spk_train = set(ds.speakers[train.indices].tolist())
    spk_val = set(ds.speakers[val.indices].tolist())
    assert spk_train and spk_val and not spk_train & spk_val
    assert sorted(train.indices + val.indices) == list(range(len(ds)))
    assert len(val) >= 0.2 * len(ds)
    assert train_val_split(ds, 0.2, seed=1)[1].indices == val.indices  # deterministic
    tr, va = train_val_split(ds, 0.25, seed=0, by="random")
    assert sorted(tr.indices + va.indices) == list(range(len(ds)))
    assert len(va) == 15 and np.bincount(ds.labels[va.indices], minlength=20).max() == 1
    v = train_val_split(ds, 0.2, by="speaker", val_speakers=[0, 1])[1]
    assert set(ds.speakers[v.indices].tolist()) == {0, 1} & set(ds.speakers.tolist())
    with pytest.raises(ValueError, match="test set"):
        train_val_split(SHDDataset(shd_dir, "test"), 0.2)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(ds, 1.5)
    with pytest.raises(ValueError, match="val_speakers"):
        train_val_split(ds, 0.2, val_speakers=[99])


def test_ssc_kind_and_valid_split(tmp_path):
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 1, 50)) for _ in range(6)]
    units = [rng.integers(0, 700, 50) for _ in range(6)]
    keys = [f"w{i}" for i in range(35)]
    _write(tmp_path / "ssc_valid.h5", times, units, [0, 34, 3, 4, 5, 6], keys=keys, speaker=[0] * 6)
    ds = SSCDataset(tmp_path, "valid", channels_out=140)
    assert ds.n_classes == 35 and len(ds) == 6 and ds[1][1] == 34 and ds.class_names == keys
    assert SHDDataset(tmp_path, "valid", kind="ssc").kind == "ssc"
    with pytest.raises(ValueError, match="split"):
        SHDDataset(tmp_path, "valid")  # SHD has no valid split
    _write(tmp_path / "x.h5", times, units, [0, 34, 3, 4, 5, 6], keys=keys)
    with pytest.raises(ValueError, match="out of range 0..19"):
        SHDDataset(tmp_path / "x.h5")  # 35-class labels read as SHD


def test_split_of_a_file_comes_from_its_name(shd_dir):
    ds = SHDDataset(shd_dir / "shd_test.h5")
    assert ds.split == "test"
    with pytest.raises(ValueError, match="test set"):
        train_val_split(ds)
    with pytest.raises(ValueError, match="is the 'test' split"):
        SHDDataset(shd_dir / "shd_test.h5", "train")
    assert SHDDataset(shd_dir / "shd_train.h5").split == "train"


def test_tonic_layout_folder(shd_dir, tmp_path):
    (tmp_path / "SHD").mkdir()
    (tmp_path / "SHD" / "shd_test.h5").write_bytes((shd_dir / "shd_test.h5").read_bytes())
    assert SHDDataset(tmp_path, "test").path == tmp_path / "SHD" / "shd_test.h5"


# ----------------------------------------------------------------------------------------------------- bad input
def test_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        SHDDataset(tmp_path / "data", "train")
    msg = str(info.value)
    for part in ("shd_train.h5", "shd_test.h5", str(tmp_path / "data"), "https://zenkelab.org/datasets/",
                 "synth-shd"):
        assert part in msg
    with pytest.raises(FileNotFoundError, match="ssc_valid.h5"):
        SSCDataset(tmp_path, "valid")


def test_download_without_tonic_or_network_is_clear(tmp_path, monkeypatch):
    import sys
    import types
    import urllib.error

    monkeypatch.setitem(sys.modules, "tonic", None)
    monkeypatch.setitem(sys.modules, "tonic.datasets", None)
    with pytest.raises(FileNotFoundError, match="tonic is not installed") as info:
        SHDDataset(tmp_path, "train", download=True)
    assert "shd_train.h5" in str(info.value) and "https://zenkelab.org/datasets/" in str(info.value)

    calls = []

    class OfflineSHD:  # stands for tonic.datasets.SHD without a network
        def __init__(self, save_to, train=True):
            calls.append((save_to, train))
            raise urllib.error.URLError("no route to host")

    fake = types.ModuleType("tonic")
    fake.datasets = types.SimpleNamespace(SHD=OfflineSHD)
    monkeypatch.setitem(sys.modules, "tonic", fake)
    monkeypatch.setitem(sys.modules, "tonic.datasets", fake.datasets)
    with pytest.raises(FileNotFoundError, match="download through tonic failed .*no route to host"):
        SHDDataset(tmp_path, "test", download=True)
    assert calls == [(str(tmp_path), False)]
    with pytest.raises(FileNotFoundError):
        SHDDataset(tmp_path, "test")  # without download=True tonic is not touched
    assert len(calls) == 1


def test_truncated_and_corrupt_files(shd_dir, tmp_path):
    data = (shd_dir / "shd_test.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="not a readable HDF5 file"):
        SHDDataset(tmp_path / "trunc.h5")
    (tmp_path / "junk.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(OSError, match="truncated or corrupt"):
        SHDDataset(tmp_path / "junk.h5")


def test_wrong_layout(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="missing HDF5 dataset 'spikes/times'"):
        SHDDataset(tmp_path / "a.h5")
    _write(tmp_path / "b.h5", [[0.1]], [[1]], [0])
    with h5py.File(tmp_path / "b.h5", "a") as f:
        del f["labels"]
    with pytest.raises(ValueError, match="'labels'"):
        SHDDataset(tmp_path / "b.h5")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("spikes/times", data=np.zeros(2))
        f.create_dataset("spikes/units", data=np.zeros(2))
        f.create_dataset("labels", data=np.zeros(2, dtype=np.uint16))
    with pytest.raises(ValueError, match="variable-length"):
        SHDDataset(tmp_path / "c.h5")
    _write(tmp_path / "d.h5", [[0.1], [0.2]], [[1], [2]], [0])
    with pytest.raises(ValueError, match="labels has shape"):
        SHDDataset(tmp_path / "d.h5")
    _write(tmp_path / "e.h5", [[0.1]], [[1]], [0], keys=["a", "b"])
    with pytest.raises(ValueError, match="extra/keys has 2 class names"):
        SHDDataset(tmp_path / "e.h5")


def test_labels_out_of_range_and_empty(tmp_path):
    _write(tmp_path / "a.h5", [[0.1], [0.2]], [[1], [2]], [0, 20])
    with pytest.raises(ValueError, match="label 20 of sample 1 is out of range"):
        SHDDataset(tmp_path / "a.h5")
    _write(tmp_path / "b.h5", [], [], [])
    with pytest.raises(ValueError, match="empty data set"):
        SHDDataset(tmp_path / "b.h5")


def test_bad_samples(tmp_path):
    _write(tmp_path / "a.h5", [[0.1, 0.2], [0.1, 0.2], [0.3, 0.1], [0.0, 0.1]], [[1, 700], [1, 2], [1, 2], [1, 2]],
           [0, 1, 2, 3], times_dtype=np.float32)
    with h5py.File(tmp_path / "a.h5", "a") as f:
        f["spikes/times"][3] = np.array([-0.1, 0.1], dtype=np.float32)
    ds = SHDDataset(tmp_path / "a.h5")
    with pytest.raises(ValueError, match="unit index 700"):
        ds[0]
    assert ds[1][0].sum() == 2
    with pytest.raises(ValueError, match="unsorted spike times"):
        ds[2]
    with pytest.raises(ValueError, match="negative or non-finite"):
        ds[3]
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(TypeError, match="index"):
        ds[1.0]


def test_bad_arguments(shd_dir):
    with pytest.raises(ValueError, match="channels_out must divide 700"):
        SHDDataset(shd_dir, channels_out=300)
    with pytest.raises(ValueError, match="either bin_ms or n_bins"):
        SHDDataset(shd_dir, bin_ms=10, n_bins=100)
    with pytest.raises(ValueError, match="n_bins needs max_time"):
        SHDDataset(shd_dir, n_bins=100, max_time=None)
    with pytest.raises(ValueError, match="bin_ms"):
        SHDDataset(shd_dir, bin_ms=0)
    with pytest.raises(ValueError, match="max_time"):
        SHDDataset(shd_dir, max_time=-1.0)
    with pytest.raises(ValueError, match="kind"):
        SHDDataset(shd_dir, kind="gsc")
    with pytest.raises(ValueError, match="split"):
        SHDDataset(shd_dir, split="validation")
    with pytest.raises(TypeError, match="cache"):
        SHDDataset(shd_dir, cache=3)
    with pytest.raises(ValueError, match="time_origin"):
        SHDDataset(shd_dir, time_origin="first")


# ---------------------------------------------------------------------------------------- SNN-delays augmentations
from spikelib.data.augment import (  # noqa: E402
    CutMix,
    NeuronMask,
    TimeMask,
    mix_cross_entropy,
    snn_delays_augmentations,
    soft_targets,
)


@pytest.mark.parametrize("cls,axis", [(TimeMask, 0), (NeuronMask, 1)])
def test_masks_zero_exactly_the_drawn_span(cls, axis):
    x = torch.rand(50, 40) + 0.5  # no zeros to begin with
    original = x.clone()
    mask, twin = cls(12, p=1.0, seed=3), cls(12, p=1.0, seed=3)
    seen_sizes = set()
    for _ in range(30):
        out = mask(x)
        start, size = twin.draw(x.shape[axis])
        seen_sizes.add(size)
        zero = torch.zeros(x.shape[axis], dtype=torch.bool)
        zero[start:start + size] = True
        is_zero = (out == 0).all(dim=1 - axis)
        assert torch.equal(is_zero, zero)
        kept = out.index_select(axis, torch.nonzero(~zero).flatten())
        assert torch.equal(kept, x.index_select(axis, torch.nonzero(~zero).flatten()))
        assert 0 <= size < 12 and 0 <= start <= x.shape[axis] - size
    assert torch.equal(x, original)  # never in place
    assert len(seen_sizes) > 5
    assert torch.equal(cls(12, p=0.0, seed=1)(x), x)


def test_masks_on_batches_and_short_sequences():
    x = torch.ones(4, 6, 10)
    out = TimeMask(20, p=1.0, seed=0)(x)  # spans longer than the sequence are clipped to it
    assert out.shape == x.shape
    twin = TimeMask(20, p=1.0, seed=0)
    for b in range(4):
        start, size = twin.draw(6)
        assert int((out[b] == 0).all(1).sum()) == size
    with pytest.raises(ValueError, match="max_size"):
        TimeMask(0)
    with pytest.raises(ValueError, match="p must be"):
        NeuronMask(3, p=1.5)
    with pytest.raises(ValueError, match="expected a tensor"):
        TimeMask(3)(torch.ones(5))


def test_cutmix_lambda_is_the_mixed_fraction():
    B, T, C = 16, 40, 7
    x = torch.arange(1, B + 1, dtype=torch.float32).view(B, 1, 1).expand(B, T, C).clone()  # sample b holds b+1
    y = torch.arange(B) % 5
    out, y_a, y_b, lam = CutMix(p=1.0, seed=2)(x, y)
    mixes = CutMix(p=1.0, seed=2).draw(B, T)
    assert len(mixes) == B - 1 and lam[-1] == 0 and y_b[-1] == y[-1]
    for i, j, start, size in mixes:
        from_partner = (out[i] == j + 1).all(1)
        assert int(from_partner.sum()) == size and float(lam[i]) == pytest.approx(size / T)
        assert torch.equal(torch.nonzero(from_partner).flatten(), torch.arange(start, start + size))
        assert (out[i][~from_partner] == i + 1).all()
        assert y_b[i] == y[j] and y_a[i] == y[i]
    assert torch.equal(x[:, 0, 0], torch.arange(1, B + 1, dtype=torch.float32))  # input unchanged
    soft = soft_targets(y_a, y_b, lam, 5)
    assert torch.allclose(soft.sum(1), torch.ones(B))
    logits = torch.randn(B, 5)
    assert torch.allclose(mix_cross_entropy(logits, y_a, y_b, lam), torch.nn.functional.cross_entropy(logits, soft))
    out0, _, y_b0, lam0 = CutMix(p=0.0, seed=2)(x, y)
    assert torch.equal(out0, x) and torch.equal(y_b0, y) and lam0.abs().sum() == 0
    with pytest.raises(ValueError, match="labels"):
        CutMix()(x, y[:3])


def test_augmentations_are_seeded_and_differ_across_workers():
    x = torch.ones(30, 20)
    a = [TimeMask(10, 1.0, seed=5)(x) for _ in range(1)]
    b = [TimeMask(10, 1.0, seed=5)(x) for _ in range(1)]
    assert torch.equal(a[0], b[0])
    sample, cutmix = snn_delays_augmentations(n_inputs=140, max_delay=25, seed=0)
    assert sample.transforms[0].max_size == 8 and sample.transforms[1].max_size == 28 and cutmix.p == 0.5

    class Ones(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return TRANSFORM(torch.ones(30, 20)), 0

    global TRANSFORM
    TRANSFORM = TimeMask(10, 1.0, seed=5)
    loader = DataLoader(Ones(), batch_size=1, num_workers=2)
    masks = [tuple((x[0] == 0).all(1).tolist()) for x, _ in loader]
    assert len(set(masks)) > 1  # worker 0 and worker 1 did not replay the same draws


TRANSFORM = None


def test_download_through_tonic_finds_the_files(shd_dir, tmp_path, monkeypatch):
    import sys
    import types

    class FakeSHD:  # tonic's layout: <save_to>/SHD/shd_<split>.h5
        def __init__(self, save_to, train=True):
            folder = tmp_path.__class__(save_to) / "SHD"
            folder.mkdir(parents=True, exist_ok=True)
            name = "shd_train.h5" if train else "shd_test.h5"
            (folder / name).write_bytes((shd_dir / name).read_bytes())

    fake = types.ModuleType("tonic")
    fake.datasets = types.SimpleNamespace(SHD=FakeSHD)
    monkeypatch.setitem(sys.modules, "tonic", fake)
    monkeypatch.setitem(sys.modules, "tonic.datasets", fake.datasets)
    ds = SHDDataset(tmp_path / "root", "test", download=True)
    assert ds.path == tmp_path / "root" / "SHD" / "shd_test.h5" and len(ds) == 20
