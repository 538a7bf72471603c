"""Event transforms of SHDDataset run on each sample's events (tonic's format) before binning."""

import numpy as np
import pytest
import torch

from spikelib.data import write_synthetic_shd
from spikelib.data.shd import EVENT_DTYPE, SHDDataset, bin_events


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shd_events")
    write_synthetic_shd(root, n_train=40, n_test=20, seed=3)
    return root


def _manual(ds, i, fn, origin="zero"):
    """Bin fn(events) by hand: the reference of what the dataset must give."""
    times, units = ds.events(i)
    ev = np.zeros(times.size, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["p"] = times * 1e6, units, 1
    out = fn(ev)
    t = out["t"] / 1e6
    order = np.argsort(t, kind="stable")
    t, u = t[order], out["x"][order]
    if origin == "first_spike" and t.size:
        t = t - t[0]
    return bin_events(t, u, ds.dt, ds.n_steps, 700, ds.pool)


@pytest.mark.parametrize("origin", ["zero", "first_spike"])
def test_identity_event_transform_equals_no_transform(shd_dir, origin):
    plain = SHDDataset(shd_dir, "train", bin_ms=4.0, channels_out=140, time_origin=origin)
    same = SHDDataset(shd_dir, "train", bin_ms=4.0, channels_out=140, time_origin=origin,
                      event_transform=lambda ev: ev)
    for i in range(len(plain)):
        (a, ya), (b, yb) = plain[i], same[i]
        assert torch.equal(a, b) and ya == yb
    assert a.sum() > 0


def test_a_unit_filter_drops_events_not_time_bins(shd_dir):
    ds = SHDDataset(shd_dir, "train", bin_ms=10.0, event_transform=lambda ev: ev[ev["x"] < 350])
    plain = SHDDataset(shd_dir, "train", bin_ms=10.0)
    for i in range(5):
        x, _ = ds[i]
        ref, _ = plain[i]
        assert torch.equal(x[:, :350], ref[:, :350]) and x[:, 350:].sum() == 0 and ref[:, 350:].sum() > 0
        assert x.shape == ref.shape


def test_shifting_events_in_time_moves_the_bins(shd_dir):
    shift = 20_000.0  # 20 ms in microseconds: two bins of 10 ms later

    def later(ev):
        out = ev.copy()
        out["t"] += shift
        return out

    ds = SHDDataset(shd_dir, "train", bin_ms=10.0, max_time=1.0, event_transform=later)
    plain = SHDDataset(shd_dir, "train", bin_ms=10.0, max_time=1.0)
    x, ref = ds[0][0], plain[0][0]
    assert torch.equal(x[2:], ref[:-2]) and x[:2].sum() == 0


@pytest.mark.peers
def test_tonic_event_transforms_equal_the_manual_pipeline(shd_dir):
    transforms = pytest.importorskip("tonic.transforms")
    ds_plain = SHDDataset(shd_dir, "train", bin_ms=5.0)
    for fn in (transforms.DropEvent(p=0.5), transforms.TimeJitter(std=2000.0, clip_negative=True),
               transforms.Compose([transforms.DropEvent(p=0.2), transforms.TimeJitter(std=500.0,
                                                                                       clip_negative=True)])):
        ds = SHDDataset(shd_dir, "train", bin_ms=5.0, event_transform=fn)
        for i in (0, 7):
            np.random.seed(11)
            got, _ = ds[i]
            np.random.seed(11)
            ref = _manual(ds, i, fn)
            assert torch.equal(got, torch.from_numpy(ref))
            assert got.shape == ds_plain[i][0].shape
    drop = SHDDataset(shd_dir, "train", bin_ms=5.0, event_transform=transforms.DropEvent(p=0.5))
    np.random.seed(0)
    kept = sum(float(drop[i][0].sum()) for i in range(10))
    total = sum(float(ds_plain[i][0].sum()) for i in range(10))
    assert 0.4 * total < kept < 0.6 * total


@pytest.mark.peers
def test_a_tonic_transform_given_as_transform_is_an_error_that_names_event_transform(shd_dir):
    transforms = pytest.importorskip("tonic.transforms")
    with pytest.raises(TypeError, match=r"DropEvent is a tonic transform of events: pass it as event_transform="):
        SHDDataset(shd_dir, "train", transform=transforms.DropEvent(p=0.1))


def test_bad_event_transforms_are_errors(shd_dir, tmp_path):
    def negative(ev):
        out = ev.copy()
        out["t"] -= 1e9
        return out

    def bad_unit(ev):
        out = ev.copy()
        out["x"][0] = 700
        return out

    with pytest.raises(ValueError, match=r"negative or non-finite times.*clip_negative=True"):
        SHDDataset(shd_dir, "train", event_transform=negative)[0]
    with pytest.raises(ValueError, match=r"unit indices in \d+\.\.700, expected 0\.\.699"):
        SHDDataset(shd_dir, "train", event_transform=bad_unit)[0]
    with pytest.raises(TypeError, match="must return a structured array of events"):
        SHDDataset(shd_dir, "train", event_transform=lambda ev: ev["t"])[0]
    with pytest.raises(ValueError, match="use cache=None with event_transform"):
        SHDDataset(shd_dir, "train", event_transform=lambda ev: ev, cache=tmp_path)
    with pytest.raises(TypeError, match="event_transform must be callable"):
        SHDDataset(shd_dir, "train", event_transform=3)
    with pytest.raises(ValueError, match="has no event_transform"):
        SHDDataset(shd_dir, "train").transformed_events(0)
