"""Fast exact CPU backend of operation ``"neuron"``: numba kernels generated from a family's traced step.

The family's step function (:mod:`spikelib.functional.dynamics`) is traced once per variant and written into
``neuron.py.tmpl`` as straight-line code (:mod:`spikelib.kernels.program`): forward computes the reference's
floating-point operations in its order (spikes, state traces and final state bitwise equal to the torch reference);
backward recomputes each step from the saved previous state and input, then runs the step's reverse-mode derivative
(BPTT with the surrogate gradient). Memory for backward: the ``K`` state traces ``[K, T, M]`` (the input is saved by
reference). Parameters reach the kernels as one value per element (``[P, M]``; autograd sums their gradients back to
the parameter's shape); work is split into chunks of neurons run on spikelib's kernel threads (:mod:`.threads`), as
for the LIF kernels. Each variant (family, options, surrogate, dtype, flags) is its own generated module
(:mod:`.codegen`). Under ``torch.compile`` the kernels run as the custom operators ``spikelib::neuron_numba_forward`` /
``spikelib::neuron_numba_backward``, opaque to Dynamo (eager mode calls them through an ``autograd.Function``).
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional, Sequence, Tuple

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.functional.dynamics import NeuronRequest, NeuronSpec, trace
from spikelib.kernels.cpu.codegen import load_generated, render_template
from spikelib.kernels.cpu.lif_numba import _has_kernel_source, _numba, _numba_missing_reason
from spikelib.kernels.cpu.threads import NEURON_OVERHEAD_STEPS, chunk_size, kernel_threads, run_dynamic
from spikelib.kernels.opaque import spec_from_key, spec_key
from spikelib.kernels.program import backward_source, forward_source
from spikelib.kernels.registry import register_backend

__all__ = ["neuron_numba", "check_neuron_numba", "kernel_source"]

_DTYPES = {torch.float32: "np.float32", torch.float64: "np.float64"}


def check_neuron_numba(request: NeuronRequest) -> Optional[str]:
    """Capability check (None if the numba kernels can run the request)."""
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _DTYPES:
        return f"it supports float32 and float64, the input is {request.dtype}"
    if not _has_kernel_source(request.spec.surrogate):
        return (f"surrogate {type(request.spec.surrogate).__name__} defines no kernel_source(); implement it or use "
                "backend='torch'")
    return _numba_missing_reason()


def kernel_source(spec: NeuronSpec, dtype: torch.dtype, save: bool, gs_scalar: bool, grad_traces: bool,
                  param_grads: bool) -> str:
    """The generated module source of one variant."""
    F = _DTYPES[dtype]
    prog = trace(spec)
    fam = spec.family
    K, P = len(fam.states), len(fam.params)
    inputs = {prog.x: "x_"}
    inputs.update({i: f"s_{k}" for k, i in enumerate(prog.states)})
    inputs.update({i: f"p_{k}" for k, i in enumerate(prog.params)})
    inputs.update({i: f"c_{k}" for k, i in enumerate(prog.scalars)})
    fwd, names = forward_source(prog, inputs, "numba", F)
    out = [names.get(i, inputs.get(i)) for i in prog.outputs]
    seeds = {prog.spike: ["g_s"]}
    for k, i in enumerate(prog.outputs):
        seeds.setdefault(i, []).append(f"gn_{k}")
    bwd, grads, _ = backward_source(prog, names, seeds, "numba", F)
    zero = f"{F}(0.0)"
    values = {
        "F": F,
        "FAMILY": spec.key,
        "SURROGATE": spec.surrogate.kernel_source("xs", "sg", "alpha", F),
        "LOAD_SCALARS": "\n".join(f"c_{k} = {F}(c[{k}])" for k in range(len(fam.scalars))),
        "LOAD_STATES_FWD": "\n".join(f"s_{k} = st[{k}, i]" for k in range(K)),
        "LOAD_STATES_BWD": "\n".join(f"s_{k} = traces[{k}, t - 1, m] if t > 0 else s0[{k}, m]" for k in range(K)),
        "LOAD_PARAMS": "\n".join(f"p_{k} = p[{k}, m]" for k in range(P)),
        "FORWARD": "\n".join(fwd),
        "SPIKE": names[prog.spike],
        "STORE_STATES": "\n".join(f"st[{k}, i] = {out[k]}" for k in range(K)),
        "STORE_TRACES": "\n".join(f"traces[{k}, t, m] = {out[k]}" for k in range(K)),
        "LOAD_SEEDS": "\n".join(f"gn_{k} = gst[{k}, i]" + (f" + grad_tr[{k}, t, m]" if grad_traces else "")
                                for k in range(K)),
        "BACKWARD": "\n".join(bwd),
        "GRAD_X": grads.get(prog.x, zero),
        "STORE_GRAD_STATES": "\n".join(f"gst[{k}, i] = {grads.get(i, zero)}" for k, i in enumerate(prog.states)),
        "ACC_GRAD_PARAMS": "\n".join(f"gp[{k}, i] += {grads[i]}" for k, i in enumerate(prog.params) if i in grads)
        or "pass",
    }
    flags = {"SAVE": save, "GS_SCALAR": gs_scalar, "PARAM_GRADS": param_grads}
    return render_template("neuron.py.tmpl", flags, values)


@functools.lru_cache(maxsize=None)
def _kernels(spec: NeuronSpec, dtype: torch.dtype, save: bool, gs_scalar: bool, grad_traces: bool,
             param_grads: bool):
    return load_generated(kernel_source(spec, dtype, save, gs_scalar, grad_traces, param_grads), "neuron")


def _np(t: torch.Tensor):
    return t.detach().numpy()


def _forward(x: torch.Tensor, s0: torch.Tensor, p: torch.Tensor, spec: NeuronSpec, scalars: Sequence[float],
             save: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the forward kernel: ``(spikes [T, M], traces [K, T, M] (or a placeholder), final [K, M])``."""
    T, M = x.shape
    _numba()
    K = s0.shape[0]
    kernels = _kernels(spec, x.dtype, save, False, False, False)
    spikes = torch.empty_like(x)
    traces = x.new_empty((K, T, M)) if save else x.new_empty((1, 1, 1))
    final = torch.empty_like(s0)
    threads = kernel_threads(T * M * max(1, K))
    args = (_np(x), _np(s0), _np(p), _scalars(scalars), _np(spikes), _np(traces), _np(final))
    chunk = chunk_size(M, threads, 8, (T + NEURON_OVERHEAD_STEPS) * max(1, K))
    run_dynamic(kernels.neuron_forward, args, M, chunk, threads)
    return spikes, traces, final


def _scalars(scalars: Sequence[float]):
    return torch.tensor(list(scalars) or [0.0], dtype=torch.float64).numpy()


def _backward(grad_spikes: Optional[torch.Tensor], grad_traces: Optional[torch.Tensor],
              grad_final: Optional[torch.Tensor], x: torch.Tensor, s0: torch.Tensor, traces: torch.Tensor,
              p: torch.Tensor, spec: NeuronSpec, scalars: Sequence[float], param_grads: bool
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the BPTT kernel: ``(grad_x, grad_s0, grad_p (or a placeholder))``."""
    T, M = x.shape
    has_gtr = grad_traces is not None and grad_traces.numel() > 0
    if grad_spikes is None:
        gs, gs_scalar = x.new_zeros((1, 1)), True
    elif all(stride == 0 for stride in grad_spikes.stride()):  # the expanded scalar gradient of a sum
        gs, gs_scalar = grad_spikes.as_strided((1, 1), (1, 1)).contiguous(), True
    else:
        gs, gs_scalar = grad_spikes.contiguous(), False
    kernels = _kernels(spec, x.dtype, True, gs_scalar, has_gtr, param_grads)
    gtr = grad_traces.contiguous() if has_gtr else x.new_empty((1, 1, 1))
    gfin = grad_final.contiguous() if grad_final is not None else torch.zeros_like(s0)
    grad_x = torch.empty_like(x)
    grad_s0 = torch.empty_like(s0)
    grad_p = torch.empty_like(p) if param_grads else x.new_empty((1, 1))
    threads = kernel_threads(T * M * max(1, s0.shape[0]))
    args = (_np(gs), _np(gtr), _np(gfin), _np(x), _np(s0), _np(traces), _np(p), _scalars(scalars),
            float(spec.surrogate.alpha), _np(grad_x), _np(grad_s0), _np(grad_p))
    chunk = chunk_size(M, threads, 8, (T + NEURON_OVERHEAD_STEPS) * max(1, s0.shape[0]))
    run_dynamic(kernels.neuron_backward, args, M, chunk, threads)
    return grad_x, grad_s0, grad_p


# The kernels as PyTorch custom operators (opaque to torch.compile, with their autograd and shape functions).
@torch.library.custom_op("spikelib::neuron_numba_forward", mutates_args=())
def neuron_numba_forward(x: torch.Tensor, s0: torch.Tensor, p: torch.Tensor, spec: str, alpha: float,
                         scalars: List[float], save: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::neuron_numba_forward`` (``spec`` and ``alpha`` name a :class:`NeuronSpec`,
    :mod:`spikelib.kernels.opaque`)."""
    return _forward(x, s0, p, spec_from_key(spec, alpha), scalars, save)


@neuron_numba_forward.register_fake
def _(x, s0, p, spec, alpha, scalars, save):
    T, M = x.shape
    return (torch.empty_like(x), x.new_empty((s0.shape[0], T, M) if save else (1, 1, 1)), torch.empty_like(s0))


@torch.library.custom_op("spikelib::neuron_numba_backward", mutates_args=())
def neuron_numba_backward(grad_spikes: torch.Tensor, grad_traces: torch.Tensor, grad_final: torch.Tensor,
                          x: torch.Tensor, s0: torch.Tensor, traces: torch.Tensor, p: torch.Tensor, spec: str,
                          alpha: float, scalars: List[float],
                          param_grads: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::neuron_numba_backward``: the BPTT kernel."""
    return _backward(grad_spikes, grad_traces, grad_final, x, s0, traces, p, spec_from_key(spec, alpha), scalars,
                     param_grads)


@neuron_numba_backward.register_fake
def _(grad_spikes, grad_traces, grad_final, x, s0, traces, p, spec, alpha, scalars, param_grads):
    return torch.empty_like(x), torch.empty_like(s0), (torch.empty_like(p) if param_grads else x.new_empty((1, 1)))


def _setup_context(ctx, inputs, output):
    x, s0, p, spec, alpha, scalars, save = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, s0, p, output[1])
    ctx.spec, ctx.alpha, ctx.scalars = spec, alpha, scalars


def _autograd_backward(ctx, grad_spikes, grad_traces, grad_final):
    x, s0, p, traces = ctx.saved_tensors
    if grad_spikes is None:
        grad_spikes = x.new_zeros(()).expand(x.shape)  # read as one value
    if grad_traces is None:
        grad_traces = x.new_empty((0,))
    if grad_final is None:
        grad_final = torch.zeros_like(s0)
    gx, gs0, gp = neuron_numba_backward(grad_spikes, grad_traces, grad_final, x, s0, traces, p, ctx.spec,
                                        ctx.alpha, ctx.scalars, bool(ctx.needs_input_grad[2]))
    return (gx, gs0 if ctx.needs_input_grad[1] else None, gp if ctx.needs_input_grad[2] else None, None, None, None,
            None)


neuron_numba_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


class _NeuronNumbaFunction(torch.autograd.Function):
    """The same kernels as one autograd node, for eager mode (a custom operator's dispatch costs ~0.1 ms per call)."""

    @staticmethod
    def forward(ctx, x, s0, p, spec, scalars, save, need_grad):  # type: ignore[override]
        spikes, traces, final = _forward(x, s0, p, spec, scalars, save)
        ctx.set_materialize_grads(False)
        if need_grad:
            ctx.save_for_backward(x, s0, p, traces)
        ctx.spec, ctx.scalars = spec, scalars
        return spikes, (traces if save else x.new_empty((0,))), final

    @staticmethod
    def backward(ctx, grad_spikes, grad_traces, grad_final):  # type: ignore[override]
        refuse_create_graph(f"neuron {ctx.spec.family.name} (numba)")
        x, s0, p, traces = ctx.saved_tensors
        param_grads = bool(ctx.needs_input_grad[2])
        gx, gs0, gp = _backward(grad_spikes, grad_traces, grad_final, x, s0, traces, p, ctx.spec, ctx.scalars,
                                param_grads)
        return (gx if ctx.needs_input_grad[0] else None, gs0 if ctx.needs_input_grad[1] else None,
                gp if param_grads else None, None, None, None, None)


def _per_element(p: torch.Tensor, batch_shape: Tuple[int, ...]) -> torch.Tensor:
    return p.expand(batch_shape).reshape(-1)


@register_backend("neuron", "numba", check=check_neuron_numba, priority=10, compile_safe=True,
                  description="numba kernels generated from the family's step, fast exact CPU path")
def neuron_numba(spec: NeuronSpec, x: torch.Tensor, states: Tuple[torch.Tensor, ...], params: Tuple[torch.Tensor, ...],
                 scalars: Tuple[float, ...], return_states: bool):
    """A neuron family with the numba kernels. Returns ``(spikes, traces or None, final)``."""
    T = x.shape[0]
    batch_shape = tuple(x.shape[1:])
    M = math.prod(batch_shape)
    s0 = torch.stack([s.reshape(M) for s in states]).contiguous()
    p = (torch.stack([_per_element(q, batch_shape) for q in params]) if params
         else x.new_zeros((0, M))).contiguous()
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, s0, p))
    x2 = x.reshape(T, M).contiguous()
    if torch.compiler.is_compiling():  # an opaque operator for Dynamo
        spikes, traces, final = neuron_numba_forward(x2, s0, p, spec_key(spec), spec.surrogate.alpha,
                                                     list(scalars), need_grad or return_states)
    else:
        spikes, traces, final = _NeuronNumbaFunction.apply(x2, s0, p, spec, scalars, need_grad or return_states,
                                                           need_grad)
    tr = tuple(traces[k].view(x.shape) for k in range(len(states))) if return_states else None
    return spikes.view(x.shape), tr, tuple(final[k].view(batch_shape) for k in range(len(states)))
