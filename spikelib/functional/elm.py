"""Expressive Leaky Memory (ELM) neuron, v1 and v2 (Spieler, Rahaman, Martius, Schölkopf, Levina, ICLR 2024).

Follows the reference code AaronSpieler/elmneuron: ``src/expressive_leaky_memory_neuron.py`` (v1),
``src/expressive_leaky_memory_neuron_v2.py`` (v2) and ``src/modeling_utils.py`` (MLP, scaled tanh, routing, the
sigmoid parameterisation of the memory time constants). Written from its equations; no code is copied.

Input ``x: [T, B, C]`` (time first). Routing (optional) maps the ``C`` inputs to ``S = N_b * K`` synapses
(``N_b`` branches of ``K`` synapses each; synapses ``k K .. (k+1) K - 1`` belong to branch ``k``)::

    routed    x~[t]   = x[t, idx] * mask                      (no routing: x~ = x, then C must equal S)
    kappa     k       = exp(-dt / max(tau, 1e-6))             for tau_syn (v1: per synapse; v2: per branch), tau_mem
    phi(z)            = 1.7159 tanh(2 z / 3)                  (scaled tanh)
    MLP(h)            = W_L act(... act(W_1 h + b_1) ...) + b_L     (act: relu or silu; L-1 hidden layers)

    v1:  s[t]   = k_s * s[t-1] + w_s * x~[t]                  synaptic traces        [B, S]
         i[t]   = sum over the K synapses of each branch of s[t]                     [B, N_b]
         dm[t]  = phi(MLP([i[t], k_m * m[t-1]]))
         m[t]   = k_m * m[t-1] + lambda (1 - k_m) * dm[t]      memory                 [B, d_m]
    v2:  b[t]   = k_b * b[t-1] + sum over the K synapses of each branch of (w_s * x~[t])   branch traces [B, N_b]
         dm[t]  = phi(MLP([b[t], k_m * m[t-1]]))
         m[t]   = k_m * m[t-1] + (1 - exp(-lambda dt / tau_m)) * dm[t]
    both: y[t]  = W_y m[t] + b_y                                                      [B, out]

``w_s`` are the effective (non-negative) synaptic weights: the modules pass ``relu`` of their raw parameter, as the
reference does. The memory time constants are ``tau_m = (tau_max - tau_min) sigmoid(p) + tau_min`` with ``p``
initialised so that ``tau_m`` is log-spaced in ``[tau_min, tau_max]`` (the modules hold ``p``). State starts at zero.

:func:`elm_step` is one step in plain torch (the ground truth, used by the reference loop backend ``"torch_loop"``).
:func:`elm` checks the arguments and runs the whole sequence through a backend of operation ``"elm"`` from the
registry (``"fast"``: everything that does not depend on the memory is computed for all steps at once; on CPU with one
hidden MLP layer ``"numba"`` by default, the same with the memory recurrence in fused kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from spikelib.functional._checks import check_choice, check_sequence_input, check_state
from spikelib.kernels.registry import select_backend

__all__ = [
    "ELMConfig",
    "ELMParams",
    "ELMState",
    "ELMOutput",
    "ELMRequest",
    "elm",
    "elm_step",
    "scaled_tanh",
    "decay",
    "route",
    "neuronio_routing",
    "random_routing",
    "tau_mem_from_proto",
    "proto_from_tau_mem",
    "log_spaced_proto_tau_mem",
]

TANH_SCALE = 1.7159
TANH_SLOPE = 2.0 / 3.0
TAU_FLOOR = 1e-6  # the reference clamps time constants at 1e-6 before exp(-dt / tau)


class ELMState(NamedTuple):
    """State of an ELM layer: ``trace`` (v1: synaptic traces ``[B, S]``; v2: branch traces ``[B, N_b]``) and
    ``memory`` ``[B, d_m]``."""

    trace: torch.Tensor
    memory: torch.Tensor


class ELMOutput(NamedTuple):
    """Result of :func:`elm`: readout ``y`` ``[T, B, out]``, memory trace ``[T, B, d_m]`` (or None), final state."""

    y: torch.Tensor
    memory: Optional[torch.Tensor]
    state: ELMState


class ELMParams(NamedTuple):
    """The tensors of an ELM layer (see the module docstring).

    ``w_syn`` ``[S]`` effective synaptic weights; ``tau_syn`` time constant of the traces (v1 ``[S]``, v2 ``[N_b]``);
    ``tau_mem`` ``[d_m]``; ``mlp`` a sequence of ``(weight, bias)`` pairs, the first weight ``[H, N_b + d_m]`` and the
    last ``[d_m, H]``; ``readout_weight`` ``[out, d_m]``; ``readout_bias`` ``[out]``; ``routing_index`` ``[S]`` (int64,
    or None) and ``routing_mask`` ``[S]`` (or None).
    """

    w_syn: torch.Tensor
    tau_syn: torch.Tensor
    tau_mem: torch.Tensor
    mlp: Tuple[Tuple[torch.Tensor, torch.Tensor], ...]
    readout_weight: torch.Tensor
    readout_bias: torch.Tensor
    routing_index: Optional[torch.Tensor] = None
    routing_mask: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class ELMConfig:
    """The discrete choices: version (1 or 2), branches, lambda, dt, MLP activation."""

    version: int = 1
    num_branch: int = 1
    lambda_value: float = 5.0
    dt: float = 1.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.version not in (1, 2) or isinstance(self.version, bool):
            raise ValueError(f"version must be 1 or 2, got {self.version!r}")
        for name in ("num_branch",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        for name in ("lambda_value", "dt"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        check_choice(self.activation, "activation", ("relu", "silu"))


@dataclass(frozen=True)
class ELMRequest:
    """What a backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    config: ELMConfig
    requires_grad: bool
    mlp_layers: int = 2  # len(params.mlp): the first layer, the hidden ones, the last


# ---------------------------------------------------------------------------------------------------------- helpers
def scaled_tanh(z: torch.Tensor) -> torch.Tensor:
    """``1.7159 tanh(2 z / 3)``."""
    return TANH_SCALE * torch.tanh(TANH_SLOPE * z)


def decay(tau: torch.Tensor, dt: float) -> torch.Tensor:
    """``exp(-dt / max(tau, 1e-6))``."""
    return torch.exp(-dt / torch.clamp(tau, min=TAU_FLOOR))


def memory_gain(tau_mem: torch.Tensor, config: ELMConfig) -> torch.Tensor:
    """The factor in front of ``dm``: v1 ``lambda (1 - k_m)``, v2 ``1 - exp(-lambda dt / tau_m)``."""
    if config.version == 1:
        return config.lambda_value * (1.0 - decay(tau_mem, config.dt))
    return 1.0 - torch.exp(-config.dt * config.lambda_value / torch.clamp(tau_mem, min=TAU_FLOOR))


def activation_fn(name: str):
    return torch.relu if name == "relu" else torch.nn.functional.silu


def tau_mem_from_proto(proto: torch.Tensor, tau_min: float, tau_max: float) -> torch.Tensor:
    """``(tau_max - tau_min) sigmoid(p) + tau_min`` (the reference's ``scaled_sigmoid``)."""
    return (tau_max - tau_min) * torch.sigmoid(proto) + tau_min


def proto_from_tau_mem(tau: torch.Tensor, tau_min: float, tau_max: float) -> torch.Tensor:
    """Inverse of :func:`tau_mem_from_proto` on ``tau`` clamped into ``[tau_min + 1e-6, tau_max - 1e-6]``."""
    tau = torch.clamp(tau, tau_min + 1e-6, tau_max - 1e-6)
    return torch.log((tau - tau_min) / (tau_max - tau))


def log_spaced_proto_tau_mem(num_memory: int, tau_min: float, tau_max: float) -> torch.Tensor:
    """The reference initialisation: ``tau_m`` log-spaced from ``tau_min + 1e-6`` to ``tau_max - 1e-6``, as ``p``."""
    tau = torch.logspace(math.log10(tau_min + 1e-6), math.log10(tau_max - 1e-6), num_memory)
    return proto_from_tau_mem(tau, tau_min, tau_max)


def interlocking_order(num_input: int) -> torch.Tensor:
    """Interleave the two halves of the inputs (NeuronIO: excitatory, inhibitory): ``i -> (i%2) (C//2) + i//2``."""
    i = torch.arange(num_input)
    return (i % 2) * (num_input // 2) + torch.div(i, 2, rounding_mode="floor")


def neuronio_routing(num_input: int, num_branch: int, synapses_per_branch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The reference's NeuronIO routing: branch ``k`` reads the ``K`` interleaved inputs starting at ``k ceil(C / N_b)``
    (windows overlap when ``K > ceil(C / N_b)``); synapses past the last input are masked out. Returns
    ``(index [N_b K] int64, mask [N_b K] bool)``."""
    for name, v in (("num_input", num_input), ("num_branch", num_branch), ("synapses_per_branch", synapses_per_branch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    stride = math.ceil(num_input / num_branch)
    if stride > synapses_per_branch:
        raise ValueError(
            f"neuronio routing needs synapses_per_branch >= ceil(num_input / num_branch) = {stride} so that every "
            f"input reaches a branch, got synapses_per_branch={synapses_per_branch}")
    window = torch.arange(num_branch)[:, None] * stride + torch.arange(synapses_per_branch)[None, :]
    mask = (window < num_input).flatten()
    window = torch.clamp(window, max=num_input - 1).flatten()
    return interlocking_order(num_input)[window], mask


def random_routing(num_input: int, num_synapse: int, generator: Optional[torch.Generator] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each synapse reads one input drawn uniformly (with replacement). Returns ``(index, mask of ones)``."""
    for name, v in (("num_input", num_input), ("num_synapse", num_synapse)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    index = torch.randint(num_input, (num_synapse,), generator=generator)
    return index, torch.ones(num_synapse, dtype=torch.bool)


def route(x: torch.Tensor, params: ELMParams) -> torch.Tensor:
    """Inputs ``[..., C]`` to synapses ``[..., S]`` (identity without routing)."""
    if params.routing_index is None:
        return x
    x = torch.index_select(x, -1, params.routing_index)
    if params.routing_mask is not None:
        x = x * params.routing_mask.to(x.dtype)
    return x


def branch_sum(z: torch.Tensor, num_branch: int) -> torch.Tensor:
    """``[..., N_b K] -> [..., N_b]``: the sum over the ``K`` consecutive synapses of each branch."""
    return z.reshape(z.shape[:-1] + (num_branch, -1)).sum(-1)


# ---------------------------------------------------------------------------------------------------------- the step
def elm_step(x_t: torch.Tensor, state: ELMState, params: ELMParams, config: ELMConfig
             ) -> Tuple[torch.Tensor, ELMState]:
    """One ELM step in plain torch from the routed synaptic input ``x~[t]`` ``[B, S]``: returns ``(y[t], state[t])``
    (no argument checks; :func:`route` maps raw inputs to synapses)."""
    k_m = decay(params.tau_mem, config.dt)
    k_s = decay(params.tau_syn, config.dt)
    if config.version == 1:
        trace = k_s * state.trace + params.w_syn * x_t
        branch_in = branch_sum(trace, config.num_branch)
    else:
        trace = k_s * state.trace + branch_sum(params.w_syn * x_t, config.num_branch)
        branch_in = trace
    decayed = k_m * state.memory
    h = torch.cat([branch_in, decayed], dim=-1)
    act = activation_fn(config.activation)
    for i, (w, b) in enumerate(params.mlp):
        h = torch.nn.functional.linear(h, w, b)
        if i < len(params.mlp) - 1:
            h = act(h)
    memory = decayed + memory_gain(params.tau_mem, config) * scaled_tanh(h)
    y = torch.nn.functional.linear(memory, params.readout_weight, params.readout_bias)
    return y, ELMState(trace, memory)


# ---------------------------------------------------------------------------------------------------------- checks
def _check_tensor(t: object, name: str, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {tuple(shape)}, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but the input has dtype {like.dtype}; convert it first")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but the input is on {like.device}; move it first")
    return t


def _check_positive(t: torch.Tensor, name: str) -> None:
    with torch.no_grad():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")
        if bool((t <= 0).any()):
            raise ValueError(f"{name} must be > 0 (a time constant), got min {float(t.min()):g}")


def check_elm_arguments(x: torch.Tensor, params: ELMParams, config: ELMConfig) -> Tuple[int, int]:
    """Check shapes, dtypes and values of ``x`` and ``params``; returns ``(S, d_m)``."""
    check_sequence_input(x, "x", min_dim=3)
    if x.dim() != 3:
        raise ValueError(f"x must have shape [T, B, C], got {tuple(x.shape)}")
    if not isinstance(params, ELMParams):
        raise TypeError(f"params must be an ELMParams, got {type(params).__name__}")
    if not isinstance(params.w_syn, torch.Tensor) or params.w_syn.dim() != 1:
        raise ValueError("params.w_syn must be a 1-d tensor [S] (one weight per synapse)")
    S = params.w_syn.shape[0]
    nb = config.num_branch
    if S % nb != 0:
        raise ValueError(f"the number of synapses ({S}, params.w_syn) must be a multiple of num_branch ({nb}): "
                         f"every branch has the same number of synapses")
    _check_tensor(params.w_syn, "params.w_syn", (S,), x)
    _check_tensor(params.tau_syn, "params.tau_syn", (S,) if config.version == 1 else (nb,), x)
    _check_positive(params.tau_syn, "params.tau_syn")
    if not isinstance(params.tau_mem, torch.Tensor) or params.tau_mem.dim() != 1:
        raise ValueError("params.tau_mem must be a 1-d tensor [d_m]")
    d_m = params.tau_mem.shape[0]
    _check_tensor(params.tau_mem, "params.tau_mem", (d_m,), x)
    _check_positive(params.tau_mem, "params.tau_mem")
    if len(params.mlp) < 1:
        raise ValueError("params.mlp must hold at least one (weight, bias) layer")
    width = nb + d_m
    for i, layer in enumerate(params.mlp):
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise TypeError(f"params.mlp[{i}] must be a (weight, bias) pair")
        w, b = layer
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"params.mlp[{i}] weight must be a 2-d tensor")
        out = d_m if i == len(params.mlp) - 1 else w.shape[0]
        _check_tensor(w, f"params.mlp[{i}] weight", (out, width), x)
        _check_tensor(b, f"params.mlp[{i}] bias", (out,), x)
        width = out
    if not isinstance(params.readout_weight, torch.Tensor) or params.readout_weight.dim() != 2:
        raise ValueError("params.readout_weight must be a 2-d tensor [out, d_m]")
    n_out = params.readout_weight.shape[0]
    _check_tensor(params.readout_weight, "params.readout_weight", (n_out, d_m), x)
    _check_tensor(params.readout_bias, "params.readout_bias", (n_out,), x)
    C = x.shape[2]
    if params.routing_index is None:
        if C != S:
            raise ValueError(f"x has {C} input channels but the layer has {S} synapses and no routing: the input "
                             f"width must equal num_branch * synapses_per_branch = {S}")
    else:
        idx = params.routing_index
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64 or tuple(idx.shape) != (S,):
            raise ValueError(f"params.routing_index must be an int64 tensor of shape ({S},)")
        if S and (int(idx.min()) < 0 or int(idx.max()) >= C):
            raise ValueError(f"params.routing_index refers to input {int(idx.max())} but x has only {C} channels "
                             f"(wrong input width)")
        if params.routing_mask is not None and tuple(params.routing_mask.shape) != (S,):
            raise ValueError(f"params.routing_mask must have shape ({S},)")
    return S, d_m


def elm(x: torch.Tensor, params: ELMParams, config: ELMConfig, state: Optional[ELMState] = None, *,
        return_memory: bool = False, backend: str = "auto") -> ELMOutput:
    """Run an ELM layer over a whole sequence ``x: [T, B, C]``.

    Args:
        x: input ``[T, B, C]`` (floating point).
        params: the layer's tensors (:class:`ELMParams`).
        config: version, branches, lambda, dt, activation (:class:`ELMConfig`).
        state: initial :class:`ELMState`; zeros if None.
        return_memory: also return the memory trace ``m`` ``[T, B, d_m]``.
        backend: ``"auto"``, ``"numba"``, ``"fast"`` or ``"torch_loop"`` (the reference loop).

    Returns:
        :class:`ELMOutput` ``(y [T, B, out], memory or None, final state)``.
    """
    if not isinstance(config, ELMConfig):
        raise TypeError(f"config must be an ELMConfig, got {type(config).__name__}")
    S, d_m = check_elm_arguments(x, params, config)
    B = x.shape[1]
    n_trace = S if config.version == 1 else config.num_branch
    if state is None:
        state = ELMState(x.new_zeros(B, n_trace), x.new_zeros(B, d_m))
    else:
        if not isinstance(state, ELMState):
            raise TypeError(f"state must be an ELMState, got {type(state).__name__}")
        check_state(state.trace, "state.trace", x, (B, n_trace))
        check_state(state.memory, "state.memory", x, (B, d_m))
    if not isinstance(return_memory, bool):
        raise TypeError(f"return_memory must be a bool, got {type(return_memory).__name__}")

    tensors = [x, params.w_syn, params.tau_syn, params.tau_mem, params.readout_weight, params.readout_bias,
               state.trace, state.memory] + [t for layer in params.mlp for t in layer]
    requires_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    impl = select_backend("elm", backend, ELMRequest(x.device, x.dtype, config, requires_grad, len(params.mlp))).impl
    y, memory, final = impl(x, params, config, state)
    return ELMOutput(y, memory if return_memory else None, final)
