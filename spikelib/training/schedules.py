"""Learning-rate schedules as a factor of the optimiser's base rate, per optimiser step ``s`` (0-based).

With ``W`` warm-up steps, ``S`` total steps, ``E`` steps per epoch and ``p = (s - W) / max(S - W, 1)``:

* warm-up (``s < W``): ``f = (s + 1) / W``, then the schedule below;
* ``constant``: ``f = 1``;
* ``cosine``: ``f = r + (1 - r) (1 + cos(pi p)) / 2`` with ``r = min_lr / lr`` (CosineAnnealingLR's curve);
* ``step``: ``f = gamma ** floor(s / (E * step_epochs))``;
* ``onecycle``: the base rate is ``max_lr``; ``f`` rises on a half cosine from ``1/25`` to ``1`` over the first
  ``pct_start`` of the steps and falls on a half cosine to ``1/(25 * 1e4)`` (torch's OneCycleLR defaults,
  ``div_factor=25``, ``final_div_factor=1e4``).

The schedule is a ``LambdaLR`` stepped after every optimiser step; its state (``last_epoch``) is in the checkpoint, and
the factor is a pure function of the step, so a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from spikelib.training.config import OptimConfig, ScheduleConfig

__all__ = ["lr_factor", "build_scheduler", "base_lr"]


def _cos(a: float, b: float, t: float) -> float:
    return b + (a - b) * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2.0


def base_lr(optim: OptimConfig, schedule: ScheduleConfig) -> float:
    """The optimiser's base rate: ``max_lr`` (or ``lr``) for ``onecycle``, else ``lr``."""
    if schedule.name == "onecycle" and schedule.max_lr is not None:
        return schedule.max_lr
    return optim.lr


def lr_factor(schedule: ScheduleConfig, lr: float, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The factor ``f(step)`` of the module docstring."""
    total = max(steps_per_epoch * epochs, 1)
    warmup = int(round(schedule.warmup_epochs * steps_per_epoch))
    ratio = schedule.min_lr / lr if lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(total - warmup, 1)
        if schedule.name == "constant":
            return 1.0
        if schedule.name == "cosine":
            return _cos(1.0, ratio, p)
        if schedule.name == "step":
            return schedule.gamma ** (step // (steps_per_epoch * schedule.step_epochs))
        # onecycle
        start, final = 1.0 / 25.0, 1.0 / (25.0 * 1e4)
        rise = schedule.pct_start
        if p < rise:
            return _cos(start, 1.0, p / rise)
        return _cos(1.0, final, (p - rise) / max(1.0 - rise, 1e-12))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, lr: float, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` with :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, lr, steps_per_epoch, epochs))
