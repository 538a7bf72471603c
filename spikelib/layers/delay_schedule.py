"""Training helpers for learnable delays: the sigma schedule, clamping, rounded evaluation, the parameter split.

The recipe of SNN-delays (Thvnvtos/SNN-delays: ``snn_delays.py`` ``decrease_sig``, ``model.py`` ``optimizers``/
``schedulers``/``eval_model``, ``best_config_SHD.py``):

- ``SIG`` is not trained. It starts at ``sig_init = K // 2`` (``K = max_delay + 1`` taps) and after each epoch
  ``e < final_epoch`` (while ``SIG > 0.23``) it is multiplied by ``alpha = (0.23 / sig_init) ** (1 / final_epoch)``,
  so it reaches 0.23 after ``final_epoch = epochs // 4`` epochs and stays there. The Gaussian width is
  ``sigma = SIG + 0.27`` (DCLS).
- Weights (and BatchNorm parameters, without weight decay) use Adam with a one-cycle schedule (max lr 5x, beta1
  cycled 0.95 -> 0.85 -> 0.95); delay positions use their own Adam with 100x the weights' learning rate, no weight
  decay, and cosine annealing. Both schedules step once per epoch. Positions are clamped to ``[0, max_delay]`` after
  every optimiser step.
- Evaluation uses rounded integer delays (SIG = 0, positions rounded), restored afterwards for training.

The recipe itself runs in the training core: ``configs/shd_delays.yaml`` through :class:`spikelib.training.Trainer`
(its optimisers: :mod:`spikelib.training.optim`; sigma, clamping and rounded evaluation:
:class:`spikelib.training.delays.DelayCallback`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass, field
from typing import Iterator, List, Optional

from torch import nn

from spikelib.layers.delay import DCLS_SIGMA_OFFSET, DelayedLinear

__all__ = [
    "SigmaSchedule",
    "delay_layers",
    "set_sigma_",
    "clamp_delays_",
    "rounded_delays",
    "split_delay_parameters",
]

SIG_FINAL = 0.23


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_real(value: object, name: str, positive: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or (positive and float(value) <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return float(value)


class SigmaSchedule:
    """Gaussian width per epoch: ``sigma(e) = SIG(e) + 0.27`` with ``SIG`` decaying geometrically (module docstring).

    Args:
        max_delay: largest delay in steps (``K = max_delay + 1`` taps).
        epochs: total number of epochs (for the default ``final_epoch``).
        sig_init: starting ``SIG`` (default ``K // 2``).
        sig_final: ``SIG`` reached at ``final_epoch`` (default 0.23).
        final_epoch: number of decaying epochs (default ``epochs // 4``; 0 keeps ``sig_init``).
        offset: added to ``SIG`` (DCLS: 0.27).
    """

    def __init__(self, max_delay: int, epochs: int, sig_init: Optional[float] = None, sig_final: float = SIG_FINAL,
                 final_epoch: Optional[int] = None, offset: float = DCLS_SIGMA_OFFSET) -> None:
        max_delay = _check_int(max_delay, "max_delay", 1)
        self.epochs = _check_int(epochs, "epochs", 1)
        self.sig_init = _check_real((max_delay + 1) // 2 if sig_init is None else sig_init, "sig_init")
        self.sig_final = _check_real(sig_final, "sig_final")
        self.final_epoch = _check_int(self.epochs // 4 if final_epoch is None else final_epoch, "final_epoch", 0)
        self.offset = _check_real(offset, "offset", positive=False)
        self.alpha = (self.sig_final / self.sig_init) ** (1.0 / self.final_epoch) if self.final_epoch else 1.0

    def sig(self, epoch: int) -> float:
        """``SIG`` in force during ``epoch`` (0-based), as the reference's in-place updates leave it."""
        epoch = _check_int(epoch, "epoch", 0)
        sig = self.sig_init
        for e in range(min(epoch, self.final_epoch)):
            if sig > self.sig_final:
                sig *= self.alpha
        return sig

    def __call__(self, epoch: int) -> float:
        """Gaussian width ``sigma`` (steps) for ``epoch`` (0-based)."""
        return abs(self.sig(epoch)) + self.offset


def delay_layers(model: nn.Module) -> List[DelayedLinear]:
    """Every :class:`DelayedLinear` in ``model``."""
    return [m for m in model.modules() if isinstance(m, DelayedLinear)]


def set_sigma_(model: nn.Module, sigma: float) -> None:
    """Set the Gaussian width of every delay layer of ``model``."""
    for layer in delay_layers(model):
        layer.set_sigma(sigma)


def clamp_delays_(model: nn.Module) -> None:
    """Clamp the learnable delay positions of every delay layer to ``[0, max_delay]`` in place."""
    for layer in delay_layers(model):
        if layer.delays == "learn":
            layer.clamp_delays_()


@contextlib.contextmanager
def rounded_delays(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every delay layer of ``model`` runs with integer delays; previous modes are restored."""
    layers = delay_layers(model)
    modes = [layer.mode for layer in layers]
    try:
        for layer in layers:
            layer.round_delays()
        yield model
    finally:
        for layer, mode in zip(layers, modes):
            layer.set_mode(mode)


@dataclass
class _Groups:
    weights: List[nn.Parameter] = field(default_factory=list)
    no_decay: List[nn.Parameter] = field(default_factory=list)
    delays: List[nn.Parameter] = field(default_factory=list)


def split_delay_parameters(model: nn.Module) -> _Groups:
    """Split trainable parameters into synaptic weights, parameters without weight decay (biases, normalisation,
    neuron parameters) and learnable delay positions."""
    groups = _Groups()
    delay_ids = {id(layer.delay) for layer in delay_layers(model) if layer.delays == "learn"}
    weight_ids = {id(layer.weight) for layer in delay_layers(model)}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in delay_ids:
            groups.delays.append(p)
        elif id(p) in weight_ids:
            groups.weights.append(p)
        else:
            groups.no_decay.append(p)
    return groups
