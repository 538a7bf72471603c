"""Event-driven dense synapses on CPU: backend ``"numba"`` of operation ``"linear"`` (equations in
:mod:`spikelib.functional.linear`).

A layer fed by spikes sees mostly zeros: at 5% activity a dense product spends 95% of its multiply-adds on zero
inputs. For a layer with at least :data:`EVENT_MIN_OUTPUTS` outputs this backend first finds the nonzero inputs of
every row (one vectorised pass over ``x``: a bit mask per 8 inputs and a count per row) and, when at most
:data:`EVENT_DENSITY_MAX` of all inputs are nonzero, lists them per row (ascending input index; their values too,
unless every nonzero input is 1, as spikes are) and computes

* the output ``y[r] = b + sum_k vals[k] W^T[cols[k]]``: ``nnz C_out`` multiply-adds instead of ``rows C_in C_out``;
* the weight gradient from the same list, regrouped by row block and input:
  ``dL/dW^T[j] = sum_{events (r, j)} vals dL/dy[r]``, again ``nnz C_out`` (the list is what is saved for backward,
  not ``x``: ``nnz`` 4-byte indices against ``rows C_in`` floats);
* the input gradient ``dL/dy W`` with torch's matrix product (dense whatever ``x`` is).

Otherwise it runs the same products densely with torch (``addmm`` / ``mm``). Results equal the reference
(``F.linear`` under autograd) up to float summation order (the weight gradient adds one partial sum per row block, as
blocked products do; tests compare both against float64). Zero inputs are skipped, which differs from the dense
product only where it would multiply ``0 * inf``: a non-finite weight (forward) or output gradient (weight gradient)
sends the call to the dense path, so NaN and inf propagate as in the reference. Which path ran is counted under
``backend_calls("linear.numba")``: ``"events"`` / ``"dense"`` for the forward pass, ``"grad_weight_events"`` /
``"grad_weight_dense"`` for the weight gradient after an event forward. The outputs and input gradients come from the
kernel workspace (:mod:`.workspace`), so a steady-state training step page-faults no memory for them.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Tuple

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.kernels.cpu import workspace
from spikelib.kernels.cpu.cache import import_kernel_module
from spikelib.kernels.cpu.threads import kernel_threads, run_chunked, run_dynamic
from spikelib.kernels.registry import count_call, register_backend

_SUPPORTED = (torch.float32, torch.float64)

#: The event path runs when at most this share of the inputs is nonzero. Measured on one core (CPU time, float32,
#: 6400 rows, 700 -> 256): forward 9.8 ms (events) / 17.1 ms (addmm) at 5% nonzero, 14.5 / 17.5 at 10%, 17.6 / 17.5 at
#: 15%; weight gradient 4.6 / 16.8 ms at 5%, 12.2 / 17.1 at 15%.
EVENT_DENSITY_MAX = 0.15
#: ... and the layer has at least this many outputs: finding a row's nonzero inputs costs about as much as a dense
#: row product with a few dozen outputs (256 -> 16 at 5%: events 3.1 ms, addmm 0.5 ms; 256 -> 128: 3.4 / 4.1 ms).
EVENT_MIN_OUTPUTS = 64
PATH_OP = "linear.numba"
#: The weight gradient reads ``dL/dy`` in blocks of rows of about this size (they stay in a core's L2 cache).
GRAD_BLOCK_BYTES = 1 << 19


@functools.lru_cache(maxsize=None)
def _kernels() -> Any:
    try:
        return import_kernel_module("spikelib.kernels.cpu._linear_kernels")
    except ImportError as exc:
        raise ImportError(
            "the 'numba' linear backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc


def check_numba(request: Any) -> Optional[str]:
    """Capability check (None if the numba backend can run the request)."""
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'spikelib[fast]')"
    return None


def _all_finite(t: torch.Tensor) -> bool:
    """True when every element is finite (a finite sum proves it; an overflowing sum of finite values says False,
    which only sends the call to the dense path)."""
    return t.numel() == 0 or math.isfinite(float(t.sum()))


class _Events:
    """The nonzero inputs of every row: ``ptr [R + 1]`` into ``cols`` (int32, ascending within a row) and ``vals``
    (None when every nonzero input is 1: spikes)."""

    def __init__(self, ptr: torch.Tensor, cols: torch.Tensor, vals: Optional[torch.Tensor]) -> None:
        self.ptr, self.cols, self.vals = ptr, cols, vals

    def values(self, dtype: torch.dtype) -> torch.Tensor:
        """``vals``, or ones for binary inputs."""
        return self.vals if self.vals is not None else torch.ones(self.cols.numel(), dtype=dtype)


def _threads(work: int, units: int) -> int:
    return max(1, min(kernel_threads(work), units))


def _chunk(units: int, threads: int) -> int:
    return max(1, -(-units // (8 * threads)))


def _forward(X: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
             ) -> Tuple[torch.Tensor, Optional[_Events]]:
    """Output ``[R, C_out]`` of ``X: [R, C_in]`` (contiguous, detached) on the path the density calls for, and the
    event list when the event path ran. ``weight`` (detached) may have any strides: the event kernels read
    ``W^T`` contiguous, which costs no copy when ``weight`` is the transpose of a contiguous ``[C_in, C_out]``
    matrix (the ELM's input projection); the dense products read any layout."""
    R, c_in = X.shape
    c_out = weight.shape[0]
    if R and c_in and c_out >= EVENT_MIN_OUTPUTS and _all_finite(weight):
        k = _kernels()
        masks = torch.empty((R, 8 * -(-c_in // 64)), dtype=torch.uint8)  # whole 64-bit words per row
        counts = torch.empty(R, dtype=torch.int64)
        others = torch.empty(R, dtype=torch.int64)
        threads = _threads(R * c_in // 4, R)
        run_chunked(k.scan, (X.numpy(), masks.numpy(), counts.numpy(), others.numpy()), R, _chunk(R, threads),
                    threads)
        ptr = torch.from_numpy(k.prefix(counts.numpy()))
        nnz = int(ptr[-1])
        if nnz <= EVENT_DENSITY_MAX * R * c_in:
            binary = not bool(others.any())
            count_call(PATH_OP, "events")
            cols = torch.empty(nnz, dtype=torch.int32)
            vals = None if binary else torch.empty(nnz, dtype=X.dtype)
            wt = weight.t().contiguous()
            y = workspace.empty((R, c_out), X.dtype)
            b = bias.contiguous() if bias is not None else X.new_zeros(1)
            threads = _threads(nnz * c_out + R * c_out, R)
            head = (X.numpy(), masks.numpy().view("uint64"), ptr.numpy(), wt.numpy(), b.numpy(), bias is not None,
                    cols.numpy())
            if binary:
                run_dynamic(k.forward_ones, head + (y.numpy(),), R, _chunk(R, threads), threads)
            else:
                run_dynamic(k.forward_values, head + (vals.numpy(), y.numpy()), R, _chunk(R, threads), threads)
            return y, _Events(ptr, cols, vals)
    count_call(PATH_OP, "dense")
    y = workspace.empty((R, c_out), X.dtype)
    if bias is None:
        return torch.mm(X, weight.t(), out=y), None
    return torch.addmm(bias, X, weight.t(), out=y), None


def _dense_input(events: _Events, R: int, c_in: int, dtype: torch.dtype) -> torch.Tensor:
    """``x`` rebuilt from its event list (for the dense weight gradient of a non-finite output gradient)."""
    X = torch.zeros((R, c_in), dtype=dtype)
    rows = torch.repeat_interleave(torch.arange(R), events.ptr[1:] - events.ptr[:-1])
    X[rows, events.cols.long()] = events.values(dtype)
    return X


def _grad_weight_events(events: _Events, gy: torch.Tensor, c_in: int) -> torch.Tensor:
    """``dL/dW = (sum over the events of input j of vals dL/dy[row])^T``, from the lists regrouped by row block and
    input (:data:`GRAD_BLOCK_BYTES` of ``dL/dy`` per block)."""
    k = _kernels()
    R, c_out = gy.shape
    nnz = events.cols.numel()
    binary = events.vals is None
    block_rows = max(1, GRAD_BLOCK_BYTES // max(1, c_out * gy.element_size()))
    n_blocks = max(1, -(-R // block_rows))
    ptr_t = torch.empty(n_blocks * c_in + 1, dtype=torch.int64)
    rows = torch.empty(nnz, dtype=torch.int32)
    vals = gy.new_empty(0) if binary else events.vals
    vals_t = torch.empty(0 if binary else nnz, dtype=gy.dtype)
    k.transpose_events(events.ptr.numpy(), events.cols.numpy(), vals.numpy(), binary, c_in, block_rows,
                       ptr_t.numpy(), rows.numpy(), vals_t.numpy())
    gwt = torch.empty((c_in, c_out), dtype=gy.dtype)
    threads = _threads(nnz * c_out, c_in)
    chunk = max(1, -(-c_in // threads))
    part = torch.empty((threads, c_out), dtype=gy.dtype)
    if binary:
        args = (ptr_t.numpy(), rows.numpy(), gy.numpy(), n_blocks, gwt.numpy(), part.numpy())
        run_chunked(k.grad_weight_ones, args, c_in, chunk, threads)
    else:
        args = (ptr_t.numpy(), rows.numpy(), vals_t.numpy(), gy.numpy(), n_blocks, gwt.numpy(), part.numpy())
        run_chunked(k.grad_weight_values, args, c_in, chunk, threads)
    return gwt.t()  # a view: autograd gives a leaf weight its gradient in the weight's own layout


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]):  # type: ignore[override]
        Xd = X.detach()
        w = weight.detach()
        b = bias.detach() if bias is not None else None
        y, events = _forward(Xd, w, b)
        ctx.events = events
        ctx.shape = tuple(X.shape)
        if events is None:
            ctx.save_for_backward(Xd if ctx.needs_input_grad[1] else None, w)
        else:
            ctx.save_for_backward(None, w)
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):  # type: ignore[override]
        refuse_create_graph("linear (numba)")
        X, w = ctx.saved_tensors
        events: Optional[_Events] = ctx.events
        R, c_in = ctx.shape
        gy = gy.contiguous()
        grad_x = grad_w = grad_b = None
        # Column sums of dL/dy: the bias gradient, and (summed once more) the finiteness test of dL/dy that the
        # event path needs (a finite total proves every element finite), at a quarter of a full reduction's cost.
        col_sum = gy.sum(0) if ctx.needs_input_grad[2] or (ctx.needs_input_grad[1] and events is not None) else None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(gy, w, out=workspace.empty((R, c_in), gy.dtype))
        if ctx.needs_input_grad[1]:
            if events is None:
                grad_w = torch.mm(gy.t(), X)
            elif gy.numel() == 0 or math.isfinite(float(col_sum.sum())):
                count_call(PATH_OP, "grad_weight_events")
                grad_w = _grad_weight_events(events, gy, c_in)
            else:
                count_call(PATH_OP, "grad_weight_dense")
                grad_w = torch.mm(gy.t(), _dense_input(events, R, c_in, gy.dtype))
        if ctx.needs_input_grad[2]:
            grad_b = col_sum
        return grad_x, grad_w, grad_b


@register_backend(
    "linear", "numba", check=check_numba, priority=10,
    description="numba: event-driven on sparse inputs (spikes), else torch's dense products (CPU)",
)
def linear_numba(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``x W^T + b`` over the last dimension, event-driven when ``x`` is sparse (see the module docstring)."""
    c_in = weight.shape[1]
    c_out = weight.shape[0]
    lead = tuple(x.shape[:-1])
    X = x.reshape(-1, c_in)
    if not X.is_contiguous():
        X = X.contiguous()
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias))
    if need_grad:
        y = _LinearFunction.apply(X, weight, bias)
    else:
        y = _forward(X.detach(), weight.detach(), None if bias is None else bias.detach())[0]
    return y.view(lead + (c_out,))
