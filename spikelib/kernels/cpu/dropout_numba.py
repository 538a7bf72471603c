"""Backend ``"numba"`` of operation ``"input_dropout"`` (equations in :mod:`spikelib.functional.dropout`): a
uniform is drawn only where the input is nonzero, from a counter-based hash (:mod:`._dropout_kernels`), so spike
input at a few percent costs one pass over ``x`` instead of one random number per element."""

from __future__ import annotations

import functools
from typing import Any, Optional

import torch

from spikelib.functional.dropout import keep_threshold
from spikelib.kernels.cpu.cache import import_kernel_module
from spikelib.kernels.cpu.threads import kernel_threads, run_chunked
from spikelib.kernels.registry import register_backend

_SUPPORTED = (torch.float32, torch.float64)
#: Elements per chunk of the parallel loop.
CHUNK = 1 << 16


@functools.lru_cache(maxsize=None)
def _kernels() -> Any:
    try:
        return import_kernel_module("spikelib.kernels.cpu._dropout_kernels")
    except ImportError as exc:
        raise ImportError(
            "the 'numba' input_dropout backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc


def check_numba(request: Any) -> Optional[str]:
    """Capability check (None if the numba kernel can run the request)."""
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    if request.requires_grad:
        return "the input requires a gradient (the torch backend is differentiable, this kernel is not)"
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'spikelib[fast]')"
    return None


@register_backend("input_dropout", "numba", check=check_numba, priority=10,
                  description="numba: draws only where the input is nonzero, counter-based (CPU, float32/float64)")
def input_dropout_numba(x: torch.Tensor, p: float, rescale: bool) -> torch.Tensor:
    """``x`` with each element zeroed with probability ``p`` (kept ones scaled by ``1 / (1 - p)`` if ``rescale``)."""
    # One draw from torch's default generator: torch.manual_seed makes the masks reproducible.
    seed = int(torch.randint(0, 1 << 62, (1,), dtype=torch.int64)) * 2 + 1
    flat = x.detach().contiguous().reshape(-1)
    # Not the kernel workspace: its pooled block outlived this short-lived output and raised the ELM step's peak
    # memory by 6 MiB (52 against the reference's 49).
    out = torch.empty_like(flat)
    scale = torch.ones(1, dtype=x.dtype)
    if rescale:
        scale.div_(1.0 - p)  # rounded to x's dtype as the reference's keep.div_ does
    n = flat.numel()
    if n:
        import numpy as np

        args = (flat.numpy(), out.numpy(), np.uint64(seed), keep_threshold(p), scale.numpy())
        threads = max(1, min(kernel_threads(n), -(-n // CHUNK)))
        run_chunked(_kernels().drop_chunks, args, n, CHUNK, threads)
    return out.reshape(x.shape)
