"""Backend ``"numba"`` of operation ``"elm"`` (equations in :mod:`spikelib.functional.elm`): the ``"fast"`` backend's
whole-sequence traces and projections (:func:`spikelib.kernels.elm_torch.elm_multistep`) with the memory recurrence
stepped by fused numba kernels (:mod:`._elm_kernels`) instead of ~10 torch operations per step, and the linear traces
(and their adjoints) by one kernel each instead of one torch operation per step.

Why: in the SHD recipe (B=64, T=100, d_m=100, one hidden layer of 200) the recurrence is ~100 steps of four small
matrix products ``[64, 100] x [100, 200]`` and a dozen element-wise operations each way; as torch operations every one
pays a dispatch and, on two cores, a fork-join of the thread team, so it ran on one core at well below its speed. The
kernels step each thread's range of batch rows through the whole recurrence (rows are independent; no
synchronisation between steps), each step's products over the range as register-tiled matrix products
(:mod:`._tile_gemm`). Weight gradients stay one matmul over all ``T B`` rows after the
backward recurrence (:func:`spikelib.kernels.elm_torch.scan_gradients`).

Runs: CPU, float32 or float64, exactly one hidden MLP layer (``mlp_num_layers=1``, the reference default), relu or
silu. Not differentiable twice (as ``"fast"``).
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.functional.elm import TANH_SCALE, TANH_SLOPE, ELMConfig, ELMParams, ELMRequest, ELMState
from spikelib.kernels.cpu.cache import import_kernel_module
from spikelib.kernels.cpu.threads import kernel_threads, run_chunked
from spikelib.kernels.elm_torch import elm_multistep, scan_gradients, trace_gradients
from spikelib.kernels.registry import register_backend

_SUPPORTED = (torch.float32, torch.float64)
_FIX = "use backend='torch_loop' for this layer, whose backward is made of torch operations"


@functools.lru_cache(maxsize=None)
def _kernels() -> Any:
    try:
        return import_kernel_module("spikelib.kernels.cpu._elm_kernels")
    except ImportError as exc:
        raise ImportError(
            "the 'numba' elm backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc


def check_numba(request: ELMRequest) -> Optional[str]:
    """Capability check (None if the numba kernels can run the request)."""
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    if request.mlp_layers != 2:
        return (f"it steps an MLP of one hidden layer (mlp_num_layers=1, two weight matrices), this one has "
                f"{request.mlp_layers} weight matrices")
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'spikelib[fast]')"
    return None


def _rows(B: int, T: int, H: int, d_m: int) -> Tuple[int, int]:
    """``(rows per chunk, threads)``: one contiguous range of rows per thread, one thread for small work."""
    threads = max(1, min(kernel_threads(T * B * (H + d_m)), B))
    return -(-B // threads), threads


class NumbaLinearTrace(torch.autograd.Function):
    """:class:`spikelib.kernels.elm_torch.LinearTrace` (``s[t] = k s[t-1] + u[t]`` over ``u: [T, B, N]``) with the
    recurrence and its adjoint in :mod:`._elm_kernels`, the batch rows split across threads."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
        T, B, N = u.shape
        u = u.detach().contiguous()
        k_c = k.detach().contiguous()
        s0_c = s0.detach().contiguous()
        out = torch.empty_like(u)
        if T and B and N:
            chunk, threads = _trace_rows(B, T, N)
            run_chunked(_kernels().trace_forward, (u.numpy(), k_c.numpy(), s0_c.numpy(), out.numpy()), B, chunk,
                        threads)
        ctx.save_for_backward(k, s0, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        refuse_create_graph("elm (numba)", _FIX)
        k, s0, out = ctx.saved_tensors
        T, B, N = grad.shape
        grad_u = torch.empty_like(out)
        if T and B and N:
            chunk, threads = _trace_rows(B, T, N)
            run_chunked(_kernels().trace_backward, (grad.detach().contiguous().numpy(), k.detach().contiguous().numpy(),
                                                    grad_u.numpy()), B, chunk, threads)
        return (grad_u,) + trace_gradients(ctx.needs_input_grad, grad_u, k, s0, out)


def _trace_rows(B: int, T: int, N: int) -> Tuple[int, int]:
    """``(rows per chunk, threads)`` of a trace over ``[T, B, N]``."""
    threads = max(1, min(kernel_threads(T * B * N), B))
    return -(-B // threads), threads


class NumbaMemoryScan(torch.autograd.Function):
    """:class:`spikelib.kernels.elm_torch.MemoryScan` with one hidden layer, stepped by :mod:`._elm_kernels`.

    Inputs: ``activation, U [T, B, H], k_m [d_m], gain [d_m], m0 [B, d_m], W_1^m [H, d_m], W_2 [d_m, H], b_2 [d_m]``.
    Output: ``m`` ``[T, B, d_m]``.
    """

    @staticmethod
    def forward(ctx, activation: str, U, k_m, gain, m0, w1m, w2, b2):
        T, B, H = U.shape
        d_m = k_m.shape[0]
        U = U.detach().contiguous()
        M = U.new_empty(T, B, d_m)
        D = torch.empty_like(M)
        TH = torch.empty_like(M)
        A = torch.empty_like(U)
        relu = activation == "relu"
        if T and B:
            gs = (gain * TANH_SCALE).detach().contiguous()
            args = (U.numpy(), k_m.detach().contiguous().numpy(), gs.numpy(), m0.detach().contiguous().numpy(),
                    w1m.detach().t().contiguous().numpy(), w2.detach().t().contiguous().numpy(),
                    b2.detach().contiguous().numpy(), relu, M.numpy(), D.numpy(), TH.numpy(), A.numpy())
            chunk, threads = _rows(B, T, H, d_m)
            run_chunked(_kernels().scan_forward, args, B, chunk, threads)
        ctx.activation = activation
        ctx.save_for_backward(k_m, gain, m0, w1m, w2, b2, M, D, TH, A)
        return M

    @staticmethod
    def backward(ctx, grad_M: torch.Tensor):
        refuse_create_graph("elm (numba)", _FIX)
        k_m, gain, m0, w1m, w2, b2, M, D, TH, A = ctx.saved_tensors
        T, B, d_m = M.shape
        needs = ctx.needs_input_grad
        gZ = torch.empty_like(M)
        gA = torch.empty_like(A)
        carry = torch.zeros_like(m0)
        acc_k = torch.zeros_like(m0)
        acc_gain = torch.zeros_like(m0)
        if T and B:
            sc = (gain * (TANH_SCALE * TANH_SLOPE)).detach().contiguous()
            args = (grad_M.detach().contiguous().numpy(), k_m.detach().contiguous().numpy(), sc.numpy(),
                    m0.detach().contiguous().numpy(), w1m.detach().contiguous().numpy(),
                    w2.detach().contiguous().numpy(), ctx.activation == "relu", M.numpy(),
                    TH.numpy(), A.numpy(), gZ.numpy(), gA.numpy(), carry.numpy(), acc_k.numpy(), acc_gain.numpy())
            chunk, threads = _rows(B, T, A.shape[2], d_m)
            run_chunked(_kernels().scan_backward, args, B, chunk, threads)
        return (None,) + scan_gradients(needs, ctx.activation, [(w2, b2)], D, [A], gZ, [gA],
                                        acc_k if needs[2] else None, acc_gain if needs[3] else None, carry)


@register_backend("elm", "numba", check=check_numba, priority=20,
                  description="as 'fast', the memory recurrence in fused numba kernels, batch rows across threads "
                              "(CPU, float32/float64, one hidden MLP layer)")
def elm_numba(x: torch.Tensor, params: ELMParams, config: ELMConfig, state: ELMState
              ) -> Tuple[torch.Tensor, torch.Tensor, ELMState]:
    """Fast multi-step ELM with the numba memory scan. Returns ``(y [T, B, out], memory [T, B, d_m], final
    state)``."""
    return elm_multistep(x, params, config, state, NumbaMemoryScan.apply, NumbaLinearTrace.apply)
