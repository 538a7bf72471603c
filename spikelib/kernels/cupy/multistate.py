"""CUDA kernels of operation ``"neuron"`` (neuron families with any number of states) from one ``.cu`` template.

The single-state template (``multistep_neuron.cu.tmpl``) takes a neuron as its charge function and hand-written
partial derivatives. A family of :mod:`spikelib.functional.dynamics` is more general (several states, a threshold or
reset that depends on a state), so here the template's step and BPTT bodies are generated from the family's traced
step function (:mod:`spikelib.kernels.program`): forward computes the reference's operations in its order, backward
recomputes each step from the saved previous state and input and runs the step's reverse-mode derivative with the
surrogate gradient. One thread per neuron keeps its ``K`` states in registers; memory for backward is the state traces
``[K, T, M]`` in the input's dtype (the input is saved by reference). Kernels are compiled with ``--fmad=false``: the
float32 forward then equals the torch reference bitwise (tests run the same source as host C++). A variant is the
family, its options, the surrogate and the storage dtype (:class:`MultiStateKey`); it shares the CuPy launcher, the
compile cache and the compile check with the single-state kernels (:mod:`.codegen`, :mod:`.backend`). Under
``torch.compile`` the kernels run as the custom operators ``spikelib::cupy_multistate_forward`` / ``_backward``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.functional.dynamics import NeuronRequest, NeuronSpec, trace
from spikelib.kernels.cupy.backend import SUPPORTED_DTYPES, CupyLauncher, _cupy_missing_reason, _launcher_by_name
from spikelib.kernels.cupy.codegen import COMPILE_OPTIONS, DTYPES, _fill
from spikelib.kernels.cupy.neurons import SURROGATE_C, surrogate_source
from spikelib.kernels.opaque import spec_from_key, spec_key
from spikelib.kernels.program import backward_source, dependencies, forward_source
from spikelib.kernels.registry import count_call, register_backend

__all__ = ["MultiStateKey", "multistate_key", "neuron_cupy", "run_multistate", "MULTISTATE_OPTIONS", "family_variants",
           "all_multistate_keys"]

_DIR = Path(__file__).resolve().parent
MULTISTATE_OPTIONS: Tuple[str, ...] = COMPILE_OPTIONS + ("--fmad=false",)


@dataclass(frozen=True)
class MultiStateKey:
    """Everything that selects a compiled multi-state kernel pair."""

    spec: NeuronSpec
    surrogate_body: str
    dtype: str

    kind = "multistate"
    compile_options = MULTISTATE_OPTIONS

    @property
    def tag(self) -> str:
        text = repr((self.spec.key, self.surrogate_body, self.dtype))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def forward_name(self) -> str:
        return f"slk_mfwd_{self.tag}"

    @property
    def backward_name(self) -> str:
        return f"slk_mbwd_{self.tag}"

    def render(self) -> str:
        """The source of this variant (without the prelude)."""
        storage, load, store = DTYPES[self.dtype]
        prog = trace(self.spec)
        fam = self.spec.family
        K, P, C = len(fam.states), len(fam.params), len(fam.scalars)
        inputs = {prog.x: "x_"}
        inputs.update({i: f"s_{k}" for k, i in enumerate(prog.states)})
        inputs.update({i: f"p_{k}" for k, i in enumerate(prog.params)})
        inputs.update({i: f"c_{k}" for k, i in enumerate(prog.scalars)})
        roots = [prog.spike, *prog.outputs]
        fwd, names = forward_source(prog, inputs, "c", keep=dependencies(prog, roots))
        out = [names[i] for i in prog.outputs]
        seeds = {prog.spike: ["g_s"]}
        for k, i in enumerate(prog.outputs):
            seeds.setdefault(i, []).append(f"gn_{k}")
        bwd, grads, used = backward_source(prog, names, seeds, "c")
        recompute, _ = forward_source(prog, inputs, "c", keep=dependencies(prog, used))
        void = " ".join(f"(void){v};" for v in ["x_", *(f"s_{k}" for k in range(K))])
        values = {
            "TAG": self.tag,
            "FAMILY": self.spec.key.replace("*/", "* /"),
            "DTYPE": self.dtype,
            "STORAGE": storage,
            "LOAD": load,
            "STORE": store,
            "SURROGATE_BODY": self.surrogate_body,
            "LOAD_SCALARS": " ".join(f"const float c_{k} = c[{k}]; (void)c_{k};" for k in range(C)),
            "LOAD_PARAMS": " ".join(f"const float p_{k} = p[{k} * F + f]; (void)p_{k};" for k in range(P))
            or "(void)f;",
            "INIT_STATES": " ".join(f"float s_{k} = ld(s0, {k} * M + m);" for k in range(K)),
            "FORWARD": "\n            ".join(fwd),
            "SPIKE": names[prog.spike],
            "UPDATE_STATES": " ".join(f"const float o_{k} = q({out[k]});" for k in range(K)) + " "
            + " ".join(f"s_{k} = o_{k};" for k in range(K)),
            "STORE_TRACES": " ".join(f"traces[({k} * T + t) * M + m] = cv(s_{k});" for k in range(K)),
            "STORE_FINAL": " ".join(f"final_state[{k} * M + m] = cv(s_{k});" for k in range(K)),
            "INIT_CARRY": " ".join(f"float gc_{k} = grad_final ? ld(grad_final, {k} * M + m) : 0.0f;"
                                   for k in range(K)),
            "INIT_PARAM_GRADS": " ".join(f"float gp_{k} = 0.0f;" for k in range(P)) or "",
            "LOAD_PREV_STATES": " ".join(
                f"const float s_{k} = t > 0 ? ld(traces, ({k} * T + t - 1) * M + m) : ld(s0, {k} * M + m);"
                for k in range(K)) + " " + void,
            "LOAD_SEEDS": " ".join(
                f"const float gn_{k} = gc_{k} + (grad_traces ? ld(grad_traces, ({k} * T + t) * M + m) : 0.0f);"
                for k in range(K)),
            "RECOMPUTE": "\n            ".join(recompute),
            "BACKWARD": "\n            ".join(bwd),
            "GRAD_X": grads.get(prog.x, "0.0f"),
            "UPDATE_CARRY": " ".join(f"gc_{k} = {grads.get(i, '0.0f')};" for k, i in enumerate(prog.states)),
            "ACC_PARAM_GRADS": " ".join(f"gp_{k} += {grads[i]};" for k, i in enumerate(prog.params) if i in grads),
            "STORE_GRAD_INIT": " ".join(f"grad_s0[{k} * M + m] = cv(gc_{k});" for k in range(K)),
            "STORE_PARAM_GRADS": " ".join(f"grad_p[{k} * M + m] = gp_{k};" for k in range(P)),
        }
        return _fill((_DIR / "multistate_neuron.cu.tmpl").read_text(), values)


def multistate_key(spec: NeuronSpec, dtype: torch.dtype) -> MultiStateKey:
    """The kernel variant of a family's options and a dtype."""
    body = surrogate_source(spec.surrogate)
    if body is None:
        raise ValueError(f"surrogate {spec.surrogate!r} has no CUDA source (define cuda_source(x, alpha))")
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"the CuPy kernels support float32, float16 and bfloat16, got {dtype}")
    return MultiStateKey(spec, body, SUPPORTED_DTYPES[dtype])


def check_neuron_cupy(request: NeuronRequest) -> Optional[str]:
    """Capability check of the CuPy neuron-family backend (None if it can run the request)."""
    if request.device.type != "cuda":
        return f"it runs on CUDA tensors only, the input is on {request.device}"
    if request.dtype not in SUPPORTED_DTYPES:
        return f"it supports float32, float16 and bfloat16, the input is {request.dtype}"
    if surrogate_source(request.spec.surrogate) is None:
        return (f"surrogate {type(request.spec.surrogate).__name__} has no CUDA source; define cuda_source(x, alpha) "
                "on it or use another backend")
    return _cupy_missing_reason()


class _Spec:
    def __init__(self, key, launcher, c, alpha, save, need_grad, feature_shape):
        self.key, self.launcher, self.c, self.alpha = key, launcher, c, alpha
        self.save, self.need_grad, self.feature_shape = save, need_grad, feature_shape
        self.F = max(1, math.prod(feature_shape))


def _ms_forward(spec: _Spec, x: torch.Tensor, s0: torch.Tensor, p_f: torch.Tensor):
    """Launch the forward kernel: ``(spikes, traces [K, T, M] (or empty), final [K, M])``."""
    T, M = x.shape
    K = s0.shape[0]
    spikes = torch.empty_like(x)
    traces = x.new_empty((K, T, M)) if spec.save else None
    final = torch.empty_like(s0)
    spec.launcher(spec.key, "forward", M, x.device, [x, s0, p_f, spec.c, T, M, spec.F, spikes, traces, final])
    count_call("cupy_kernels", f"{spec.launcher.name}/multistate_forward")
    return spikes, (traces if traces is not None else x.new_empty((0,))), final


def _ms_backward(spec: _Spec, grad_spikes, grad_traces, grad_final, x, s0, traces, p_f, param_grads: bool):
    """Launch the BPTT kernel: ``(grad_x, grad_s0, parameter gradients per neuron [P, M] float32 (or empty))``."""
    T, M = x.shape
    if grad_spikes is None:
        gs, gs_t, gs_m = x.new_zeros((1,)), 0, 0
    elif all(st == 0 for st in grad_spikes.stride()):
        gs, gs_t, gs_m = grad_spikes.as_strided((1,), (1,)).contiguous(), 0, 0
    else:
        gs, gs_t, gs_m = grad_spikes.contiguous(), M, 1
    gtr = grad_traces.contiguous() if grad_traces is not None and grad_traces.numel() > 0 else None
    gfin = grad_final.contiguous() if grad_final is not None else None
    grad_x = torch.empty_like(x)
    grad_s0 = torch.empty_like(s0)
    grad_p = torch.empty((p_f.shape[0], M), dtype=torch.float32, device=x.device) if param_grads else None
    spec.launcher(spec.key, "backward", M, x.device, [
        gs, gs_t, gs_m, gtr, gfin, x, s0, traces, p_f, spec.c, spec.alpha, T, M, spec.F, grad_x, grad_s0, grad_p,
    ])
    count_call("cupy_kernels", f"{spec.launcher.name}/multistate_backward")
    return grad_x, grad_s0, grad_p if grad_p is not None else x.new_empty((0,), dtype=torch.float32)


class _MultiStateFunction(torch.autograd.Function):
    """A family over ``x: [T, M]``, states ``[K, M]``; ``p_f`` float32 ``[P, F]``, ``params`` the caller's tensors."""

    @staticmethod
    def forward(ctx, x, s0, p_f, spec, *params):  # type: ignore[override]
        spikes, traces, final = _ms_forward(spec, x, s0, p_f)
        ctx.set_materialize_grads(False)
        if spec.need_grad:
            ctx.save_for_backward(x, s0, p_f, traces, *params)
        ctx.spec = spec
        return spikes, traces, final

    @staticmethod
    def backward(ctx, grad_spikes, grad_traces, grad_final):  # type: ignore[override]
        refuse_create_graph("neuron (cupy)")
        x, s0, p_f, traces, *params = ctx.saved_tensors
        spec: _Spec = ctx.spec
        param_grads = any(ctx.needs_input_grad[4:])
        grad_x, grad_s0, grad_p = _ms_backward(spec, grad_spikes, grad_traces, grad_final, x, s0, traces, p_f,
                                               param_grads)
        grads: List[Optional[torch.Tensor]] = []
        for k, q in enumerate(params):
            if ctx.needs_input_grad[4 + k]:  # per neuron, float32 -> summed over the batch, to the parameter's shape
                g = grad_p[k].view(-1, *spec.feature_shape).sum(0)
                grads.append(g.sum_to_size(q.shape).to(q.dtype))
            else:
                grads.append(None)
        return (grad_x, grad_s0 if ctx.needs_input_grad[1] else None, None, None, *grads)


# ---------------------------------------------------------------- the kernels as custom operators (torch.compile)
def _op_spec(x, spec, alpha, scalars, save, need_grad, launcher, F):
    c = torch.tensor(list(scalars) or [0.0], dtype=torch.float32, device=x.device)
    key = multistate_key(spec_from_key(spec, alpha), x.dtype)
    return _Spec(key, _launcher_by_name(launcher), c, float(alpha), save, need_grad, (F,))


@torch.library.custom_op("spikelib::cupy_multistate_forward", mutates_args=())
def cupy_multistate_forward(x: torch.Tensor, s0: torch.Tensor, p_f: torch.Tensor, spec: str, alpha: float,
                            scalars: List[float], save: bool, need_grad: bool,
                            launcher: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::cupy_multistate_forward``: a family's forward kernel (variant as text,
    :mod:`spikelib.kernels.opaque`; the launcher by name)."""
    return _ms_forward(_op_spec(x, spec, alpha, scalars, save, need_grad, launcher, p_f.shape[1]), x, s0, p_f)


@cupy_multistate_forward.register_fake
def _(x, s0, p_f, spec, alpha, scalars, save, need_grad, launcher):
    T, M = x.shape
    return torch.empty_like(x), x.new_empty((s0.shape[0], T, M) if save else (0,)), torch.empty_like(s0)


@torch.library.custom_op("spikelib::cupy_multistate_backward", mutates_args=())
def cupy_multistate_backward(grad_spikes: torch.Tensor, grad_traces: torch.Tensor, grad_final: torch.Tensor,
                             x: torch.Tensor, s0: torch.Tensor, traces: torch.Tensor, p_f: torch.Tensor, spec: str,
                             alpha: float, scalars: List[float], param_grads: bool,
                             launcher: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operator ``spikelib::cupy_multistate_backward``: the BPTT kernel."""
    sp = _op_spec(x, spec, alpha, scalars, True, True, launcher, p_f.shape[1])
    return _ms_backward(sp, grad_spikes, grad_traces, grad_final, x, s0, traces, p_f, param_grads)


@cupy_multistate_backward.register_fake
def _(grad_spikes, grad_traces, grad_final, x, s0, traces, p_f, spec, alpha, scalars, param_grads, launcher):
    gp = (p_f.shape[0], x.shape[1]) if param_grads else (0,)
    return torch.empty_like(x), torch.empty_like(s0), x.new_empty(gp, dtype=torch.float32)


def _op_setup(ctx, inputs, output):
    x, s0, p_f, spec, alpha, scalars, save, need_grad, launcher = inputs
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, s0, p_f, output[1])
    ctx.args = (spec, alpha, scalars, launcher)


def _op_backward(ctx, grad_spikes, grad_traces, grad_final):
    x, s0, p_f, traces = ctx.saved_tensors
    spec, alpha, scalars, launcher = ctx.args
    if grad_spikes is None:
        grad_spikes = x.new_zeros(()).expand(x.shape)
    if grad_traces is None:
        grad_traces = x.new_empty((0,))
    if grad_final is None:
        grad_final = torch.zeros_like(s0)
    gx, gs0, gp = cupy_multistate_backward(grad_spikes, grad_traces, grad_final, x, s0, traces, p_f, spec, alpha,
                                           scalars, bool(ctx.needs_input_grad[2]), launcher)
    gpf = gp.view(p_f.shape[0], -1, p_f.shape[1]).sum(1) if ctx.needs_input_grad[2] else None  # over the batch
    return gx, gs0 if ctx.needs_input_grad[1] else None, gpf, None, None, None, None, None, None


cupy_multistate_forward.register_autograd(_op_backward, setup_context=_op_setup)


def run_multistate(spec: NeuronSpec, x: torch.Tensor, states: Tuple[torch.Tensor, ...],
                   params: Tuple[torch.Tensor, ...], scalars: Tuple[float, ...], return_states: bool,
                   launcher=None):
    """Run a family with the generated CUDA kernels (``launcher``: CuPy by default; tests pass the host emulation)."""
    launcher = CupyLauncher() if launcher is None else launcher
    T = x.shape[0]
    batch_shape = tuple(x.shape[1:])
    feature_shape = tuple(x.shape[2:])
    F = max(1, math.prod(feature_shape))
    M = math.prod(batch_shape)
    s0 = torch.stack([s.reshape(M) for s in states]).contiguous()
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, s0, *params))
    K = len(states)
    x2 = x.reshape(T, M).contiguous()
    if torch.compiler.is_compiling():  # the kernels as opaque operators for Dynamo (p_f keeps its gradient)
        p_c = (torch.stack([q.to(torch.float32).expand(feature_shape).reshape(F) for q in params]) if params
               else torch.zeros((0, F), dtype=torch.float32, device=x.device)).contiguous()
        spikes, traces, final = cupy_multistate_forward(x2, s0, p_c, spec_key(spec), float(spec.surrogate.alpha),
                                                        list(scalars), need_grad or return_states, need_grad,
                                                        launcher.registry_name)
    else:
        p_f = (torch.stack([q.detach().to(torch.float32).expand(feature_shape).reshape(F) for q in params])
               if params else torch.zeros((0, F), dtype=torch.float32, device=x.device)).contiguous()
        c = torch.tensor(scalars if scalars else [0.0], dtype=torch.float32, device=x.device)
        spec_ = _Spec(multistate_key(spec, x.dtype), launcher, c, float(spec.surrogate.alpha),
                      need_grad or return_states, need_grad, feature_shape)
        spikes, traces, final = _MultiStateFunction.apply(x2, s0, p_f, spec_, *params)
    tr = tuple(traces[k].view(x.shape) for k in range(K)) if return_states else None
    return spikes.view(x.shape), tr, tuple(final[k].view(batch_shape) for k in range(K))


@register_backend("neuron", "cupy", check=check_neuron_cupy, priority=20, compile_safe=True,
                  description="CUDA kernels generated from the family's step (GPU)")
def neuron_cupy(spec: NeuronSpec, x: torch.Tensor, states: Tuple[torch.Tensor, ...], params: Tuple[torch.Tensor, ...],
                scalars: Tuple[float, ...], return_states: bool):
    """A neuron family with the CuPy kernels. Returns ``(spikes, traces or None, final)``."""
    return run_multistate(spec, x, states, params, scalars, return_states)


def family_variants() -> List[NeuronSpec]:
    """Every built-in family in every combination of its options (with the ``atan`` surrogate)."""
    from spikelib.functional.alif import alif_spec
    from spikelib.functional.cuba import cuba_lif_spec
    from spikelib.functional.if_neuron import if_spec
    from spikelib.functional.izhikevich import izhikevich_spec

    out: List[NeuronSpec] = []
    for reset, detach in itertools.product(("hard", "soft"), (False, True)):
        out += [if_spec(reset, detach), cuba_lif_spec(reset, detach), izhikevich_spec(reset, detach)]
        out += [alif_spec(reset, detach, decay_input=d) for d in (True, False)]
    return out


def all_multistate_keys(specs: Optional[Sequence[NeuronSpec]] = None) -> Iterator[MultiStateKey]:
    """The compile-check variants: every variant (default :func:`family_variants`) in every storage dtype, and one
    variant with every registered surrogate. A variant's code differs by family and options; the surrogate and the
    storage type only fill separate functions, which every single-state variant also compiles."""
    specs = list(family_variants() if specs is None else specs)
    for spec, dtype in itertools.product(specs, sorted(DTYPES)):
        yield MultiStateKey(spec, surrogate_source(spec.surrogate), dtype)
    from dataclasses import replace

    from spikelib.surrogate import get_surrogate

    for name in sorted(SURROGATE_C):
        if name == type(specs[0].surrogate).name:
            continue
        spec = NeuronSpec(specs[0].family, replace(specs[0].options, surrogate=get_surrogate(name)))
        yield MultiStateKey(spec, SURROGATE_C[name], "float32")
