"""Fuzzing the file readers and public data functions (hypothesis, derandomised, bounded in time and memory).

For every reader: crafted, truncated, byte-flipped and huge-declared inputs give a clear error (``ValueError`` or
``OSError`` naming the file), never a silent change (a file that is valid reads exactly what was written, checked
against a reference computed here in plain Python), never a huge allocation (traced peak memory stays small while
files declare up to 3e8 samples). Settings: ``derandomize=True`` (the same examples on every run and machine), no
example database, a modest number of examples per property.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from spikelib.data.modelnet import ModelNet40Dataset, read_off  # noqa: E402
from spikelib.data.shd import N_UNITS, SHDDataset, bin_events  # noqa: E402
from spikelib.data.shd_adding import SHDAdding  # noqa: E402
from spikelib.data.synthetic_shd import SyntheticSHDConfig, generate_synthetic_shd, write_synthetic_shd  # noqa: E402
from spikelib.sparse.voxel import grid_sample  # noqa: E402

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=40, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
MEMORY_LIMIT = 64 << 20  # traced peak per example; the crafted files declare gigabytes


def traced(fn):
    """``(result or exception, peak traced bytes)`` of ``fn()``."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as exc:  # returned, judged by the caller
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def clear_error(exc: BaseException, path: Path) -> None:
    """A reader's error: ValueError or OSError whose message names the file."""
    assert isinstance(exc, (ValueError, OSError)), f"{type(exc).__name__}: {exc}"
    assert str(path) in str(exc), f"the error does not name the file: {exc}"


# --- bin_events: the binning equation against plain Python -------------------------------------------------------

def reference_bins(times, units, dt, n_steps, n_units, pool, max_steps):
    """Counts by the module docstring's equation in Python numbers, or None where bin_events must refuse."""
    t = [float(v) for v in times]
    u = [v.item() for v in units]
    if len(t) != len(u):
        return None
    if any(not math.isfinite(v) or v < 0 for v in t) or any(b < a for a, b in zip(t, t[1:])):
        return None
    if any(isinstance(v, float) and (not math.isfinite(v) or v != math.floor(v)) for v in u):
        return None
    if any(not 0 <= v < n_units for v in u):
        return None
    steps = [math.floor(v / dt) for v in t]
    if n_steps is None:
        n_steps = steps[-1] + 1 if steps else 1
        if n_steps > max_steps:
            return None
    out = np.zeros((n_steps, n_units // pool), dtype=np.int64)
    for k, v in zip(steps, u):
        if k < n_steps:
            out[k, int(v) // pool] += 1
    return out


unit_dtypes = st.sampled_from([np.int8, np.uint16, np.int64, np.uint64, np.float16, np.float32, np.float64])
time_dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.uint32, np.int64])


@st.composite
def spike_arrays(draw, max_len=12, sort=True):
    n = draw(st.integers(0, max_len))
    t_dtype = draw(time_dtypes)
    u_dtype = draw(unit_dtypes)
    clean = draw(st.integers(0, 2)) > 0  # two thirds of the arrays hold valid values only
    width = np.dtype(t_dtype).itemsize * 8
    special = st.sampled_from([9.3e16, 1e300, -1e-9, math.inf, math.nan, 65504.0, 1.4, 0.0])
    if np.dtype(t_dtype).kind == "f":
        valid_t = st.floats(0, 2, width=width)
        t_elems = valid_t if clean else st.one_of(valid_t, special)
    else:
        t_elems = st.integers(0, 3) if clean else None
    times = draw(hnp.arrays(t_dtype, n, elements=t_elems))
    if sort and (clean or draw(st.booleans())):
        times = np.sort(times)
    if np.dtype(u_dtype).kind == "f":
        valid_u = st.integers(0, 699).map(float)
        special_u = st.sampled_from([700.0, -1.0, 699.9, -0.5, 2.0**64, math.nan, math.inf])
        u_elems = valid_u if clean else st.one_of(valid_u, special_u)
        if u_dtype == np.float16:
            u_elems = u_elems.filter(lambda v: not abs(v) < math.inf or abs(v) < 6e4)
    else:
        info = np.iinfo(u_dtype)
        valid_u = st.integers(max(info.min, 0), min(info.max, 699))
        u_elems = valid_u if clean else st.one_of(valid_u, st.integers(info.min, info.max))
    units = draw(hnp.arrays(u_dtype, n, elements=u_elems))
    return times, units


@FUZZ
@given(arrays=spike_arrays(), dt=st.sampled_from([1e-3, 0.01, 0.025, 0.3, 7.0]),
       n_steps=st.one_of(st.none(), st.integers(1, 200)), pool=st.sampled_from([1, 7, 700]),
       max_steps=st.integers(1, 3000))
def test_bin_events_is_exact_or_refuses(arrays, dt, n_steps, pool, max_steps):
    times, units = arrays
    expected = reference_bins(times, units, dt, n_steps, N_UNITS, pool, max_steps)
    out, peak = traced(lambda: bin_events(times, units, dt, n_steps, N_UNITS, pool, max_steps))
    assert peak < MEMORY_LIMIT
    event("refused" if expected is None else "binned")
    if expected is None:
        assert isinstance(out, ValueError), f"accepted invalid input: {out!r}"
    else:
        assert not isinstance(out, Exception), out
        assert out.dtype == np.float32 and np.array_equal(out, expected.astype(np.float32))


# --- SHD / SSC files ------------------------------------------------------------------------------------------------

MUTATIONS = ["none"] * 6 + ["declare_more", "labels_unwritten", "truncate", "flip", "drop_units", "labels_float",
             "labels_2d", "times_not_vlen", "speaker_float", "speaker_huge", "keys_wrong"]


@st.composite
def shd_files(draw):
    n = draw(st.integers(1, 4))
    samples = [draw(spike_arrays(max_len=8)) for _ in range(n)]
    label_dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.uint64]))
    info = np.iinfo(label_dtype)
    labels = draw(hnp.arrays(label_dtype, n, elements=st.one_of(*[st.integers(0, 19)] * 5,
                                                                st.integers(info.min, info.max))))
    mutation = draw(st.sampled_from(MUTATIONS))
    where = draw(st.floats(0.05, 0.95))
    return samples, labels, mutation, where


def write_shd(path, samples, labels, mutation, where):
    with h5py.File(path, "w") as f:
        chunked = mutation == "declare_more"
        for name, k in (("spikes/times", 0), ("spikes/units", 1)):
            if mutation == "drop_units" and k == 1:
                continue
            if mutation == "times_not_vlen" and k == 0:
                f.create_dataset(name, data=np.zeros(len(samples), np.float32))
                continue
            base = np.result_type(*[s[k].dtype for s in samples])
            ds = f.create_dataset(name, (len(samples),), dtype=h5py.vlen_dtype(base),
                                  chunks=(1,) if chunked else None, maxshape=(None,) if chunked else None)
            for i, s in enumerate(samples):
                ds[i] = s[k].astype(base)
            if chunked:
                ds.resize((300_000_000,))
        if mutation == "labels_unwritten":
            f.create_dataset("labels", (len(samples),), dtype=labels.dtype, chunks=(1,))
        elif mutation == "labels_float":
            f.create_dataset("labels", data=labels.astype(np.float64) + 0.5)
        elif mutation == "labels_2d":
            f.create_dataset("labels", data=labels[:, None])
        elif mutation == "declare_more":
            f.create_dataset("labels", data=labels, chunks=(1,), maxshape=(None,)).resize((300_000_000,))
        else:
            f.create_dataset("labels", data=labels)
        if mutation == "speaker_float":
            f.create_dataset("extra/speaker", data=np.arange(len(samples)) + 0.5)
        elif mutation == "speaker_huge":
            f.create_dataset("extra/speaker", (300_000_000,), dtype=np.int64, chunks=(4096,))
        elif mutation == "keys_wrong":
            f.create_dataset("extra/keys", data=np.arange(20.0))
        else:
            f.create_dataset("extra/speaker", data=np.arange(len(samples), dtype=np.uint16))
    data = path.read_bytes()
    if mutation == "truncate":
        path.write_bytes(data[: int(len(data) * where)])
    elif mutation == "flip":
        k = int(len(data) * where)
        path.write_bytes(data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:])


def shd_reference(samples, labels, dt, n_steps, pool, max_steps):
    """Items a valid file must give, or None where the reader must refuse."""
    if any(not 0 <= int(v) < 20 for v in labels.tolist()):
        return None
    items = []
    for times, units in samples:
        base_t = np.result_type(*[s[0].dtype for s in samples])
        base_u = np.result_type(*[s[1].dtype for s in samples])
        x = reference_bins(times.astype(base_t), units.astype(base_u), dt, n_steps, N_UNITS, pool, max_steps)
        if x is None:
            return None
        items.append(x)
    return items


def _readable_as_written(samples):
    """The file holds the drawn values exactly (a common vlen type that represents all of them)."""
    for k in (0, 1):
        base = np.result_type(*[s[k].dtype for s in samples])
        for s in samples:
            with np.errstate(invalid="ignore", over="ignore"):
                cast = s[k].astype(base)
            if not np.array_equal(cast.astype(np.float64), s[k].astype(np.float64), equal_nan=True) or (
                    base.kind in "iu" and s[k].dtype.kind in "iu" and not np.array_equal(cast, s[k])):
                return False
    return True


@settings(FUZZ, max_examples=60)
@given(case=shd_files(), bin_ms=st.sampled_from([1.0, 10.0, 40.0]), max_time=st.sampled_from([None, 1.4, 0.05]),
       channels_out=st.sampled_from([700, 140, 1]), max_steps=st.sampled_from([50, 2000]))
def test_shd_files_read_exactly_or_fail_clearly(tmp_path_factory, case, bin_ms, max_time, channels_out, max_steps):
    samples, labels, mutation, where = case
    if mutation in ("none", "flip", "truncate") and not _readable_as_written(samples):
        mutation = "labels_2d"  # the writer's common type would change the values: test a layout error instead
    path = tmp_path_factory.mktemp("shd") / "shd_train.h5"
    write_shd(path, samples, labels, mutation, where)

    def read():
        ds = SHDDataset(path, bin_ms=bin_ms, max_time=max_time, channels_out=channels_out, max_steps=max_steps)
        return [ds[i] for i in range(len(ds))]

    out, peak = traced(read)
    assert peak < MEMORY_LIMIT
    pool = N_UNITS // channels_out
    dt = bin_ms / 1000.0
    n_steps = None if max_time is None else max(1, int(math.ceil(max_time / dt - 1e-9)))
    expected = shd_reference(samples, labels, dt, n_steps, pool, max_steps) if mutation == "none" else None
    event(f"{mutation}: {type(out).__name__ if isinstance(out, Exception) else 'read'}")
    if isinstance(out, Exception):
        clear_error(out, path)
        assert expected is None, f"a valid file was refused: {out}"
        return
    assert mutation in ("none", "flip", "truncate"), f"a file with mutation {mutation!r} was accepted"
    if mutation == "none":
        assert expected is not None, "an invalid file was accepted"
        assert [y for _, y in out] == [int(v) for v in labels.tolist()]
        for (x, _), ref in zip(out, expected):
            assert torch.equal(x, torch.from_numpy(ref.astype(np.float32)))
    else:  # a flipped byte inside raw values cannot be detected (HDF5 stores no checksum): only well-formed items
        for x, y in out:
            assert 0 <= y < 20 and x.dtype == torch.float32 and bool(torch.isfinite(x).all())


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    """One valid SHD file and one valid ModelNet file (bytes), the subjects of the corruption fuzzing."""
    folder = tmp_path_factory.mktemp("valid")
    write_synthetic_shd(folder, n_train=4, n_test=2, seed=1,
                        config=SyntheticSHDConfig(spikes_per_sweep=20.0, background_rate=0.2))
    with h5py.File(folder / "ply_data_train0.h5", "w") as f:
        rng = np.random.default_rng(0)
        f.create_dataset("data", data=rng.random((3, 16, 3)).astype(np.float32))
        f.create_dataset("normal", data=rng.random((3, 16, 3)).astype(np.float32))
        f.create_dataset("label", data=np.array([[0], [5], [39]], np.uint8))
    class Files(dict):
        def __repr__(self):  # hypothesis prints the arguments of a failing example: not 40 KB of bytes
            return "<valid SHD and ModelNet files>"

    return Files(shd=(folder / "shd_train.h5").read_bytes(), modelnet=(folder / "ply_data_train0.h5").read_bytes())


@settings(FUZZ, max_examples=120)
@given(kind=st.sampled_from(["shd", "modelnet"]), where=st.floats(0, 1, exclude_max=True),
       damage=st.sampled_from(["truncate", "flip", "zero_block", "random_block"]), data=st.data())
def test_damaged_files_fail_clearly(tmp_path_factory, valid_files, kind, where, damage, data):
    """Truncated and overwritten files: a clear error, or items that are still well-formed (HDF5 keeps no checksum
    of raw values, so a changed value inside the data cannot be detected)."""
    raw = valid_files[kind]
    k = int(len(raw) * where)
    if damage == "truncate":
        raw = raw[:k]
    elif damage == "flip":
        raw = raw[:k] + bytes([raw[k] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[k + 1:]
    else:
        block = bytes(64) if damage == "zero_block" else data.draw(st.binary(min_size=64, max_size=64))
        raw = (raw[:k] + block + raw[k + 64:])[: len(raw)]
    folder = tmp_path_factory.mktemp("damaged")
    path = folder / ("shd_train.h5" if kind == "shd" else "ply_data_train0.h5")
    path.write_bytes(raw)

    def read():
        if kind == "shd":
            ds = SHDDataset(path, max_time=None, max_steps=5000)
        else:
            ds = ModelNet40Dataset(folder, "train", n_points=16, use_normals=True, normalize=False)
        return [ds[i] for i in range(len(ds))]

    out, peak = traced(read)
    assert peak < MEMORY_LIMIT
    event(f"{damage}: {type(out).__name__ if isinstance(out, Exception) else 'read'}")
    if isinstance(out, Exception):
        clear_error(out, path)
        return
    for x, y in out:
        assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())
        assert 0 <= y < (20 if kind == "shd" else 40)


# --- ModelNet HDF5 and OFF -----------------------------------------------------------------------------------------

@st.composite
def modelnet_files(draw):
    n = draw(st.integers(1, 3))
    points = draw(st.integers(4, 12))
    data_dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32]))
    elems = (st.floats(-3, 3, width=np.dtype(data_dtype).itemsize * 8) if np.dtype(data_dtype).kind == "f"
             else st.integers(-5, 5))
    data = draw(hnp.arrays(data_dtype, (n, points, 3), elements=elems))
    label_dtype = draw(st.sampled_from([np.uint8, np.int64, np.uint64]))
    info = np.iinfo(label_dtype)
    labels = draw(hnp.arrays(label_dtype, (n, 1), elements=st.one_of(*[st.integers(0, 39)] * 5,
                                                                      st.integers(info.min, info.max))))
    mutation = draw(st.sampled_from(["none"] * 4 + ["unwritten", "declare_more", "truncate", "flip", "label_shape",
                                                    "normal_shape"]))
    return data, labels, mutation, draw(st.floats(0.05, 0.95)), draw(st.booleans())


@settings(FUZZ, max_examples=40)
@given(case=modelnet_files(), n_points=st.sampled_from([4, 8, 13]))
def test_modelnet_files_read_exactly_or_fail_clearly(tmp_path_factory, case, n_points):
    data, labels, mutation, where, use_normals = case
    folder = tmp_path_factory.mktemp("mn")
    path = folder / "ply_data_train0.h5"
    with h5py.File(path, "w") as f:
        if mutation == "unwritten":
            f.create_dataset("data", data.shape, dtype=data.dtype, chunks=True)
        elif mutation == "declare_more":
            f.create_dataset("data", data=data, chunks=(1,) + data.shape[1:], maxshape=(None,) + data.shape[1:])
            f["data"].resize((300_000_000,) + data.shape[1:])
        else:
            f.create_dataset("data", data=data)
        f.create_dataset("label", data=labels[:, 0] if mutation != "label_shape" else labels[:, :, None])
        normal = np.ones_like(data) if mutation != "normal_shape" else np.ones(data.shape[:2] + (2,), data.dtype)
        f.create_dataset("normal", data=normal)
    raw = path.read_bytes()
    if mutation == "truncate":
        path.write_bytes(raw[: int(len(raw) * where)])
    elif mutation == "flip":
        k = int(len(raw) * where)
        path.write_bytes(raw[:k] + bytes([raw[k] ^ 0xFF]) + raw[k + 1:])

    def read():
        ds = ModelNet40Dataset(folder, "train", n_points=n_points, use_normals=use_normals, normalize=False)
        return [ds[i] for i in range(len(ds))]

    out, peak = traced(read)
    assert peak < MEMORY_LIMIT
    intact = mutation == "none" or (mutation == "normal_shape" and not use_normals)  # normals unread then
    valid = (intact and data.dtype.kind == "f" and n_points <= data.shape[1]
             and all(0 <= int(v) < 40 for v in labels[:, 0].tolist()) and bool(np.isfinite(data).all()))
    event(f"{mutation}: {type(out).__name__ if isinstance(out, Exception) else 'read'}")
    if isinstance(out, Exception):
        assert isinstance(out, (ValueError, OSError)), f"{type(out).__name__}: {out}"
        assert str(folder) in str(out), out
        assert not valid, f"a valid file was refused: {out}"
        return
    assert intact or mutation in ("flip", "truncate"), f"a file with mutation {mutation!r} was accepted"
    if intact:
        assert valid, "an invalid file was accepted"
        for i, (pts, y) in enumerate(out):
            ref = data[i, :n_points].astype(np.float64)
            if use_normals:
                ref = np.concatenate([ref, np.ones_like(ref)], axis=1)
            assert y == int(labels[i, 0]) and torch.equal(pts, torch.from_numpy(ref.astype(np.float32)))


off_token = st.one_of(st.integers(-3, 12).map(str), st.sampled_from(["1e400", "nan", "-inf", "0.5", "x", "",
                                                                       "99999999999999999999", "3", "#c"]))


@st.composite
def off_texts(draw):
    verts = draw(st.lists(st.tuples(*[st.floats(-5, 5)] * 3), min_size=0, max_size=6))
    faces = draw(st.lists(st.lists(st.integers(0, max(0, len(verts) - 1)), min_size=3, max_size=5), max_size=5))
    lines = ["OFF", f"{len(verts)} {len(faces)} 0"]
    lines += [" ".join(repr(c) for c in v) for v in verts]
    lines += [" ".join(str(v) for v in [len(f), *f]) for f in faces]
    for _ in range(draw(st.integers(0, 3))):  # token-level damage
        i = draw(st.integers(0, len(lines) - 1))
        tokens = lines[i].split() or [""]
        j = draw(st.integers(0, len(tokens) - 1))
        tokens[j] = draw(off_token)
        lines[i] = " ".join(tokens)
    if draw(st.booleans()):
        lines = lines[: draw(st.integers(0, len(lines)))]
    return "\n".join(lines) + "\n", verts, faces


@settings(FUZZ, max_examples=80)
@given(case=off_texts())
def test_off_reader_is_exact_or_fails_clearly(tmp_path_factory, case):
    text, verts, faces = case
    path = tmp_path_factory.mktemp("off") / "m.off"
    path.write_text(text)
    try:
        v, f = read_off(path)
    except ValueError as exc:
        event("refused")
        assert str(path) in str(exc), exc
        return
    event("read")
    assert v.dtype == np.float64 and v.ndim == 2 and v.shape[1] == 3 and bool(np.isfinite(v).all())
    assert f.dtype == np.int64 and f.ndim == 2 and f.shape[1] == 3
    assert f.size == 0 or (f.min() >= 0 and f.max() < v.shape[0])
    clean = "\n".join(["OFF", f"{len(verts)} {len(faces)} 0"] + [" ".join(repr(c) for c in x) for x in verts]
                      + [" ".join(str(k) for k in [len(y), *y]) for y in faces]) + "\n"
    if text == clean:  # undamaged: exactly the written mesh, polygons as fans
        assert np.array_equal(v, np.asarray(verts, dtype=np.float64).reshape(-1, 3))
        fans = [(y[0], y[i], y[i + 1]) for y in faces for i in range(1, len(y) - 1)]
        assert np.array_equal(f, np.asarray(fans, dtype=np.int64).reshape(-1, 3))


# --- voxelisation ---------------------------------------------------------------------------------------------------

@settings(FUZZ, max_examples=60)
@given(points=st.integers(1, 30).flatmap(lambda n: hnp.arrays(np.float64, (n, 3), elements=st.floats(-1, 1))),
       scale=st.sampled_from([1e-300, 1e-20, 1e-3, 1.0, 1e6, 1e20]), dtype=st.sampled_from([torch.float32,
                                                                                           torch.float64]),
       grid_size=st.sampled_from([1e-300, 1e-12, 1e-8, 1e-7, 1e-5, 0.01, 0.3, 1e10, 1e300]),
       training=st.booleans())
def test_grid_sample_is_exact_or_refuses(points, scale, dtype, grid_size, training):
    xyz = torch.as_tensor(points * scale, dtype=dtype)
    try:
        g, index = grid_sample(xyz, grid_size, training, torch.Generator().manual_seed(0))
    except ValueError as exc:  # refused exactly when indices are inexact in the dtype or keys would pass 2^62
        assert "grid_size" in str(exc)
        q = torch.floor(xyz / grid_size)
        inexact = not bool(torch.isfinite(q).all()) or float(q.abs().max()) > 2.0 / torch.finfo(dtype).eps
        assert inexact or float((q.max(0).values - q.min(0).values + 1).double().prod()) >= 2.0**62, exc
        event("refused")
        return
    event("voxelised")
    q = torch.floor(xyz / grid_size)  # the definition, in the points' dtype; occupied voxels found without keys
    assert float(q.abs().max()) <= 2.0 / torch.finfo(dtype).eps
    voxels = (q - q.min(0).values).long()
    occupied = torch.unique(voxels, dim=0)
    assert g.shape == occupied.shape and torch.equal(torch.unique(g, dim=0), occupied)
    assert torch.equal(voxels[index], g), "each kept point lies in its voxel"


# --- synthetic writer round trip, SHD-Adding ------------------------------------------------------------------------

@settings(FUZZ, max_examples=6)
@given(seed=st.integers(0, 2**31), spikes=st.sampled_from([5.0, 40.0]), onset_hi=st.sampled_from([0.3, 2.0]),
       tempo=st.sampled_from([(0.5, 1.0), (1.0, 3.0)]))
def test_synthetic_shd_round_trip_is_exact(tmp_path_factory, seed, spikes, onset_hi, tempo):
    config = SyntheticSHDConfig(spikes_per_sweep=spikes, onset=(0.0, onset_hi), tempo=tempo, background_rate=0.5)
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_shd(out, n_train=3, n_test=2, seed=seed % 1000, config=config)
    data = generate_synthetic_shd(3, seed % 1000, "train", config=config)
    ds = SHDDataset(out / "shd_train.h5", max_time=None, max_steps=100_000)
    for i in range(3):
        times, units = ds.events(i)
        assert np.array_equal(times, data["times"][i].astype(np.float64))
        assert np.array_equal(units, data["units"][i].astype(np.int64))
    assert ds.labels.tolist() == data["labels"].astype(int).tolist()


@settings(FUZZ, max_examples=40)
@given(label=st.one_of(st.integers(-3, 25), st.floats(-1, 25), st.booleans(), st.just(None),
                       st.sampled_from([torch.tensor(3), torch.tensor(3.0), torch.tensor(True), torch.tensor([1, 2]),
                                        torch.tensor(19, dtype=torch.uint8), np.int64(4), np.float64(4.0)])))
def test_shd_adding_labels_are_exact_or_refused(label):
    class Base(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.zeros(2, 3), label

    try:
        _, y = SHDAdding(Base())[0]
    except ValueError as exc:
        assert "label" in str(exc)
        ok = (isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label <= 19) or (
            isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point()
            and label.dtype != torch.bool and 0 <= int(label) <= 19)
        assert not ok, f"refused a valid label {label!r}"
        return
    value = int(label)
    assert not isinstance(label, (bool, float, np.floating)) and 0 <= value <= 19
    assert int(y) == 2 * (value % 10)
