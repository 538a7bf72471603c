"""Learning-rate schedules as a factor of the optimiser's base rate, per optimiser step ``s`` (0-based).

With ``W`` warm-up steps, ``S`` total steps, ``E`` steps per epoch and ``p = (s - W) / max(S - W, 1)``:

* warm-up (``s < W``): ``f = (s + 1) / W``, then the schedule below;
* ``constant``: ``f = 1``;
* ``cosine``: ``f = r + (1 - r) (1 + cos(pi p)) / 2`` with ``r = min_lr / lr`` (CosineAnnealingLR's curve);
* ``step``: ``f = gamma ** floor(s / (E * step_epochs))``;
* ``multistep``: ``f = gamma ** #{m in milestones : s >= m * E}`` (torch's ``MultiStepLR`` with milestones given in
  epochs, which may be fractional);
* ``onecycle``: the base rate is ``max_lr``; with ``a = pct_start * S - 1`` and ``b = S - 1``, ``f`` rises on a half
  cosine from ``1/25`` to ``1`` over steps ``[0, a]`` and falls on a half cosine to ``1/(25 * 1e4)`` over ``[a, b]``
  (torch's ``OneCycleLR`` with its defaults ``div_factor=25``, ``final_div_factor=1e4``, ``anneal_strategy="cos"``;
  its warm-up is this rise, so ``warmup_epochs`` must be 0 with it).

With a ``delays`` section the optimiser has three parameter groups (delay-layer weights, parameters without weight
decay, delay positions): the first two follow the schedule above, the positions their own constant or cosine curve
(``CosineAnnealingLR`` over all ``S`` steps) from ``delays.lr``.

The schedule is a ``LambdaLR`` stepped after every optimiser step; its state (``last_epoch``) is in the checkpoint, and
the factor is a pure function of the step, so a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from spikelib.training.config import ConfigError, DelaysConfig, OptimConfig, ScheduleConfig

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
        if schedule.name == "multistep":
            return schedule.gamma ** sum(step >= m * steps_per_epoch for m in schedule.milestones)
        # onecycle (torch.optim.lr_scheduler.OneCycleLR's phase boundaries)
        start, final = 1.0 / 25.0, 1.0 / (25.0 * 1e4)
        rise_end = float(schedule.pct_start * total) - 1.0
        end = float(total - 1)
        if step <= rise_end:
            return _cos(start, 1.0, step / rise_end if rise_end > 0 else 1.0)
        return _cos(1.0, final, (step - rise_end) / max(end - rise_end, 1e-12))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, lr: float, steps_per_epoch: int,
                    epochs: int, delays: Optional[DelaysConfig] = None) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` with :func:`lr_factor` (per parameter group when ``delays`` is given)."""
    if schedule.name == "onecycle" and schedule.warmup_epochs:
        raise ConfigError("schedule.warmup_epochs: must be 0 with schedule.name=onecycle (its rise is the warm-up)")
    if schedule.name == "multistep" and not schedule.milestones:
        raise ConfigError("schedule.milestones: schedule.name=multistep needs at least one milestone (in epochs)")
    main = lr_factor(schedule, lr, steps_per_epoch, epochs)
    if delays is None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, main)
    total = max(steps_per_epoch * epochs, 1)
    if delays.schedule == "cosine":
        def positions(step: int) -> float:
            return _cos(1.0, 0.0, step / total)
    else:
        def positions(step: int) -> float:
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [main, main, positions])
