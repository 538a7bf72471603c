"""``DelayedLinear``: fully connected synapses with a weight and a delay each, time first ``[T, B, C_in] -> [T, B, C_out]``.

The equations, the tap convention (a synapse of delay ``d`` makes the input at ``t - d`` reach the output at ``t``;
causal, left zero padding, output length ``T``) and the correspondence with DCLS ``Dcls1d`` are in
:mod:`spikelib.functional.delay`. Delays live in ``[0, max_delay]`` (``max_delay + 1`` taps).

Numerics are chosen by an explicit ``mode``, never by ``module.training``:

``"gaussian"``
    training with real-valued delays through the Gaussian interpolation kernel of width ``sigma`` (set it from a
    schedule with :meth:`set_sigma`, see :mod:`spikelib.layers.delay_schedule`); positions are clamped to
    ``[0, max_delay]`` in the forward pass and, in place, by :meth:`clamp_delays_` after each optimiser step.
``"integer"``
    each synapse has the integer delay ``round(clamp(D, 0, max_delay))`` (what a chip runs): the exact, fast path of
    the backend registry (operation ``"delay_linear_int"``), memory O(synapses), cost independent of ``max_delay``.
    :meth:`round_delays` switches a learnable layer to it (the real positions are kept, so :meth:`use_gaussian`
    switches back); :func:`spikelib.layers.delay_schedule.rounded_delays` does it temporarily for evaluation.

Delay options: ``delays="learn"`` (a parameter ``delay``, mode ``"gaussian"``; initial positions by ``delay_init``:
``"uniform"`` in ``[0, max_delay]``, or ``"reference"`` as SNN-delays draws its DCLS positions: ``P ~ U[(-K)//2,
K//2]`` for ``K = max_delay + 1`` taps, clamped to ``[-(K//2), K//2]`` (``Dcls1d.clamp_parameters``), delay
``K//2 - P`` clamped to ``[0, max_delay]``; for the reference's odd ``K`` about ``1/K`` of the positions sit on the
longest delay), ``"random"`` (fixed random integer delays, a buffer, mode ``"integer"``), ``"none"`` (all delays 0:
a plain linear map applied at every step). The weights start Kaiming-uniform for ReLU (``U(-sqrt(6/C_in),
sqrt(6/C_in))``), as SNN-delays initialises its DCLS weights (Thvnvtos/SNN-delays, ``snn_delays.py``,
``init_model``).
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Optional

import torch
from torch import nn

from spikelib.functional.delay import (
    check_delay_input,
    delayed_linear_gaussian,
    delayed_linear_int,
    round_delays,
)
from spikelib.graph import nodes

logger = logging.getLogger(__name__)

__all__ = ["DelayedLinear", "DCLS_SIGMA_OFFSET", "default_sigma"]

DCLS_SIGMA_OFFSET = 0.27  # DCLS "gauss": sigma = |SIG| + 0.27 (DCLS/construct/modules.py, forward_vgauss)
_DELAY_OPTIONS = ("learn", "random", "none")
_MODES = ("gaussian", "integer")
_DELAY_INITS = ("uniform", "reference")


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def default_sigma(max_delay: int) -> float:
    """Initial Gaussian width of SNN-delays: ``SIG = K // 2`` for a kernel of ``K = max_delay + 1`` taps, + 0.27."""
    return float((max_delay + 1) // 2) + DCLS_SIGMA_OFFSET


class DelayedLinear(nn.Module):
    """Fully connected delayed synapses (see the module docstring).

    Args:
        in_features: input channels ``C_in``.
        out_features: output channels ``C_out``.
        max_delay: largest delay in steps (``>= 1``); the kernel has ``max_delay + 1`` taps.
        delays: ``"learn"``, ``"random"`` or ``"none"``.
        bias: add a learnable bias per output (SNN-delays uses none).
        sigma: initial Gaussian width in steps for ``delays="learn"`` (default :func:`default_sigma`).
        delay_init: initial positions of learnable delays, ``"uniform"`` or ``"reference"`` (module docstring).
        generator: random generator for the initial weights and delays (default: torch's global one).
        backend: ``"auto"``, ``"numba"`` or ``"torch"``: the implementation of the delay operations of the registry
            (``delay_gaussian_kernel``, ``delay_shifted_matmul``, ``delay_linear_int``); ``"auto"`` picks the fastest
            exact one (numba on CPU, the event path for sparse inputs).
    """

    temporal = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        *,
        delays: str = "learn",
        bias: bool = False,
        sigma: Optional[float] = None,
        delay_init: str = "uniform",
        generator: Optional[torch.Generator] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.max_delay = _positive_int(max_delay, "max_delay")
        if delays not in _DELAY_OPTIONS:
            raise ValueError(f"delays must be one of {list(_DELAY_OPTIONS)}, got {delays!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        self.delays = delays
        self.backend = backend
        bound = math.sqrt(6.0 / self.in_features)
        w = torch.rand(self.out_features, self.in_features, generator=generator) * (2 * bound) - bound
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        shape = (self.out_features, self.in_features)
        if delay_init not in _DELAY_INITS:
            raise ValueError(f"delay_init must be one of {list(_DELAY_INITS)}, got {delay_init!r}")
        if delays == "learn":
            self.delay = nn.Parameter(torch.empty(shape))
            self.mode = "gaussian"
            self.init_delays_(delay_init, generator)
        elif delays == "random":
            d = torch.randint(0, self.max_delay + 1, shape, generator=generator).to(torch.get_default_dtype())
            self.register_buffer("delay", d)
            self.mode = "integer"
        else:
            self.register_buffer("delay", torch.zeros(shape))
            self.mode = "integer"
        self.register_buffer("sigma", torch.tensor(default_sigma(self.max_delay), dtype=torch.float64))
        if sigma is not None:
            self.set_sigma(sigma)

    # ----------------------------------------------------------------------------------------------------- modes
    def set_sigma(self, sigma: float) -> None:
        """Set the Gaussian width (steps, finite, > 0) used in mode ``"gaussian"``."""
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
            raise TypeError(f"sigma must be a real number, got {type(sigma).__name__}")
        if not math.isfinite(float(sigma)) or float(sigma) <= 0:
            raise ValueError(f"sigma must be a finite number > 0 (Gaussian width in steps), got {sigma}")
        self.sigma.fill_(float(sigma))

    def round_delays(self) -> "DelayedLinear":
        """Switch to mode ``"integer"``: every synapse uses ``round(clamp(delay, 0, max_delay))``. Returns self."""
        self.mode = "integer"
        return self

    def use_gaussian(self) -> "DelayedLinear":
        """Switch back to mode ``"gaussian"`` (only for learnable delays). Returns self."""
        if self.delays != "learn":
            raise ValueError(f"mode 'gaussian' needs delays='learn', this layer has delays={self.delays!r}")
        self.mode = "gaussian"
        return self

    def set_mode(self, mode: str) -> "DelayedLinear":
        """Set ``mode`` to ``"gaussian"`` or ``"integer"`` explicitly. Returns self."""
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
        return self.use_gaussian() if mode == "gaussian" else self.round_delays()

    @torch.no_grad()
    def init_delays_(self, method: str = "uniform", generator: Optional[torch.Generator] = None) -> None:
        """Redraw the learnable positions in place: ``"uniform"`` in ``[0, max_delay]`` or ``"reference"`` (the
        SNN-delays draw of the module docstring; with the same generator state it gives exactly the positions
        ``Dcls1d`` gets from ``nn.init.uniform_(P, -K // 2, K // 2)`` and ``clamp_parameters()``)."""
        if self.delays != "learn":
            raise ValueError(f"init_delays_ needs delays='learn', this layer has delays={self.delays!r}")
        if method not in _DELAY_INITS:
            raise ValueError(f"method must be one of {list(_DELAY_INITS)}, got {method!r}")
        shape = tuple(self.delay.shape)
        if method == "uniform":
            drawn = torch.rand(shape, generator=generator) * self.max_delay
        else:
            taps = self.max_delay + 1
            lim = taps // 2
            p = torch.empty(shape).uniform_(-taps // 2, taps // 2, generator=generator).clamp_(-lim, lim)
            drawn = (lim - p).clamp_(0, self.max_delay)
        self.delay.copy_(drawn.to(self.delay))

    @torch.no_grad()
    def clamp_delays_(self) -> None:
        """Clamp the delay positions to ``[0, max_delay]`` in place (call after each optimiser step)."""
        self.delay.clamp_(0, self.max_delay)

    def integer_delays(self) -> torch.Tensor:
        """The delays of mode ``"integer"``: ``round(clamp(delay, 0, max_delay))`` as int64 ``[C_out, C_in]``."""
        return round_delays(self.delay, self.max_delay)

    def graph_node(self) -> nodes.DelayedAffine:
        """The synapses as they compute now: integer delays (mode ``"integer"``), the clamped real positions (mode
        ``"gaussian"``: every tap carries weight) or no delays (``delays="none"``)."""
        w = self.weight.detach()
        b = None if self.bias is None else self.bias.detach()
        if self.delays == "none":
            return nodes.DelayedAffine(w, torch.zeros(w.shape, dtype=torch.int64, device=w.device), self.max_delay,
                                       "none", b)
        if self.mode == "integer":
            return nodes.DelayedAffine(w, self.integer_delays().detach(), self.max_delay, "integer", b)
        return nodes.DelayedAffine(w, self.delay.detach().clamp(0, self.max_delay), self.max_delay, "gaussian", b)

    # --------------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [T, B, in_features] -> [T, B, out_features]`` (see the module docstring for the modes)."""
        if self.delays == "none":
            check_delay_input(x, self.in_features)
            return torch.nn.functional.linear(x, self.weight, self.bias)
        if self.mode == "integer":
            return delayed_linear_int(x, self.weight, self.integer_delays(), self.bias, backend=self.backend)
        sigma = float(self.sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma must be a finite number > 0 (Gaussian width in steps), got {sigma}")
        delay = self.delay.clamp(0, self.max_delay)
        return delayed_linear_gaussian(x, self.weight, delay, sigma, self.max_delay, self.bias, backend=self.backend)

    def extra_repr(self) -> str:
        s = (f"{self.in_features}, {self.out_features}, max_delay={self.max_delay}, delays={self.delays!r}, "
             f"mode={self.mode!r}")
        if self.mode == "gaussian":
            s += f", sigma={float(self.sigma):.4g}"
        return s + f", bias={self.bias is not None}"
