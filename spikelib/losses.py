"""Spike-train losses and firing-rate regularisers, usable with or without spikelib's trainer.

Outputs are time first, ``o [T, B, C]`` (spikes or membranes of the output layer per step); targets are class indices
``y [B]`` (or, for the MSE losses, target rates ``[B, C]`` in ``[0, 1]``). Every loss computes one value per sample and
then reduces over the batch (``reduction="mean"`` default, ``"sum"``, or ``"none"`` for ``[B]``). With ``n = sum_t o_t``
(spike counts) and ``r_c`` the target rate of class ``c`` (``correct_rate`` for the label's class, ``incorrect_rate``
for the others):

- :func:`rate_cross_entropy`: ``mean_t CE(o_t, y)`` (snnTorch ``ce_rate_loss``; spikingjelly's
  ``temporal_efficient_training_cross_entropy``).
- :func:`count_cross_entropy`: ``CE(n, y)`` (snnTorch ``ce_count_loss``).
- :func:`tet_loss`: temporal efficient training (Deng et al., "Temporal Efficient Training of Spiking Neural Network
  via Gradient Re-weighting", ICLR 2022; brain-intelligence-lab/temporal_efficient_training ``functions.py``
  ``TET_loss``): ``L = (1 - lam) mean_t CE(o_t, y) + lam mean_t MSE(o_t, phi)``, ``lam = 1e-3``, ``phi = 1``. The
  paper's total loss and the authors' code weight the cross-entropy by ``1 - lam`` (a factor 0.999 at the default), and
  their MSE is over every element of ``o`` (the mean over ``t`` of the per-step MSE).
- :func:`count_mse`: ``mean_c (n_c - T r_c)^2`` (snnTorch's ``mse_count_loss`` equals this divided by ``T``, with the
  targets ``T r_c`` truncated to integers).
- :func:`rate_mse`: ``mean_c (n_c / T - r_c)^2`` (``count_mse / T^2``).

Regularisers of hidden spikes ``s [T, B, ...]`` (add them to a loss; record hidden layers with
:class:`spikelib.monitor.Monitor` ``(detach=False)``):

- :func:`rate_l1`: the mean firing rate ``mean(s)`` (``reduction="sum"``: the spike count, snnTorch's
  ``l1_rate_sparsity`` without its factor).
- :func:`rate_bounds`: with ``f_i = mean_{t, b} s[t, b, i]`` the firing rate of neuron ``i``,
  ``mean_i relu(lower - f_i)^2 + mean_i relu(f_i - upper)^2`` (silent neurons are pushed up, overactive ones down; a
  simplified form of the per-neuron lower and population upper bounds of Zenke & Vogels, Neural Computation 2021).

Half-precision outputs are promoted to float32. A batch-first output ``[B, T, C]`` is detected where the label count
gives it away and is an error naming the fix (``o.transpose(0, 1)``).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["rate_cross_entropy", "count_cross_entropy", "tet_loss", "count_mse", "rate_mse", "rate_l1",
           "rate_bounds", "RateCrossEntropyLoss", "CountCrossEntropyLoss", "TETLoss", "CountMSELoss", "RateMSELoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _check_reduction(reduction: object) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")
    return reduction  # type: ignore[return-value]


def _number(value: object, name: str, lo: Optional[float] = None, hi: Optional[float] = None) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if ok and lo is not None and float(value) < lo:
        ok = False
    if ok and hi is not None and float(value) > hi:
        ok = False
    if not ok:
        bound = f" in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else (f" >= {lo:g}" if lo is not None
                                                                                    else "")
        raise ValueError(f"{name} must be a number{bound}, got {value!r}")
    return float(value)


def _check_outputs(outputs: object, target: object, fn: str, rates_allowed: bool = False) -> torch.Tensor:
    """Check ``outputs [T, B, C]`` and ``target`` (``[B]`` class indices, or ``[B, C]`` rates when allowed)."""
    if not isinstance(outputs, torch.Tensor) or not outputs.is_floating_point():
        what = outputs.dtype if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise TypeError(f"{fn}: outputs must be a floating-point tensor [T, B, C], got {what}")
    if outputs.dim() != 3:
        hint = (" (per-sample logits [B, C]: use torch.nn.functional.cross_entropy)" if outputs.dim() == 2 else "")
        raise ValueError(f"{fn}: outputs must be time first [T, B, C], got shape {tuple(outputs.shape)}{hint}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{fn}: target must be a tensor of class indices [B], got {type(target).__name__}")
    T, B, C = outputs.shape
    rates = rates_allowed and target.is_floating_point()
    if rates:
        if target.shape != (B, C):
            raise ValueError(f"{fn}: target rates must have shape [B, C] = {[B, C]}, got {list(target.shape)}")
        return target
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        allowed = "class indices [B] (integers) or rates [B, C] (float)" if rates_allowed else "class indices [B]"
        raise TypeError(f"{fn}: target must be {allowed}, got dtype {target.dtype}")
    if target.dim() != 1 or target.shape[0] != B:
        if target.dim() == 1 and target.shape[0] == T:
            raise ValueError(f"{fn}: outputs {list(outputs.shape)} look batch first ([B, T, C]) for {T} labels: "
                             f"spikelib losses take time-first outputs [T, B, C]; pass outputs.transpose(0, 1)")
        raise ValueError(f"{fn}: target must hold one class index per sample ([B] = [{B}]), got shape "
                         f"{list(target.shape)}")
    return target.long()


def _per_step_ce(o: torch.Tensor, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``CE(o_t, y)`` per sample, averaged over ``t``: ``[B]``."""
    T, B, C = o.shape
    ce = F.cross_entropy(o.reshape(T * B, C), y.repeat(T), reduction="none", label_smoothing=label_smoothing)
    return ce.reshape(T, B).mean(0)


def rate_cross_entropy(outputs: torch.Tensor, target: torch.Tensor, *, label_smoothing: float = 0.0,
                       reduction: str = "mean") -> torch.Tensor:
    """``mean_t CE(o_t, y)``: cross-entropy at every step, averaged over time.

    Args:
        outputs: ``[T, B, C]`` output spikes or membranes per step.
        target: class indices ``[B]``.
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"`` (``[B]``).
    """
    reduction = _check_reduction(reduction)
    y = _check_outputs(outputs, target, "rate_cross_entropy")
    ls = _number(label_smoothing, "label_smoothing", 0.0, 1.0)
    return _reduce(_per_step_ce(_wide(outputs), y, ls), reduction)


def count_cross_entropy(outputs: torch.Tensor, target: torch.Tensor, *, label_smoothing: float = 0.0,
                        reduction: str = "mean") -> torch.Tensor:
    """``CE(sum_t o_t, y)``: cross-entropy of the spike counts.

    Args:
        outputs: ``[T, B, C]`` output spikes per step.
        target: class indices ``[B]``.
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"`` (``[B]``).
    """
    reduction = _check_reduction(reduction)
    y = _check_outputs(outputs, target, "count_cross_entropy")
    ls = _number(label_smoothing, "label_smoothing", 0.0, 1.0)
    return F.cross_entropy(_wide(outputs).sum(0), y, reduction=reduction, label_smoothing=ls)


def tet_loss(outputs: torch.Tensor, target: torch.Tensor, *, lam: float = 1e-3, phi: float = 1.0,
             label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """Temporal efficient training loss ``(1 - lam) mean_t CE(o_t, y) + lam mean_t MSE(o_t, phi)`` (Deng et al. 2022).

    Args:
        outputs: ``[T, B, C]`` output membranes (or spikes) per step.
        target: class indices ``[B]``.
        lam: weight of the MSE term (the paper's lambda), in ``[0, 1]``.
        phi: the constant the outputs are pulled towards (the paper's phi; ``means`` in the authors' code).
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"`` (``[B]``).
    """
    reduction = _check_reduction(reduction)
    y = _check_outputs(outputs, target, "tet_loss")
    lam = _number(lam, "lam", 0.0, 1.0)
    phi = _number(phi, "phi")
    ls = _number(label_smoothing, "label_smoothing", 0.0, 1.0)
    o = _wide(outputs)
    per_sample = _per_step_ce(o, y, ls)
    if lam:
        mse = (o - phi).pow(2).mean(dim=(0, 2))
        per_sample = (1.0 - lam) * per_sample + lam * mse
    return _reduce(per_sample, reduction)


def _target_rates(counts: torch.Tensor, target: torch.Tensor, correct_rate: float,
                  incorrect_rate: float) -> torch.Tensor:
    if target.is_floating_point():
        lo, hi = (float(target.min()), float(target.max())) if target.numel() else (0.0, 0.0)
        if not (0.0 <= lo and hi <= 1.0):
            raise ValueError(f"target rates must lie in [0, 1] (spikes per step), got values in [{lo:g}, {hi:g}]")
        return target.to(counts.dtype)
    rates = torch.full_like(counts, incorrect_rate)
    return rates.scatter(1, target[:, None], correct_rate)


def count_mse(outputs: torch.Tensor, target: torch.Tensor, *, correct_rate: float = 1.0, incorrect_rate: float = 0.0,
              reduction: str = "mean") -> torch.Tensor:
    """``mean_c (n_c - T r_c)^2``: squared error of the spike counts ``n = sum_t o_t`` against target counts.

    Args:
        outputs: ``[T, B, C]`` output spikes per step.
        target: class indices ``[B]`` (target rate ``correct_rate`` for the label, ``incorrect_rate`` for the other
            classes) or target rates ``[B, C]`` in ``[0, 1]``.
        correct_rate: target spikes per step of the label's class.
        incorrect_rate: target spikes per step of the other classes.
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"`` (``[B]``).
    """
    reduction = _check_reduction(reduction)
    y = _check_outputs(outputs, target, "count_mse", rates_allowed=True)
    cr = _number(correct_rate, "correct_rate", 0.0, 1.0)
    ir = _number(incorrect_rate, "incorrect_rate", 0.0, 1.0)
    o = _wide(outputs)
    counts = o.sum(0)
    goal = o.shape[0] * _target_rates(counts, y, cr, ir)
    return _reduce((counts - goal).pow(2).mean(1), reduction)


def rate_mse(outputs: torch.Tensor, target: torch.Tensor, *, correct_rate: float = 1.0, incorrect_rate: float = 0.0,
             reduction: str = "mean") -> torch.Tensor:
    """``mean_c (n_c / T - r_c)^2``: squared error of the firing rates against target rates.

    Args:
        outputs: ``[T, B, C]`` output spikes per step.
        target: class indices ``[B]`` or target rates ``[B, C]`` in ``[0, 1]`` (as :func:`count_mse`).
        correct_rate: target spikes per step of the label's class.
        incorrect_rate: target spikes per step of the other classes.
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"`` (``[B]``).
    """
    reduction = _check_reduction(reduction)
    y = _check_outputs(outputs, target, "rate_mse", rates_allowed=True)
    cr = _number(correct_rate, "correct_rate", 0.0, 1.0)
    ir = _number(incorrect_rate, "incorrect_rate", 0.0, 1.0)
    rates = _wide(outputs).mean(0)
    return _reduce((rates - _target_rates(rates, y, cr, ir)).pow(2).mean(1), reduction)


def _check_spikes(spikes: object, fn: str) -> torch.Tensor:
    if not isinstance(spikes, torch.Tensor) or not spikes.is_floating_point():
        what = spikes.dtype if isinstance(spikes, torch.Tensor) else type(spikes).__name__
        raise TypeError(f"{fn}: spikes must be a floating-point tensor [T, B, ...], got {what}")
    if spikes.dim() < 2:
        raise ValueError(f"{fn}: spikes must be time first [T, B, ...], got shape {tuple(spikes.shape)}")
    return _wide(spikes)


def rate_l1(spikes: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """The mean firing rate of ``spikes [T, B, ...]`` (``reduction="sum"``: the total spike count).

    Args:
        spikes: spikes of one or more layers, time first.
        reduction: ``"mean"`` (spikes per neuron and step) or ``"sum"`` (spike count).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    s = _check_spikes(spikes, "rate_l1")
    return s.mean() if reduction == "mean" else s.sum()


def rate_bounds(spikes: torch.Tensor, *, lower: Optional[float] = None, upper: Optional[float] = None) -> torch.Tensor:
    """``mean_i relu(lower - f_i)^2 + mean_i relu(f_i - upper)^2`` with ``f_i`` the firing rate of neuron ``i``.

    Args:
        spikes: ``[T, B, ...]`` spikes of one layer (every index after ``B`` is a neuron).
        lower: the rate (spikes per step) below which a neuron is penalised; ``None`` for no lower bound.
        upper: the rate above which a neuron is penalised; ``None`` for no upper bound.
    """
    s = _check_spikes(spikes, "rate_bounds")
    if lower is None and upper is None:
        raise ValueError("rate_bounds needs lower, upper or both (firing rates in spikes per step)")
    lo = None if lower is None else _number(lower, "lower", 0.0, 1.0)
    hi = None if upper is None else _number(upper, "upper", 0.0, 1.0)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"lower ({lo:g}) must not exceed upper ({hi:g})")
    f = s.mean(dim=(0, 1))
    penalty = s.new_zeros(())
    if lo is not None:
        penalty = penalty + F.relu(lo - f).pow(2).mean()
    if hi is not None:
        penalty = penalty + F.relu(f - hi).pow(2).mean()
    return penalty


class _Loss(nn.Module):
    """A loss function bound to its options, usable as ``criterion(outputs, target)``."""

    _fn = staticmethod(rate_cross_entropy)

    def __init__(self, **options: object) -> None:
        super().__init__()
        self.options = options
        # Check the options once here (not only at the first call): a tiny valid input runs through the function.
        self._fn(torch.zeros(1, 1, 2), torch.zeros(1, dtype=torch.int64), **options)

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._fn(outputs, target, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class RateCrossEntropyLoss(_Loss):
    """Module form of :func:`rate_cross_entropy`."""

    _fn = staticmethod(rate_cross_entropy)

    def __init__(self, *, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(label_smoothing=label_smoothing, reduction=reduction)


class CountCrossEntropyLoss(_Loss):
    """Module form of :func:`count_cross_entropy`."""

    _fn = staticmethod(count_cross_entropy)

    def __init__(self, *, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(label_smoothing=label_smoothing, reduction=reduction)


class TETLoss(_Loss):
    """Module form of :func:`tet_loss`."""

    _fn = staticmethod(tet_loss)

    def __init__(self, *, lam: float = 1e-3, phi: float = 1.0, label_smoothing: float = 0.0,
                 reduction: str = "mean") -> None:
        super().__init__(lam=lam, phi=phi, label_smoothing=label_smoothing, reduction=reduction)


class CountMSELoss(_Loss):
    """Module form of :func:`count_mse`."""

    _fn = staticmethod(count_mse)

    def __init__(self, *, correct_rate: float = 1.0, incorrect_rate: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(correct_rate=correct_rate, incorrect_rate=incorrect_rate, reduction=reduction)


class RateMSELoss(_Loss):
    """Module form of :func:`rate_mse`."""

    _fn = staticmethod(rate_mse)

    def __init__(self, *, correct_rate: float = 1.0, incorrect_rate: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(correct_rate=correct_rate, incorrect_rate=incorrect_rate, reduction=reduction)
