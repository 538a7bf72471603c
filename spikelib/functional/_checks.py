"""Argument checks shared by the functional core: each error names the argument and what was expected."""

from __future__ import annotations

import math
import warnings
from typing import Sequence, Union

import torch

Number = Union[int, float]


class LayoutWarning(UserWarning):
    """An input whose layout looks mixed up (e.g. one step ``[B, N]`` given to a sequence module)."""


def warn_two_dim_sequence(x: torch.Tensor, module: str) -> None:
    """Warn that a 2-D input to a sequence module is read as ``[T, B]`` (time first, one neuron per sample): almost
    always one step ``[B, N]`` given where a sequence was expected."""
    if isinstance(x, torch.Tensor) and x.dim() == 2:
        warnings.warn(
            f"{module} got a 2-D input of shape {tuple(x.shape)}, read as [T={x.shape[0]}, B={x.shape[1]}] (time "
            f"first, one neuron per sample); for one time step of shape [B, N] use {module}Cell or x.unsqueeze(0), for "
            "a sequence pass [T, B, N]", LayoutWarning, stacklevel=3)


def check_sequence_input(x: object, name: str = "x", min_dim: int = 2) -> torch.Tensor:
    """Check a time-first floating tensor ``[T, B, ...]`` with ``T >= 1``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [T, B, ...], got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions [T, B, ...] (time first), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float16/bfloat16/float32/float64), got {x.dtype}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must have at least one time step, got shape {tuple(x.shape)}")
    return x


def _finite(v: float) -> bool:
    # comparisons, not math.isfinite: under torch.compile a float may be symbolic, which math.isfinite cannot take
    return v == v and v != math.inf and v != -math.inf


def check_scalar_or_neuronwise(
    value: object,
    name: str,
    feature_shape: Sequence[int],
    like: torch.Tensor,
    minimum: float | None = None,
    minimum_text: str = "",
    maximum: float | None = None,
    positive: bool = False,
) -> Union[float, torch.Tensor]:
    """Check a parameter that is a real number or a tensor broadcastable to ``feature_shape``.

    Tensor parameters must already have ``like``'s dtype and device (nothing is silently converted). Values must be
    finite and, when given, ``>= minimum`` (``minimum_text`` explains why), ``<= maximum`` and ``> 0`` (``positive``).
    Under ``torch.compile`` the value checks of tensors are assertions in the graph (a RuntimeError when it runs).
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number or a tensor, got bool")
    if isinstance(value, (int, float)):
        v = float(value)
        if not _finite(v):
            raise ValueError(f"{name} must be finite, got {v}")
        if minimum is not None and v < minimum:
            raise ValueError(f"{name} must be >= {minimum:g}{minimum_text}, got {v:g}")
        if maximum is not None and v > maximum:
            raise ValueError(f"{name} must be <= {maximum:g}, got {v:g}")
        if positive and not v > 0:
            raise ValueError(f"{name} must be > 0, got {v:g}")
        return v
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a real number or a torch.Tensor, got {type(value).__name__}")
    if value.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but the input has dtype {like.dtype}; convert it first")
    if value.device != like.device:
        raise ValueError(f"{name} is on {value.device} but the input is on {like.device}; move it first")
    feature_shape = tuple(feature_shape)
    try:
        ok = torch.broadcast_shapes(tuple(value.shape), feature_shape) == feature_shape
    except RuntimeError:
        ok = False
    if not ok:
        hint = (f" (the input, {tuple(like.shape)}, is read time first as [T, B, ...], so its neurons are "
                f"{feature_shape}: was one step [B, N] or [B, T, N] given?)" if len(feature_shape) == 0 else "")
        raise ValueError(
            f"{name} must be a scalar or per-neuron tensor broadcastable to the neuron shape {feature_shape}, "
            f"got shape {tuple(value.shape)}{hint}"
        )
    if torch.compiler.is_compiling():  # no data-dependent Python branch in a graph: checked as the graph runs
        with torch.no_grad():
            _graph_checks(value, name, minimum, minimum_text, maximum, positive)
        return value
    with torch.no_grad():
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or inf")
        if minimum is not None and bool((value < minimum).any()):
            raise ValueError(f"{name} must be >= {minimum:g}{minimum_text}, got min {float(value.min()):g}")
        if maximum is not None and bool((value > maximum).any()):
            raise ValueError(f"{name} must be <= {maximum:g}, got max {float(value.max()):g}")
        if positive and not bool((value > 0).all()):
            raise ValueError(f"{name} must be > 0, got min {float(value.min()):g}")
    return value


def _graph_checks(value: torch.Tensor, name: str, minimum: float | None, minimum_text: str, maximum: float | None,
                  positive: bool) -> None:
    """The value checks of :func:`check_scalar_or_neuronwise` as assertions inside a compiled graph (they raise a
    RuntimeError with the same message when the graph runs)."""
    torch._assert_async(torch.isfinite(value).all(), f"{name} contains NaN or inf")
    if minimum is not None:
        torch._assert_async((value >= minimum).all(), f"{name} must be >= {minimum:g}{minimum_text}")
    if maximum is not None:
        torch._assert_async((value <= maximum).all(), f"{name} must be <= {maximum:g}")
    if positive:
        torch._assert_async((value > 0).all(), f"{name} must be > 0")


def check_state(v: object, name: str, like: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Check a state tensor: a tensor of exactly ``shape`` with ``like``'s dtype and device."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if tuple(v.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (the input without its time axis), got {tuple(v.shape)}")
    if v.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {v.dtype} but the input has dtype {like.dtype}")
    if v.device != like.device:
        raise ValueError(f"{name} is on {v.device} but the input is on {like.device}")
    return v


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_bias(bias: object, size: int, like: torch.Tensor) -> None:
    """Check that ``bias`` is None or a ``[size]`` tensor of ``like``'s dtype and device (a layer's additive bias)."""
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (size,):
        raise ValueError(f"bias must be None or a tensor of shape ({size},), got "
                         f"{tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__}")
    if bias.dtype != like.dtype or bias.device != like.device:
        raise TypeError(f"bias must have x's dtype and device ({like.dtype}, {like.device}), got {bias.dtype}, "
                        f"{bias.device}")


def refuse_create_graph(what: str, fix: str = "use backend='torch' for this layer, whose backward is made of torch "
                                               "operations") -> None:
    """Raise ``RuntimeError`` when called from a backward that runs under ``create_graph=True``.

    ``torch.autograd.grad(..., create_graph=True)`` runs every backward with gradient recording on, so that the
    gradient itself can be differentiated (gradient penalties, Hessian-vector products, meta-learning). A backward
    computed by kernels (numba, CUDA) or under ``no_grad`` returns tensors with no history, and the second derivative
    through it would silently be that of a constant. Such backwards call this first; torch.compile's traced backward
    is not affected.

    Args:
        what: the operation and backend, e.g. ``"lif (numba)"``.
        fix: what the user can do instead (the error's last clause).
    """
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(
            f"{what}: its backward is computed by kernels and is not differentiable, so gradients taken with "
            f"create_graph=True (gradient penalties, Hessian-vector products, double backward) cannot pass through "
            f"it; {fix}"
        )
