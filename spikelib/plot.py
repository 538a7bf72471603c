"""Plots of a network's activity: spike rasters, membrane traces and firing rates per layer.

::

    from spikelib import plot
    from spikelib.monitor import record

    out, rec = record(model, x, states=True)
    plot.raster(rec.trace("1").output).savefig("raster.png")
    plot.traces(rec.trace("1").states.v, neurons=[0, 3], threshold=1.0).savefig("membrane.png")
    plot.firing_rates(rec).savefig("rates.png")
    plot.layers(rec).savefig("layers.png")          # one raster per recorded layer

Every function draws into ``ax`` when given (a matplotlib ``Axes``, e.g. from ``plt.subplots()``) and otherwise into
a new ``matplotlib.figure.Figure`` (not registered with pyplot, so nothing changes the user's backend or open
figures); it returns the figure. Inputs are tensors or arrays, time first: ``[T, B, ...]`` (``sample`` picks the batch
element; every index after ``B`` is flattened into neurons) or ``[T, N]`` with ``batched=False``.

Needs matplotlib (``pip install 'spikelib[report]'``); it is imported only when a plot is drawn.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["raster", "traces", "firing_rates", "layers"]

ArrayLike = Union[torch.Tensor, np.ndarray]


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("spikelib.plot needs matplotlib: pip install 'spikelib[report]'") from exc
    return Figure


def _axes(ax: Any, figsize: tuple):
    if ax is not None:
        if not hasattr(ax, "figure") or not hasattr(ax, "plot"):
            raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
        return ax.figure, ax
    fig = _figure_class()(figsize=figsize)
    return fig, fig.add_subplot(1, 1, 1)


def _as_numpy(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array (time first), got {type(values).__name__}")


def _time_by_neuron(values: Any, name: str, sample: int, batched: bool) -> np.ndarray:
    """``[T, N]`` of one sample: ``[T, B, ...]`` -> sample ``sample`` flattened, or ``[T, N]`` as given."""
    a = _as_numpy(values, name)
    if isinstance(sample, bool) or not isinstance(sample, numbers.Integral):
        raise TypeError(f"sample must be an int, got {type(sample).__name__}")
    if not batched:
        if a.ndim != 2:
            raise ValueError(f"{name} must be [T, N] with batched=False, got shape {a.shape}")
        return a
    if a.ndim < 3:
        raise ValueError(f"{name} must be time first [T, B, ...] (or [T, N] with batched=False), got shape {a.shape}")
    if not -a.shape[1] <= sample < a.shape[1]:
        raise IndexError(f"sample {sample} is out of range for a batch of {a.shape[1]}")
    return a[:, sample].reshape(a.shape[0], -1)


def raster(spikes: ArrayLike, *, sample: int = 0, batched: bool = True, ax: Any = None,
           title: Optional[str] = None, color: str = "black", marker_size: float = 4.0) -> "Figure":
    """Spike raster: a mark at ``(t, n)`` for every nonzero ``spikes[t, sample, n]``.

    Args:
        spikes: ``[T, B, ...]`` (or ``[T, N]`` with ``batched=False``).
        sample: the batch element to draw.
        batched: whether ``spikes`` has a batch dimension.
        ax: a matplotlib ``Axes`` to draw into (default: a new figure).
        title: axes title.
        color: marker colour.
        marker_size: marker size in points.

    Returns:
        The matplotlib figure.
    """
    s = _time_by_neuron(spikes, "spikes", sample, batched)
    T, N = s.shape
    fig, ax = _axes(ax, (6.0, 3.5))
    t, n = np.nonzero(s)
    ax.scatter(t, n, s=marker_size ** 2, marker="s", c=color, linewidths=0)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(-0.5, N - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron")
    ax.set_title(title if title is not None else f"{int(t.size)} spikes, {N} neurons, {T} steps")
    return fig


def traces(values: ArrayLike, *, neurons: Union[int, Sequence[int]] = 5, sample: int = 0, batched: bool = True,
           threshold: Optional[float] = None, ax: Any = None, title: Optional[str] = None) -> "Figure":
    """Membrane (or any state) traces of chosen neurons over time.

    Args:
        values: ``[T, B, ...]`` (or ``[T, N]`` with ``batched=False``), e.g. ``Monitor.trace(name).states.v``.
        neurons: the neuron indices to draw (after flattening), or a count ``k`` for the first ``k``.
        sample: the batch element to draw.
        batched: whether ``values`` has a batch dimension.
        threshold: draw the firing threshold as a dashed line.
        ax: a matplotlib ``Axes`` to draw into (default: a new figure).
        title: axes title.

    Returns:
        The matplotlib figure.
    """
    v = _time_by_neuron(values, "values", sample, batched)
    T, N = v.shape
    if isinstance(neurons, numbers.Integral) and not isinstance(neurons, bool):
        if neurons < 1:
            raise ValueError(f"neurons must be >= 1 (a count) or a list of indices, got {neurons}")
        chosen = list(range(min(int(neurons), N)))
    else:
        chosen = [int(i) for i in neurons]
        bad = [i for i in chosen if not 0 <= i < N]
        if bad or not chosen:
            raise IndexError(f"neurons {bad or chosen} out of range for {N} neurons")
    fig, ax = _axes(ax, (6.0, 3.5))
    steps = np.arange(T)
    for i in chosen:
        ax.plot(steps, v[:, i], linewidth=1.2, label=f"neuron {i}")
    if threshold is not None:
        ax.axhline(float(threshold), color="gray", linestyle="--", linewidth=1.0, label="threshold")
    ax.set_xlabel("time step")
    ax.set_ylabel("membrane")
    if len(chosen) <= 10:
        ax.legend(loc="best", fontsize="small")
    ax.set_title(title if title is not None else f"{len(chosen)} of {N} neurons")
    return fig


def _rates_of(rates: Any) -> Dict[str, float]:
    if hasattr(rates, "firing_rates") and callable(rates.firing_rates):
        rates = rates.firing_rates()
    if not isinstance(rates, Mapping) or not rates:
        raise TypeError("rates must be a non-empty mapping {layer: rate} or a spikelib.monitor.Monitor that recorded")
    return {str(k) or "<model>": float(v) for k, v in rates.items()}


def firing_rates(rates: Any, *, ax: Any = None, title: Optional[str] = None, color: str = "C0") -> "Figure":
    """Bar chart of the firing rate of each layer (spikes per neuron and step).

    Args:
        rates: ``{layer name: rate}`` or a :class:`spikelib.monitor.Monitor` (its :meth:`firing_rates`).
        ax: a matplotlib ``Axes`` to draw into (default: a new figure).
        title: axes title.
        color: bar colour.

    Returns:
        The matplotlib figure.
    """
    r = _rates_of(rates)
    fig, ax = _axes(ax, (max(3.0, 0.8 * len(r) + 2.0), 3.5))
    x = np.arange(len(r))
    ax.bar(x, list(r.values()), color=color, width=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels(list(r.keys()), rotation=30 if len(r) > 4 else 0)
    ax.set_xlim(-0.5, len(r) - 0.5)
    ax.set_ylim(0.0, max(max(r.values()) * 1.1, 1e-3))
    ax.set_xlabel("layer")
    ax.set_ylabel("spikes per neuron and step")
    ax.set_title(title if title is not None else "firing rates")
    return fig


def layers(monitor: Any, *, sample: int = 0, names: Optional[Sequence[str]] = None) -> "Figure":
    """One raster per recorded layer of a :class:`spikelib.monitor.Monitor` (its spikes, not its states).

    Args:
        monitor: a monitor that recorded at least one pass.
        sample: the batch element to draw.
        names: the layers to draw (default: every recorded layer with a recording).

    Returns:
        The matplotlib figure.
    """
    if not hasattr(monitor, "trace") or not hasattr(monitor, "names"):
        raise TypeError(f"monitor must be a spikelib.monitor.Monitor, got {type(monitor).__name__}")
    chosen = list(names) if names is not None else [n for n in monitor.names if monitor[n]]
    if not chosen:
        raise ValueError("the monitor recorded nothing: run the model inside `with monitor:` first")
    fig = _figure_class()(figsize=(6.0, 2.2 * len(chosen)))
    axes = fig.subplots(len(chosen), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, chosen):
        rec = monitor.trace(name)
        spikes = rec.output if hasattr(rec, "output") and hasattr(rec, "states") else rec
        if not isinstance(spikes, (torch.Tensor, np.ndarray)):
            raise TypeError(f"layer {name!r} returned {type(spikes).__name__}, not a tensor of spikes")
        raster(spikes, sample=sample, ax=ax, title=f"{name or '<model>'}")
    fig.tight_layout()
    return fig
