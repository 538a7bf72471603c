"""Spike encoders: turn real values into spike trains ``[T, ...]`` (time first).

Equations (``x`` the input, ``T = num_steps``, ``u ~ U[0, 1)`` drawn independently per step and element):

- :func:`rate`: ``s[t] = 1[u < p]`` with ``p = gain * x`` (Bernoulli per step: a rate code; ``x`` may also be a
  sequence of probabilities ``[T, ...]``).
- :func:`poisson`: :func:`rate` with ``p = dt * f_max * x`` (``x`` in ``[0, 1]`` scales a maximum rate ``f_max`` in Hz;
  a Bernoulli approximation of a Poisson process, exact as ``dt -> 0``).
- :func:`latency`: one spike per element at step ``round(t)``: ``linear`` ``t = (T - 1)(1 - max(x, threshold))``
  (brighter is earlier, 1 at step 0), ``log`` ``t = tau ln(x / (x - threshold))`` (the time an RC circuit driven by
  ``x`` takes to charge to ``threshold``). Inputs below ``threshold`` (``log``: at or below) spike at the latest time
  of the code (``linear``: ``(T - 1)(1 - threshold)``; ``log``: the last step), or never with ``clip=True``.
- :func:`delta`: ``s[t] = 1[x[t] - x[t-1] >= threshold]`` (and ``-1`` for ``<= -threshold`` with ``off_spikes``), with
  ``x[-1] = 0``, or ``x[-1] = x[0]`` with ``padding=True``.

Nothing is clipped silently: probabilities outside ``[0, 1]``, latency inputs outside ``[0, 1]`` and latency spike
times beyond the last step are errors that say what to change.

Peers (tests/test_encoders.py): :func:`poisson` draws the same numbers as norse 1.1's ``poisson_encode`` and gives
identical spikes from the same seed (norse lets ``dt f_max x`` exceed 1 and then fires every step; here that is an
error). :func:`delta` equals snnTorch 1.0's ``spikegen.delta``. :func:`latency` equals snnTorch's ``spikegen.latency``
with ``linear=True, normalize=True`` (``mode="linear"``) and, for inputs above the threshold whose spikes fall in the
window, ``normalize=False`` (``mode="log"``); snnTorch clamps below-threshold inputs to ``threshold + 1e-7`` in the log
code (a spike far outside the window, an error there) and its ``normalize=True`` log code rescales by the largest
spike time of the batch, so a sample's code depends on the other samples (not offered here). snnTorch's
``spikegen.rate`` clamps probabilities to ``[0, 1]``; :func:`rate` raises instead.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch

__all__ = ["rate", "poisson", "latency", "delta"]

_LATENCY_MODES = ("linear", "log")


def _check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a scalar tensor")
    return x


def _check_steps(num_steps: object, name: str = "num_steps") -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"{name} must be an int >= 1, got {num_steps!r}")
    return int(num_steps)


def _check_real(value: object, name: str, *, positive: bool = False, lo: Optional[float] = None,
                hi: Optional[float] = None) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if ok and positive:
        ok = float(value) > 0
    if ok and lo is not None:
        ok = float(value) >= lo
    if ok and hi is not None:
        ok = float(value) <= hi
    if not ok:
        what = "> 0" if positive else (f"in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else "")
        raise ValueError(f"{name} must be a finite number {what}".rstrip() + f", got {value!r}")
    return float(value)


def _check_unit_interval(p: torch.Tensor, what: str, hint: str) -> None:
    if p.numel() == 0:
        return
    lo, hi = float(p.min()), float(p.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ValueError(f"{what} must lie in [0, 1], got values in [{lo:g}, {hi:g}]{hint}")


def _bernoulli(p: torch.Tensor, shape: tuple, generator: Optional[torch.Generator]) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=p.device, dtype=p.dtype)
    return (u < p).to(p.dtype)


def rate(x: torch.Tensor, num_steps: Optional[int] = None, *, gain: float = 1.0,
         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Rate code: a spike with probability ``gain * x`` at every step.

    Args:
        x: firing probabilities per step, a static input ``[B, ...]`` (with ``num_steps``) or a sequence ``[T, B, ...]``
            (``num_steps=None``: one draw per given step).
        num_steps: number of steps ``T`` of the output for a static input; ``None`` if ``x`` is already time first.
        gain: factor applied to ``x`` (the probabilities are ``gain * x`` and must lie in ``[0, 1]``).
        generator: a ``torch.Generator`` for reproducible draws.

    Returns:
        Spikes ``[T, *x.shape]`` (or ``x.shape`` for a sequence), 0/1 in ``x``'s dtype.
    """
    x = _check_tensor(x, "x")
    gain = _check_real(gain, "gain")
    p = x * gain if gain != 1.0 else x
    _check_unit_interval(p, "rate: the spike probabilities gain * x",
                         " (scale the input into [0, 1] or lower gain; nothing is clipped)")
    if num_steps is None:
        return _bernoulli(p, tuple(p.shape), generator)
    steps = _check_steps(num_steps)
    return _bernoulli(p, (steps, *p.shape), generator)


def poisson(x: torch.Tensor, num_steps: int, *, f_max: float = 100.0, dt: float = 1e-3,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Poisson-like rate code: spikes with probability ``dt * f_max * x`` per step of ``dt`` seconds.

    Args:
        x: intensities in ``[0, 1]`` (1 fires at ``f_max``), a static input ``[B, ...]``.
        num_steps: number of steps ``T``.
        f_max: firing rate in Hz of an input of 1.
        dt: step length in seconds (``dt * f_max * x <= 1``: at most one spike per step).
        generator: a ``torch.Generator`` for reproducible draws.

    Returns:
        Spikes ``[T, *x.shape]``, 0/1 in ``x``'s dtype.
    """
    x = _check_tensor(x, "x")
    f_max = _check_real(f_max, "f_max", positive=True)
    dt = _check_real(dt, "dt", positive=True)
    _check_unit_interval(x, "poisson: x (intensities relative to f_max)", "")
    steps = _check_steps(num_steps)
    scale = dt * f_max
    peak = float(x.max()) * scale if x.numel() else 0.0
    if peak > 1.0:
        raise ValueError(f"poisson: dt * f_max * x reaches {peak:g} > 1 (more than one spike per step of {dt:g} s at "
                         f"{f_max:g} Hz); lower dt or f_max")
    return _bernoulli(scale * x, (steps, *x.shape), generator)


def latency(x: torch.Tensor, num_steps: int, *, mode: str = "linear", tau: float = 1.0, threshold: float = 0.01,
            clip: bool = False) -> torch.Tensor:
    """Latency (time-to-first-spike) code: one spike per element, earlier for larger inputs.

    Args:
        x: inputs in ``[0, 1]``, ``[B, ...]``.
        num_steps: number of steps ``T``.
        mode: ``"linear"`` (``t = (T - 1)(1 - max(x, threshold))``) or ``"log"`` (``t = tau ln(x / (x - threshold))``).
        tau: time constant of the log code, in steps (unused by the linear code).
        threshold: inputs below it carry no information: they spike at the code's latest time, or never with
            ``clip=True``; in ``(0, 1)``.
        clip: drop the spikes of inputs below ``threshold`` instead of placing them late.

    Returns:
        Spikes ``[T, *x.shape]``, 0/1 in ``x``'s dtype.

    Raises:
        ValueError: for inputs outside ``[0, 1]``, or (``log``) when an input above ``threshold`` would spike after
            the last step (raise ``num_steps`` or lower ``tau``).
    """
    x = _check_tensor(x, "x")
    steps = _check_steps(num_steps)
    if mode not in _LATENCY_MODES:
        raise ValueError(f"mode must be one of {list(_LATENCY_MODES)}, got {mode!r}")
    threshold = _check_real(threshold, "threshold", lo=0.0, hi=1.0)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    if not isinstance(clip, bool):
        raise TypeError(f"clip must be a bool, got {type(clip).__name__}")
    _check_unit_interval(x, "latency: x", " (normalise the input into [0, 1])")
    if mode == "linear":
        below = x < threshold
        t = (steps - 1) * (1.0 - torch.clamp(x, min=threshold))
    else:
        tau = _check_real(tau, "tau", positive=True)
        below = x <= threshold
        safe = torch.where(below, torch.ones_like(x), x)
        t = torch.where(below, torch.full_like(x, steps - 1), tau * torch.log(safe / (safe - threshold)))
    step = torch.round(t)
    late = ~below & (step > steps - 1)
    if bool(late.any()):
        worst = float(t[late].max())
        raise ValueError(f"latency: the log code puts a spike at step {worst:.1f} > {steps - 1} (num_steps - 1) for "
                         f"an input of {float(x[late].min()):g}; raise num_steps or lower tau (={tau:g})")
    out = torch.zeros((steps, *x.shape), dtype=x.dtype, device=x.device)
    out.scatter_(0, step.long().clamp(0, steps - 1).unsqueeze(0), 1.0)
    if clip:
        out = out * (~below).to(x.dtype)
    return out


def delta(x: torch.Tensor, threshold: float = 0.1, *, padding: bool = False, off_spikes: bool = False) -> torch.Tensor:
    """Delta (change) code of a sequence: a spike where the input rose by at least ``threshold`` since the last step.

    Args:
        x: a sequence ``[T, ...]``, time first.
        threshold: the change that triggers a spike (> 0).
        padding: compare the first step with itself (no spike at ``t = 0``) instead of with zero.
        off_spikes: also emit ``-1`` where the input fell by at least ``threshold``.

    Returns:
        Spikes of ``x``'s shape and dtype: 0/1, or -1/0/1 with ``off_spikes``.
    """
    x = _check_tensor(x, "x")
    threshold = _check_real(threshold, "threshold", positive=True)
    for flag, name in ((padding, "padding"), (off_spikes, "off_spikes")):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    previous = torch.cat([x[:1] if padding else torch.zeros_like(x[:1]), x[:-1]])
    change = x - previous
    out = (change >= threshold).to(x.dtype)
    if off_spikes:
        out = out - (change <= -threshold).to(x.dtype)
    return out
