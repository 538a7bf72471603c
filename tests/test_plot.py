"""Plots are rendered to PNG files and the pixels are checked: marks where the spikes are, lines at the trace values,
bars at the firing rates."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

from spikelib import plot
from spikelib.layers import Sequential
from spikelib.monitor import record
from spikelib.neurons import LIF

mpl_image = pytest.importorskip("matplotlib.image")
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

W, H = 400, 300


def _bare_axes():
    """A figure whose axes fill the canvas, so data coordinates map linearly onto pixels."""
    fig = Figure(figsize=(W / 100, H / 100), dpi=100)
    return fig.add_axes([0, 0, 1, 1])


def _render(fig, path):
    for ax in fig.axes:
        ax.set_axis_off()
    fig.savefig(path, dpi=100)
    img = mpl_image.imread(str(path))[:, :, :3]
    assert img.shape == (H, W, 3)
    return img


def _near(img, color, tol=0.12):
    return np.abs(img - np.asarray(to_rgb(color))).max(axis=2) < tol


def test_raster_png_has_a_mark_exactly_where_each_spike_is(tmp_path):
    T, N = 10, 6
    s = torch.zeros(T, 2, N)
    for t in range(T):
        for n in range(N):
            s[t, 1, n] = float((t + n) % 3 == 0)
    ax = _bare_axes()
    fig = plot.raster(s, sample=1, ax=ax)
    assert fig is ax.figure
    img = _render(fig, tmp_path / "raster.png")
    dark = img.mean(axis=2) < 0.5
    cw, ch = W / T, H / N
    for t in range(T):
        for n in range(N):
            rows = slice(int(H - (n + 1) * ch + 10), int(H - n * ch - 10))  # image rows grow downwards
            cols = slice(int(t * cw + 10), int((t + 1) * cw - 10))
            assert bool(dark[rows, cols].any()) == bool(s[t, 1, n]), (t, n)
    default = plot.raster(s, sample=1)  # a new figure, labelled
    axes = default.axes[0]
    assert axes.get_xlabel() == "time step" and axes.get_title() == f"{int(s[:, 1].sum())} spikes, 6 neurons, 10 steps"


def test_traces_png_lines_follow_the_values(tmp_path):
    T = 21
    v = torch.zeros(T, 1, 2)
    v[:, 0, 0] = 0.25
    v[:, 0, 1] = torch.linspace(0.0, 1.0, T)
    ax = _bare_axes()
    fig = plot.traces(v, neurons=2, threshold=0.9, ax=ax)
    ax.get_legend().remove()
    for line in ax.lines:  # thicker lines: pixels of the pure colour despite anti-aliasing (positions unchanged)
        line.set_linewidth(3.0)
    ax.set_xlim(0, T - 1)
    ax.set_ylim(0, 1)
    img = _render(fig, tmp_path / "traces.png")
    flat, ramp, thr = _near(img, "C0"), _near(img, "C1"), _near(img, "gray", tol=0.08)
    for col in range(40, W - 40, 40):
        x = col / (W - 1)
        rows = np.nonzero(flat[:, col])[0]
        assert rows.size and abs(rows.mean() - (1 - 0.25) * (H - 1)) < 3, col
        rows = np.nonzero(ramp[:, col])[0]
        assert rows.size and abs(rows.mean() - (1 - x) * (H - 1)) < 4, col
    row = int(round(0.1 * (H - 1)))
    dashes = thr[row - 2: row + 3].any(axis=0).sum()
    assert W // 3 < dashes < W - 20 and not thr[row + 10:].any()  # a dashed line at the threshold only


def test_firing_rates_png_bar_heights(tmp_path):
    rates = {"a": 0.2, "b": 0.5, "c": 0.9}
    ax = _bare_axes()
    fig = plot.firing_rates(rates, ax=ax)
    ax.set_ylim(0, 1)
    img = _render(fig, tmp_path / "rates.png")
    bars = _near(img, "C0")
    for i, r in enumerate(rates.values()):
        col = int((i + 0.5) / 3 * W)
        assert abs(bars[:, col].sum() / H - r) < 0.02, (i, r)
        gap = int((i + 0.5) / 3 * W + 0.35 * W / 3)  # between bars: width 0.6 of each slot
        assert not bars[:, gap].any()


def test_layers_draws_one_raster_per_recorded_layer(tmp_path):
    torch.manual_seed(0)
    net = Sequential(nn.Linear(5, 7), LIF(v_threshold=0.3), nn.Linear(7, 3), LIF(v_threshold=0.3))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(3)
        _, rec = record(net, torch.rand(9, 2, 5), states=True)
    fig = plot.layers(rec, sample=1)
    assert [a.get_title() for a in fig.axes] == ["1", "3"]
    for ax, name in zip(fig.axes, ["1", "3"]):
        spikes = rec.trace(name).output[:, 1]
        offsets = ax.collections[0].get_offsets()
        assert sorted(map(tuple, np.asarray(offsets).astype(int).tolist())) == sorted(
            map(tuple, torch.nonzero(spikes).tolist()))
        assert len(offsets) > 0
    fig.savefig(tmp_path / "layers.png")
    img = mpl_image.imread(str(tmp_path / "layers.png"))
    assert img.shape[:2] == (440, 600) and (img[:, :, :3].mean(axis=2) < 0.5).any()  # 2 panels of 6 x 2.2 in
    rates_fig = plot.firing_rates(rec)
    assert [t.get_text() for t in rates_fig.axes[0].get_xticklabels()] == ["1", "3"]


def test_errors_name_the_argument(monkeypatch):
    with pytest.raises(ValueError, match=r"time first \[T, B, ...\].*batched=False"):
        plot.raster(torch.zeros(4, 3))
    with pytest.raises(IndexError, match="sample 5 is out of range for a batch of 2"):
        plot.raster(torch.zeros(4, 2, 3), sample=5)
    with pytest.raises(IndexError, match=r"neurons \[9\] out of range for 3 neurons"):
        plot.traces(torch.zeros(4, 2, 3), neurons=[0, 9])
    with pytest.raises(TypeError, match="rates must be a non-empty mapping"):
        plot.firing_rates({})
    with pytest.raises(TypeError, match="spikes must be a torch.Tensor or numpy array"):
        plot.raster([[0, 1]])
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'spikelib\[report\]'"):
        plot.raster(torch.zeros(4, 2, 3))
