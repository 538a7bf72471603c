"""Fast exact CPU backends of the delay operations (equations in :mod:`spikelib.functional.delay`).

``delay_linear_int`` (integer delays), with ``xT``/``yT`` channel-major copies of the time-first tensors
(``[C, T B]``)::

    yT[j, d B + k]  += w[j, i] xT[i, k]                    k < (T - d) B,  d = D[j, i]
    backward: gxT[i, k] += w[j, i] gT[j, d B + k];         gw[j, i] = sum_k gT[j, d B + k] xT[i, k]

Cost: ``(T - d) B`` multiply-adds per synapse (independent of ``max_delay``); memory: the weights, one int64 delay per
synapse, and the channel-major copies of input and output.

Its forward pass on sparse inputs (at most ``INT_EVENT_DENSITY_MAX`` nonzero, e.g. spikes) is event-driven::

    for every nonzero x[s, b, i] and synapse (j, d) of input i with s + d < T:   y[s + d, b, j] += w[j, i] x[s, b, i]

with each input's synapses sorted by delay (a table built per call: O(synapses) time and memory), so those with
``s + d < T`` are a prefix: ``nnz C_out`` multiply-adds at most, whatever ``max_delay`` is, against the dense
``C_out C_in T B``. The backward pass is always the dense one (its gradients are dense whatever the input).

``delay_shifted_matmul`` (Gaussian kernel applied to sparse inputs): every nonzero ``x[s, b, i]`` adds
``x[s, b, i] kernel[d, i, :]`` to output row ``(s + d, b)`` for each tap ``d``, and the kernel gradient gathers
``x[s, b, i] g[(s + d) B + b, :]`` the same way: ``nnz (D_max + 1) C_out`` multiply-adds instead of the dense
``T B C_in (D_max + 1) C_out``. Both loop over one input channel's events for a group of batch entries at a time
(``EVENT_GROUP_BYTES``), so one channel's kernel slice (``(D_max + 1) C_out``, input-major) serves all of them from
L1 and the group's rows stay in L2 in contiguous buffers (rows ``B`` apart in the time-first layout would alias in
the cache sets). ``delay_gaussian_kernel``: the kernel and its gradients in one pass per synapse.

The kernels (:mod:`._delay_kernels`) are serial ``@numba.njit(nogil=True, cache=True)`` functions over a range of units,
run on spikelib's kernel threads (:mod:`.threads`, not numba's OpenMP layer), compiled once per machine (numba keeps
the machine code in the verified kernel cache, :mod:`.cache`) and imported only when a backend first runs, so numba
stays optional.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.kernels.cpu.cache import import_kernel_module
from spikelib.kernels.cpu.threads import kernel_threads, run_chunked, run_dynamic
from spikelib.kernels.delay_torch import DenseShiftedMatmul
from spikelib.kernels.registry import count_call, register_backend

_SUPPORTED = (torch.float32, torch.float64)
_SAME_WIDTH_INT = {torch.float32: torch.int32, torch.float64: torch.int64}  # the event scan tests bits in groups


@functools.lru_cache(maxsize=None)
def _kernels() -> Any:
    try:
        _delay_kernels = import_kernel_module("spikelib.kernels.cpu._delay_kernels")
    except ImportError as exc:
        raise ImportError(
            "the 'numba' delay backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc
    return _delay_kernels


def _numba_missing() -> Optional[str]:
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'spikelib[fast]')"
    return None


def check_numba(request: Any) -> Optional[str]:
    """Capability check (None if the numba kernels can run the request)."""
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    return _numba_missing()


def _run(kernel: Any, args: tuple, m: int, work: int) -> None:
    """Run a serial range kernel over ``m`` units (output rows, channels or batch entries) on the kernel threads
    (:mod:`spikelib.kernels.cpu.threads`); ``work`` (multiply-adds) decides whether more than one thread pays off."""
    threads = max(1, min(kernel_threads(work // 8), m))
    chunk = max(1, -(-m // (2 * threads)))
    run_chunked(kernel, args, m, chunk, threads)


#: ``delay_linear_int`` runs the event path when at most this share of the inputs is nonzero (spikes), the dense
#: shifted multiply-adds above it. Measured end to end (2 threads, float32, no grad; event / dense time at 5% and at
#: 10% nonzero, break-even): T=100, B=64, 140 -> 256, max_delay 24: 6.7 / 15.5 ms, 8.3 / 15.0 ms, ~18%;
#: T=300, B=32, 256 -> 256, max_delay 8: 13.7 / 30.7 ms, 22.7 / 30.6 ms, ~15%; T=50, B=128, 700 -> 128, max_delay 40:
#: 11.8 / 20.3 ms, 18.7 / 20.4 ms, ~15%; the small T=100, B=16, 64 -> 64: 0.36 / 0.47 ms, 0.50 / 0.47 ms, ~10%.
INT_EVENT_DENSITY_MAX = 0.1
INT_PATH_OP = "delay_linear_int.numba"  # backend_calls(INT_PATH_OP): which forward path ran, "events" or "dense"


def _int_forward_dense(x: torch.Tensor, w: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense forward ``[T, B, C_out]`` and the channel-major input copy ``xT`` it made (kept for the backward)."""
    T, B, c_in = x.shape
    c_out = w.shape[0]
    xT = x.reshape(T * B, c_in).t().contiguous()
    yT = x.new_empty((c_out, T * B))
    _run(_kernels().forward, (xT.numpy(), w.numpy(), d.numpy(), T, B, yT.numpy()), c_out, c_out * c_in * T * B)
    return yT.t().reshape(T, B, c_out), xT


def _int_forward_events(x: torch.Tensor, w: torch.Tensor, d: torch.Tensor, nnz: int) -> torch.Tensor:
    """Event forward ``[T, B, C_out]``: a table of each input's synapses sorted by delay (built per call: O(synapses)
    time and memory), then one scattered multiply-add per nonzero input and synapse; threads take batch chunks
    dynamically (:func:`~spikelib.kernels.cpu.threads.run_dynamic`: 8 per thread), as torch's spinning OpenMP
    threads slow down one of them after a torch operation."""
    T, B, c_in = x.shape
    c_out = w.shape[0]
    k = _kernels()
    L = min(int(k.max_value(d.numpy())) + 1, T) if d.numel() else 1
    off = torch.empty((c_in, c_out), dtype=torch.int32 if L * c_out < 2**31 else torch.int64)
    wt = torch.empty((c_in, c_out), dtype=w.dtype)
    nlt = torch.empty((c_in, L + 1), dtype=torch.int64)
    k.int_event_table(w.numpy(), d.numpy(), off.numpy(), wt.numpy(), nlt.numpy())
    y = x.new_empty((T * B, c_out))
    bits = x.view(_SAME_WIDTH_INT[x.dtype])
    args = (x.numpy(), bits.numpy(), off.numpy(), wt.numpy(), nlt.numpy(), y.numpy())
    threads = max(1, min(kernel_threads(nnz * c_out + T * B * (c_in + c_out) // 8), B))  # + the scan and copy
    run_dynamic(k.int_events_forward, args, B, max(1, -(-B // (8 * threads))), threads)
    return y.view(T, B, c_out)


#: The density that picks the path is counted on every ``DENSITY_SAMPLE_STEP``-th time step (steps 0, 4, 8, ...):
#: a quarter of the reads of a full count, which took 0.15-0.36 ms per layer of the SNN-delays model (``[112-136, 64,
#: 140-256]``, a full count is one pass over the input at memory speed). The path is a speed choice: both compute the
#: same sums, and the choice stays a deterministic function of the input.
DENSITY_SAMPLE_STEP = 4


def sampled_density(x: torch.Tensor) -> float:
    """Share of nonzero elements of ``x: [T, ...]`` over its time steps ``0, DENSITY_SAMPLE_STEP, ...`` (0 for an
    empty input)."""
    if not x.numel():
        return 0.0
    sampled = -(-x.shape[0] // DENSITY_SAMPLE_STEP)
    return int(_kernels().count_nonzero_steps(x.numpy(), DENSITY_SAMPLE_STEP)) / (sampled * (x.numel() // x.shape[0]))


def _int_forward(x: torch.Tensor, w: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The forward pass on the path the input's density (:func:`sampled_density`) calls for (counted under
    ``INT_PATH_OP``); returns the output and ``xT`` if the dense path made it."""
    density = sampled_density(x)
    nnz = round(density * x.numel())
    if density <= INT_EVENT_DENSITY_MAX:
        count_call(INT_PATH_OP, "events")
        return _int_forward_events(x, w, d, nnz), None
    count_call(INT_PATH_OP, "dense")
    return _int_forward_dense(x, w, d)


class _DelayIntFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        T, B, c_in = x.shape
        x = x.detach().contiguous()
        w = weight.detach().to(x.dtype).contiguous()
        d = delays.contiguous()
        y, xT = _int_forward(x, w, d)
        if xT is None:
            xT = x.reshape(T * B, c_in).t().contiguous()
        ctx.save_for_backward(xT, w, d)
        ctx.shape = (T, B)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        refuse_create_graph("delay_linear_int (numba)")
        xT, w, d = ctx.saved_tensors
        T, B = ctx.shape
        c_out, c_in = w.shape
        k = _kernels()
        gT = grad_y.reshape(T * B, c_out).t().contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            gxT = torch.empty_like(xT)
            _run(k.backward_x, (gT.numpy(), w.numpy(), d.numpy(), T, B, gxT.numpy()), c_in, c_out * c_in * T * B)
            grad_x = gxT.t().reshape(T, B, c_in)
        if ctx.needs_input_grad[1]:
            gw = torch.empty_like(w)
            _run(k.backward_w, (gT.numpy(), xT.numpy(), d.numpy(), T, B, gw.numpy()), c_out, c_out * c_in * T * B)
            grad_w = gw
        return grad_x, grad_w, None


@register_backend(
    "delay_linear_int", "numba", check=check_numba, priority=10,
    description="numba: events for sparse inputs, else one shifted multiply-add per synapse; cost independent of "
                "max_delay (CPU)",
)
def delayed_linear_int_numba(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """Integer-delay synapses with the numba kernels; ``x: [T, B, C_in]`` contiguous, ``delays`` int64.

    The forward pass is event-driven when at most ``INT_EVENT_DENSITY_MAX`` of the inputs are nonzero and dense
    otherwise (same result up to float summation order; the event path skips zero inputs, so a non-finite weight
    meets them as 0 rather than as NaN); the backward pass is always dense. Without autograd (no grad mode, or
    neither ``x`` nor ``weight`` requires grad) nothing is saved for it.
    """
    if weight.dtype != x.dtype:
        raise TypeError(f"weight has dtype {weight.dtype} but the input has dtype {x.dtype}")
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _DelayIntFunction.apply(x, weight, delays)
    return _int_forward(x.detach().contiguous(), weight.detach().contiguous(), delays.contiguous())[0]


# ----------------------------------------------------------------------------------------------------------------
# Gaussian (training) path: the fused kernel construction and the event path for sparse inputs
# ----------------------------------------------------------------------------------------------------------------

EVENT_DENSITY_MAX = 0.15  # above this share of nonzero inputs the dense GEMMs are faster (measured break-even ~0.2)


def check_events(request: Any) -> Optional[str]:
    """Capability check of the event path: CPU, float32/float64, numba, and a sparse input."""
    reason = check_numba(request)
    if reason is None and request.density > EVENT_DENSITY_MAX:
        reason = (f"the event path is for sparse inputs (at most {EVENT_DENSITY_MAX:g} nonzero), this input has "
                  f"{request.density:.3g}; use backend='auto' or 'torch'")
    return reason


@register_backend(
    "delay_shifted_matmul", "numba", check=check_events, priority=10,
    description="numba: one row update per input spike and tap (sparse inputs, CPU)",
)
class EventShiftedMatmul:
    """Forward and kernel gradient driven by the nonzero inputs: ``nnz (D_max + 1) C_out`` multiply-adds each; the
    input gradient by the direct GEMMs (it is dense whatever the input)."""

    @staticmethod
    def forward(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        T, B, _ = x.shape
        k = _kernels()
        y = x.new_empty((T * B, kernel.shape[2]))
        kt = kernel.detach().permute(1, 0, 2).contiguous()  # input-major: one input's taps are contiguous
        group = _event_group(T, kernel.shape[2], x.element_size())
        work = int(torch.count_nonzero(x)) * kernel.shape[0] * kernel.shape[2]
        _run_grouped(k.events_forward_grouped, (x.detach().numpy(), kt.numpy(), y.numpy(), group), B, group, work)
        return y

    @staticmethod
    def grad_kernel(x: torch.Tensor, G: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        T, _, c_in = x.shape
        k = _kernels()
        gk = torch.empty_like(kernel)
        group = _event_group(T, kernel.shape[2], x.element_size())
        work = int(torch.count_nonzero(x)) * kernel.shape[0] * kernel.shape[2]
        _run_grouped(k.events_grad_kernel_grouped, (x.detach().numpy(), G.detach().numpy(), gk.numpy(), group),
                     c_in, 1, work)
        return gk

    @classmethod
    def backward(cls, x: torch.Tensor, G: torch.Tensor, kernel: torch.Tensor, need_x: bool,
                 need_kernel: bool) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The input gradient by the direct GEMMs, the kernel gradient by the event path."""
        return (DenseShiftedMatmul.grad_input(x, G, kernel) if need_x else None,
                cls.grad_kernel(x, G, kernel) if need_kernel else None)


#: The event kernels accumulate a group of batch entries' ``[T, C_out]`` rows in a buffer of about this many bytes
#: (L2-sized), so that one input's kernel slice serves the whole group's events.
EVENT_GROUP_BYTES = 1 << 19


def _event_group(steps: int, c_out: int, itemsize: int) -> int:
    return max(1, min(8, EVENT_GROUP_BYTES // max(1, steps * c_out * itemsize)))


def _run_grouped(kernel: Any, args: tuple, m: int, align: int, work: int) -> None:
    """:func:`_run` with every chunk but the last a multiple of ``align`` units, and one chunk per thread (each
    chunk sets up its own buffers)."""
    threads = max(1, min(kernel_threads(work // 8), -(-m // align)))
    chunk = -(-(-(-m // threads)) // align) * align
    run_chunked(kernel, args, m, chunk, threads)


class _GaussKernelFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, delay: torch.Tensor, sigma: float, max_delay: int):  # type: ignore[override]
        from spikelib.functional.delay import GAUSS_CUTOFF, GAUSS_EPS

        k = _kernels()
        w = weight.detach().contiguous()
        d = delay.detach().to(w.dtype).contiguous()
        kernel = w.new_empty((max_delay + 1, w.shape[1], w.shape[0]))
        gauss = torch.empty_like(kernel)
        args = (w.numpy(), d.numpy(), float(sigma), GAUSS_CUTOFF, GAUSS_EPS, kernel.numpy(), gauss.numpy())
        _run(k.gauss_kernel_forward, args, w.shape[1], 20 * kernel.numel())
        ctx.save_for_backward(w, d, gauss)
        ctx.sigma = float(sigma)
        return kernel

    @staticmethod
    def backward(ctx, grad_kernel: torch.Tensor):  # type: ignore[override]
        refuse_create_graph("delay_gaussian_kernel (numba)")
        w, d, gauss = ctx.saved_tensors
        k = _kernels()
        gw = torch.empty_like(w)
        gd = torch.empty_like(d)
        args = (grad_kernel.contiguous().numpy(), gauss.numpy(), w.numpy(), d.numpy(), ctx.sigma, gw.numpy(),
                gd.numpy())
        _run(k.gauss_kernel_backward, args, w.shape[1], 4 * grad_kernel.numel())
        return gw, gd, None, None


@register_backend(
    "delay_gaussian_kernel", "numba", check=check_numba, priority=10,
    description="numba: fused construction of the Gaussian kernel and its gradients (CPU)",
)
def gaussian_kernel_numba(weight: torch.Tensor, delay: torch.Tensor, sigma: float, max_delay: int) -> torch.Tensor:
    """The kernel ``[D_max + 1, C_in, C_out]`` of :func:`spikelib.functional.delay.gaussian_delay_kernel`."""
    if weight.dtype != delay.dtype:
        raise TypeError(f"delay has dtype {delay.dtype} but weight has dtype {weight.dtype}")
    return _GaussKernelFunction.apply(weight, delay, sigma, max_delay)
