"""Typed node records: what a layer computes, in physical units, close to NIR's node set (neuromorphs/NIR
``nir/ir``).

Every spikelib layer and neuron module declares one of these records (its ``graph_node()`` method; torch's own layers
are declared in :mod:`spikelib.graph.torch_layers`). Energy counting, Loihi mapping and NIR export read the records,
never the module classes. Times are in simulation steps (``dt`` is chosen by an exporter); tensors are the module's
own (detached, not copied), so a record describes the module as it is at the moment it is declared.

Conventions:

- ``Affine``: ``y = W x + b`` (``bias`` None: NIR's ``Linear``).
- ``Conv``: ``y = conv(x, W) + b`` over ``ndim`` spatial dimensions with torch's geometry fields.
- ``DelayedAffine``: ``y[t] = sum_i W[o, i] x[t - D[o, i], i] + b`` with one delay per synapse (``mode="integer"``:
  ``delay`` holds the integer delays a chip runs; ``"gaussian"``: the real positions of the training form, every tap
  ``0..max_delay`` carries weight; ``"none"``: all delays 0).
- ``Delay``: per-channel integer delays ``y[t, c] = x[t - d_c, c]``.
- ``LIF``: the LIF of :mod:`spikelib.functional.lif` (``tau`` in steps, ``inf`` for no leak; hard or soft reset;
  ``fire`` is the firing rule: ``H >= v_th`` or, ``"ratio"``, ``H / v_th - 1 > 0``).
- ``LI``: the same charge without threshold (a non-firing leaky integrator; readouts).
- ``CubaLIF``: current-based LIF in its discrete form (decays per step; NIR's ``CubaLIF`` has ``current_decay =
  1/tau_syn``, ``input_gain = w_in/tau_syn``, ``voltage_decay = 1/tau_mem``, ``current_gain = r/tau_mem``, ``bias =
  v_leak/tau_mem`` with times in steps). ``ALIF``, ``Izhikevich``: the adaptive and two-variable families.
- ``Recurrent``: a neuron layer with all-to-all feedback of its own spikes.
- ``IntegerSpike``: E-3DSNN's integer spike count ``floor(clamp(x, 0, D) + 1/2)``.
- ``ELM``: the Expressive Leaky Memory neuron (sizes and routing; see :mod:`spikelib.functional.elm`).
- ``BatchNorm``: ``(x - mean) / sqrt(var + eps) * gamma + beta`` per channel (dim 1 of a per-step tensor).
- ``Pool`` / ``AdaptivePool``: max or average pooling.
- ``Flatten``: ``torch.flatten(x, start_dim, end_dim)`` on a per-step tensor (dims count the batch dimension).
- ``Add``: the sum of all inputs (residual connections).
- ``AttentionProduct``: spike-driven attention ``Q (K^T V) * scale`` per head (inputs ``q, k, v``);
  ``SpikeColumnSum``: v1's ``sum_tokens(K * V)`` (inputs ``k, v``).
- ``SparseConv``: submanifold or strided sparse 3-d convolution on a sparse tensor's active sites.
- ``Free``: moves data only (dropout, identity); ``keeps_spikes``: its output holds its input's values plus zeros.
- ``TimePad``: appends ``steps`` zero time steps.
- ``Reduce``: a readout over time (``"sum"``, ``"mean"``, ``"softmax_sum"``: ``sum_t softmax(x[t])``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Optional, Tuple, Union

import torch

__all__ = ["Node", "Input", "Output", "Affine", "Conv", "DelayedAffine", "Delay", "LIF", "LI", "CubaLIF", "ALIF",
           "Izhikevich", "Recurrent", "IntegerSpike", "ELM",
           "BatchNorm", "Pool", "AdaptivePool", "Flatten", "Add", "AttentionProduct", "SpikeColumnSum", "SparseConv",
           "Free", "TimePad", "Reduce", "Function", "NEURON_NODES", "SYNAPSE_NODES"]

Value = Union[float, torch.Tensor]


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return f"{float(value):g}"
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


@dataclass(eq=False)
class Node:
    """Base class of the node records; ``kind`` names the operation."""

    kind: ClassVar[str] = "node"

    def describe(self) -> str:
        """``kind(field=value, ...)`` with tensors shown by shape."""
        parts = [f"{f.name}={_short(getattr(self, f.name))}" for f in fields(self)]
        return f"{self.kind}({', '.join(parts)})"


@dataclass(eq=False)
class Input(Node):
    """The network's input (per-sample ``shape``, without time and batch)."""

    shape: Tuple[int, ...]
    kind: ClassVar[str] = "input"


@dataclass(eq=False)
class Output(Node):
    """The network's output (per-sample ``shape``; None when the output has no recognisable layout)."""

    shape: Optional[Tuple[int, ...]]
    kind: ClassVar[str] = "output"


@dataclass(eq=False)
class Affine(Node):
    weight: torch.Tensor  # [out, in]
    bias: Optional[torch.Tensor] = None
    kind: ClassVar[str] = "affine"


@dataclass(eq=False)
class Conv(Node):
    weight: torch.Tensor  # [C_out, C_in / groups, *kernel]
    bias: Optional[torch.Tensor]
    stride: Tuple[int, ...]
    padding: Union[Tuple[int, ...], str]
    dilation: Tuple[int, ...]
    groups: int = 1
    padding_mode: str = "zeros"
    kind: ClassVar[str] = "conv"

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return self.weight.dim() - 2

    @property
    def kernel_size(self) -> Tuple[int, ...]:
        return tuple(int(k) for k in self.weight.shape[2:])


@dataclass(eq=False)
class DelayedAffine(Node):
    weight: torch.Tensor  # [out, in]
    delay: torch.Tensor  # [out, in]: integer delays (mode "integer"), positions ("gaussian"), zeros ("none")
    max_delay: int
    mode: str = "integer"
    bias: Optional[torch.Tensor] = None
    kind: ClassVar[str] = "delayed_affine"


@dataclass(eq=False)
class Delay(Node):
    delay: torch.Tensor  # per channel, integer steps
    kind: ClassVar[str] = "delay"


@dataclass(eq=False)
class LIF(Node):
    tau: Value
    v_threshold: Value
    v_reset: float = 0.0
    reset: str = "hard"
    decay_input: bool = True
    fire: str = "difference"  # "difference": S = H - v_th >= 0; "ratio": S = H / v_th - 1 > 0 (strict)
    kind: ClassVar[str] = "lif"


@dataclass(eq=False)
class LI(Node):
    tau: Value
    decay_input: bool = True
    v_leak: float = 0.0
    r: Value = 1.0
    kind: ClassVar[str] = "li"


@dataclass(eq=False)
class CubaLIF(Node):
    """``I = (1 - current_decay) I + input_gain X``; ``H = (1 - voltage_decay) V + current_gain I + bias``; spike when
    ``H > v_threshold`` (strict); ``V`` reset (hard: to ``v_reset``; soft: minus the threshold), ``I`` not."""

    current_decay: Value
    voltage_decay: Value
    v_threshold: Value
    bias: Value = 0.0
    v_reset: Value = 0.0
    reset: str = "hard"
    input_gain: Value = 1.0
    current_gain: Value = 1.0
    kind: ClassVar[str] = "cuba_lif"


@dataclass(eq=False)
class ALIF(Node):
    """Adaptive-threshold LIF (LSNN): the LIF membrane plus a threshold raised by ``beta`` per spike, relaxing with
    ``tau_adapt`` (see :mod:`spikelib.functional.alif`)."""

    tau_mem: Value
    tau_adapt: Value
    beta: Value
    v_threshold: Value
    v_reset: float = 0.0
    reset: str = "hard"
    decay_input: bool = True
    kind: ClassVar[str] = "alif"


@dataclass(eq=False)
class Izhikevich(Node):
    """A two-variable (membrane, recovery) neuron (see :mod:`spikelib.functional.izhikevich`); ``params`` holds its
    parameters by name."""

    params: Tuple[Tuple[str, Value], ...]
    reset: str = "hard"
    kind: ClassVar[str] = "izhikevich"


@dataclass(eq=False)
class Recurrent(Node):
    """A neuron layer with all-to-all feedback: ``I[t] = X[t] + W S[t-1] + b``, then ``neuron`` (its own node)."""

    neuron: Node
    weight: torch.Tensor  # [N, N]
    bias: Optional[torch.Tensor] = None
    kind: ClassVar[str] = "recurrent"


@dataclass(eq=False)
class IntegerSpike(Node):
    max_spikes: int
    kind: ClassVar[str] = "integer_spike"


@dataclass(eq=False)
class ELM(Node):
    in_features: int
    out_features: int
    num_branch: int
    num_memory: int
    num_traces: int  # synaptic (v1) or branch (v2) traces
    num_synapses: int  # synaptic weights (v1: one per routed input and branch)
    mlp: Tuple[Tuple[int, int], ...]  # (in, out) of each MLP layer
    readers: torch.Tensor  # [in_features]: how many synapses read each input
    version: int = 1
    kind: ClassVar[str] = "elm"


@dataclass(eq=False)
class BatchNorm(Node):
    running_mean: Optional[torch.Tensor]
    running_var: Optional[torch.Tensor]
    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    eps: float
    training: bool = False
    kind: ClassVar[str] = "batchnorm"


@dataclass(eq=False)
class Pool(Node):
    op: str  # "max" | "avg"
    kernel_size: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None
    kind: ClassVar[str] = "pool"


@dataclass(eq=False)
class AdaptivePool(Node):
    op: str  # "max" | "avg"
    output_size: Tuple[Optional[int], ...]
    kind: ClassVar[str] = "adaptive_pool"


@dataclass(eq=False)
class Flatten(Node):
    start_dim: int = 1
    end_dim: int = -1
    kind: ClassVar[str] = "flatten"


@dataclass(eq=False)
class Add(Node):
    kind: ClassVar[str] = "add"


@dataclass(eq=False)
class AttentionProduct(Node):
    num_heads: int
    scale: float
    kind: ClassVar[str] = "attention_product"


@dataclass(eq=False)
class SpikeColumnSum(Node):
    kind: ClassVar[str] = "spike_column_sum"


@dataclass(eq=False)
class SparseConv(Node):
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    in_channels: int
    out_channels: int
    kernel_size: Tuple[int, ...]
    stride: Tuple[int, ...]
    submanifold: bool
    kind: ClassVar[str] = "sparse_conv3d"


@dataclass(eq=False)
class Free(Node):
    what: str = "identity"
    keeps_spikes: bool = False
    kind: ClassVar[str] = "free"


@dataclass(eq=False)
class TimePad(Node):
    steps: int
    kind: ClassVar[str] = "time_pad"


@dataclass(eq=False)
class Reduce(Node):
    op: str  # "sum" | "mean" | "softmax_sum"
    kind: ClassVar[str] = "reduce"


@dataclass(eq=False)
class Function(Node):
    """Arithmetic written in a ``forward`` outside any declared layer (recorded by the tracer, never declared)."""

    name: str
    owner: str = ""  # the module whose forward ran it
    kind: ClassVar[str] = "function"


NEURON_NODES = (LIF, LI, CubaLIF, ALIF, Izhikevich, Recurrent, IntegerSpike, ELM)
SYNAPSE_NODES = (Affine, Conv, DelayedAffine, SparseConv)
