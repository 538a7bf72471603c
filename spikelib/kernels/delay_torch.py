"""The torch backends of the delay operations (equations in :mod:`spikelib.functional.delay`), on any device.

``delay_gaussian_kernel``: the kernel as an autograd expression. ``delay_shifted_matmul``: one GEMM per tap on the
time-shifted row ranges of ``X = x.reshape(T B, C_in)``. ``delay_linear_int``: one GEMM per distinct delay value.

Non-finite inputs follow the equation ``y[t, b, j] = sum_i w[j, i] x[t - D[j, i], b, i]`` exactly, as the numba
kernels do: a NaN or inf at ``x[s, b, i]`` reaches only ``y[s + D[j, i], b, j]``. A masked GEMM alone would spread it
through ``0 * NaN`` to every output of every distinct delay, so non-finite inputs are zeroed for the GEMMs and their
products ``w[j, i] x[s, b, i]`` are added afterwards at the steps their delays say.
"""

from __future__ import annotations

from typing import Optional

import torch

from spikelib.functional.delay import gaussian_delay_kernel
from spikelib.kernels.registry import register_backend

__all__ = ["DenseShiftedMatmul", "delayed_linear_int_torch"]


@register_backend(
    "delay_gaussian_kernel", "torch", check=lambda request: None, priority=0, compile_safe=True,
    description="torch: the kernel as an autograd expression (any device)",
)
def _gaussian_kernel_torch(weight: torch.Tensor, delay: torch.Tensor, sigma: float, max_delay: int) -> torch.Tensor:
    return gaussian_delay_kernel(weight, delay, sigma, max_delay)


@register_backend(
    "delay_shifted_matmul", "torch", check=lambda request: None, priority=0, compile_safe=True,
    description="torch: one GEMM per tap on time-shifted row ranges (any device)",
)
class DenseShiftedMatmul:
    """``Y[d B:] += X[:(T - d) B] kernel[d]`` per tap, and the matching kernel gradient (dense GEMMs)."""

    @staticmethod
    def forward(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        T, B, c_in = x.shape
        X = x.reshape(T * B, c_in)
        Y = torch.mm(X, kernel[0])
        for d in range(1, min(kernel.shape[0], T)):
            Y[d * B:].addmm_(X[: (T - d) * B], kernel[d])
        return Y

    @staticmethod
    def grad_input(x: torch.Tensor, G: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """``grad_X[: (T - d) B] += G[d B:] kernel[d]^T`` per tap: ``[T B, C_in]`` (dense whatever the input)."""
        T, B, _ = x.shape
        gx = torch.mm(G, kernel[0].t())
        for d in range(1, min(kernel.shape[0], T)):
            gx[: (T - d) * B].addmm_(G[d * B:], kernel[d].t())
        return gx

    @staticmethod
    def grad_kernel(x: torch.Tensor, G: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        T, B, c_in = x.shape
        X = x.reshape(T * B, c_in)
        grad_k = torch.zeros_like(kernel)
        for d in range(min(kernel.shape[0], T)):
            torch.mm(X[: (T - d) * B].t(), G[d * B:], out=grad_k[d])
        return grad_k

    @classmethod
    def backward(cls, x: torch.Tensor, G: torch.Tensor, kernel: torch.Tensor, need_x: bool,
                 need_kernel: bool) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The input and kernel gradients that are needed (``None`` for the others)."""
        return (cls.grad_input(x, G, kernel) if need_x else None,
                cls.grad_kernel(x, G, kernel) if need_kernel else None)


def _add_nonfinite_events(out: torch.Tensor, X: torch.Tensor, bad: torch.Tensor, weight: torch.Tensor,
                          delays: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """``out[r + D[j, i] B, j] += w[j, i] X[r, i]`` for every non-finite ``X[r, i]`` (rows past the end dropped)."""
    rows, cols = torch.nonzero(bad, as_tuple=True)  # the events, [E]
    target = rows.unsqueeze(1) + delays[:, cols].t() * B  # [E, C_out]
    e, j = torch.nonzero(target < T * B, as_tuple=True)  # (event, output) pairs inside the sequence
    values = weight[j, cols[e]] * X[rows[e], cols[e]]  # only these: an event past the end has no gradient either
    return out.index_put((target[e, j], j), values, accumulate=True)


@register_backend(
    "delay_linear_int", "torch", check=lambda request: None, priority=0, compile_safe=True,
    description="torch: one GEMM per distinct delay value (any device)",
)
def delayed_linear_int_torch(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """Reference: one matrix product per distinct delay value on the shifted row range (autograd-native)."""
    T, B, c_in = x.shape
    X = x.reshape(T * B, c_in)
    bad = ~torch.isfinite(X)
    has_bad = bool(bad.any())
    if has_bad:
        X_events = X
        X = torch.where(bad, torch.zeros((), dtype=X.dtype, device=X.device), X)
    zero = torch.zeros((), dtype=weight.dtype, device=weight.device)
    out = X @ torch.where(delays == 0, weight, zero).t()  # always present, so the output is in the graph
    for d in torch.unique(delays).tolist():
        if 0 < d < T:
            w_d = torch.where(delays == d, weight, zero)
            out = out + torch.nn.functional.pad(X[: (T - d) * B] @ w_d.t(), (0, 0, d * B, 0))
    if has_bad:
        out = _add_nonfinite_events(out, X_events, bad, weight, delays, T, B)
    return out.view(T, B, -1)
