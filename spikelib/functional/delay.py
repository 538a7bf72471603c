"""Synaptic delays: fully connected synapses with a weight and a delay each, over time-first sequences ``[T, B, C]``.

A synapse from input ``i`` to output ``j`` has a weight ``w[j, i]`` and a delay ``D[j, i]`` in time steps, with
``0 <= D <= D_max`` (``D_max = max_delay``). Tap ``d`` of a synapse reads the input ``d`` steps in the past, so a
synapse of delay ``d`` makes the input at ``t - d`` reach the output at ``t``; inputs before ``t = 0`` are zero (left
padding: the output is causal and has the input's length ``T``)::

    integer delays (inference, what a chip runs):
        y[t, b, j] = sum_i w[j, i] x[t - D[j, i], b, i]                                   (x[s] = 0 for s < 0)

    Gaussian interpolation (training, DCLS "gauss"), taps d = 0..D_max, sigma > 0:
        e[j, i, d] = exp(-(d - D[j, i])^2 / (2 sigma^2))          (0 where below exp(-60): no denormals)
        k[j, i, d] = w[j, i] e[j, i, d] / (sum_d' e[j, i, d'] + 1e-7)
        y[t, b, j] = sum_i sum_d k[j, i, d] x[t - d, b, i]

Real-valued delays are learned through the Gaussian: ``dk/dD = k (d - D) / sigma^2 - k mean_g((d - D) / sigma^2)``
(autograd of the expression above). The integer form is the Gaussian form with ``D`` rounded and ``sigma -> 0`` (a
one-hot kernel).

This is DCLS's 1-D construction (``Dcls1d`` with ``version="gauss"``, ``kernel_count=1``; K-H-Ismail/
Dilated-Convolution-with-Learnable-Spacings-PyTorch, ``DCLS/construct/modules.py``, ``ConstructKernel1d.
forward_vgauss``) as used by SNN-delays (Thvnvtos/SNN-delays, ``snn_delays.py``: the input is padded on the left with
``kernel_size - 1`` zeros before the convolution). DCLS keeps a centred position ``P`` in ``[-K//2, K//2]`` for a
kernel of odd size ``K = D_max + 1`` and the raw ``SIG`` with ``sigma = |SIG| + 0.27``; F.conv1d is a
cross-correlation, so its kernel index ``k`` is delay ``K - 1 - k`` and the two parametrisations are related by
``D = K//2 - P`` (tests/test_delays.py checks outputs and gradients against the package).

Computation, through the backend registry (``backend="auto"`` picks the fastest exact path). The kernel is built
by operation ``"delay_gaussian_kernel"`` (numba: one fused pass per synapse, forward and backward; torch: the
expression above under autograd). It is applied by ``"delay_shifted_matmul"``, three ways: with
``X = x.reshape(T B, C_in)`` time first, ``x[t - d]`` for all ``t`` is the row range ``X[: (T - d) B]``, so the torch
backend does one GEMM per tap, ``Y[d B:] += X[:(T - d) B] k_d^T``, with no copy and no im2col buffer; the numba
backend runs on sparse inputs (spikes, at most ``EVENT_DENSITY_MAX`` nonzero) and does ``D_max + 1`` row updates per
nonzero input, for the output and for the kernel gradient (the input gradient is the per-tap GEMMs: it is dense
whatever the input); the spectral backend (:mod:`spikelib.kernels.delay_spectral`) computes the same convolution over
time as products per frequency of a discrete Fourier transform of length ``T + D_max``, about ``2 / (D_max + 1)`` of
the direct multiply-adds, for the output and both gradients. ``"auto"`` chooses among the three by a cost estimate
from the shapes and the input's density (read on every ``DENSITY_SAMPLE_STEP``-th time step). The integer
form is operation ``"delay_linear_int"``: a numba kernel (``spikelib.kernels.cpu.delay_numba``) that adds one
contiguous shifted row per synapse (``T B`` multiply-adds per synapse, whatever ``D_max`` is; memory: the weights
and one integer delay per synapse) or, on sparse inputs (spikes), is event-driven: every nonzero ``x[s, b, i]`` adds
``w[j, i] x[s, b, i]`` to ``y[s + D[j, i], b, j]`` for the synapses of input ``i`` (``nnz C_out`` multiply-adds); and a
torch fallback for other devices (one matrix product per distinct delay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.kernels.registry import available_backends, select_backend

__all__ = [
    "DelayRequest",
    "gaussian_delay_kernel",
    "delayed_linear_gaussian",
    "delayed_linear_int",
    "round_delays",
    "check_delay_input",
]

GAUSS_EPS = 1e-7  # DCLS's normalisation guard (sum of the Gaussian + 1e-7)
# Taps where exp(-(d - D)^2 / (2 sigma^2)) < exp(-60) ~ 1e-26 are set to 0: far below float32 resolution relative to
# the nearest tap (>= 0.18 for sigma >= 0.27), and it keeps denormal floats (which make matrix products 100x slower
# on x86) out of the kernel.
GAUSS_CUTOFF = 60.0
# backend="auto" chooses the path of the shifted products (all of them exact) by the density of every 4th time step.
DENSITY_SAMPLE_STEP = 4


@dataclass(frozen=True)
class DelayRequest:
    """What a ``delay_linear_int`` backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    requires_grad: bool


def check_delay_input(x: object, in_features: int, name: str = "x") -> torch.Tensor:
    """Check a time-first input ``[T, B, in_features]`` (floating, ``T >= 1``); errors name ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [T, B, {in_features}], got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have 3 dimensions [T, B, {in_features}] (time first), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must have at least one time step, got shape {tuple(x.shape)}")
    if x.shape[2] != in_features:
        raise ValueError(f"{name} must have {in_features} channels in dim 2 ([T, B, C]), got {x.shape[2]}")
    return x


def _check_finite(t: torch.Tensor, name: str) -> None:
    with torch.no_grad():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")


def _check_sigma(sigma: Union[float, torch.Tensor]) -> float:
    value = float(sigma)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"sigma must be a finite number > 0 (Gaussian width in steps), got {value}")
    return value


def gaussian_delay_kernel(
    weight: torch.Tensor, delay: torch.Tensor, sigma: Union[float, torch.Tensor], max_delay: int
) -> torch.Tensor:
    """The interpolated kernel, tap-major ``[D_max + 1, C_in, C_out]`` (``kernel[d] = k[:, :, d]^T``).

    Args:
        weight: ``w`` of shape ``[C_out, C_in]``.
        delay: real delays ``D`` of shape ``[C_out, C_in]`` (used as given; clamp them first).
        sigma: Gaussian width in steps (> 0).
        max_delay: ``D_max`` (the last tap).
    """
    sigma = _check_sigma(sigma)
    taps = torch.arange(max_delay + 1, dtype=delay.dtype, device=delay.device).view(-1, 1, 1)
    z = (taps - delay.t().unsqueeze(0)) / sigma
    q = 0.5 * (z * z)
    e = torch.where(q < GAUSS_CUTOFF, torch.exp(-q), torch.zeros((), dtype=q.dtype, device=q.device))
    g = e / (e.sum(0, keepdim=True) + GAUSS_EPS)
    return (weight.t().unsqueeze(0) * g).contiguous()


@dataclass(frozen=True)
class GaussianRequest:
    """What a ``delay_gaussian_kernel`` / ``delay_shifted_matmul`` backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    density: float = 1.0  # share of nonzero inputs (the event path runs on sparse spike inputs only)
    steps: int = 1  # T
    taps: int = 1  # D_max + 1
    batch: int = 1  # B
    in_features: int = 1  # C_in
    out_features: int = 1  # C_out
    auto: bool = True  # chosen by backend="auto": a backend may decline where another is faster


class _ShiftedMatmul(torch.autograd.Function):
    """``y[t] = sum_d x[t - d] @ kernel[d]`` on time-first tensors; forward and both gradients by ``impl`` (the
    direct GEMMs, the sparse event path or the spectral products)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor, impl: Any) -> torch.Tensor:  # type: ignore[override]
        T, B, _ = x.shape
        ctx.save_for_backward(x, kernel)
        ctx.impl = impl
        return impl.forward(x, kernel).view(T, B, kernel.shape[2])

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        # (``once_differentiable`` would raise only when grad_y itself requires grad; a penalty on the gradient that
        # reaches the weights through ``kernel`` would silently get nothing)
        refuse_create_graph("delayed_linear_gaussian", "no backend of the Gaussian delays differentiates its "
                            "backward; the integer delays' 'torch' backend does (DelayedLinear.round_delays())")
        x, kernel = ctx.saved_tensors
        T, B, _ = x.shape
        G = grad_y.contiguous().view(T * B, kernel.shape[2])
        grad_x, grad_k = ctx.impl.backward(x, G, kernel, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return (None if grad_x is None else grad_x.view(x.shape)), grad_k, None


def delayed_linear_gaussian(
    x: torch.Tensor,
    weight: torch.Tensor,
    delay: torch.Tensor,
    sigma: Union[float, torch.Tensor],
    max_delay: int,
    bias: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Delayed synapses with Gaussian interpolation (see the module docstring): ``[T, B, C_in] -> [T, B, C_out]``.

    ``delay`` is used as given (the layer clamps it to ``[0, max_delay]``); gradients reach ``x``, ``weight``,
    ``delay`` and ``bias``. ``backend`` (``"auto"``, ``"numba"``, ``"torch"`` or ``"spectral"``) chooses the
    implementations of the operations ``delay_gaussian_kernel`` (building the kernel) and ``delay_shifted_matmul``
    (applying it; the numba event path runs when at most ``EVENT_DENSITY_MAX`` of the inputs are nonzero, e.g.
    spikes); a name that only the second operation has (``"spectral"``) leaves the first on ``"auto"``.
    """
    check_delay_input(x, weight.shape[1])
    _check_finite(delay, "delay")
    sigma = _check_sigma(sigma)
    x = x.contiguous()
    # A name that only one of the two operations has (e.g. "spectral") leaves the other on "auto".
    kernel_backend = backend if backend not in available_backends("delay_shifted_matmul") or backend in \
        available_backends("delay_gaussian_kernel") else "auto"
    kernel_impl = select_backend("delay_gaussian_kernel", kernel_backend, GaussianRequest(x.device, x.dtype)).impl
    kernel = kernel_impl(weight, delay, sigma, max_delay)
    # "auto" reads the density on every few time steps (it only chooses among exact paths); a backend asked for by
    # name checks the whole input
    if torch.compiler.is_compiling():  # no data-dependent choice in a graph; the event path does not compile anyway
        density = 1.0
    else:
        sample = x[::DENSITY_SAMPLE_STEP] if backend == "auto" else x
        density = float(torch.count_nonzero(sample)) / max(1, sample.numel())
    request = GaussianRequest(x.device, x.dtype, density, x.shape[0], max_delay + 1, x.shape[1], x.shape[2],
                              weight.shape[0], backend == "auto")
    impl = select_backend("delay_shifted_matmul", backend, request).impl
    y = _ShiftedMatmul.apply(x, kernel, impl)
    return y if bias is None else y + bias


def round_delays(delay: torch.Tensor, max_delay: int) -> torch.Tensor:
    """Integer delays ``round(clamp(D, 0, D_max))`` (round half to even, as ``torch.round``) as int64."""
    _check_finite(delay, "delay")
    return delay.detach().clamp(0, max_delay).round().to(torch.int64)


def delayed_linear_int(
    x: torch.Tensor,
    weight: torch.Tensor,
    delays: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``y[t, b, j] = sum_i w[j, i] x[t - D[j, i], b, i] (+ bias[j])`` with integer ``delays >= 0`` (int64).

    Gradients reach ``x``, ``weight`` and ``bias`` (integer delays have none). ``backend``: ``"auto"`` or a name from
    ``spikelib.kernels.available_backends("delay_linear_int")``.
    """
    check_delay_input(x, weight.shape[1])
    if delays.dtype != torch.int64 or tuple(delays.shape) != tuple(weight.shape):
        raise ValueError(
            f"delays must be an int64 tensor of shape {tuple(weight.shape)} (one per synapse), got "
            f"{delays.dtype} {tuple(delays.shape)}"
        )
    if delays.numel() and int(delays.min()) < 0:
        raise ValueError("delays must be >= 0 (a synapse cannot read the future)")
    requires_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    request = DelayRequest(x.device, x.dtype, requires_grad)
    impl = select_backend("delay_linear_int", backend, request).impl
    y = impl(x.contiguous(), weight, delays)
    return y if bias is None else y + bias
