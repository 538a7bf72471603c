"""The silent misreads and memory bombs of issue 23, one test each: every reader validates sizes and ranges before
allocating and before casting, and rejects what it cannot represent exactly (fuzzing: tests/test_fuzz_readers.py)."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from spikelib.data.modelnet import ModelNet40Dataset, read_off
from spikelib.data.shd import SHDDataset, bin_events
from spikelib.data.shd_adding import SHDAdding
from spikelib.data.synthetic_shapes import write_synthetic_shapes
from spikelib.data.synthetic_shd import SyntheticSHDConfig, generate_synthetic_shd, write_synthetic_shd
from spikelib.sparse.voxel import SpikeVoxelCoding, grid_sample

MB = 1 << 20


def shd_file(path, times, units, labels=None, *, units_dtype=np.uint16, times_dtype=np.float32, n=None,
             speaker=None, chunked=False):
    """An SHD-layout file written with h5py; ``labels=None`` declares labels but never writes them."""
    n = len(times) if n is None else n
    with h5py.File(path, "w") as f:
        kw = {"chunks": True} if chunked else {}
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.dtype(times_dtype)), **kw)
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.dtype(units_dtype)), **kw)
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, dtype=times_dtype)
            u[i] = np.asarray(ui, dtype=units_dtype)
        if labels is None:
            f.create_dataset("labels", (n,), dtype=np.uint16, chunks=(max(1, min(n, 1024)),))
        else:
            f.create_dataset("labels", data=np.asarray(labels))
        if speaker is not None:
            f.create_dataset("extra/speaker", data=speaker)
    return path


def peak_bytes(fn):
    """Peak memory traced while ``fn()`` runs (numpy and h5py buffers included); exceptions propagate."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# --- SHD / SSC ----------------------------------------------------------------------------------------------------

def test_huge_spike_time_is_not_binned_into_bin_0(tmp_path):
    shd_file(tmp_path / "t.h5", [[0.5, 1e17]], [[3, 4]], [0])
    x, _ = SHDDataset(tmp_path / "t.h5", bin_ms=10)[0]
    assert x.sum() == 1 and x[50, 3] == 1, "the spike at 1e17 s lies after max_time: dropped, never in bin 0"
    with pytest.raises(ValueError, match="max_steps=20000"):
        SHDDataset(tmp_path / "t.h5", bin_ms=10, max_time=None)[0]
    assert bin_events(np.array([0.5, 9.3e16]), np.array([1, 2]), 0.01, n_steps=3).sum() == 0


def test_variable_length_samples_are_bounded_by_max_steps(tmp_path):
    shd_file(tmp_path / "late.h5", [[0.1, 400.0]], [[1, 2]], [0])
    with pytest.raises(ValueError, match="40001 bins .*max_steps=20000"):
        SHDDataset(tmp_path / "late.h5", bin_ms=10, max_time=None)[0]
    x, _ = SHDDataset(tmp_path / "late.h5", bin_ms=10, max_time=None, max_steps=50_000)[0]
    assert x.shape == (40001, 700) and x.sum() == 2


@pytest.mark.parametrize("unit,dtype,message", [(699.9, np.float32, "699.9"), (-0.5, np.float32, "-0.5"),
                                                (np.nan, np.float64, "nan"), (2**64 - 1, np.uint64,
                                                                              "18446744073709551615"),
                                                (700, np.int64, "700"), (-1, np.int8, "-1")])
def test_unit_indices_are_checked_in_their_stored_type(tmp_path, unit, dtype, message):
    path = shd_file(tmp_path / "u.h5", [[0.1]], [[unit]], [0], units_dtype=dtype)
    with pytest.raises(ValueError, match=f"{path}: sample 0 has unit index {message}"):
        SHDDataset(path)[0]


def test_integral_float_units_are_exact(tmp_path):
    path = shd_file(tmp_path / "f.h5", [[0.1, 0.2]], [[699.0, 3.0]], [0], units_dtype=np.float32)
    x, _ = SHDDataset(path)[0]
    assert x[10, 699] == 1 and x[20, 3] == 1 and x.sum() == 2


def test_tiny_file_declaring_3e8_samples_is_refused_without_allocating(tmp_path):
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        for name in ("spikes/times", "spikes/units"):
            f.create_dataset(name, (300_000_000,), dtype=h5py.vlen_dtype(np.dtype(np.float32)), chunks=(1024,))
        f.create_dataset("labels", (300_000_000,), dtype=np.int64, chunks=(1024,))
    assert path.stat().st_size < 10_000

    def load():
        with pytest.raises(ValueError, match="declares shape .300000000,. but only 0 of its .* chunks"):
            SHDDataset(path)

    assert peak_bytes(load) < 20 * MB


@pytest.mark.parametrize("chunked", [False, True])
def test_labels_declared_but_never_written_are_refused(tmp_path, chunked):
    path = shd_file(tmp_path / "l.h5", [[0.1], [0.2]], [[1], [2]], None, chunked=chunked)
    with pytest.raises(ValueError, match="'labels' declares shape"):
        SHDDataset(path)


def test_unwritten_contiguous_spike_data_are_refused(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("spikes/times", (2,), dtype=h5py.vlen_dtype(np.dtype(np.float32)))
        f.create_dataset("spikes/units", (2,), dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        f.create_dataset("labels", data=np.zeros(2, np.uint16))
    with pytest.raises(ValueError, match="'spikes/times' declares shape .2,. but its data were never written"):
        SHDDataset(path)


def test_labels_are_range_checked_before_the_cast(tmp_path):
    path = shd_file(tmp_path / "l.h5", [[0.1]], [[1]], np.array([2**64 - 1], np.uint64))
    with pytest.raises(ValueError, match="label 18446744073709551615 of sample 0 is out of range"):
        SHDDataset(path)


def test_speakers_must_be_integers_of_the_right_shape_before_reading(tmp_path):
    path = shd_file(tmp_path / "s.h5", [[0.1], [0.2]], [[1], [2]], [0, 1], speaker=np.array([1.5, 2.7]))
    with pytest.raises(ValueError, match="extra/speaker must be integers"):
        SHDDataset(path)
    path = shd_file(tmp_path / "big.h5", [[0.1]], [[1]], [0])
    with h5py.File(path, "a") as f:
        f.create_dataset("extra/speaker", (300_000_000,), dtype=np.int64, chunks=(1024,))

    def load():
        with pytest.raises(ValueError, match=r"extra/speaker must be integers of shape \[1\]"):
            SHDDataset(path)

    assert peak_bytes(load) < 20 * MB


def test_external_links_are_refused(tmp_path):
    other = shd_file(tmp_path / "other.h5", [[0.1]], [[1]], [0])
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as f:
        f["spikes"] = h5py.ExternalLink(str(other), "/spikes")
        f.create_dataset("labels", data=np.zeros(1, np.uint16))
    with pytest.raises(ValueError, match="'spikes' is an external link"):
        SHDDataset(path)


def test_damaged_npy_cache_files_are_rebuilt(tmp_path):
    path = shd_file(tmp_path / "d.h5", [[0.1, 0.2]], [[1, 2]], [0])
    ds = SHDDataset(path, cache=tmp_path / "cache")
    expected = ds[0][0]
    (cached,) = (tmp_path / "cache").rglob("0.npy")
    np.save(cached, np.full((140, 700), 7, dtype=np.int64))  # right shape, wrong type
    assert torch.equal(SHDDataset(path, cache=tmp_path / "cache")[0][0], expected)


def test_chunked_spike_data_are_read_exactly(tmp_path):
    path = shd_file(tmp_path / "c.h5", [[0.1, 0.25], [0.3]], [[5, 699], [0]], [3, 4], chunked=True)
    ds = SHDDataset(path)
    (x0, y0), (x1, y1) = ds[0], ds[1]
    assert (y0, y1) == (3, 4) and x0[10, 5] == 1 and x0[25, 699] == 1 and x0.sum() == 2 and x1[30, 0] == x1.sum() == 1


@pytest.mark.timeout(120, method="thread")  # without the heap check HDF5 1.14.6 loops forever on this file
def test_a_damaged_heap_is_an_error_not_a_hang(tmp_path):
    write_synthetic_shd(tmp_path, n_train=4, n_test=2, seed=1,
                        config=SyntheticSHDConfig(spikes_per_sweep=20.0, background_rate=0.2))
    path = tmp_path / "shd_train.h5"
    raw = bytearray(path.read_bytes())
    start = raw.find(b"GCOL") + 576  # 64 zero bytes over heap objects of spikes/times (found by the fuzz tests)
    raw[start:start + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    ds = SHDDataset(path, max_time=None)
    with pytest.raises(ValueError, match="damaged global heap collection"):
        [ds[i] for i in range(len(ds))]


@pytest.mark.slow
def test_bin_counts_beyond_float32_are_refused():
    n = 2**24 + 1
    with pytest.raises(ValueError, match="16777217 spikes, more than float32"):
        bin_events(np.zeros(n), np.zeros(n, np.int64), 0.01, 1)


# --- ModelNet ------------------------------------------------------------------------------------------------------

def _modelnet(folder, data=None, label=None, shape=(4, 32, 3), label_dtype=np.uint8):
    folder.mkdir(exist_ok=True)
    with h5py.File(folder / "ply_data_train0.h5", "w") as f:
        if data is None:
            f.create_dataset("data", shape, dtype=np.float32, chunks=True)
        else:
            f.create_dataset("data", data=data)
        if label is None:
            f.create_dataset("label", (shape[0], 1), dtype=label_dtype, chunks=True)
        else:
            f.create_dataset("label", data=np.asarray(label, dtype=label_dtype))
    return folder


def test_modelnet_data_declared_but_never_written_are_refused(tmp_path):
    folder = _modelnet(tmp_path / "mn", label=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="'data' declares shape .4, 32, 3."):
        ModelNet40Dataset(folder, n_points=16)


def test_modelnet_huge_declared_file_is_refused_without_allocating(tmp_path):
    folder = _modelnet(tmp_path / "mn", shape=(300_000_000, 2048, 3), label_dtype=np.int64)

    def load():
        with pytest.raises(ValueError, match="declares shape"):
            ModelNet40Dataset(folder)

    assert peak_bytes(load) < 20 * MB


def test_modelnet_labels_and_types(tmp_path):
    data = np.random.default_rng(0).random((2, 32, 3)).astype(np.float32)
    folder = _modelnet(tmp_path / "a", data=data, label=np.array([[0], [2**64 - 1]], dtype=np.uint64),
                       label_dtype=np.uint64)
    with pytest.raises(ValueError, match="label 18446744073709551615 of sample 1"):
        ModelNet40Dataset(folder, n_points=16)
    folder = _modelnet(tmp_path / "b", data=(data * 100).astype(np.int32), label=[[0], [1]])
    with pytest.raises(ValueError, match="'data' must be floating point"):
        ModelNet40Dataset(folder, n_points=16)


@pytest.mark.parametrize("body,message", [
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 99999999999999999999\n", "out of range"),
    ("OFF\n3 1 0\n0 0 0\n1 0 inf\n0 1 0\n3 0 1 2\n", "finite"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 -1\n", "out of range"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1.5 2\n", "not a list of integers"),
    ("OFF\n99999999999 1 0\n0 0 0\n", "expected 99999999999 vertices"),
])
def test_off_reader_rejects_what_it_cannot_represent(tmp_path, body, message):
    path = tmp_path / "m.off"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_off(path)


def test_synthetic_shapes_never_mix_in_files_of_an_earlier_run(tmp_path):
    write_synthetic_shapes(tmp_path, n_train=6, n_test=2, n_points=16, per_file=2)
    write_synthetic_shapes(tmp_path, n_train=2, n_test=2, n_points=16, per_file=2, seed=1)
    assert sorted(p.name for p in tmp_path.glob("ply_data_train*.h5")) == ["ply_data_train0.h5"]
    assert len(ModelNet40Dataset(tmp_path, "train", n_points=16)) == 2
    with h5py.File(tmp_path / "ply_data_train7.h5", "w") as f:  # not written by the generator (real data?)
        f.create_dataset("data", data=np.zeros((1, 16, 3), np.float32))
    before = (tmp_path / "ply_data_train0.h5").read_bytes()
    with pytest.raises(FileExistsError, match="ply_data_train7.h5 is not written by this run"):
        write_synthetic_shapes(tmp_path, n_train=2, n_test=2, n_points=16, per_file=2, seed=2, overwrite=True)
    assert (tmp_path / "ply_data_train0.h5").read_bytes() == before and (tmp_path / "ply_data_train7.h5").exists()


# --- voxels --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grid_size,message", [(1e-300, "reaches inf"), (1e-8, "beyond 16777216"),
                                               (float("inf"), "positive finite"), (0.0, "positive finite")])
def test_grid_sample_refuses_grids_it_cannot_index_exactly(grid_size, message):
    xyz = torch.rand(50, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=message):
        grid_sample(xyz, grid_size, False)


def test_grid_sample_keys_must_fit_int64():
    xyz = torch.rand(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match="more than int64 keys can index"):
        grid_sample(xyz, 1e-7, False)
    small = xyz * 1e-3  # the same grid on a small cloud is exact and fits
    g, index = grid_sample(small, 1e-7, False)
    expected = torch.floor(small / 1e-7).long()
    assert torch.equal(g, (expected - expected.min(0).values)[index]) and index.numel() == 50
    with pytest.raises(ValueError, match="positive finite"):
        SpikeVoxelCoding(grid_size=float("inf"))


# --- synthetic writers, SHD-Adding ---------------------------------------------------------------------------------

def test_synthetic_shd_refuses_what_its_file_types_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="beyond float16"):
        write_synthetic_shd(tmp_path, n_train=2, n_test=2,
                            config=SyntheticSHDConfig(onset=(70000.0, 70000.0), background_rate=0.0))
    assert not list(tmp_path.iterdir()), "nothing is written"
    with pytest.raises(ValueError, match="speaker ids are stored as uint16"):
        generate_synthetic_shd(4, n_speakers=70000, n_test_speakers=1)
    for bad in (dict(gaps=(0.05, float("inf"))), dict(spikes_per_sweep=float("inf"))):
        with pytest.raises(ValueError, match="finite"):
            SyntheticSHDConfig(**bad)


def test_shd_adding_refuses_bool_labels():
    class Base(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(3, 2), torch.tensor(True)

    with pytest.raises(ValueError, match="label must be one integer"):
        SHDAdding(Base())[0]
