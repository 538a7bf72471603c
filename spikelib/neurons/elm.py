"""ELM neuron modules: ``ELM`` (v1) and ``ELMv2`` over sequences ``[T, B, C]``.

The equations are in :mod:`spikelib.functional.elm`; these modules hold the parameters with the reference's defaults
and initialisation (AaronSpieler/elmneuron, ``src/expressive_leaky_memory_neuron.py`` and ``_v2.py``):
``num_memory=100``, ``lambda_value=5``, one hidden MLP layer of ``2 num_memory`` units (relu), synaptic (v1) or branch
(v2) time constant 5, memory time constants log-spaced in ``[1, 1000]`` through ``tau_m = (max - min) sigmoid(p) + min``
(``p`` trained when ``learn_tau_mem=True``), raw synaptic weights 0.5 (``w_s = relu(raw)``), one branch per input,
``dt = 1``; the MLP and readout use ``nn.Linear``'s default initialisation. Routing: ``None`` (input ``i`` is synapse
``i``), ``"random"`` (each synapse reads a random input) or ``"neuronio"`` (interleaved, overlapping windows).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import nn

from spikelib.functional.elm import (
    ELMConfig,
    ELMParams,
    ELMState,
    elm,
    log_spaced_proto_tau_mem,
    neuronio_routing,
    random_routing,
    tau_mem_from_proto,
)
from spikelib.graph import nodes
from spikelib.neurons.base import StatefulModule

__all__ = ["ELM", "ELMv2", "ELMCell"]

ROUTINGS = (None, "random", "neuronio")


def _pos_int(v: object, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    return int(v)


def _pos_float(v: object, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) or float(v) <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


class ELM(StatefulModule):
    """Expressive Leaky Memory neuron layer: ``forward(x [T, B, num_input]) -> y [T, B, num_output]``.

    Args:
        num_input, num_output: input channels and readout size.
        num_memory: memory units ``d_m``.
        lambda_value: memory update scale lambda.
        mlp_num_layers: hidden layers of the MLP (0 makes it one linear map).
        mlp_hidden_size: hidden width (default ``2 num_memory``).
        mlp_activation: ``"relu"`` or ``"silu"``.
        tau_syn: time constant of the synaptic traces (v1; the branch traces in :class:`ELMv2`), in units of ``dt``'s.
        tau_mem_min, tau_mem_max: range of the log-spaced memory time constants.
        learn_tau_mem: train the memory time constants (through the sigmoid parameterisation).
        w_syn_init: initial raw synaptic weight.
        num_branch: branches (default ``num_input``); ``synapses_per_branch``: synapses on each.
        routing: ``None``, ``"random"`` or ``"neuronio"`` (needed unless ``num_branch * synapses_per_branch ==
            num_input``).
        dt: time step (the notebook uses the bin size in ms with time constants in ms).
        version: 1 or 2.
        backend: ``"auto"``, ``"numba"`` (CPU, one hidden MLP layer), ``"fast"`` or ``"torch_loop"``.
        stateful: keep the final state between calls.
        generator: random generator of the ``"random"`` routing.
    """

    temporal = True

    def __init__(self, num_input: int, num_output: int, num_memory: int = 100, lambda_value: float = 5.0,
                 mlp_num_layers: int = 1, mlp_hidden_size: Optional[int] = None, mlp_activation: str = "relu",
                 tau_syn: float = 5.0, tau_mem_min: float = 1.0, tau_mem_max: float = 1000.0,
                 learn_tau_mem: bool = False, w_syn_init: float = 0.5, num_branch: Optional[int] = None,
                 synapses_per_branch: int = 1, routing: Optional[str] = None, dt: float = 1.0, version: int = 1,
                 backend: str = "auto", stateful: bool = False,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__(stateful)
        self.num_input = _pos_int(num_input, "num_input")
        self.num_output = _pos_int(num_output, "num_output")
        self.num_memory = _pos_int(num_memory, "num_memory")
        if isinstance(mlp_num_layers, bool) or not isinstance(mlp_num_layers, numbers.Integral) or mlp_num_layers < 0:
            raise ValueError(f"mlp_num_layers must be an int >= 0, got {mlp_num_layers!r}")
        hidden = _pos_int(mlp_hidden_size, "mlp_hidden_size") if mlp_hidden_size else 2 * self.num_memory
        tau_syn = _pos_float(tau_syn, "tau_syn" if version == 1 else "tau_branch")
        self.tau_mem_min = _pos_float(tau_mem_min, "tau_mem_min")
        tau_mem_max = _pos_float(tau_mem_max, "tau_mem_max")
        if tau_mem_max < self.tau_mem_min:
            raise ValueError(f"tau_mem_max ({tau_mem_max:g}) must be >= tau_mem_min ({self.tau_mem_min:g})")
        self.tau_mem_max = max(self.tau_mem_min + 3e-6, tau_mem_max)  # the v2 reference's guard, used for both
        self.num_branch = self.num_input if num_branch is None else _pos_int(num_branch, "num_branch")
        self.synapses_per_branch = _pos_int(synapses_per_branch, "synapses_per_branch")
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {list(ROUTINGS)}, got {routing!r}")
        self.routing = routing
        num_synapse = self.num_branch * self.synapses_per_branch
        if routing is None and num_synapse != self.num_input:
            raise ValueError(
                f"num_branch * synapses_per_branch = {self.num_branch} * {self.synapses_per_branch} = {num_synapse} "
                f"synapses must equal num_input = {self.num_input} without routing; pass routing='neuronio' or "
                f"'random', or matching counts")
        self.config = ELMConfig(version=version, num_branch=self.num_branch,
                                lambda_value=_pos_float(lambda_value, "lambda_value"), dt=_pos_float(dt, "dt"),
                                activation=mlp_activation)
        self.backend = backend
        sizes = [self.num_branch + self.num_memory] + [hidden] * int(mlp_num_layers) + [self.num_memory]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.w_syn_raw = nn.Parameter(torch.full((num_synapse,), float(w_syn_init)))
        self.readout = nn.Linear(self.num_memory, self.num_output)
        n_trace = num_synapse if version == 1 else self.num_branch
        self.register_buffer("tau_syn", torch.full((n_trace,), tau_syn))
        self.proto_tau_mem = nn.Parameter(log_spaced_proto_tau_mem(self.num_memory, self.tau_mem_min,
                                                                   self.tau_mem_max),
                                          requires_grad=bool(learn_tau_mem))
        if routing == "neuronio":
            index, mask = neuronio_routing(self.num_input, self.num_branch, self.synapses_per_branch)
        elif routing == "random":
            index, mask = random_routing(self.num_input, num_synapse, generator)
        else:
            index, mask = None, None
        self.register_buffer("routing_index", index)
        self.register_buffer("routing_mask", mask)

    @property
    def tau_mem(self) -> torch.Tensor:
        """Memory time constants ``[d_m]``."""
        return tau_mem_from_proto(self.proto_tau_mem, self.tau_mem_min, self.tau_mem_max)

    @property
    def w_syn(self) -> torch.Tensor:
        """Effective synaptic weights ``relu(raw)`` ``[S]``."""
        return torch.relu(self.w_syn_raw)

    def params(self) -> ELMParams:
        """The tensors handed to :func:`spikelib.functional.elm.elm`."""
        mask = None if self.routing_mask is None else self.routing_mask.to(self.w_syn_raw.dtype)
        return ELMParams(self.w_syn, self.tau_syn, self.tau_mem,
                         tuple((layer.weight, layer.bias) for layer in self.mlp),
                         self.readout.weight, self.readout.bias, self.routing_index, mask)

    def forward(self, x: torch.Tensor, state: Optional[ELMState] = None, return_memory: bool = False):
        """Readout ``y [T, B, num_output]`` (and the memory ``[T, B, d_m]`` when ``return_memory``)."""
        if state is None and self.stateful and self.state is not None and isinstance(x, torch.Tensor):
            kept = self.state
            if kept.memory.shape[0] == x.shape[1] and kept.memory.dtype == x.dtype:
                state = kept
        out = elm(x, self.params(), self.config, state, return_memory=return_memory, backend=self.backend)
        if self.stateful:
            self.state = ELMState(out.state.trace.detach(), out.state.memory.detach())
        return (out.y, out.memory) if return_memory else out.y

    def graph_node(self) -> nodes.ELM:
        """Sizes and routing of the neuron (see :class:`spikelib.graph.nodes.ELM`)."""
        if self.routing_index is None:
            readers = torch.ones(self.num_input, dtype=torch.float64)
        else:
            keep = torch.ones(self.routing_index.shape, dtype=torch.float64) if self.routing_mask is None \
                else self.routing_mask.detach().ne(0).to(torch.float64).cpu()
            readers = torch.zeros(self.num_input, dtype=torch.float64).index_add_(0, self.routing_index.cpu(), keep)
        return nodes.ELM(self.num_input, self.num_output, self.num_branch, self.num_memory, int(self.tau_syn.numel()),
                         int(self.w_syn_raw.numel()), tuple((m.in_features, m.out_features) for m in self.mlp),
                         readers, self.config.version)

    def extra_repr(self) -> str:
        c = self.config
        return (f"num_input={self.num_input}, num_output={self.num_output}, num_memory={self.num_memory}, "
                f"version={c.version}, num_branch={c.num_branch}, synapses_per_branch={self.synapses_per_branch}, "
                f"routing={self.routing!r}, lambda_value={c.lambda_value:g}, dt={c.dt:g}, "
                f"tau_mem=[{self.tau_mem_min:g}, {self.tau_mem_max:g}], backend={self.backend!r}")


class ELMv2(ELM):
    """ELM v2 (branch traces instead of synaptic traces, memory gain ``1 - exp(-lambda dt / tau_m)``).

    Same arguments as :class:`ELM` with ``tau_branch`` (reference ``tau_b_value``, default 5) for the branch traces.
    """

    def __init__(self, num_input: int, num_output: int, num_memory: int = 100, lambda_value: float = 5.0,
                 mlp_num_layers: int = 1, mlp_hidden_size: Optional[int] = None, mlp_activation: str = "relu",
                 tau_branch: float = 5.0, tau_mem_min: float = 1.0, tau_mem_max: float = 1000.0,
                 learn_tau_mem: bool = False, w_syn_init: float = 0.5, num_branch: Optional[int] = None,
                 synapses_per_branch: int = 1, routing: Optional[str] = None, dt: float = 1.0,
                 backend: str = "auto", stateful: bool = False,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__(num_input, num_output, num_memory, lambda_value, mlp_num_layers, mlp_hidden_size,
                         mlp_activation, tau_branch, tau_mem_min, tau_mem_max, learn_tau_mem, w_syn_init,
                         num_branch, synapses_per_branch, routing, dt, version=2, backend=backend,
                         stateful=stateful, generator=generator)


class ELMCell(ELM):
    """One ELM step per call: ``forward(x_t [B, num_input]) -> y_t [B, num_output]``, the state kept (with its graph,
    for BPTT through a step loop) in ``self.state``; :func:`spikelib.reset` starts it from rest.

    Same arguments as :class:`ELM` (``version=2`` for the v2 equations), without ``stateful``; it runs the same
    functional step (:func:`spikelib.functional.elm.elm` over one step).
    """

    def __init__(self, *args, **kwargs) -> None:
        if "stateful" in kwargs:
            raise TypeError("ELMCell is stateful by construction (it steps through time across calls)")
        super().__init__(*args, stateful=True, **kwargs)

    def forward(self, x_t: torch.Tensor, state: Optional[ELMState] = None, return_memory: bool = False):
        """Readout ``y_t [B, num_output]`` of one step (and the memory ``[B, d_m]`` when ``return_memory``)."""
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must be one step [B, {self.num_input}], got {shape}")
        if state is None and self.state is not None and self.state.memory.shape[0] == x_t.shape[0]:
            state = self.state
        out = elm(x_t.unsqueeze(0), self.params(), self.config, state, return_memory=return_memory,
                  backend=self.backend)
        self.state = out.state
        return (out.y[0], out.memory[0]) if return_memory else out.y[0]
