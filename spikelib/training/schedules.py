"""Learning-rate schedules of the training core, stepped after every optimiser step or after every epoch.

``schedule.interval`` chooses the unit ``u``: ``step`` (one optimiser step; ``E`` = steps per epoch) or ``epoch``
(``E = 1``). With ``W`` warm-up units (``round(warmup_epochs * E)``), ``S`` total units and
``p = (u - W) / max(S - W, 1)``, the rate is the optimiser's base rate times:

* warm-up (``u < W``): ``f = (u + 1) / W``, then the schedule below;
* ``constant``: ``f = 1``;
* ``cosine``: ``f = r + (1 - r) (1 + cos(pi p)) / 2`` with ``r = min_lr / lr`` (CosineAnnealingLR's curve);
* ``step``: ``f = gamma ** floor(u / (E * step_epochs))``;
* ``multistep``: ``f = gamma ** #{m in milestones : u >= m * E}`` (torch's ``MultiStepLR`` with milestones given in
  epochs, which may be fractional);
* ``onecycle``: torch's ``OneCycleLR`` itself (peak ``max_lr`` or ``lr``, ``div_factor=25``,
  ``final_div_factor=1e4``, cosine annealing, ``pct_start``), with ``cycle_momentum`` also cycling SGD's momentum or
  Adam's beta1 from ``max_momentum`` down to ``base_momentum`` and back (SNN-delays: 0.95 -> 0.85 -> 0.95, stepped
  once per epoch). Its rise is the warm-up, so ``warmup_epochs`` must be 0 with it.

The learnable delay positions have their own optimiser and a ``constant`` or ``cosine`` curve to 0 over the run (the
reference's ``CosineAnnealingLR(T_max = epochs)`` when stepped per epoch). Every schedule's state is in the
checkpoint, and each factor is a pure function of the unit count, so a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Tuple

import torch

from spikelib.training.config import OptimConfig, ScheduleConfig

__all__ = ["lr_factor", "build_scheduler", "positions_scheduler", "base_lr", "units_per_epoch"]


def _cos(a: float, b: float, t: float) -> float:
    return b + (a - b) * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2.0


def base_lr(optim: OptimConfig, schedule: ScheduleConfig) -> float:
    """The optimiser's base rate: ``max_lr`` (or ``lr``) for ``onecycle``, else ``lr``."""
    if schedule.name == "onecycle" and schedule.max_lr is not None:
        return schedule.max_lr
    return optim.lr


def units_per_epoch(schedule_interval: str, steps_per_epoch: int) -> int:
    """Schedule units per epoch: ``steps_per_epoch`` for ``step``, 1 for ``epoch``."""
    return steps_per_epoch if schedule_interval == "step" else 1


def lr_factor(schedule: ScheduleConfig, lr: float, units_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The factor ``f(u)`` of the module docstring (every schedule but ``onecycle``)."""
    if schedule.name == "onecycle":
        raise ValueError("onecycle is torch's OneCycleLR (build_scheduler), not a factor")
    total = max(units_per_epoch * epochs, 1)
    warmup = int(round(schedule.warmup_epochs * units_per_epoch))
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
            return schedule.gamma ** (step // (units_per_epoch * schedule.step_epochs))
        return schedule.gamma ** sum(step >= m * units_per_epoch for m in schedule.milestones)  # multistep

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, lr: float, steps_per_epoch: int,
                    epochs: int) -> Tuple[Any, str]:
    """``(scheduler, interval)`` for the weights' optimiser (its groups' current rates are the peaks/bases)."""
    units = units_per_epoch(schedule.interval, steps_per_epoch)
    if schedule.name == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=max(units * epochs, 1), pct_start=schedule.pct_start,
            anneal_strategy="cos", cycle_momentum=schedule.cycle_momentum, base_momentum=schedule.base_momentum,
            max_momentum=schedule.max_momentum, div_factor=25.0, final_div_factor=1e4)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, lr, units, epochs))
    return sched, schedule.interval


def positions_scheduler(optimizer: torch.optim.Optimizer, kind: str, interval: str, steps_per_epoch: int,
                        epochs: int) -> Tuple[Any, str]:
    """``(scheduler, interval)`` of the delay positions: ``constant`` or ``cosine`` to 0 over the run."""
    total = max(units_per_epoch(interval, steps_per_epoch) * epochs, 1)
    if kind == "cosine":
        def factor(step: int) -> float:
            return _cos(1.0, 0.0, step / total)
    else:
        def factor(step: int) -> float:
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), interval
