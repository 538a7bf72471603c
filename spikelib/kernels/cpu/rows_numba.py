"""Backend ``"numba"`` of operation ``"index_add_rows"``: ``out[idx[r]] += src[r]``, one contiguous vector add per
row (:mod:`._rows_kernels`), on the calling thread.

torch's ``index_add_`` along dim 0 of a CPU tensor scatters element by element (an index per element); adding whole
rows is 1.4-2.9x faster at the sparse convolutions' sizes (one thread, float32; rows x channels: 3,500 x 16: 39 ->
13 us, 6,500 x 32: 115 -> 47 us, 6,000 x 64: 177 -> 127 us). The result is bitwise the reference's: each element of
``out`` receives its additions in row order, as ``index_add_`` does on one thread. Serial on purpose: rows with the
same index would race on several threads, and the convolutions call it once per kernel tap on a few thousand rows.
An index outside ``[0, N)`` raises ``IndexError`` naming it (the rows before it have been added, as in torch).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional

import torch

from spikelib.kernels.cpu.cache import import_kernel_module
from spikelib.kernels.registry import register_backend

_SUPPORTED = (torch.float32, torch.float64)


@functools.lru_cache(maxsize=None)
def _kernels() -> Any:
    try:
        return import_kernel_module("spikelib.kernels.cpu._rows_kernels")
    except ImportError as exc:
        raise ImportError(
            "the 'numba' index_add_rows backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc


def check_numba(request: Any) -> Optional[str]:
    """Capability check (None if the numba kernel can run the request)."""
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    if not getattr(request, "contiguous", True):
        return "it adds into contiguous tensors only"
    if getattr(request, "recorded", False):
        return ("autograd records this add (a backward with create_graph=True): torch's index_add_ is "
                "differentiable, this kernel is not")
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'spikelib[fast]')"
    return None


@register_backend("index_add_rows", "numba", check=check_numba, priority=10,
                  description="numba: one vector add per row, serial (CPU, float32/float64)")
def index_add_rows_numba(out: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> None:
    """``out[idx[r]] += src[r]`` in place; ``out [N, ...]`` (contiguous) and ``src [P, ...]`` with equal row shapes
    and dtype, ``idx`` int64 ``[P]``."""
    if not out.is_contiguous():
        raise ValueError("index_add_rows (numba): out must be contiguous (the torch backend takes any layout)")
    src = src.contiguous()
    if out.shape[1:] != src.shape[1:] or idx.dim() != 1 or idx.shape[0] != src.shape[0] or src.dtype != out.dtype:
        raise ValueError(f"index_add_rows: expected out [N, *R], idx [P], src [P, *R] of one dtype, got out "
                         f"{tuple(out.shape)} {out.dtype}, idx {tuple(idx.shape)}, src {tuple(src.shape)} {src.dtype}")
    if idx.dtype != torch.int64:
        raise TypeError(f"index_add_rows: idx must be int64, got {idx.dtype}")
    if idx.numel() == 0:
        return
    width = math.prod(out.shape[1:])
    if out.shape[0] == 0 or width == 0:  # nothing to add to; the indices must still be valid
        outside = ((idx < 0) | (idx >= out.shape[0])).nonzero()
        bad = int(outside[0, 0]) if outside.numel() else -1
    else:
        bad = _kernels().add_rows(out.view(out.shape[0], width).numpy(), idx.contiguous().numpy(),
                                  src.view(src.shape[0], width).numpy())
    if bad >= 0:
        raise IndexError(f"index_add_rows: idx[{bad}] = {int(idx[bad])} is outside [0, {out.shape[0]})")
