"""The spectral backend of ``delay_shifted_matmul`` (equations in :mod:`spikelib.functional.delay`), on any device.

The Gaussian kernel of a delayed layer has ``K = D_max + 1`` taps, all of them nonzero while sigma is wide, so the
direct product costs ``K T B C_in C_out`` multiply-adds. The same sums are a linear convolution over time, computed
exactly (in real arithmetic) through a discrete Fourier transform of length ``N = T + K - 1``, with
``F = N // 2 + 1`` frequencies (the output is real)::

    X_f = sum_t x[t] e^{-2 pi i f t / N},   K_f = sum_d kernel[d] e^{-2 pi i f d / N}
    forward:         Y_f  = X_f K_f                   y[t]      = IDFT(Y)[t],   t < T
    input gradient:  GX_f = G_f conj(K_f)^T           grad_x[s] = IDFT(GX)[s],  s < T
    kernel gradient: GK_f = conj(X_f)^T G_f           grad_k[d] = IDFT(GK)[d],  d < K

(per frequency a ``[B, C_in] x [C_in, C_out]`` complex matrix product). ``N >= T + K - 1`` keeps the circular
convolution free of wrap-around: every index it reads past ``T`` (or before ``0``) lands on zero padding. The
transforms themselves are real matrix products with cosine and sine tables (``[2F, T]`` and ``[T, 2F]``; ``T`` and
``K`` are small, so these GEMMs cost far less than the products and need no strided FFT along time), and each complex
product is four real batched GEMMs. Cost: ``4 F B C_in C_out`` multiply-adds per pass instead of ``K T B C_in C_out``,
about ``2 / K`` of the direct form for ``T >> K``; the transforms add ``2 F (T B (C_in + C_out) + K C_in C_out)``.

Rounding: each output is a sum over the whole sequence in the frequency domain, so float32 errors are of the order
of ``1e-7`` times the largest output, like the direct float32 sum's (tests/test_delays.py and
tests/test_delay_spectral.py compare both with the float64 direct form and with DCLS). This is the standard FFT
convolution (e.g. ``torch.fft``-based long convolutions); ``backend="auto"`` chooses it only where its cost estimate
(:func:`path_costs`) beats the direct GEMMs and the event path.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Dict, Optional, Tuple

import torch

from spikelib.kernels.registry import register_backend

__all__ = ["SpectralShiftedMatmul", "path_costs", "spectral_check"]

#: Cost model of ``backend="auto"``, in multiply-adds of the direct GEMMs (fitted on this machine's 2-core runs of one
#: layer's forward + backward, float32): the spectral products are small batched GEMMs (``SPECTRAL_PRODUCT_COST``
#: each) and the transforms tall ones (``SPECTRAL_TRANSFORM_COST``); an event's row update is memory-bound
#: (``EVENT_COST_FACTOR`` per multiply-add, plus ``EVENT_ROW_OVERHEAD`` multiply-adds' worth per row). Measured (ms,
#: direct / event / spectral, 5% nonzero): T=100, B=64, 256 -> 256, K=25: 229-336 / 143-202 / 74-91; 256 -> 20,
#: K=25: 36-52 / 33-47 / 14-20; 256 -> 256, K=9: 95-131 / 64-88 / 60-69; T=300, B=32, K=9: 140 / 88-132 / 204-212;
#: T=50, B=128, 700 -> 128, K=41: 513-739 / 400-411 / 192-222.
SPECTRAL_PRODUCT_COST = 2.0
SPECTRAL_TRANSFORM_COST = 1.5
EVENT_COST_FACTOR = 8.0
EVENT_ROW_OVERHEAD = 64
_SUPPORTED = (torch.float32, torch.float64)


def path_costs(request: Any) -> Dict[str, float]:
    """Estimated cost (direct-GEMM multiply-adds) of one forward + backward by each path: ``"direct"``,
    ``"events"`` (forward and kernel gradient on the nonzero inputs, input gradient direct) and ``"spectral"``."""
    T, K, B = request.steps, request.taps, request.batch
    c_in, c_out = request.in_features, request.out_features
    f = (T + K - 1) // 2 + 1
    rows = float(K * T * B * c_in)  # (tap, input) pairs
    products = 3.0 * 4 * f * B * c_in * c_out
    transforms = 2.0 * f * (T * B * (3 * c_in + 2 * c_out) + 3 * K * c_in * c_out)
    return {
        "direct": 3.0 * rows * c_out,
        "events": rows * (c_out + 2.0 * EVENT_COST_FACTOR * request.density * (c_out + EVENT_ROW_OVERHEAD)),
        "spectral": SPECTRAL_PRODUCT_COST * products + SPECTRAL_TRANSFORM_COST * transforms,
    }


def spectral_check(request: Any) -> Optional[str]:
    """Capability check: float32/float64; chosen by ``"auto"`` only where :func:`path_costs` finds it the cheapest
    (asked for by name, it runs any shape)."""
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    if not request.auto:
        return None
    from spikelib.kernels.cpu.delay_numba import check_events

    costs = path_costs(request)
    rivals = {"direct": costs["direct"]}
    if check_events(request) is None:
        rivals["events"] = costs["events"]
    best = min(rivals, key=rivals.__getitem__)
    if costs["spectral"] >= rivals[best]:
        return (f"the {best} path is estimated cheaper for T={request.steps}, K={request.taps}, "
                f"B={request.batch}, {request.in_features} -> {request.out_features}, density "
                f"{request.density:.3g} ({rivals[best]:.3g} vs {costs['spectral']:.3g} multiply-adds)")
    return None


@functools.lru_cache(maxsize=32)
def _tables(n: int, length: int, inverse: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The real DFT of length ``n`` as a matrix: forward ``[2F, length]`` (rows: real parts, then imaginary parts of
    ``sum_t v[t] e^{-2 pi i f t / n}``, ``t < length``); inverse ``[length, 2F]`` (``v[t]`` for ``t < length`` from
    the half spectrum, the conjugate-symmetric half counted twice). Built in float64, then cast."""
    f = torch.arange(n // 2 + 1, dtype=torch.float64)
    t = torch.arange(length, dtype=torch.float64)
    angle = (2.0 * math.pi / n) * torch.remainder(torch.outer(f, t), n)  # reduced mod n: exact angles
    cos, sin = torch.cos(angle), torch.sin(angle)
    if not inverse:
        return torch.cat([cos, -sin], 0).to(device=device, dtype=dtype).contiguous()
    weight = torch.full((n // 2 + 1, 1), 2.0 / n, dtype=torch.float64)
    weight[0] = 1.0 / n
    if n % 2 == 0:
        weight[-1] = 1.0 / n
    return torch.cat([weight * cos, -weight * sin], 0).t().to(device=device, dtype=dtype).contiguous()


def _spectrum(v: torch.Tensor, n: int) -> torch.Tensor:
    """``[2, F, *rest]``: real and imaginary parts of the DFT of length ``n`` of ``v`` (``[L, *rest]``) along dim 0."""
    table = _tables(n, v.shape[0], False, v.dtype, v.device)
    return (table @ v.reshape(v.shape[0], -1)).view(2, n // 2 + 1, *v.shape[1:])


def _inverse(spec: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """``[length, *rest]``: the first ``length`` samples of the inverse DFT of ``spec`` (``[2, F, *rest]``)."""
    table = _tables(n, length, True, spec.dtype, spec.device)
    return (table @ spec.reshape(2 * (n // 2 + 1), -1)).view(length, *spec.shape[2:])


def _complex_bmm(a: torch.Tensor, b: torch.Tensor, conj_a: bool = False, conj_b: bool = False) -> torch.Tensor:
    """Batched complex product of ``[2, F, m, k]`` and ``[2, F, k, n]`` (real/imaginary stacked), at most one factor
    conjugated: four real batched GEMMs into one ``[2, F, m, n]``."""
    if conj_a and conj_b:
        raise ValueError("conjugate at most one factor")
    (ar, ai), (br, bi) = a, b
    sign = -1.0 if (conj_a or conj_b) else 1.0
    out = a.new_empty((2, a.shape[1], a.shape[2], b.shape[3]))
    torch.bmm(ar, br, out=out[0])
    out[0].baddbmm_(ai, bi, alpha=-sign)  # re = ar br - (sa ai)(sb bi)
    if conj_a:  # im = ar bi - ai br
        torch.bmm(ar, bi, out=out[1])
        out[1].baddbmm_(ai, br, alpha=-1.0)
    else:  # im = ai br + (sb) ar bi
        torch.bmm(ai, br, out=out[1])
        out[1].baddbmm_(ar, bi, alpha=sign)
    return out


def _length(x: torch.Tensor, kernel: torch.Tensor) -> int:
    return x.shape[0] + kernel.shape[0] - 1


@register_backend(
    "delay_shifted_matmul", "spectral", check=spectral_check, priority=20, compile_safe=True,
    description="torch: products per frequency of a length-(T + K - 1) DFT (many taps, any device)",
)
class SpectralShiftedMatmul:
    """Forward, input gradient and kernel gradient as products per frequency (see the module docstring)."""

    @staticmethod
    def forward(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        T, B, _ = x.shape
        n = _length(x, kernel)
        y = _inverse(_complex_bmm(_spectrum(x, n), _spectrum(kernel, n)), n, T)
        return y.view(T * B, kernel.shape[2])

    @staticmethod
    def backward(x: torch.Tensor, G: torch.Tensor, kernel: torch.Tensor, need_x: bool,
                 need_kernel: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        T, B, c_in = x.shape
        taps, _, c_out = kernel.shape
        n = _length(x, kernel)
        g = _spectrum(G.view(T, B, c_out), n)  # [2, F, B, C_out]
        grad_x = grad_k = None
        if need_x:
            k_t = _spectrum(kernel, n).transpose(2, 3)  # [2, F, C_out, C_in]
            product = _complex_bmm(g, k_t, conj_b=True)
            del k_t  # the kernel's spectrum is the largest buffer: free it before the kernel gradient's
            grad_x = _inverse(product, n, T)
            del product
        if need_kernel:
            x_t = _spectrum(x, n).transpose(2, 3)  # [2, F, C_in, B]
            product = _complex_bmm(x_t, g, conj_a=True)
            del x_t, g
            grad_k = _inverse(product, n, taps).contiguous()
        return grad_x, grad_k
