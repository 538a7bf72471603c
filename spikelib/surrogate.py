"""Surrogate gradients for the Heaviside spike function.

A spike is ``s = Theta(x)`` with ``x = h - v_threshold`` and ``Theta(x) = 1 if x >= 0 else 0`` (ties spike, as in
spikingjelly). The forward pass is always the exact step; the backward pass replaces ``dTheta/dx`` by the derivative
``g(x)`` of a smooth *primitive* ``p(x)``:

====================  ==========================================  ===================================================
name                  primitive p(x)                              surrogate gradient g(x) = p'(x)
====================  ==========================================  ===================================================
``atan``              arctan(pi/2 a x) / pi + 1/2                 a / 2 / (1 + (pi/2 a x)^2)
``sigmoid``           sigmoid(a x)                                a sigmoid(a x) (1 - sigmoid(a x))
``fast_sigmoid``      x / (1 + a |x|)                             1 / (1 + a |x|)^2   (SuperSpike, Zenke & Ganguli 2018)
``triangle``          piecewise quadratic, 0 below -1/a, 1 above  a max(0, 1 - a |x|)   (Bellec et al. 2018)
``rectangular``       clamp(a x + 1/2, 0, 1)                      a [|x| < 1/(2a)]
``piecewise_linear``  a (the ``triangle`` primitive with a = 1)   a max(0, 1 - |x|)   (Bellec et al. 2018, damped)
====================  ==========================================  ===================================================

``a`` is ``alpha``. ``atan`` and ``sigmoid`` follow spikingjelly's ``surrogate.ATan`` / ``surrogate.Sigmoid``
(spikingjelly/activation_based/surrogate.py); ``fast_sigmoid`` is snnTorch's ``surrogate.fast_sigmoid(slope=a)`` and
norse's SuperSpike (norse/torch/functional/superspike.py). ``piecewise_linear`` is the pseudo-derivative of Bellec et
al. (2018) with its dampening factor ``a`` (default 0.3), as IIR-SNN's ``LinearSpike`` (SayeedChowdhury/IIR-SNN,
vgg_spiking_bnfused_biasyes.py: ``gamma * F.threshold(1 - |x|, 0, 0)``, ``gamma = 0.3``), where it is applied to
``x = u / V - 1`` (``fire="ratio"`` in :mod:`spikelib.functional.lif`).

``spike(x, strict=True)`` fires on ``x > 0`` instead of ``x >= 0`` (IIR-SNN's ``out[input > 0] = 1``); the gradient is
the same.

Every surrogate is a small picklable class registered by name, so ``"atan"`` and ``ATan(alpha=2.0)`` are
interchangeable wherever spikelib takes a surrogate. Each one also emits the source of its gradient for the generated
CPU kernels (:meth:`Surrogate.kernel_source`), so a surrogate is written once for every backend.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar, Dict, Type, Union

import torch

__all__ = [
    "Surrogate",
    "ATan",
    "Sigmoid",
    "FastSigmoid",
    "Triangle",
    "Rectangular",
    "PiecewiseLinear",
    "SURROGATES",
    "get_surrogate",
    "register_surrogate",
    "spike",
    "SlowPathWarning",
    "warn_torch_loop",
]


class Surrogate:
    """Base class of a surrogate gradient ``g(x) = p'(x)`` with one shape parameter ``alpha``.

    Subclasses define :meth:`primitive` (torch, differentiable), :meth:`grad` (torch) and :meth:`kernel_source`
    (statements for the generated kernels). ``name`` is the registry key.
    """

    name: ClassVar[str] = ""
    default_alpha: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[class_key(cls)] = cls

    def __init__(self, alpha: float | None = None) -> None:
        alpha = self.default_alpha if alpha is None else alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"surrogate alpha must be a real number, got {type(alpha).__name__}")
        alpha = float(alpha)
        if not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"surrogate alpha must be finite and > 0, got {alpha}")
        self.alpha = alpha

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """The smooth function whose derivative is the surrogate gradient."""
        raise NotImplementedError

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate gradient ``g(x)`` evaluated elementwise."""
        raise NotImplementedError

    def kernel_source(self, x: str, out: str, alpha: str, F: str) -> str:
        """Statements computing ``out = g(x)`` for a generated kernel.

        Args:
            x: name of the input variable.
            out: name of the variable to assign.
            alpha: name of the variable holding alpha (already of the kernel's float type).
            F: the float constructor of the kernel's dtype (``np.float32``); every literal must be wrapped in it so
                that float32 kernels stay in float32.

        The statements may use ``np`` and ``vexp`` (:mod:`spikelib.kernels.cpu.vector_math`: an exponential that
        keeps float32 loops vectorised, where ``np.exp`` calls libm one element at a time).
        """
        raise NotImplementedError

    @classmethod
    def has_kernel_source(cls) -> bool:
        """Whether this class gives the expression the generated CPU kernels need (:meth:`kernel_source`)."""
        return cls.kernel_source is not Surrogate.kernel_source

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return spike(x, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha:g})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.alpha == other.alpha  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.alpha))


SURROGATES: Dict[str, Type[Surrogate]] = {}
_CLASSES: Dict[str, Type[Surrogate]] = {}  # every Surrogate subclass defined in this process, by module.qualname


def class_key(cls: type) -> str:
    """``module.qualname`` of a surrogate class (how kernels name a surrogate across process-local tables)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def surrogate_from_key(key: str, alpha: float) -> Surrogate:
    """The surrogate ``class_key(type(s)) == key`` with ``alpha`` (any subclass defined in this process)."""
    try:
        cls = _CLASSES[key]
    except KeyError:
        raise KeyError(f"no Surrogate subclass {key!r} is defined in this process") from None
    return cls(alpha)


def register_surrogate(cls: Type[Surrogate]) -> Type[Surrogate]:
    """Class decorator that registers a surrogate under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set a non-empty class attribute 'name'")
    if cls.name in SURROGATES and SURROGATES[cls.name] is not cls:
        raise ValueError(f"a surrogate named {cls.name!r} is already registered ({SURROGATES[cls.name].__name__})")
    SURROGATES[cls.name] = cls
    return cls


@register_surrogate
class ATan(Surrogate):
    """Arc-tangent surrogate (spikingjelly ``surrogate.ATan``), default ``alpha=2``."""

    name = "atan"
    default_alpha = 2.0

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x).square())

    def kernel_source(self, x: str, out: str, alpha: str, F: str) -> str:
        return (
            f"_u = {F}({math.pi / 2!r}) * {alpha} * {x}\n"
            f"{out} = {alpha} * {F}(0.5) / ({F}(1.0) + _u * _u)"
        )


@register_surrogate
class Sigmoid(Surrogate):
    """Logistic surrogate (spikingjelly ``surrogate.Sigmoid``), default ``alpha=4``."""

    name = "sigmoid"
    default_alpha = 4.0

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.alpha * x)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)

    def kernel_source(self, x: str, out: str, alpha: str, F: str) -> str:
        return (
            f"_u = {F}(1.0) / ({F}(1.0) + vexp(-({alpha} * {x})))\n"
            f"{out} = {alpha} * _u * ({F}(1.0) - _u)"
        )


@register_surrogate
class FastSigmoid(Surrogate):
    """Fast-sigmoid / SuperSpike surrogate ``1 / (1 + alpha |x|)^2`` (snnTorch ``fast_sigmoid``), default 25."""

    name = "fast_sigmoid"
    default_alpha = 25.0

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return x / (1 + self.alpha * x.abs())

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return 1 / (1 + self.alpha * x.abs()).square()

    def kernel_source(self, x: str, out: str, alpha: str, F: str) -> str:
        return f"_u = {F}(1.0) + {alpha} * abs({x})\n{out} = {F}(1.0) / (_u * _u)"


@register_surrogate
class Triangle(Surrogate):
    """Piecewise-linear (triangle) surrogate ``alpha * max(0, 1 - alpha |x|)``, default ``alpha=1``."""

    name = "triangle"
    default_alpha = 1.0

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha
        inner = 0.5 + a * x - torch.sign(x) * (a * x).square() / 2
        return torch.where(x >= 1 / a, torch.ones_like(x), torch.where(x <= -1 / a, torch.zeros_like(x), inner))

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * torch.clamp(1 - self.alpha * x.abs(), min=0)

    def kernel_source(self, x: str, out: str, alpha: str, F: str) -> str:
        return f"_u = {F}(1.0) - {alpha} * abs({x})\n{out} = {alpha} * _u if _u > {F}(0.0) else {F}(0.0)"


@register_surrogate
class Rectangular(Surrogate):
    """Rectangular (boxcar) surrogate ``alpha * [|x| < 1/(2 alpha)]``, default ``alpha=1``."""

    name = "rectangular"
    default_alpha = 1.0

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.alpha * x + 0.5, 0, 1)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * (x.abs() < 0.5 / self.alpha).to(x.dtype)

    def kernel_source(self, x: str, out: str, alpha: str, F: str) -> str:
        return f"{out} = {alpha} if abs({x}) * {alpha} < {F}(0.5) else {F}(0.0)"


@register_surrogate
class PiecewiseLinear(Surrogate):
    """Damped piecewise-linear surrogate ``alpha * max(0, 1 - |x|)`` (IIR-SNN ``LinearSpike``), default 0.3.

    ``alpha`` scales the height only (the support is always ``|x| < 1``), unlike :class:`Triangle`.
    """

    name = "piecewise_linear"
    default_alpha = 0.3

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        inner = 0.5 + x - torch.sign(x) * x.square() / 2
        p = torch.where(x >= 1, torch.ones_like(x), torch.where(x <= -1, torch.zeros_like(x), inner))
        return self.alpha * p

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * torch.clamp(1 - x.abs(), min=0)

    def kernel_source(self, x: str, out: str, alpha: str, F: str) -> str:
        return f"_u = {F}(1.0) - abs({x})\n{out} = {alpha} * _u if _u > {F}(0.0) else {F}(0.0)"


SURROGATES["superspike"] = FastSigmoid  # alias used by norse and the SuperSpike paper


def get_surrogate(surrogate: Union[str, Surrogate], alpha: float | None = None) -> Surrogate:
    """Return a surrogate instance from a registered name or an instance.

    Args:
        surrogate: a registered name (see ``SURROGATES``) or a :class:`Surrogate` instance.
        alpha: shape parameter when ``surrogate`` is a name; the class default when omitted.

    Raises:
        ValueError: unknown name. TypeError: neither a name nor a Surrogate.
    """
    if isinstance(surrogate, Surrogate):
        if alpha is not None and alpha != surrogate.alpha:
            raise ValueError("give alpha either in the Surrogate instance or as 'alpha', not both")
        return surrogate
    if isinstance(surrogate, str):
        key = surrogate.lower()
        if key not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; registered: {sorted(SURROGATES)}")
        return SURROGATES[key](alpha)
    if callable(surrogate):
        raise TypeError(
            f"surrogate must be a registered name ({sorted(SURROGATES)}) or a spikelib.surrogate.Surrogate "
            f"instance, got the callable {getattr(surrogate, '__name__', type(surrogate).__name__)!r}: spikelib "
            "needs the surrogate's gradient as a method (and, for the fast kernels, as source), so subclass Surrogate and define grad() "
            "(plus primitive() for tests and kernel_source() to run on the fast CPU path)"
        )
    raise TypeError(f"surrogate must be a name or a Surrogate instance, got {type(surrogate).__name__}")


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate, strict: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return ((x > 0) if strict else (x >= 0)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None, None


_WARNED_SLOW: set = set()


def warn_torch_loop(surrogate: Surrogate) -> None:
    """Say once per surrogate class that it runs on the torch loop because it gives no :meth:`Surrogate.kernel_source`
    (called by the functional core when ``backend="auto"`` fell back to the torch reference for that reason)."""
    cls = type(surrogate)
    if cls in _WARNED_SLOW:
        return
    _WARNED_SLOW.add(cls)
    warnings.warn(
        f"surrogate {cls.__name__} defines no kernel_source(), so spikelib runs the torch reference loop instead of "
        "the fast generated kernels (several times slower); define kernel_source() (and cuda_source() for CUDA) to "
        "run it on the fast path, or pass backend='torch' to choose the loop explicitly. (Said once per class.)",
        SlowPathWarning, stacklevel=3)


class SlowPathWarning(UserWarning):
    """A computation runs on a slower path than spikelib could use (and how to fix it)."""


def spike(x: torch.Tensor, surrogate: Union[str, Surrogate] = "atan", strict: bool = False) -> torch.Tensor:
    """Heaviside step ``x >= 0`` (``x > 0`` when ``strict``) as ``x.dtype`` with the surrogate gradient in backward."""
    return _SpikeFunction.apply(x, get_surrogate(surrogate), strict)
