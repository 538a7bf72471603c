"""Optimisers of the training core, built from the ``optim`` / ``schedule`` / ``delays`` sections.

A run has one or more :class:`OptimizerSlot` s, each an optimiser with its schedules (stepped per optimiser step or per
epoch, see :mod:`spikelib.training.schedules`); every slot steps after every batch, in order.

* ``weights``: every trainable parameter except learnable delay positions, in the groups of ``optim.groups`` (a
  parameter joins the first group whose pattern matches: a glob on its name, or ``@no_decay`` for parameters with at
  most one dimension) and a default group of the rest with ``optim.lr`` / ``optim.weight_decay``. With a ``delays``
  section and no ``optim.groups`` the groups are SNN-delays' (Thvnvtos/SNN-delays ``model.py`` ``optimizers``):
  the delay layers' synaptic weights with ``optim.weight_decay``, everything else (BatchNorm, neuron parameters,
  biases) without weight decay.
* ``positions`` (with a ``delays`` section while positions are learned): SNN-delays' second optimiser, Adam with
  ``delays.lr``, default betas, no weight decay, and the ``delays.schedule`` curve.

On the CPU, Adam, AdamW and SGD run torch's fused kernel (``fused=True``; :func:`fused_on_cpu`). torch's default
per-tensor Adam takes its square roots from MKL's vector math, whose results differed in the last bit between
processes (same parameters, gradients and state; a few elements of one tensor in about one process in four), so
training on two threads was not bitwise repeatable; with the fused kernel five processes of the SHD recipe gave the
same parameters after every step.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from spikelib.training.config import RunConfig
from spikelib.training.errors import ConfigError
from spikelib.training.schedules import base_lr, build_scheduler, positions_scheduler

__all__ = ["OptimizerSlot", "build_optimizers", "make_optimizer", "parameter_groups", "fused_on_cpu"]

#: optimisers with a fused CPU kernel in torch (``fused=True``)
FUSED_ON_CPU = frozenset({"adam", "adamw", "sgd"})
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass
class OptimizerSlot:
    """An optimiser and its schedules ``[(scheduler, "step" | "epoch")]``."""

    name: str
    optimizer: torch.optim.Optimizer
    schedulers: List[Tuple[Any, str]] = field(default_factory=list)

    def state_dict(self) -> Dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "schedulers": [s.state_dict() for s, _ in self.schedulers]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if len(state["schedulers"]) != len(self.schedulers):
            raise ValueError(f"{len(state['schedulers'])} schedules saved, this run has {len(self.schedulers)}")
        for (sched, _), s in zip(self.schedulers, state["schedulers"]):
            sched.load_state_dict(s)


def fused_on_cpu(name: str, params: List[torch.Tensor]) -> bool:
    """Whether optimiser ``name`` runs torch's fused kernel over ``params``: it has one on the CPU (Adam, AdamW, SGD)
    and every parameter is a floating-point CPU tensor (module docstring: the per-tensor path is not bitwise
    repeatable between processes)."""
    return name in FUSED_ON_CPU and bool(params) and all(
        p.device.type == "cpu" and p.dtype in _FUSED_DTYPES for p in params)


def make_optimizer(name: str, groups: List[Dict[str, Any]], lr: float, weight_decay: float, momentum: float,
                   nesterov: bool, betas: Tuple[float, float]) -> torch.optim.Optimizer:
    """``torch.optim`` optimiser ``name`` (adam, adamw, adamax, sgd) over ``groups``; fused on the CPU where torch
    has the kernel (:func:`fused_on_cpu`)."""
    params = [p for g in groups for p in g["params"]]
    fused = {"fused": True} if fused_on_cpu(name, params) else {}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                               **fused)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}[name]
    return cls(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **fused)


def _matches(pattern: str, name: str, p: nn.Parameter) -> bool:
    if pattern == "@no_decay":
        return p.dim() <= 1
    if pattern.startswith("@"):
        raise ConfigError(f"optim.groups: unknown parameter selector {pattern!r} (use a glob on parameter names, "
                          f"e.g. '*.bias', or @no_decay)")
    return fnmatch.fnmatchcase(name, pattern)


def parameter_groups(model: nn.Module, config: RunConfig, exclude: set, lr: float) -> List[Dict[str, Any]]:
    """The weights' parameter groups (see the module docstring); ``exclude`` holds ids of parameters to leave out."""
    o = config.optim
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in exclude]
    if not o.groups and config.delays is not None:
        from spikelib.layers.delay_schedule import split_delay_parameters

        split = split_delay_parameters(model)
        groups = [{"params": [p for p in split.weights if id(p) not in exclude], "weight_decay": o.weight_decay},
                  {"params": [p for p in split.no_decay if id(p) not in exclude], "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]
    groups: List[Dict[str, Any]] = []
    for spec in o.groups:
        group = {k: (tuple(v) if k == "betas" else v) for k, v in spec.items() if k != "params"}
        group["params"] = []
        groups.append(group)
    rest: List[nn.Parameter] = []
    for n, p in named:
        for spec, group in zip(o.groups, groups):
            if _matches(spec["params"], n, p):
                group["params"].append(p)
                break
        else:
            rest.append(p)
    for spec, group in zip(o.groups, groups):
        if not group["params"]:
            raise ConfigError(f"optim.groups: pattern {spec['params']!r} matches no trainable parameter (names look "
                              f"like {', '.join(n for n, _ in named[:3])})")
    return groups + ([{"params": rest}] if rest else [])


def build_optimizers(model: nn.Module, config: RunConfig, steps_per_epoch: int, epochs: int,
                     lr: Optional[float] = None, positions: bool = True) -> List[OptimizerSlot]:
    """The slots of a run (or of one stage: ``lr`` overrides the base rate, ``positions=False`` freezes the delay
    positions)."""
    o, s = config.optim, config.schedule
    lr = base_lr(o, s) if lr is None else lr
    pos: List[nn.Parameter] = []
    if config.delays is not None:
        from spikelib.layers.delay_schedule import delay_layers, split_delay_parameters

        if not delay_layers(model):
            raise ConfigError(f"delays: model {config.model.name or type(model).__name__!r} has no delay layers "
                              f"(DelayedLinear); remove the delays section")
        pos = split_delay_parameters(model).delays
    exclude = {id(p) for p in pos}
    if not positions:
        for p in pos:
            p.requires_grad_(False)
    groups = parameter_groups(model, config, exclude, lr)
    if not groups:
        raise ConfigError(f"model {config.model.name or type(model).__name__!r} has no trainable parameters")
    main = make_optimizer(o.name, groups, lr, o.weight_decay, o.momentum, o.nesterov, tuple(o.betas))
    slots = [OptimizerSlot("weights", main, [build_scheduler(main, s, lr, steps_per_epoch, epochs)])]
    if pos and positions:
        d = config.delays
        opt = torch.optim.Adam(pos, lr=d.lr, weight_decay=0.0, **({"fused": True} if fused_on_cpu("adam", pos) else {}))
        slots.append(OptimizerSlot("positions", opt,
                                   [positions_scheduler(opt, d.schedule, s.interval, steps_per_epoch, epochs)]))
    return slots
