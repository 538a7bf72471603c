"""Construction-time checks and binding of neuron parameters, shared by every neuron module.

A parameter is given as a real number (fixed, kept as a float), a tensor (fixed, kept as a buffer; per-neuron values
broadcast to the neuron shape), or an ``nn.Parameter`` (learnable: registered as given, so an optimiser that already
holds it trains it). ``learn=True`` turns a number or tensor into a new ``nn.Parameter``. A plain tensor that requires
grad is an error (it would be trained by nobody): wrap it in ``nn.Parameter`` or pass it detached.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Union

import torch
from torch import nn

__all__ = ["check_param", "bind_param", "check_flag", "check_backend", "project_", "Param"]

Param = Union[float, torch.Tensor]


def check_param(
    value: object,
    name: str,
    *,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    positive: bool = False,
    why: str = "",
) -> Param:
    """Check a neuron parameter (see the module docstring); returns a float or the tensor itself.

    Raises:
        TypeError: not a real number or floating tensor, or a tensor that requires grad without being an
            ``nn.Parameter``.
        ValueError: non-finite values or values outside ``[minimum, maximum]`` (``> 0`` when ``positive``).
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a real number, a tensor or an nn.Parameter, got {type(value).__name__} "
                        f"{value!r}")
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if value.requires_grad and not isinstance(value, nn.Parameter):
            raise TypeError(f"{name} requires grad but is not an nn.Parameter, so the module could not train it: wrap "
                            f"it in nn.Parameter to learn it, or pass {name}.detach() to keep it fixed")
        with torch.no_grad():
            if value.numel() == 0:
                raise ValueError(f"{name} is an empty tensor")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} contains NaN or inf")
            lo, hi = float(value.min()), float(value.max())
    else:
        lo = hi = float(value)
        if not math.isfinite(lo):
            raise ValueError(f"{name} must be a finite number, got {lo}")
    if minimum is not None and lo < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}{why}, got {lo:g}")
    if maximum is not None and hi > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}{why}, got {hi:g}")
    if positive and not lo > 0:
        raise ValueError(f"{name} must be > 0{why}, got {lo:g}")
    return value if isinstance(value, torch.Tensor) else float(value)


def bind_param(module: nn.Module, attr: str, value: Param, learn: bool = False) -> None:
    """Store a checked parameter on ``module`` as ``attr``: Parameter, new Parameter (``learn``), buffer or float."""
    check_flag(learn, f"learn ({attr})")
    if hasattr(module, attr) and attr not in module._parameters and attr not in module._buffers:
        delattr(module, attr)
    if isinstance(value, nn.Parameter):
        module.register_parameter(attr, value)
    elif learn:
        data = value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(
            float(value), dtype=torch.get_default_dtype())
        module.register_parameter(attr, nn.Parameter(data))
    elif isinstance(value, torch.Tensor):
        module.register_buffer(attr, value.detach().clone())
    else:
        setattr(module, attr, float(value))


def project_(param: torch.Tensor, lo: Optional[float] = None, hi: Optional[float] = None) -> None:
    """Clamp a learnable parameter in place onto ``[lo, hi]`` (a projection after an optimiser step; in eager mode
    only when some value is outside, so a graph that saved it stays valid; inside a compiled graph always)."""
    with torch.no_grad():
        if torch.compiler.is_compiling():
            param.clamp_(lo, hi)
        elif bool(((param < lo) if lo is not None else torch.zeros((), dtype=torch.bool)).any()
                  | ((param > hi) if hi is not None else torch.zeros((), dtype=torch.bool)).any()):
            param.clamp_(lo, hi)


def check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_backend(backend: object, op: str) -> str:
    """``"auto"`` or a backend registered for ``op`` (checked at construction, not at the first forward)."""
    from spikelib.kernels.registry import available_backends

    names = available_backends(op)
    if not isinstance(backend, str) or (backend != "auto" and backend not in names):
        raise ValueError(f"backend must be 'auto' or one of {names} for {op}, got {backend!r}")
    return backend


def describe(value: Param) -> str:
    """Short text of a parameter for ``extra_repr``."""
    if isinstance(value, torch.Tensor):
        kind = "Parameter" if isinstance(value, nn.Parameter) else "tensor"
        return f"{float(value.detach()):g} ({kind})" if value.numel() == 1 else f"{kind}{tuple(value.shape)}"
    return f"{value:g}"
