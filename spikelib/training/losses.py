"""Losses of the training core: per-sample values of a model output, and the class scores that metrics read.

A :class:`Loss` maps the model output and integer targets ``y [B]`` to per-sample losses ``[B]`` (the trainer takes
their mean, or mixes two targets per sample for CutMix) and gives ``scores(output) -> [B, classes]`` for accuracy.
Outputs are either logits ``[B, C]`` or time-resolved ``o [T, B, C]`` (spikes or membrane per step):

* ``cross_entropy``: ``CE(r(o), y)`` with ``r`` = ``time_reduce``: ``none`` (the output is already ``[B, C]``),
  ``sum`` (spike counts), ``mean`` (mean membrane / rate), ``last`` (last step), ``max`` (max over time).
* ``sum_softmax``: ``CE(sum_t softmax(o_t), y)``, SNN-delays' ``loss='sum'`` (Thvnvtos/SNN-delays ``model.py``
  ``calc_loss``); the scores are ``sum_t softmax(o_t)``.
* ``tet``: temporal efficient training (Deng et al., ICLR 2022; brain-intelligence-lab/temporal_efficient_training,
  ``functions.py`` ``TET_loss``): ``(1 - lam) mean_t CE(o_t, y) + lam MSE(o, phi)`` with ``lam = 1e-3`` and
  ``phi = 1`` by default, the MSE over all elements of ``o``; scores ``mean_t o_t``.
* ``ce_rate``: ``mean_t CE(o_t, y)`` (snnTorch's ``ce_rate_loss``; ``tet`` with ``lam = 0``).
* ``rate_mse``: ``mean_c (sum_t o_t - T r_c)^2 / T`` with target rate ``r_c = correct_rate`` for the label's class
  and ``incorrect_rate`` for the others (snnTorch's ``mse_count_loss``, which also rounds the target counts ``T r_c``
  down to integers); scores are the spike counts.

Cross-entropy losses take ``label_smoothing`` (``train.label_smoothing``). A plain callable ``fn(output, y)`` can be
passed to the trainer instead (:func:`as_loss`): it may return per-sample values or a scalar mean (then no batch
mixing); its scores are the output itself, or the output's mean over time for ``[T, B, C]``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, List, Optional, Type

import torch
from torch import nn
from torch.nn import functional as F

from spikelib.training.errors import ConfigError

__all__ = ["Loss", "CrossEntropy", "SumSoftmaxCrossEntropy", "TETLoss", "RateCrossEntropy", "RateMSE", "as_loss",
           "build_loss", "list_losses", "loss_class", "register_loss"]


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Half-precision outputs (autocast) are promoted to float32 for the loss; float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_time_resolved(output: torch.Tensor, name: str) -> None:
    if not isinstance(output, torch.Tensor) or output.dim() != 3:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"loss {name!r} needs a time-resolved output [T, B, classes], got {shape}; use a model "
                         f"output per step, or loss cross_entropy for logits [B, classes]")


def _check_logits(output: torch.Tensor, name: str) -> None:
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"loss {name!r} expects logits [B, classes], got {shape} (for an output [T, B, classes] "
                         f"set loss.time_reduce or use sum_softmax / tet / ce_rate / rate_mse)")


class Loss(nn.Module):
    """Base class: ``forward(output, y) -> per-sample loss [B]``; ``scores(output) -> [B, classes]``."""

    name = "loss"

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, classes]`` for metrics (argmax = the predicted class)."""
        return output


def _real(value: Any, name: str, lo: float = 0.0, hi: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (lo <= float(value)) or (
            hi is not None and float(value) > hi):
        bound = f"in [{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


class CrossEntropy(Loss):
    """``CE(r(o), y)`` with ``r`` the reduction over time (module docstring)."""

    name = "cross_entropy"
    _REDUCE = ("none", "sum", "mean", "last", "max")

    def __init__(self, time_reduce: str = "none", label_smoothing: float = 0.0) -> None:
        super().__init__()
        if time_reduce not in self._REDUCE:
            raise ValueError(f"time_reduce must be one of {list(self._REDUCE)}, got {time_reduce!r}")
        self.time_reduce = time_reduce
        self.label_smoothing = _real(label_smoothing, "label_smoothing", 0.0, 1.0)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        if self.time_reduce == "none":
            _check_logits(output, self.name)
            return output
        _check_time_resolved(output, f"{self.name} (time_reduce={self.time_reduce})")
        if self.time_reduce == "sum":
            return output.sum(0)
        if self.time_reduce == "mean":
            return output.mean(0)
        if self.time_reduce == "last":
            return output[-1]
        return output.max(0).values

    def forward(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(_wide(self.scores(output)), y, reduction="none",
                               label_smoothing=self.label_smoothing)


class SumSoftmaxCrossEntropy(Loss):
    """``CE(sum_t softmax(o_t), y)`` (SNN-delays' ``loss='sum'``)."""

    name = "sum_softmax"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = _real(label_smoothing, "label_smoothing", 0.0, 1.0)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        _check_time_resolved(output, self.name)
        return torch.softmax(_wide(output), dim=2).sum(0)

    def forward(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.scores(output), y, reduction="none", label_smoothing=self.label_smoothing)


class TETLoss(Loss):
    """Temporal efficient training: ``(1 - lam) mean_t CE(o_t, y) + lam MSE(o, phi)`` (module docstring)."""

    name = "tet"

    def __init__(self, lam: float = 1e-3, phi: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.lam = _real(lam, "lam", 0.0, 1.0)
        if isinstance(phi, bool) or not isinstance(phi, numbers.Real):
            raise ValueError(f"phi must be a number, got {phi!r}")
        self.phi = float(phi)
        self.label_smoothing = _real(label_smoothing, "label_smoothing", 0.0, 1.0)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        _check_time_resolved(output, self.name)
        return output.mean(0)

    def forward(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_time_resolved(output, self.name)
        o = _wide(output)
        T, B = o.shape[:2]
        ce = F.cross_entropy(o.reshape(T * B, -1), y.repeat(T), reduction="none",
                             label_smoothing=self.label_smoothing).reshape(T, B).mean(0)
        if self.lam == 0.0:
            return ce
        mse = (o - self.phi).pow(2).transpose(0, 1).reshape(B, -1).mean(1)
        return (1.0 - self.lam) * ce + self.lam * mse


class RateCrossEntropy(TETLoss):
    """``mean_t CE(o_t, y)`` (snnTorch ``ce_rate_loss``)."""

    name = "ce_rate"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__(lam=0.0, label_smoothing=label_smoothing)


class RateMSE(Loss):
    """``mean_c (sum_t o_t - T r_c)^2 / T`` with ``r_c`` the target rate of class ``c`` (snnTorch ``mse_count_loss``)."""

    name = "rate_mse"

    def __init__(self, correct_rate: float = 1.0, incorrect_rate: float = 0.0) -> None:
        super().__init__()
        self.correct_rate = _real(correct_rate, "correct_rate", 0.0, 1.0)
        self.incorrect_rate = _real(incorrect_rate, "incorrect_rate", 0.0, 1.0)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        _check_time_resolved(output, self.name)
        return output.sum(0)

    def forward(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        counts = _wide(self.scores(output))
        T = output.shape[0]
        target = torch.full_like(counts, self.incorrect_rate * T)
        target.scatter_(1, y[:, None], self.correct_rate * T)
        return (counts - target).pow(2).mean(1) / T


_LOSSES: Dict[str, Type[Loss]] = {}


def register_loss(name: str, cls: Type[Loss]) -> Type[Loss]:
    """Register a :class:`Loss` subclass under ``name`` (for ``loss.name`` in run configurations)."""
    if name in _LOSSES and _LOSSES[name] is not cls:
        raise ValueError(f"loss name {name!r} is already registered")
    _LOSSES[name] = cls
    return cls


for _cls in (CrossEntropy, SumSoftmaxCrossEntropy, TETLoss, RateCrossEntropy, RateMSE):
    register_loss(_cls.name, _cls)


def list_losses() -> List[str]:
    """The registered loss names, sorted."""
    return sorted(_LOSSES)


def loss_class(name: Any) -> Optional[Type[Loss]]:
    """The loss class registered as ``name`` (``None`` if there is none)."""
    return _LOSSES.get(name) if isinstance(name, str) else None


def build_loss(name: str, args: Dict[str, Any], label_smoothing: float = 0.0) -> Loss:
    """The loss of a ``loss`` section (``train.label_smoothing`` goes to the cross-entropy losses)."""
    from spikelib.training.typecheck import check_arguments
    from spikelib.training.typecheck import parameters

    cls = loss_class(name)
    if cls is None:
        raise ConfigError(f"loss.name: unknown loss {name!r}; known: {', '.join(list_losses())}")
    params = parameters(cls)
    check_arguments(params, args, "loss", skip=("label_smoothing",))
    kwargs = dict(args)
    if "label_smoothing" in params:
        kwargs["label_smoothing"] = label_smoothing
    elif label_smoothing:
        raise ConfigError(f"train.label_smoothing: loss {name!r} has no label smoothing; set it to 0")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss: {name!r} rejected its options: {exc}") from exc


class _CallableLoss(Loss):
    name = "custom"

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        return output.mean(0) if isinstance(output, torch.Tensor) and output.dim() == 3 else output

    def forward(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(output, y)


def as_loss(loss: Any) -> Loss:
    """A :class:`Loss` as it is, or a plain callable ``fn(output, y)`` wrapped as one."""
    if isinstance(loss, Loss):
        return loss
    if callable(loss):
        return _CallableLoss(loss)
    raise TypeError(f"loss must be a spikelib.training.losses.Loss or a callable fn(output, y), got "
                    f"{type(loss).__name__}")
