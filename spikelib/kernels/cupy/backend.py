"""CuPy backend for the multi-step LIF (and any neuron model of :mod:`.neurons`): fused forward and BPTT kernels.

Equations: :mod:`spikelib.functional.lif` (the model's charge ``H = f(V, X)``), with BPTT written once in terms of the
model's partial derivatives (the idea of spikingjelly's CuPy kernels, fangwei123456/spikingjelly
spikingjelly/activation_based/auto_cuda/neuron_kernel.py, ``NeuronBPTT.grad_h_next_to_v`` / ``grad_h_to_x``; our own
template, ``multistep_neuron.cu.tmpl``). With ``g = surrogate'(Z[t])`` at the firing argument (``Z = H - v_th``, or
``H / v_th - 1`` with ``fire="ratio"``) and ``dL/dV[t]`` carried back in time (the ``dS/dH``, ``dS/dv_th`` and reset
derivatives of :mod:`spikelib.kernels.cpu.lif_numba`)::

    dL/dH[t]    = dL/dS[t] dS/dH + (dL/dV[t] + dL/dV_trace[t]) dV/dH
    dL/dX[t]    = dL/dH[t] dH/dX        dL/dV[t-1] = dL/dH[t] dH/dV        dL/dtau += dL/dH[t] dH/dtau
    dL/dv_th   += dL/dS[t] dS/dv_th + dL/dV[t] dV/dv_th

Memory: forward saves only ``H`` (``T x M`` elements of the input's dtype) plus the initial state; spikes and
``V[t-1]`` are recomputed from ``H`` in backward. Activation memory is therefore ``T * M * itemsize`` (+ ``M``), linear
in ``T`` and the same size as the input; the torch reference keeps 3 input-sized tensors (2 with detach_reset) for
autograd (bytes of distinct saved tensors, measured with ``saved_tensors_hooks``; tests/test_cupy_emulation.py).
Per-neuron parameter gradients are written per neuron in float32 and reduced over the batch in float32 (the
ParametricLIF ``tau`` gradient keeps float32 accumulation for float16/bfloat16 inputs). Arithmetic is float32 for every
storage dtype; ``H`` is rounded to the storage dtype in forward so that backward recomputes exactly what forward did.

Under ``torch.compile`` the kernels run as the custom operators ``spikelib::cupy_multistep_forward`` / ``_backward``
(the configuration as text, the launcher by name: :func:`register_launcher`), which Dynamo keeps opaque.

Kernels run on the input's device and on torch's current stream (``cupy.cuda.ExternalStream``), so they are ordered
with the surrounding torch work and safe under multi-GPU DDP (one process per device). ``backend="auto"`` picks this
backend for CUDA float32/float16/bfloat16 tensors when CuPy is importable; an explicit ``backend="cupy"`` that cannot
run raises :class:`~spikelib.kernels.registry.BackendUnavailableError` saying why (CuPy missing, CPU tensor, dtype).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.functional.lif import LIFConfig, LIFRequest, Param
from spikelib.kernels.cupy.codegen import VariantKey, get_kernels
from spikelib.kernels.cupy.neurons import NeuronModel, lif_model, neuron_model_by_name, surrogate_source
from spikelib.kernels.opaque import lif_config_from_key, lif_config_key
from spikelib.kernels.registry import count_call, register_backend

logger = logging.getLogger(__name__)

__all__ = ["check_cupy", "lif_cupy", "multistep", "CupyLauncher", "SUPPORTED_DTYPES", "variant_key",
           "register_launcher"]

SUPPORTED_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_INSTALL_HINT = "pip install 'spikelib[cuda12]' or 'spikelib[cuda13]' (the CuPy wheel matching your CUDA)"
THREADS_PER_BLOCK = 256

Launcher = Callable[[VariantKey, str, int, torch.device, Sequence[Any]], None]


@functools.lru_cache(maxsize=1)
def _cupy_missing_reason() -> Optional[str]:
    try:
        import cupy  # noqa: F401
    except ImportError as exc:
        return f"CuPy is not importable ({exc}); {_INSTALL_HINT}"
    return None


def _import_cupy():
    reason = _cupy_missing_reason()
    if reason is not None:
        raise ImportError(reason)
    import cupy

    return cupy


def check_cupy(request: LIFRequest) -> Optional[str]:
    """Capability check of the CuPy LIF backend (None if it can run the request)."""
    if request.device.type != "cuda":
        return f"it runs on CUDA tensors only, the input is on {request.device}"
    if request.dtype not in SUPPORTED_DTYPES:
        return f"it supports float32, float16 and bfloat16, the input is {request.dtype}"
    if surrogate_source(request.config.surrogate) is None:
        return (
            f"surrogate {type(request.config.surrogate).__name__} has no CUDA source; define "
            "cuda_source(x, alpha) on it or use another backend"
        )
    return _cupy_missing_reason()


def variant_key(neuron: NeuronModel, config: LIFConfig, dtype: torch.dtype) -> VariantKey:
    """The kernel variant for a neuron model, LIF options and dtype."""
    body = surrogate_source(config.surrogate)
    if body is None:
        raise ValueError(f"surrogate {config.surrogate!r} has no CUDA source (define cuda_source(x, alpha))")
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"the CuPy kernels support float32, float16 and bfloat16, got {dtype}")
    name = type(config.surrogate).name or type(config.surrogate).__name__
    return VariantKey(neuron, name, body, SUPPORTED_DTYPES[dtype], config.reset == "hard", config.detach_reset)


class CupyLauncher:
    """Launch a variant's kernel with CuPy on ``device`` and torch's current stream of that device."""

    name = "cuda"
    registry_name = "cuda"  # how the custom operators find it (register_launcher)

    def __call__(self, key: VariantKey, which: str, M: int, device: torch.device, args: Sequence[Any]) -> None:
        import numpy as np

        cupy = _import_cupy()
        index = device.index if device.index is not None else torch.cuda.current_device()
        forward, backward = get_kernels(key, index)
        kernel = forward if which == "forward" else backward
        converted: List[Any] = []
        for a in args:
            if a is None:
                converted.append(np.uint64(0))
            elif isinstance(a, torch.Tensor):
                converted.append(np.uint64(a.data_ptr()))
            elif isinstance(a, float):
                converted.append(np.float32(a))
            else:
                converted.append(np.int64(a))
        blocks = max(1, min(math.ceil(M / THREADS_PER_BLOCK), 2**31 - 1))
        with torch.cuda.device(index), cupy.cuda.Device(index):
            stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(index).cuda_stream)
            with stream:
                kernel((blocks,), (THREADS_PER_BLOCK,), tuple(converted))


class _Spec:
    """Non-tensor arguments of one call (kept on the autograd context)."""

    def __init__(self, key, launcher, v_reset, alpha, return_membrane, need_grad, n_tau, n_vth, feature_shape,
                 ratio=0):
        self.key = key
        self.launcher = launcher
        self.v_reset = v_reset
        self.alpha = alpha
        self.return_membrane = return_membrane
        self.need_grad = need_grad
        self.n_tau = n_tau
        self.n_vth = n_vth
        self.feature_shape = feature_shape
        self.ratio = ratio


def _reduce_param_grad(g_e: torch.Tensor, param: torch.Tensor, feature_shape: Tuple[int, ...]) -> torch.Tensor:
    """Per-neuron float32 gradient ``[M]`` -> the parameter's shape and dtype, summed in float32."""
    F = math.prod(feature_shape)
    g = g_e.view(-1, F).sum(0).view(feature_shape)
    return g.sum_to_size(param.shape).to(param.dtype)


def _kernel_forward(spec: _Spec, x: torch.Tensor, v0: torch.Tensor, tau_f: torch.Tensor, vth_f: torch.Tensor):
    """Launch the forward kernel: ``(spikes, H (or a placeholder), membrane (or empty), v_final)``."""
    T, M = x.shape
    spikes = torch.empty_like(x)
    h = torch.empty_like(x) if spec.need_grad else None
    membrane = torch.empty_like(x) if spec.return_membrane else None
    v_final = torch.empty_like(v0)
    spec.launcher(spec.key, "forward", M, x.device, [
        x, v0, tau_f, vth_f, spec.v_reset, T, M, spec.n_tau, spec.n_vth, spec.ratio, spikes, h, membrane, v_final,
    ])
    count_call("cupy_kernels", f"{spec.launcher.name}/forward")
    return (spikes, h if h is not None else x.new_empty((0,)), membrane if membrane is not None else x.new_empty((0,)),
            v_final)


def _kernel_backward(spec: _Spec, grad_spikes, grad_membrane, grad_v_final, h, v0, tau_f, vth_f,
                     param_grads: bool):
    """Launch the BPTT kernel: ``(grad_x, grad_v0, dL/dtau and dL/dv_th per neuron in float32 (or empty))``."""
    T, M = h.shape
    if grad_spikes is None:
        gs, gs_t, gs_m = h.new_zeros((1,)), 0, 0
    elif all(s == 0 for s in grad_spikes.stride()):  # the expanded scalar gradient of a sum: read one value
        gs, gs_t, gs_m = grad_spikes.as_strided((1,), (1,)).contiguous(), 0, 0
    else:
        gs, gs_t, gs_m = grad_spikes.contiguous(), M, 1
    g_mem = grad_membrane.contiguous() if grad_membrane is not None and grad_membrane.numel() > 0 else None
    g_vf = grad_v_final.contiguous() if grad_v_final is not None else None
    grad_x = torch.empty_like(h)
    grad_v0 = torch.empty_like(v0)
    gtau_e = torch.empty(M, dtype=torch.float32, device=h.device) if param_grads else None
    gvth_e = torch.empty(M, dtype=torch.float32, device=h.device) if param_grads else None
    spec.launcher(spec.key, "backward", M, h.device, [
        gs, gs_t, gs_m, g_mem, g_vf, h, v0, tau_f, vth_f, spec.v_reset, spec.alpha, T, M, spec.n_tau,
        spec.n_vth, spec.ratio, grad_x, grad_v0, gtau_e, gvth_e,
    ])
    count_call("cupy_kernels", f"{spec.launcher.name}/backward")
    empty = h.new_empty((0,), dtype=torch.float32)
    return grad_x, grad_v0, gtau_e if param_grads else empty, gvth_e if param_grads else empty


class _MultistepFunction(torch.autograd.Function):
    """Whole-sequence neuron as one autograd node over ``x: [T, M]``; tau / vth are the caller's tensors (or None)."""

    @staticmethod
    def forward(ctx, x, v0, tau, vth, tau_f, vth_f, spec):  # type: ignore[override]
        spikes, h, membrane, v_final = _kernel_forward(spec, x, v0, tau_f, vth_f)
        ctx.set_materialize_grads(False)
        if spec.need_grad:
            ctx.save_for_backward(h, v0, tau_f, vth_f, tau, vth)
        ctx.spec = spec
        return spikes, membrane, v_final

    @staticmethod
    def backward(ctx, grad_spikes, grad_membrane, grad_v_final):  # type: ignore[override]
        refuse_create_graph("lif (cupy)")
        h, v0, tau_f, vth_f, tau, vth = ctx.saved_tensors
        spec: _Spec = ctx.spec
        param_grads = bool(ctx.needs_input_grad[2] or ctx.needs_input_grad[3])
        grad_x, grad_v0, gtau_e, gvth_e = _kernel_backward(spec, grad_spikes, grad_membrane, grad_v_final, h, v0,
                                                           tau_f, vth_f, param_grads)
        grad_tau = _reduce_param_grad(gtau_e, tau, spec.feature_shape) if ctx.needs_input_grad[2] else None
        grad_vth = _reduce_param_grad(gvth_e, vth, spec.feature_shape) if ctx.needs_input_grad[3] else None
        return (grad_x, grad_v0 if ctx.needs_input_grad[1] else None, grad_tau, grad_vth, None, None, None)


# ---------------------------------------------------------------- the kernels as custom operators (torch.compile)
_LAUNCHERS: Dict[str, Any] = {}


def register_launcher(name: str, launcher: Launcher) -> None:
    """Make a launcher reachable by name from the custom operators (``"cuda"``: CuPy; tests add the host one)."""
    _LAUNCHERS[name] = launcher


def _launcher_by_name(name: str) -> Launcher:
    if name == "cuda" and name not in _LAUNCHERS:
        _LAUNCHERS[name] = CupyLauncher()
    try:
        return _LAUNCHERS[name]
    except KeyError:
        raise KeyError(f"no kernel launcher named {name!r}") from None


def _op_spec(x, neuron, config, v_reset, alpha, n_tau, n_vth, return_membrane, need_grad, launcher, features):
    cfg = lif_config_from_key(config, v_reset, alpha)
    key = variant_key(neuron_model_by_name(neuron), cfg, x.dtype)
    return _Spec(key, _launcher_by_name(launcher), float(v_reset), float(alpha), return_membrane, need_grad, n_tau,
                 n_vth, tuple(features), int(cfg.fire == "ratio"))


@torch.library.custom_op("spikelib::cupy_multistep_forward", mutates_args=())
def cupy_multistep_forward(x: torch.Tensor, v0: torch.Tensor, tau_f: torch.Tensor, vth_f: torch.Tensor, neuron: str,
                           config: str, v_reset: float, alpha: float, return_membrane: bool, need_grad: bool,
                           launcher: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::cupy_multistep_forward``: the forward kernel of a neuron model (by name) and LIF
    configuration (:mod:`spikelib.kernels.opaque`), launched by the named launcher."""
    spec = _op_spec(x, neuron, config, v_reset, alpha, tau_f.numel(), vth_f.numel(), return_membrane, need_grad,
                    launcher, ())
    return _kernel_forward(spec, x, v0, tau_f, vth_f)


@cupy_multistep_forward.register_fake
def _(x, v0, tau_f, vth_f, neuron, config, v_reset, alpha, return_membrane, need_grad, launcher):
    return (torch.empty_like(x), x.new_empty(x.shape if need_grad else (0,)),
            x.new_empty(x.shape if return_membrane else (0,)), torch.empty_like(v0))


@torch.library.custom_op("spikelib::cupy_multistep_backward", mutates_args=())
def cupy_multistep_backward(grad_spikes: torch.Tensor, grad_membrane: torch.Tensor, grad_v_final: torch.Tensor,
                            h: torch.Tensor, v0: torch.Tensor, tau_f: torch.Tensor, vth_f: torch.Tensor, neuron: str,
                            config: str, v_reset: float, alpha: float, param_grads: bool,
                            launcher: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::cupy_multistep_backward``: the BPTT kernel (parameter gradients per neuron, float32)."""
    spec = _op_spec(h, neuron, config, v_reset, alpha, tau_f.numel(), vth_f.numel(), False, True, launcher, ())
    return _kernel_backward(spec, grad_spikes, grad_membrane, grad_v_final, h, v0, tau_f, vth_f, param_grads)


@cupy_multistep_backward.register_fake
def _(grad_spikes, grad_membrane, grad_v_final, h, v0, tau_f, vth_f, neuron, config, v_reset, alpha, param_grads,
      launcher):
    M = h.shape[1]
    pg = (M,) if param_grads else (0,)
    return (torch.empty_like(h), torch.empty_like(v0), h.new_empty(pg, dtype=torch.float32),
            h.new_empty(pg, dtype=torch.float32))


def _op_setup(ctx, inputs, output):
    x, v0, tau_f, vth_f, neuron, config, v_reset, alpha, return_membrane, need_grad, launcher = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(output[1], v0, tau_f, vth_f)
    ctx.args = (neuron, config, v_reset, alpha, launcher)


def _op_backward(ctx, grad_spikes, grad_h, grad_membrane, grad_v_final):
    h, v0, tau_f, vth_f = ctx.saved_tensors
    neuron, config, v_reset, alpha, launcher = ctx.args
    param_grads = bool(ctx.needs_input_grad[2] or ctx.needs_input_grad[3])
    if grad_spikes is None:
        grad_spikes = h.new_zeros(()).expand(h.shape)
    if grad_membrane is None:
        grad_membrane = h.new_empty((0,))
    if grad_v_final is None:
        grad_v_final = torch.zeros_like(v0)
    gx, gv0, gtau_e, gvth_e = cupy_multistep_backward(grad_spikes, grad_membrane, grad_v_final, h, v0, tau_f, vth_f,
                                                      neuron, config, v_reset, alpha, param_grads, launcher)

    def per_param(g_e, p_f):  # per neuron [M] -> the kernel parameter's [n] (1: shared; F: per feature)
        return g_e.view(-1, p_f.numel()).sum(0) if p_f.numel() > 1 else g_e.sum().reshape(1)

    return (gx, gv0 if ctx.needs_input_grad[1] else None,
            per_param(gtau_e, tau_f) if ctx.needs_input_grad[2] else None,
            per_param(gvth_e, vth_f) if ctx.needs_input_grad[3] else None,
            None, None, None, None, None, None, None)


cupy_multistep_forward.register_autograd(_op_backward, setup_context=_op_setup)


def _compiled_kernel_param(p: Param, feature_shape: Tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A parameter as float32 ``[1]`` or ``[F]`` (read at ``m % n``), differentiable (the operator's gradient reaches
    the caller's tensor through this expansion)."""
    if isinstance(p, torch.Tensor):
        if p.numel() == 1:
            return p.reshape(1).to(torch.float32)
        return p.to(torch.float32).expand(feature_shape).reshape(-1).contiguous()
    return torch.full((1,), float(p), dtype=torch.float32, device=like.device)


def _as_kernel_param(p: Param, feature_shape: Tuple[int, ...], device: torch.device) -> Tuple[torch.Tensor, int]:
    """A parameter as a contiguous float32 array of 1 or prod(feature_shape) values (read at ``m % n``)."""
    if isinstance(p, torch.Tensor):
        if p.numel() == 1:
            return p.detach().reshape(1).to(torch.float32).contiguous(), 1
        t = p.detach().to(torch.float32).expand(feature_shape).reshape(-1).contiguous()
        return t, t.numel()
    return torch.full((1,), float(p), dtype=torch.float32, device=device), 1


def multistep(
    x: torch.Tensor,
    v0: torch.Tensor,
    tau: Param,
    v_threshold: Param,
    config: LIFConfig,
    return_membrane: bool,
    neuron: Optional[NeuronModel] = None,
    launcher: Optional[Launcher] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Run a neuron model over ``x: [T, B, ...]`` with the generated kernels (arguments already checked).

    Args:
        x, v0, tau, v_threshold, config, return_membrane: as in :func:`spikelib.functional.lif.lif`.
        neuron: the model (default: the LIF charge of ``config.decay`` and ``config.decay_input``).
        launcher: runs a kernel (default :class:`CupyLauncher`; tests pass the host emulation).

    Returns:
        ``(spikes, membrane or None, v_final)``.
    """
    if neuron is None:
        neuron = lif_model(config.decay, config.decay_input)
    launcher = CupyLauncher() if launcher is None else launcher
    T = x.shape[0]
    batch_shape = tuple(x.shape[1:])
    feature_shape = tuple(x.shape[2:])
    tau_t = tau if isinstance(tau, torch.Tensor) else None
    vth_t = v_threshold if isinstance(v_threshold, torch.Tensor) else None
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, v0, tau_t, vth_t)
    )
    x2 = x.reshape(T, -1).contiguous()
    v0f = v0.reshape(-1).contiguous()
    if torch.compiler.is_compiling():  # the kernels as opaque operators for Dynamo
        tau_c = _compiled_kernel_param(tau, feature_shape, x)
        vth_c = _compiled_kernel_param(v_threshold, feature_shape, x)
        spikes, _, membrane, v_final = cupy_multistep_forward(
            x2, v0f, tau_c, vth_c, neuron.name, lif_config_key(config), float(config.v_reset),
            float(config.surrogate.alpha), return_membrane, need_grad, launcher.registry_name)
    else:
        key = variant_key(neuron, config, x.dtype)
        tau_f, n_tau = _as_kernel_param(tau, feature_shape, x.device)
        vth_f, n_vth = _as_kernel_param(v_threshold, feature_shape, x.device)
        spec = _Spec(key, launcher, float(config.v_reset), float(config.surrogate.alpha), return_membrane, need_grad,
                     n_tau, n_vth, feature_shape, int(config.fire == "ratio"))
        spikes, membrane, v_final = _MultistepFunction.apply(x2, v0f, tau_t, vth_t, tau_f, vth_f, spec)
    return spikes.view(x.shape), (membrane.view(x.shape) if return_membrane else None), v_final.view(batch_shape)


@register_backend("lif", "cupy", check=check_cupy, priority=20, compile_safe=True, pure_check=True,
                  description="fused CuPy CUDA kernels (GPU)")
def lif_cupy(
    x: torch.Tensor, v0: torch.Tensor, tau: Param, v_threshold: Param, config: LIFConfig, return_membrane: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Multi-step LIF with the CuPy kernels. Returns ``(spikes, membrane or None, v_final)``."""
    return multistep(x, v0, tau, v_threshold, config, return_membrane)
