"""Fast exact CPU backend for the multi-step LIF: generated numba kernels for forward and BPTT backward.

The equations are those of :mod:`spikelib.functional.lif`. The forward kernel computes each step with the same
floating-point operations in the same order as the torch reference, so spikes, membrane and final state are bitwise
equal to it. Backward is BPTT written out by hand; with ``g = surrogate'(Z)`` at the firing argument ``Z`` and
``dL/dV[t]`` carried back in time::

    dS/dH       = g                 dS/dv_th = -g                     fire="difference"  (Z = H - v_th)
                = g / v_th          dS/dv_th = -(g / v_th) (H / v_th)  fire="ratio"       (Z = H / v_th - 1)
    dV/dH       = (1 - S) + (v_reset - H) dS/dH     hard reset   (the second term only without detach_reset)
                = 1 - v_th dS/dH                     soft reset   (the second term only without detach_reset)
    dV/dv_th    = (v_reset - H) dS/dv_th             hard reset   (0 with detach_reset)
                = -S - v_th dS/dv_th                 soft reset   (-S with detach_reset)
    dL/dH[t]    = dL/dS[t] dS/dH + dL/dV[t] dV/dH
    dL/dX[t]    = dL/dH[t] / tau   (tau, decay_input)   or   dL/dH[t]
    dL/dV[t-1]  = dL/dH[t] (1 - 1/tau)  or  dL/dH[t] leak     (+ the membrane trace's own gradient at t-1)
    dL/dtau    += dL/dH[t] * ( -(H[t] - V[t-1]) / tau  (decay_input)  or  (V[t-1] - v_reset) / tau^2 )
    dL/dleak   += dL/dH[t] (V[t-1] - v_reset)
    dL/dv_th   += dL/dS[t] dS/dv_th + dL/dV[t] dV/dv_th

Only ``H`` is saved for backward (spikes and ``V`` are recomputed from it), so activation memory is one tensor of the
input's size. (A variant that saved nothing and recomputed ``H`` chunk by chunk in backward measured 6.1 ms against
5.6 ms forward+backward at T=100, B=32, N=1024: it saves no memory when the input is saved anyway.) A spike gradient
that is an expanded scalar (the gradient of a sum) is read as one value, not copied; so are ``tau`` (or ``leak``) and
``v_threshold`` given as numbers (the ``SCALAR_PARAMS`` variant: the loops stream two ``[M]`` arrays fewer and no
``[M]`` copies of the numbers are made; in the Meta-SpikeFormer training step of the transformer benchmark, torch
profiler, two runs each way: the 77 LIF layers' backward nodes 37-39 ms against 41-46 ms with per-neuron copies,
forward 31-32 against 31-35 ms). Work is split into chunks of the
``B x N`` neurons (8 per thread), handed out dynamically to a few threads (:mod:`.threads`; a thread slowed by torch's
still-spinning OpenMP workers takes fewer chunks: forward 1.87 ms against 2.28 ms with fixed halves in the side-by-side
benchmark); each chunk runs its time loop with its state in cache. Kernel variants are generated from ``lif.py.tmpl``
(see :mod:`.codegen`). Under ``torch.compile`` the kernels run as the custom operators ``spikelib::lif_numba_forward``
and ``spikelib::lif_numba_backward`` (with their autograd and shape functions), which Dynamo keeps opaque; eager mode
calls them through an ``autograd.Function`` (an operator's dispatch costs ~0.1 ms per call), or directly when nothing
needs a gradient. Between the large operations of a training step every Python operation costs several times what it
does in a loop (cold caches), so a call allocates only the tensors it returns or saves: arguments a kernel variant
never touches are shared placeholder arrays, number parameters are kept as one-element arrays, and an absent
final-state gradient is a shared zero array (Max-Former's training step, the 65 LIF layers timed in the model over
6 steps, two runs: module forward 24-25 ms against 28-32 ms, backward 16-17 against 20-21 ms, before this and the
other per-call trims of 2026-12-06: per-call placeholder tensors, the configuration checked on every call, every
dispatch asking each backend's check).

Spikes, ``H``, the membrane trace and the input gradient (the ``[T, M]`` tensors) come from the kernel workspace
(:mod:`.workspace`): with glibc's default malloc, whether such a block is mmapped fresh (and page-faulted again) on
every call depended on the process (0, 3184, 6368 or 9568 minor faults per forward+backward at T=100, B=32, N=1024 in
fresh processes: 6.7-17.2 ms per call); from the workspace a steady-state call faults none.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.functional.lif import LIFConfig, LIFRequest, Param
from spikelib.kernels.cpu import workspace
from spikelib.kernels.cpu.codegen import load_generated, render_template
from spikelib.kernels.cpu.threads import NEURON_OVERHEAD_STEPS, chunk_size, kernel_threads, run_dynamic
from spikelib.kernels.opaque import lif_config_from_key, lif_config_key
from spikelib.kernels.registry import count_call, register_backend
from spikelib.surrogate import Surrogate

_SUPPORTED_DTYPES = {torch.float32: "np.float32", torch.float64: "np.float64"}
_NUMPY_FLOAT = {torch.float32: np.float32, torch.float64: np.float64}
#: Which kernel variant ran in eager mode is counted under ``backend_calls("lif.numba")``: ``"scalar_params"``
#: (``tau`` and ``v_threshold`` numbers) or ``"neuron_params"`` (per-neuron arrays; the only form under compile).
PATH_OP = "lif.numba"


def _numba():
    """Import numba lazily; the ImportError says how to install it."""
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "the 'numba' backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc
    return numba


def _numba_missing_reason() -> Optional[str]:
    try:
        _numba()
    except ImportError as exc:
        return str(exc)
    return None


def _has_kernel_source(surrogate: Surrogate) -> bool:
    return type(surrogate).has_kernel_source()


def check_numba(request: LIFRequest) -> Optional[str]:
    """Capability check for the numba LIF backend (None if it can run the request)."""
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED_DTYPES:
        return f"it supports float32 and float64, the input is {request.dtype}"
    if not _has_kernel_source(request.config.surrogate):
        return (
            f"surrogate {type(request.config.surrogate).__name__} defines no kernel_source(); "
            "implement it or use backend='torch'"
        )
    return _numba_missing_reason()


@functools.lru_cache(maxsize=None)
def _kernel_module(config: LIFConfig, dtype: torch.dtype, save_h: bool, save_v: bool, grad_v_seq: bool,
                   param_grads: bool, gs_scalar: bool = False, scalar_params: bool = False):
    """The generated module for one variant (rendered and imported once per process); ``scalar_params``: ``tau`` and
    ``v_threshold`` are one number for every neuron, passed as one-element arrays."""
    hard = config.reset == "hard"
    soft = not hard
    detach = config.detach_reset
    leak = config.decay == "leak"
    tau_input = not leak and config.decay_input
    tau_noinput = not leak and not config.decay_input
    ratio = config.fire == "ratio"
    flags = {
        "TAU_INPUT": tau_input,
        "TAU_NOINPUT": tau_noinput,
        "LEAK": leak,
        "RATIO": ratio,
        "HARD_RESET": hard,
        "HARD_RESET_GRAD": hard and not detach,
        "SOFT_RESET_GRAD": soft and not detach,
        "SAVE_V": save_v,
        "GRAD_V_SEQ": grad_v_seq,
        "PARAM_GRADS": param_grads,
        "GS_SCALAR": gs_scalar,
        "SCALAR_PARAMS": scalar_params,
        "SCALAR_INV": scalar_params and not leak,
        "SCALAR_LEAK": scalar_params and leak,
        "ARRAY_INV": not scalar_params and not leak,
        "ARRAY_LEAK": not scalar_params and leak,
        "SAVE_H": save_h,
        "PARAM_TAU_INPUT": param_grads and tau_input,
        "PARAM_TAU_NOINPUT": param_grads and tau_noinput,
        "PARAM_LEAK": param_grads and leak,
        "PARAM_DIFFERENCE": param_grads and not ratio,
        "PARAM_RATIO": param_grads and ratio,
        "PARAM_HARD_DETACH": param_grads and hard and detach,
        "PARAM_HARD_GRAD": param_grads and hard and not detach,
        "PARAM_SOFT_DETACH": param_grads and soft and detach,
        "PARAM_SOFT_GRAD": param_grads and soft and not detach,
    }
    F = _SUPPORTED_DTYPES[dtype]
    values = {"F": F, "SURROGATE": config.surrogate.kernel_source("xs", "sg", "alpha", F)}
    source = render_template("lif.py.tmpl", flags, values)
    return load_generated(source, "lif")


def _np(t: torch.Tensor):
    return t.detach().numpy()


#: A neuron parameter as the kernels take it: a per-neuron ``[M]`` tensor, or one number for every neuron.
ParamArg = Union[torch.Tensor, float]


#: One-element arrays of number parameters, by (value, dtype): the kernels only read them, and a model's neurons use a
#: few values, so each call need not build its own (bounded: cleared when full).
_NUMBER_ARRAYS: Dict[Tuple[float, float, torch.dtype], np.ndarray] = {}
_NUMBER_ARRAYS_MAX = 256


def _param_np(p: ParamArg, dtype: torch.dtype):
    """The kernel argument of a parameter: the tensor's array, or a one-element array of the number (rounded to the
    kernel's float type as ``torch.full`` rounds it)."""
    if isinstance(p, torch.Tensor):
        return p.detach().numpy()
    key = (p, math.copysign(1.0, p), dtype)  # (0.0 == -0.0, but they are different arrays)
    array = _NUMBER_ARRAYS.get(key)
    if array is None:
        if len(_NUMBER_ARRAYS) >= _NUMBER_ARRAYS_MAX:
            _NUMBER_ARRAYS.clear()
        array = _NUMBER_ARRAYS[key] = np.full(1, p, dtype=_NUMPY_FLOAT[dtype])
    return array


_PLACEHOLDERS: Dict[Tuple[torch.dtype, int], np.ndarray] = {}
_ZEROS: Dict[Tuple[torch.dtype, int], np.ndarray] = {}


def _placeholder(dtype: torch.dtype, ndim: int) -> np.ndarray:
    """A one-element array for a kernel argument that the variant running never reads or writes (and a zero where it
    reads one value: ``grad_s[0, 0]`` of an absent spike gradient). Shared: made once per dtype and rank."""
    key = (dtype, ndim)
    array = _PLACEHOLDERS.get(key)
    if array is None:
        array = _PLACEHOLDERS[key] = np.zeros((1,) * ndim, dtype=_NUMPY_FLOAT[dtype])
    return array


def _zeros(dtype: torch.dtype, m: int) -> np.ndarray:
    """``[m]`` zeros that the kernels only read (an absent final-state gradient); kept per dtype and size
    (bounded: cleared when full)."""
    key = (dtype, m)
    array = _ZEROS.get(key)
    if array is None:
        if len(_ZEROS) >= _NUMBER_ARRAYS_MAX:
            _ZEROS.clear()
        array = _ZEROS[key] = np.zeros(m, dtype=_NUMPY_FLOAT[dtype])
    return array


def _forward(x: torch.Tensor, v0: torch.Tensor, tau_e: ParamArg, vth_e: ParamArg, config: LIFConfig,
             return_membrane: bool, need_grad: bool
             ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
    """Run the forward kernel over ``x: [T, M]``: ``(spikes, H or None, membrane or None, v_final)`` (``H`` when
    ``need_grad``, the membrane when ``return_membrane``). ``tau_e`` and ``vth_e`` are both ``[M]`` tensors or both
    numbers.

    Every tensor allocated here costs several microseconds between the large operations of a training step (cold
    caches), so arguments the variant does not use are shared placeholder arrays, not new tensors."""
    T, M = x.shape
    scalar = not isinstance(tau_e, torch.Tensor)
    kernels = _kernel_module(config, x.dtype, need_grad, return_membrane, False, False, False, scalar)
    spikes = workspace.empty_like(x)
    h = workspace.empty_like(x) if need_grad else None
    membrane = workspace.empty_like(x) if return_membrane else None
    v_final = torch.empty_like(v0)
    threads = kernel_threads(T * M)
    unused = _placeholder(x.dtype, 2)
    args = (_np(x), _np(v0), _param_np(tau_e, x.dtype), _param_np(vth_e, x.dtype), config.v_reset, spikes.numpy(),
            unused if h is None else h.numpy(), unused if membrane is None else membrane.numpy(), v_final.numpy())
    run_dynamic(kernels.lif_forward, args, M, chunk_size(M, threads, 8, T + NEURON_OVERHEAD_STEPS), threads)
    return spikes, h, membrane, v_final


def _backward(grad_spikes: Optional[torch.Tensor], grad_membrane: Optional[torch.Tensor],
              grad_v_final: Optional[torch.Tensor], h: torch.Tensor, v0: torch.Tensor, tau_e: ParamArg,
              vth_e: ParamArg, config: LIFConfig, param_grads: bool
              ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Run the BPTT kernel: ``(grad_x, grad_v0, grad_tau, grad_vth)`` (the last two None without
    ``param_grads``)."""
    T, M = h.shape
    dtype = h.dtype
    has_gv_seq = grad_membrane is not None and grad_membrane.numel() > 0
    # The gradient of the spikes often arrives as an expanded scalar (the grad of a sum): the kernel then reads
    # that one value (no [T, M] copy). Other strided gradients are made contiguous first: strided arrays stop
    # numba from vectorising the inner loop (measured 1.5x slower than copying).
    if grad_spikes is None:
        gs = _placeholder(dtype, 2)  # a zero, read as the one value
        gs_scalar = True
    elif not any(grad_spikes.stride()):
        gs = _np(grad_spikes.as_strided((1, 1), (1, 1)).contiguous())
        gs_scalar = True
    else:
        gs = _np(grad_spikes.contiguous())
        gs_scalar = False
    scalar = not isinstance(tau_e, torch.Tensor)
    if scalar and param_grads:
        raise ValueError("parameter gradients need per-neuron tau and v_threshold tensors, got numbers")
    kernels = _kernel_module(config, dtype, True, False, has_gv_seq, param_grads, gs_scalar, scalar)
    grad_x = workspace.empty_like(h)
    grad_v0 = torch.empty_like(v0)
    grad_tau = torch.empty_like(tau_e) if param_grads else None
    grad_vth = torch.empty_like(vth_e) if param_grads else None
    threads = kernel_threads(T * M)
    unused = _placeholder(dtype, 1)
    args = (
        gs, _np(grad_membrane.contiguous()) if has_gv_seq else _placeholder(dtype, 2),
        _zeros(dtype, M) if grad_v_final is None else _np(grad_v_final.contiguous()),
        _np(h), _np(v0), _param_np(tau_e, dtype), _param_np(vth_e, dtype), config.v_reset, config.surrogate.alpha,
        grad_x.numpy(), grad_v0.numpy(),  # (new tensors)
        unused if grad_tau is None else grad_tau.numpy(), unused if grad_vth is None else grad_vth.numpy(),
    )
    run_dynamic(kernels.lif_backward, args, M, chunk_size(M, threads, 8, T + NEURON_OVERHEAD_STEPS), threads)
    return grad_x, grad_v0, grad_tau, grad_vth


# The kernels as PyTorch custom operators (opaque to torch.compile, with their autograd and shape functions).
@torch.library.custom_op("spikelib::lif_numba_forward", mutates_args=())
def lif_numba_forward(x: torch.Tensor, v0: torch.Tensor, tau_e: torch.Tensor, vth_e: torch.Tensor, config: str,
                      v_reset: float, alpha: float, return_membrane: bool,
                      need_grad: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::lif_numba_forward``: the forward kernel (``config``, ``v_reset`` and ``alpha`` name a
    :class:`LIFConfig`, :mod:`spikelib.kernels.opaque`)."""
    spikes, h, membrane, v_final = _forward(x, v0, tau_e, vth_e, lif_config_from_key(config, v_reset, alpha),
                                            return_membrane, need_grad)
    return (spikes, x.new_empty((1, 1)) if h is None else h, x.new_empty((0,)) if membrane is None else membrane,
            v_final)


@lif_numba_forward.register_fake
def _(x, v0, tau_e, vth_e, config, v_reset, alpha, return_membrane, need_grad):
    return (torch.empty_like(x), x.new_empty(x.shape if need_grad else (1, 1)),
            x.new_empty(x.shape if return_membrane else (0,)), torch.empty_like(v0))


@torch.library.custom_op("spikelib::lif_numba_backward", mutates_args=())
def lif_numba_backward(grad_spikes: torch.Tensor, grad_membrane: torch.Tensor, grad_v_final: torch.Tensor,
                       h: torch.Tensor, v0: torch.Tensor, tau_e: torch.Tensor, vth_e: torch.Tensor, config: str,
                       v_reset: float, alpha: float,
                       param_grads: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::lif_numba_backward``: the BPTT kernel."""
    grad_x, grad_v0, grad_tau, grad_vth = _backward(grad_spikes, grad_membrane, grad_v_final, h, v0, tau_e, vth_e,
                                                    lif_config_from_key(config, v_reset, alpha), param_grads)
    return (grad_x, grad_v0, h.new_empty((1,)) if grad_tau is None else grad_tau,
            h.new_empty((1,)) if grad_vth is None else grad_vth)


@lif_numba_backward.register_fake
def _(grad_spikes, grad_membrane, grad_v_final, h, v0, tau_e, vth_e, config, v_reset, alpha, param_grads):
    return (torch.empty_like(h), torch.empty_like(v0), torch.empty_like(tau_e) if param_grads else h.new_empty((1,)),
            torch.empty_like(vth_e) if param_grads else h.new_empty((1,)))


def _setup_context(ctx, inputs, output):
    x, v0, tau_e, vth_e, config, v_reset, alpha, return_membrane, need_grad = inputs
    ctx.set_materialize_grads(False)  # an unused output's gradient stays None (no [T, M] zeros)
    if need_grad:
        ctx.save_for_backward(output[1], v0, tau_e, vth_e)
    ctx.config, ctx.v_reset, ctx.alpha = config, v_reset, alpha


def _autograd_backward(ctx, grad_spikes, grad_h, grad_membrane, grad_v_final):
    h, v0, tau_e, vth_e = ctx.saved_tensors
    param_grads = bool(ctx.needs_input_grad[2] or ctx.needs_input_grad[3])
    if grad_spikes is None:
        grad_spikes = h.new_zeros(()).expand(h.shape)  # read as one value
    if grad_membrane is None:
        grad_membrane = h.new_empty((0,))
    if grad_v_final is None:
        grad_v_final = torch.zeros_like(v0)
    gx, gv0, gtau, gvth = lif_numba_backward(grad_spikes, grad_membrane, grad_v_final, h, v0, tau_e, vth_e,
                                             ctx.config, ctx.v_reset, ctx.alpha, param_grads)
    return (gx, gv0 if ctx.needs_input_grad[1] else None, gtau if ctx.needs_input_grad[2] else None,
            gvth if ctx.needs_input_grad[3] else None, None, None, None, None, None)


lif_numba_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


class _LIFNumbaFunction(torch.autograd.Function):
    """The same kernels as one autograd node, for eager mode (a custom operator's dispatch costs ~0.1 ms per call)."""

    @staticmethod
    def forward(ctx, x, v0, tau_e, vth_e, config, return_membrane, need_grad):  # type: ignore[override]
        # (the membrane output is None unless return_membrane: no placeholder tensor is made)
        spikes, h, membrane, v_final = _forward(x, v0, tau_e, vth_e, config, return_membrane, need_grad)
        ctx.set_materialize_grads(False)
        ctx.params = None  # the parameters when they are numbers (not saved tensors)
        if need_grad and isinstance(tau_e, torch.Tensor):
            ctx.save_for_backward(h, v0, tau_e, vth_e)
        elif need_grad:
            ctx.save_for_backward(h, v0)
            ctx.params = (tau_e, vth_e)
        ctx.config = config
        return spikes, membrane, v_final

    @staticmethod
    def backward(ctx, grad_spikes, grad_membrane, grad_v_final):  # type: ignore[override]
        refuse_create_graph("lif (numba)")
        if ctx.params is None:
            h, v0, tau_e, vth_e = ctx.saved_tensors
        else:
            (h, v0), (tau_e, vth_e) = ctx.saved_tensors, ctx.params
        param_grads = bool(ctx.needs_input_grad[2] or ctx.needs_input_grad[3])
        gx, gv0, gtau, gvth = _backward(grad_spikes, grad_membrane, grad_v_final, h, v0, tau_e, vth_e, ctx.config,
                                        param_grads)
        return (gx, gv0 if ctx.needs_input_grad[1] else None, gtau if ctx.needs_input_grad[2] else None,
                gvth if ctx.needs_input_grad[3] else None, None, None, None)


def _per_element(p: Param, batch_shape: Tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A parameter as a contiguous ``[M]`` tensor (autograd reduces the expansion back to the parameter's shape)."""
    if isinstance(p, torch.Tensor):
        return p.expand(batch_shape).reshape(-1).contiguous()
    return torch.full((math.prod(batch_shape),), p, dtype=like.dtype, device=like.device)


def _kernel_params(tau: Param, v_threshold: Param, batch_shape: Tuple[int, ...], like: torch.Tensor
                   ) -> Tuple[ParamArg, ParamArg]:
    """``tau`` and ``v_threshold`` as the eager kernels take them: both numbers as they are (the scalar kernel
    variant, which streams two ``[M]`` arrays fewer), else both as ``[M]`` tensors."""
    if isinstance(tau, (int, float)) and isinstance(v_threshold, (int, float)):
        return float(tau), float(v_threshold)
    return _per_element(tau, batch_shape, like), _per_element(v_threshold, batch_shape, like)


@register_backend(
    "lif", "numba", check=check_numba, priority=10, compile_safe=True, pure_check=True,
    description="generated numba kernels, fast exact CPU path",
)
def lif_numba(
    x: torch.Tensor, v0: torch.Tensor, tau: Param, v_threshold: Param, config: LIFConfig, return_membrane: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Multi-step LIF with the numba kernels. Returns ``(spikes, membrane or None, v_final)``."""
    T = x.shape[0]
    batch_shape = tuple(x.shape[1:])
    x2 = x.reshape(T, -1).contiguous()
    v0f = v0.reshape(-1).contiguous()
    if torch.compiler.is_compiling():  # an opaque operator for Dynamo (tensor arguments only)
        tau_e = _per_element(tau, batch_shape, x)
        vth_e = _per_element(v_threshold, batch_shape, x)
        need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, v0, tau_e, vth_e))
        spikes, _, membrane, v_final = lif_numba_forward(x2, v0f, tau_e, vth_e, lif_config_key(config),
                                                         config.v_reset, config.surrogate.alpha, return_membrane,
                                                         need_grad)
    else:
        tau_k, vth_k = _kernel_params(tau, v_threshold, batch_shape, x)
        count_call(PATH_OP, "neuron_params" if isinstance(tau_k, torch.Tensor) else "scalar_params")
        need_grad = torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in (x, v0, tau_k, vth_k))
        if need_grad:
            spikes, membrane, v_final = _LIFNumbaFunction.apply(x2, v0f, tau_k, vth_k, config, return_membrane,
                                                                need_grad)
        else:  # nothing to differentiate: no autograd node (its Python costs about as much as a small kernel)
            spikes, _, membrane, v_final = _forward(x2, v0f, tau_k, vth_k, config, return_membrane, False)
    spikes = spikes.view(x.shape)
    membrane = membrane.view(x.shape) if return_membrane else None
    return spikes, membrane, v_final.view(batch_shape)
