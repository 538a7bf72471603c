"""Backends of operation ``"elm"`` (equations in :mod:`spikelib.functional.elm`).

``"torch_loop"`` (reference, ground truth): :func:`elm_step` once per time step, autograd does BPTT.

``"fast"``: only the memory recurrence depends on the memory, so everything else is computed for all ``T`` steps at
once. The routed input, the synaptic weighting and the branch sums are whole-sequence tensor ops; the traces
(v1 per synapse, v2 per branch) are a linear recurrence ``s[t] = k s[t-1] + u[t]`` run by :class:`LinearTrace`
(a no-grad loop of one fused multiply-add per step, and the adjoint recurrence ``a[t] = g[t] + k a[t+1]`` backwards);
the first MLP layer is split as ``W_1 [i, k_m m] = W_1^i i + W_1^m (k_m m)`` and ``W_1^i i + b_1`` is one matmul over
all ``T B`` rows. When every trace has the same fixed decay (the reference default), traces and projection commute
(:func:`_projected_traces`): the input is projected first and the trace runs over the ``H_1`` projected channels
rather than the ``S`` synapses. :class:`MemoryScan` then steps only the memory: per step ``W_1^m (k_m m)``, the
rest of the MLP and the update, with a hand-written backward that steps only the state-dependent products and forms
every weight gradient afterwards in one matmul over all ``T B`` rows. The readout ``W_y m + b_y`` is one matmul over
all steps.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch

from spikelib.functional._checks import refuse_create_graph
from spikelib.functional.elm import (
    TANH_SCALE,
    TANH_SLOPE,
    ELMConfig,
    ELMParams,
    ELMRequest,
    ELMState,
    branch_sum,
    decay,
    elm_step,
    memory_gain,
    route,
)
from spikelib.functional.linear import linear
from spikelib.kernels.registry import count_call, register_backend

__all__ = ["elm_torch_loop", "elm_fast", "elm_multistep", "LinearTrace", "MemoryScan", "scan_gradients",
           "trace_gradients"]

#: ``scan(activation, U, k_m, gain, m0, W_1^m, *later_layers) -> M``: :meth:`MemoryScan.apply`'s signature.
MemoryScanFn = Callable[..., torch.Tensor]
#: ``trace(u [T, B, N], k [N], s0 [B, N]) -> s [T, B, N]``: :meth:`LinearTrace.apply`'s signature.
TraceFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _always(request: ELMRequest) -> Optional[str]:
    return None


@register_backend("elm", "torch_loop", check=_always, priority=0, compile_safe=True,
                  description="plain per-step loop over elm_step (reference)")
def elm_torch_loop(x: torch.Tensor, params: ELMParams, config: ELMConfig, state: ELMState
                   ) -> Tuple[torch.Tensor, torch.Tensor, ELMState]:
    """Reference loop. Returns ``(y [T, B, out], memory [T, B, d_m], final state)``."""
    ys, ms = [], []
    for x_t in route(x, params).unbind(0):
        y_t, state = elm_step(x_t, state, params, config)
        ys.append(y_t)
        ms.append(state.memory)
    return torch.stack(ys), torch.stack(ms), state


#: The hand-written backwards below write into preallocated tensors: not differentiable again.
_ELM_FIX = "use backend='torch_loop' for this layer, whose backward is made of torch operations"


class LinearTrace(torch.autograd.Function):
    """``s[t] = k * s[t-1] + u[t]`` over ``u: [T, B, N]`` with ``k: [N]`` and ``s[-1] = s0: [B, N]``."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(u)
        prev = s0
        for t in range(u.shape[0]):
            torch.addcmul(u[t], prev, k, out=out[t])
            prev = out[t]
        ctx.save_for_backward(k, s0, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        refuse_create_graph("elm (fast)", _ELM_FIX)
        k, s0, out = ctx.saved_tensors
        grad_u = torch.empty_like(grad)
        a = torch.zeros_like(s0)
        for t in range(grad.shape[0] - 1, -1, -1):
            a = torch.addcmul(grad[t], a, k, out=grad_u[t])
        return (grad_u,) + trace_gradients(ctx.needs_input_grad, grad_u, k, s0, out)


def trace_gradients(needs: Tuple[bool, ...], grad_u: torch.Tensor, k: torch.Tensor, s0: torch.Tensor,
                    out: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(dL/dk, dL/ds0)`` of a linear trace (``None`` where ``needs``, the inputs' ``needs_input_grad``, is false)
    given ``grad_u`` = dL/du (the adjoint recurrence) and the forward output ``out``."""
    grad_k = grad_s0 = None
    if needs[1]:
        prev = torch.cat([s0.unsqueeze(0), out[:-1]], 0)
        grad_k = (grad_u * prev).sum((0, 1))
    if needs[2]:
        grad_s0 = k * grad_u[0] if grad_u.shape[0] else torch.zeros_like(s0)
    return grad_k, grad_s0


def _act(a: torch.Tensor, name: str) -> torch.Tensor:
    return torch.relu(a) if name == "relu" else torch.nn.functional.silu(a)


def _activate(a: torch.Tensor, name: str) -> torch.Tensor:
    """The activation of the pre-activation ``a``; relu in place (``relu(a) > 0`` exactly where ``a > 0``, so the
    saved relu output serves the backward's derivative and weight gradient without a recomputed copy)."""
    return a.relu_() if name == "relu" else torch.nn.functional.silu(a)


def _act_grad(a: torch.Tensor, name: str) -> torch.Tensor:
    """The activation's derivative at ``a`` (for relu ``a`` may be the relu output: the same mask)."""
    if name == "relu":
        return (a > 0).to(a.dtype)
    sig = torch.sigmoid(a)
    return sig * (1.0 + a * (1.0 - sig))


class MemoryScan(torch.autograd.Function):
    """The memory recurrence given the precomputed first-layer input ``U[t] = W_1^i i[t] + b_1`` ``[T, B, H_1]``::

        D[t] = k_m m[t-1];  z[t] = MLP rest of (U[t] + W_1^m D[t]);  m[t] = D[t] + g tanh_scaled(z[t])

    Inputs: ``U, k_m [d_m], g [d_m], m0 [B, d_m], W_1^m [H_1, d_m]``, then ``(W_i, b_i)`` of the later layers flat.
    Output: ``m`` ``[T, B, d_m]``.
    """

    @staticmethod
    def forward(ctx, activation: str, U, k_m, gain, m0, w1m, *rest):
        layers = [(rest[i], rest[i + 1]) for i in range(0, len(rest), 2)]
        T = U.shape[0]
        M = torch.empty(U.shape[:2] + (k_m.shape[0],), dtype=U.dtype, device=U.device)
        D = torch.empty_like(M)
        TH = torch.empty_like(M)
        A = [torch.empty_like(U)] + [torch.empty(U.shape[:2] + (w.shape[0],), dtype=U.dtype, device=U.device)
                                     for w, _ in layers[:-1]]  # pre-activations (relu: their relu, in place)
        w1m_t = w1m.t()
        prev = m0
        for t in range(T):
            torch.mul(prev, k_m, out=D[t])
            if layers:
                torch.addmm(U[t], D[t], w1m_t, out=A[0][t])
                h = _activate(A[0][t], activation)
                for i, (w, b) in enumerate(layers):
                    if i < len(layers) - 1:
                        torch.addmm(b, h, w.t(), out=A[i + 1][t])
                        h = _activate(A[i + 1][t], activation)
                    else:
                        z = torch.addmm(b, h, w.t())
            else:
                z = torch.addmm(U[t], D[t], w1m_t)
            torch.tanh(z.mul_(TANH_SLOPE), out=TH[t])
            torch.addcmul(D[t], TH[t], gain * TANH_SCALE, out=M[t])
            prev = M[t]
        ctx.activation = activation
        ctx.n_layers = len(layers)
        ctx.save_for_backward(k_m, gain, m0, w1m, M, D, TH, *A[: len(layers)], *rest)
        return M

    @staticmethod
    def backward(ctx, grad_M: torch.Tensor):
        refuse_create_graph("elm (fast)", _ELM_FIX)
        saved = ctx.saved_tensors
        k_m, gain, m0, w1m, M, D, TH = saved[:7]
        n = ctx.n_layers
        A = list(saved[7: 7 + n])
        rest = saved[7 + n:]
        layers = [(rest[i], rest[i + 1]) for i in range(0, len(rest), 2)]
        act = ctx.activation
        T, B, d_m = M.shape
        gZ = torch.empty_like(M)
        gA = [torch.empty_like(a) for a in A]
        carry = torch.zeros_like(m0)
        gD_all = torch.empty_like(M)
        scale = gain * (TANH_SCALE * TANH_SLOPE)
        needs = ctx.needs_input_grad  # (activation, U, k_m, gain, m0, w1m, *rest)
        # dL/dk_m = sum_t dL/dD[t] m[t-1] and dL/dgain = sum_t dL/dm[t] tanh_scaled(z[t]) / gain are summed over time
        # inside the loop ([B, d_m] accumulators) instead of from [T, B, d_m] products after it: no full-size
        # temporaries at the backward's peak of memory.
        acc_k = torch.zeros_like(m0) if needs[2] else None
        acc_gain = torch.zeros_like(m0) if needs[3] else None
        for t in range(T - 1, -1, -1):
            gm = grad_M[t] + carry  # the total gradient reaching m[t]
            th = TH[t]
            if acc_gain is not None:
                acc_gain.addcmul_(gm, th)
            torch.mul(gm * scale, 1.0 - th * th, out=gZ[t])
            g = gZ[t]
            for i in range(n - 1, -1, -1):
                w = layers[i][0]
                torch.mul(g @ w, _act_grad(A[i][t], act), out=gA[i][t])
                g = gA[i][t]
            gD = torch.addmm(gm, g, w1m, out=gD_all[t])
            if acc_k is not None:
                acc_k.addcmul_(gD, M[t - 1] if t else m0)
            carry = gD * k_m
        return (None,) + scan_gradients(needs, act, layers, D, A, gZ, gA, acc_k, acc_gain, carry)


def scan_gradients(needs: Tuple[bool, ...], activation: str, layers: List[Tuple[torch.Tensor, torch.Tensor]],
                   D: torch.Tensor, A: List[torch.Tensor], gZ: torch.Tensor, gA: List[torch.Tensor],
                   acc_k: Optional[torch.Tensor], acc_gain: Optional[torch.Tensor], carry: torch.Tensor
                   ) -> Tuple[Optional[torch.Tensor], ...]:
    """The gradients of a memory scan's inputs ``(U, k_m, gain, m0, W_1^m, *later layers)`` once its recurrence
    has been stepped back: every weight gradient is one matmul over all ``T B`` rows.

    ``needs``: ``ctx.needs_input_grad`` (activation first); ``D`` ``[T, B, d_m]``; ``A`` the saved (pre-)activations
    of the hidden layers; ``gZ`` dL/dz ``[T, B, d_m]``; ``gA`` dL/d(pre-activation) per hidden layer; ``acc_k`` and
    ``acc_gain`` ``[B, d_m]`` row sums over time of ``gD m[t-1]`` and ``gm tanh``; ``carry`` dL/dm0."""
    n = len(A)
    T, B = D.shape[:2]
    flat = lambda z: z.reshape(T * B, z.shape[-1])  # noqa: E731
    g_first = gA[0] if n else gZ
    grad_k = acc_k.sum(0) if acc_k is not None else None
    grad_gain = acc_gain.sum(0) * TANH_SCALE if acc_gain is not None else None
    grad_m0 = carry if needs[4] else None
    grad_w1m = flat(g_first).t() @ flat(D) if needs[5] else None
    grads_rest: List[Optional[torch.Tensor]] = []
    for i, (w, b) in enumerate(layers):
        g_out = gA[i + 1] if i < n - 1 else gZ
        h = A[i] if activation == "relu" else _act(A[i], activation)
        grads_rest.append(flat(g_out).t() @ flat(h) if needs[6 + 2 * i] else None)
        grads_rest.append(flat(g_out).sum(0) if needs[7 + 2 * i] else None)
    return (g_first, grad_k, grad_gain, grad_m0, grad_w1m, *grads_rest)


def _uniform_decay(tau_syn: torch.Tensor) -> bool:
    """One fixed decay for all traces (the reference default): then the traces commute with the projection."""
    return not tau_syn.requires_grad and tau_syn.numel() > 0 and bool((tau_syn == tau_syn[0]).all())


def _projected_traces(xs: torch.Tensor, params: ELMParams, config: ELMConfig, state: ELMState, k: torch.Tensor,
                      trace: TraceFn) -> Tuple[torch.Tensor, torch.Tensor]:
    """``U = W_1^i i + b_1`` for all steps and the final trace state, when every trace decays by the same ``k``.

    Then ``W_1^i i[t] = sum_{t' <= t} k^(t - t') P[t'] + k^(t+1) W_1^i i0`` with ``P[t] = x~[t] M`` and
    ``M[s, h] = w_s W_1^i[h, branch(s)]`` (for v1 and v2 alike): one projection of the routed input, then a trace
    over the ``H_1`` projected channels instead of the ``S`` synapses. The final trace is
    ``sum_t k^(T-1-t) w x~[t] + k^T trace0`` (v2: summed per branch).
    """
    T, B, S = xs.shape
    nb = config.num_branch
    w1, b1 = params.mlp[0]
    w1i = w1[:, :nb]
    branch_of = torch.div(torch.arange(S, device=xs.device), S // nb, rounding_mode="floor")
    M = params.w_syn[:, None] * (w1i.t() if S == nb else w1i.t()[branch_of])
    # Spikes are mostly zeros: the "linear" operation's event-driven backend (chosen by measured density) sums
    # only the nonzero inputs' rows of M, in the projection and in its weight gradient.
    P = linear(xs.reshape(T * B, S), M.t())
    i0 = branch_sum(state.trace, nb) if config.version == 1 and S != nb else state.trace
    U = trace(P.reshape(T, B, -1), k.expand(w1.shape[0]), i0 @ w1i.t()) + b1
    powers = k ** torch.arange(T - 1, -1, -1, device=xs.device, dtype=xs.dtype)
    summed = params.w_syn * torch.einsum("t,tbs->bs", powers, xs)
    if config.version == 2:
        summed = branch_sum(summed, nb)
    return U, summed + k ** T * state.trace


def elm_multistep(x: torch.Tensor, params: ELMParams, config: ELMConfig, state: ELMState, scan: MemoryScanFn,
                  trace: TraceFn) -> Tuple[torch.Tensor, torch.Tensor, ELMState]:
    """Everything but the memory recurrence over the whole sequence; ``scan`` (``MemoryScan.apply`` or a kernel with
    its signature) steps the memory, ``trace`` (``LinearTrace.apply`` or the like) the traces. Returns
    ``(y [T, B, out], memory [T, B, d_m], final state)``."""
    nb = config.num_branch
    xs = route(x, params)
    k_s = decay(params.tau_syn, config.dt)
    w1, b1 = params.mlp[0]
    if _uniform_decay(params.tau_syn):
        count_call("elm.fast", "projected")
        U, final_trace = _projected_traces(xs, params, config, state, k_s[0], trace)
    else:
        count_call("elm.fast", "traced")
        if config.version == 1:
            traces = trace(params.w_syn * xs, k_s, state.trace)
            branch_in = traces if traces.shape[-1] == nb else branch_sum(traces, nb)
        else:
            traces = trace(branch_sum(params.w_syn * xs, nb), k_s, state.trace)
            branch_in = traces
        final_trace = traces[-1]
        U = torch.nn.functional.linear(branch_in, w1[:, :nb], b1)
    k_m = decay(params.tau_mem, config.dt)
    gain = memory_gain(params.tau_mem, config)
    rest = [t for layer in params.mlp[1:] for t in layer]
    M = scan(config.activation, U, k_m, gain, state.memory, w1[:, nb:], *rest)
    y = torch.nn.functional.linear(M, params.readout_weight, params.readout_bias)
    return y, M, ELMState(final_trace, M[-1])


@register_backend("elm", "fast", check=_always, priority=10, compile_safe=True,
                  description="whole-sequence traces and input projections, stepped memory only (torch)")
def elm_fast(x: torch.Tensor, params: ELMParams, config: ELMConfig, state: ELMState
             ) -> Tuple[torch.Tensor, torch.Tensor, ELMState]:
    """Fast multi-step ELM. Returns ``(y [T, B, out], memory [T, B, d_m], final state)``."""
    return elm_multistep(x, params, config, state, MemoryScan.apply, LinearTrace.apply)
