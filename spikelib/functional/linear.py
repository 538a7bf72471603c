"""Dense synapses over the last dimension: ``y = x W^T + b`` (``nn.Linear``'s map), dispatched to a backend.

For ``x: [..., C_in]`` (e.g. time first ``[T, B, C_in]``, or ``[T B, C_in]``), ``W: [C_out, C_in]``, ``b: [C_out]``::

    y[..., j] = b[j] + sum_i W[j, i] x[..., i]
    dL/dx = dL/dy W,    dL/dW = sum over rows of dL/dy^T x,    dL/db = sum over rows of dL/dy

Backends (operation ``"linear"`` of the registry): ``"torch"`` is ``torch.nn.functional.linear`` (the reference);
``"numba"`` (CPU, float32/float64) is event-driven on sparse inputs such as spikes: it lists the nonzero inputs of
every row once (``nnz`` of them) and computes the output as ``nnz C_out`` multiply-adds instead of the dense
``rows C_in C_out``, and the weight gradient from the same list (``nnz C_out`` again); the input gradient is dense
whatever the input (``dL/dy`` is). Which path runs is chosen per call by the measured share of nonzero inputs
(:data:`spikelib.kernels.cpu.linear_numba.EVENT_DENSITY_MAX`); both give the reference's result up to float summation
order. ``backend="auto"`` picks the numba backend for CPU float32/float64 tensors when numba is installed.
Inside ``torch.autocast`` every call is ``torch.nn.functional.linear``, so mixed precision applies as it does to
``nn.Linear`` (the event-driven kernels compute in the input's own dtype only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from spikelib.functional._checks import check_bias
from spikelib.kernels.registry import select_backend

__all__ = ["LinearRequest", "linear", "check_linear_args"]


@dataclass(frozen=True)
class LinearRequest:
    """What a ``linear`` backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    requires_grad: bool


def check_linear_args(x: object, weight: object, bias: object) -> None:
    """Check ``x: [..., C_in]``, ``weight: [C_out, C_in]`` and ``bias: [C_out]`` or None (same dtype and device)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [..., in_features], got {type(x).__name__}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a 2-d tensor [out_features, in_features], got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x must have {weight.shape[1]} features in its last dimension, got shape {tuple(x.shape)}")
    if weight.dtype != x.dtype:
        raise TypeError(f"weight has dtype {weight.dtype} but x has dtype {x.dtype}")
    if weight.device != x.device:
        raise ValueError(f"weight is on {weight.device} but x is on {x.device}")
    check_bias(bias, weight.shape[0], x)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           backend: str = "auto") -> torch.Tensor:
    """``x W^T + b`` over the last dimension of ``x`` (see the module docstring).

    Args:
        x: input ``[..., C_in]`` (floating point).
        weight: ``[C_out, C_in]``.
        bias: ``[C_out]`` or None.
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("linear")``).

    Returns:
        ``[..., C_out]``.
    """
    if isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type):
        return torch.nn.functional.linear(x, weight, bias)  # autocast's dtype rules, as for nn.Linear
    check_linear_args(x, weight, bias)
    requires_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, weight, bias)
    )
    impl = select_backend("linear", backend, LinearRequest(x.device, x.dtype, requires_grad)).impl
    return impl(x, weight, bias)
