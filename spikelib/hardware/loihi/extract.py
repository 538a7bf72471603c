"""Read a trained network as a chain of float layers ``synapse -> neuron`` that Loihi can run, from its declared layer
graph (:func:`spikelib.graph.trace`): nothing here knows a model class.

Each :class:`FloatLayer` is one synapse (dense weight, optional bias, optional integer delays, or a 2-d convolution)
feeding one LIF layer, in spikelib's float units: the LIF input is ``X[t] = W s[t - D] + b`` (see
:mod:`spikelib.functional.lif` for the LIF equations). The graph, with the nodes that only move data (dropout,
identity) bypassed, must be a chain of

    [TimePad] synapse [BatchNorm] neuron [Flatten] ... [Reduce]

- synapse: ``Affine`` (``nn.Linear``), ``DelayedAffine`` with integer delays (learnable delays are read in their
  inference form, rounded: the graph is traced under :func:`spikelib.layers.delay_schedule.rounded_delays`) or no
  delays, ``Conv`` in 2-d (``nn.Conv2d``,
  numeric zero padding; the input shape ``(C, H, W)`` comes from the trace);
- ``BatchNorm`` right after a synapse is folded into its weight and bias with the running statistics (eval mode);
- neuron: ``LIF`` (hard reset to 0, one ``tau`` and threshold per layer) or ``LI`` (a non-firing leaky integrator:
  a LIF whose threshold is never reached, ``v_threshold = inf``);
- ``Flatten`` between a conv block and a dense one (spikes flattened in ``C, H, W`` order);
- a neuron that reads the neuron before it directly (e.g. a leaky readout integrating a LIF's spikes) gets
  one-to-one synapses of weight 1;
- ``TimePad`` (zero steps appended to a layer's input) adds its steps to the network's ``pad_steps``: on the chip the
  network simply runs that many more steps with zero input;
- a final ``Reduce`` says how the output is read (``"sum"`` of spikes: ``"spikes"``; ``"mean"`` of the membrane:
  ``"membrane_mean"``; ``"softmax_sum"``); without one, a LIF output is read as spike counts and an ``LI`` output as
  its membrane sequence (``"membrane"``).

Anything else is an :class:`UnsupportedLayerError` naming the layer and why: pooling (lava-dl 0.6 netx does not
implement ``pool``), attention, residual connections (the chain branches), arithmetic outside declared layers, soft
reset or ``v_reset != 0`` (Loihi resets to 0), per-neuron thresholds (netx's ``vThMant`` is per layer), Gaussian
(training-form) delays. Per-neuron ``tau`` maps to per-neuron ``vDecay`` (per channel after a convolution), as
lava-dl's CUBA neurons with ``shared_param=False`` export it; both firing rules map (``fire="ratio"``,
``H / v_th - 1 > 0``, is Loihi's strict ``v > vth``; the default ``H >= v_th`` differs from it only on exact ties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from spikelib.graph import Graph, GraphNode, GraphStructureError, TraceError, UndeclaredLayerError, trace
from spikelib.graph import nodes as N
from spikelib.graph.fold import fold_batchnorm

__all__ = ["FloatLayer", "FloatNetwork", "UnsupportedLayerError", "extract_float_network", "loihi_graph",
           "READOUTS"]

READOUTS = ("spikes", "membrane", "membrane_mean", "softmax_sum")
_REDUCE_READOUT = {"mean": "membrane_mean", "softmax_sum": "softmax_sum"}


class UnsupportedLayerError(ValueError):
    """A layer of the network has no Loihi mapping here (the message names it)."""


@dataclass
class FloatLayer:
    """``X = W s[t - D] + b`` into a LIF (``tau`` steps, one or one per neuron / conv channel, ``inf`` = no leak;
    threshold ``v_threshold``, ``inf`` = never fires)."""

    name: str
    weight: torch.Tensor
    tau: Union[float, torch.Tensor]
    v_threshold: float
    decay_input: bool
    bias: Optional[torch.Tensor] = None
    delay: Optional[torch.Tensor] = None
    conv: Any = None  # a ConvGeometry for 2-d conv synapses (weight [C_out, C_in / groups, kh, kw])
    current_decay: Union[None, float, torch.Tensor] = None  # CUBA: du per step (None: no current memory, a LIF)
    neuron_bias: Union[None, float, torch.Tensor] = None  # CUBA: bias added to the membrane every step
    input_gain: float = 1.0  # CUBA: the gains of the current (into I, and of I into V), multiplied
    weight_rec: Optional[torch.Tensor] = None  # all-to-all feedback [out, out]: W_rec s[t - 1] joins the input


@dataclass
class FloatNetwork:
    """The float layers of a network, its input size, how its output is read and its extra zero steps."""

    input_size: int
    layers: List[FloatLayer]
    readout: str  # one of READOUTS
    pad_steps: int = 0  # zero steps the float model appends to its layers' inputs, in total
    info: Dict[str, Any] = field(default_factory=dict)


def _scalar(value: Any, what: str, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            flat = value.reshape(-1)
            if bool((flat == flat[0]).all()):
                return float(flat[0])
            raise UnsupportedLayerError(f"layer {name!r}: per-neuron {what} cannot be mapped (netx neuron parameters "
                                        f"are one value per layer)")
        return float(value)
    return float(value)


def _tau(value: Any, g: GraphNode) -> Union[float, torch.Tensor]:
    """A scalar ``tau``, or one per neuron (dense) / per channel (conv: broadcast over the spatial positions)."""
    if not isinstance(value, torch.Tensor) or value.numel() == 1:
        return float(value)
    t = value.double()
    flat = t.reshape(-1)
    if bool((flat == flat[0]).all()):
        return float(flat[0])
    shape = g.in_shapes[0] if g.in_shapes else None
    if shape is not None and len(shape) == 3 and t.dim() == 3 and t.shape[1:] == (1, 1):
        return t.reshape(-1)  # per channel of a conv layer
    if shape is not None and t.numel() == math.prod(shape) and len(shape) == 1:
        return flat
    raise UnsupportedLayerError(f"layer {g.name!r}: per-neuron tau of shape {tuple(t.shape)} cannot be mapped (Loihi "
                                f"decays are one per neuron of a dense layer, one per channel of a conv layer)")


def _cuba_fields(g: GraphNode, node: N.CubaLIF) -> Dict[str, Any]:
    """FloatLayer fields of a CUBA neuron (Loihi's own: ``u = (1 - du) u + a_in; v = (1 - dv) v + u + bias``)."""
    if node.reset != "hard" or _scalar(node.v_reset, "v_reset", g.name) != 0.0:
        raise UnsupportedLayerError(f"layer {g.name!r}: reset={node.reset!r}, v_reset={node.v_reset}; Loihi's CUBA "
                                    f"neuron resets v to 0 (hard reset, v_reset=0)")
    dv = _tau(node.voltage_decay, g)
    du = _tau(node.current_decay, g)
    vth = _scalar(node.v_threshold, "v_threshold", g.name)
    if not vth > 0:
        raise UnsupportedLayerError(f"layer {g.name!r}: v_threshold must be > 0 for Loihi, got {vth}")
    gain = _scalar(node.input_gain, "input_gain", g.name) * _scalar(node.current_gain, "current_gain", g.name)
    for what, value in (("current_decay", du), ("voltage_decay", dv)):
        t = torch.as_tensor(value, dtype=torch.float64)
        if bool(torch.isnan(t).any()) or bool((t < 0).any()) or bool((t > 1).any()):
            raise UnsupportedLayerError(f"layer {g.name!r}: {what} must be in [0, 1], got {value}")
    bias = node.bias
    if isinstance(bias, torch.Tensor) and bias.numel() > 1:
        bias = _tau(bias, g)  # per neuron / per channel, like the decays
    dv_t = torch.as_tensor(dv, dtype=torch.float64)
    tau = torch.where(dv_t > 0, 1.0 / dv_t.clamp_min(1e-300), torch.full_like(dv_t, math.inf))
    return {"tau": float(tau) if tau.numel() == 1 else tau, "v_threshold": vth, "decay_input": False,
            "current_decay": du, "neuron_bias": None if _is_zero(bias) else bias, "input_gain": gain}


def _is_zero(value: Any) -> bool:
    return (not isinstance(value, torch.Tensor) and float(value) == 0.0) or (
        isinstance(value, torch.Tensor) and not bool(value.any()))


def _neuron_fields(g: GraphNode, node: N.Node) -> Dict[str, Any]:
    """FloatLayer fields of a neuron node (LIF / IF, leaky integrator, CUBA, or any of them with feedback)."""
    if isinstance(node, N.Recurrent):
        fields = _neuron_fields(g, node.neuron)
        w = node.weight.double()
        fields["weight_rec"] = w
        if node.bias is not None:
            fields["rec_bias"] = node.bias.double()
        return fields
    if isinstance(node, N.CubaLIF):
        return _cuba_fields(g, node)
    tau, vth, decay_input = _neuron_params(g, node)
    return {"tau": tau, "v_threshold": vth, "decay_input": decay_input}


def _neuron_params(g: GraphNode, node: Optional[N.Node] = None) -> Tuple[Union[float, torch.Tensor], float, bool]:
    """``(tau, v_threshold, decay_input)`` of a LIF or LI node (``tau`` per neuron where it varies)."""
    node = g.node if node is None else node
    if isinstance(node, N.LI):
        if node.v_leak != 0.0 or _scalar(node.r, "r", g.name) != 1.0:
            raise UnsupportedLayerError(f"layer {g.name!r}: a leaky integrator with v_leak={node.v_leak:g} cannot be "
                                        f"mapped (Loihi's neurons rest at 0)")
        tau = _tau(node.tau, g)
        vth = math.inf
        decay_input = node.decay_input
    elif isinstance(node, N.LIF):
        if node.reset != "hard" or node.v_reset != 0.0:
            raise UnsupportedLayerError(f"layer {g.name!r}: reset={node.reset!r}, v_reset={node.v_reset:g}; Loihi's "
                                        f"CUBA neuron resets v to 0 (hard reset, v_reset=0)")
        tau = _tau(node.tau, g)
        vth = _scalar(node.v_threshold, "v_threshold", g.name)
        if not vth > 0:
            raise UnsupportedLayerError(f"layer {g.name!r}: v_threshold must be > 0 for Loihi, got {vth}")
        decay_input = node.decay_input
    else:
        raise UnsupportedLayerError(f"layer {g.label()} is not a LIF neuron or a leaky integrator")
    t = torch.as_tensor(tau, dtype=torch.float64)
    if bool(torch.isnan(t).any()) or bool((t < 1.0).any()):
        raise UnsupportedLayerError(f"layer {g.name!r}: tau must be >= 1 (inf: no leak), got {tau}")
    return tau, vth, decay_input


def _fold(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: N.BatchNorm, name: str):
    try:
        return fold_batchnorm(weight, bias, bn, name)
    except ValueError as exc:
        raise UnsupportedLayerError(str(exc)) from exc


def loihi_graph(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> Graph:
    """The traced graph of ``model`` with data-moving nodes bypassed; errors name undeclared layers and arithmetic
    outside declared layers."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    from spikelib.layers.delay_schedule import rounded_delays

    try:
        with rounded_delays(model):  # learnable delays in their inference form (what a chip runs)
            graph = trace(model, input_shape=input_shape).simplified()
        graph.check_no_functions("Loihi mapping")
    except (UndeclaredLayerError, GraphStructureError, TraceError) as exc:
        raise UnsupportedLayerError(str(exc)) from exc
    except ValueError as exc:
        if "input_shape" in str(exc):
            raise UnsupportedLayerError(str(exc)) from exc
        raise
    return graph


def _synapse(g: GraphNode):
    """``(weight, bias, delays, conv geometry)`` of a synapse node, float64."""
    from spikelib.hardware.loihi.network import ConvGeometry

    node = g.node
    bias = None if getattr(node, "bias", None) is None else node.bias.double()
    if isinstance(node, N.DelayedAffine):
        if node.mode == "gaussian":
            raise UnsupportedLayerError(f"layer {g.name!r}: delays are in their Gaussian training form; round them "
                                        f"(layer.round_delays() or spikelib.layers.delay_schedule.rounded_delays)")
        delay = None if node.mode == "none" else node.delay.to(torch.int64)
        return node.weight.double(), bias, delay, None
    if isinstance(node, N.Affine):
        return node.weight.double(), bias, None, None
    if isinstance(node, N.Conv) and node.ndim == 2:
        shape = g.in_shapes[0] if g.in_shapes else None
        if shape is None or len(shape) != 3:
            raise UnsupportedLayerError(f"layer {g.name!r} (2-d conv): its input must be (C, H, W) per sample, got "
                                        f"{shape}")
        if isinstance(node.padding, str) or node.padding_mode != "zeros":
            raise UnsupportedLayerError(f"layer {g.name!r} (2-d conv): only numeric zero padding maps to netx")
        geom = ConvGeometry(tuple(shape), node.stride, node.padding, node.dilation, node.groups)
        return node.weight.double(), bias, None, geom
    why = {N.Pool: "pooling (lava-dl 0.6 netx has no pool layer)", N.AdaptivePool: "adaptive pooling",
           N.AttentionProduct: "spike-driven attention", N.SpikeColumnSum: "spike-driven attention",
           N.Add: "a residual addition (Loihi mapping handles chains of layers)", N.Conv: "a 1-d/3-d convolution",
           N.ELM: "the ELM neuron", N.SparseConv: "sparse convolution", N.ALIF: "an adaptive-threshold neuron (Loihi's "
           "CUBA neuron has a fixed threshold)", N.Izhikevich: "a two-variable Izhikevich neuron"}
    reason = next((text for cls, text in why.items() if isinstance(node, cls)), f"a {node.kind} node")
    raise UnsupportedLayerError(
        f"layer {g.label()} cannot be mapped to Loihi: {reason}. Supported chains are synapse (Linear, DelayedLinear "
        f"with integer delays, Conv2d) [BatchNorm] -> LIF / IF / CUBA-LIF (optionally recurrent) or leaky integrator, "
        f"with Flatten between conv and dense blocks")


def _float_layers(chain: List[GraphNode]) -> Tuple[List[FloatLayer], int, str, Tuple[int, ...]]:
    layers: List[FloatLayer] = []
    pending = None  # (name, weight, bias, delay, geometry)
    pad = 0
    readout: Optional[str] = None
    last_neuron: Optional[N.Node] = None
    first_shape: Optional[Tuple[int, ...]] = None
    for i, g in enumerate(chain):
        node = g.node
        if readout is not None:
            raise UnsupportedLayerError(f"layer {g.label()} comes after the readout over time; nothing may follow it")
        if isinstance(node, N.TimePad):
            if pending is not None:
                raise UnsupportedLayerError(f"layer {g.label()}: zero time padding between a synapse and its neuron")
            pad += node.steps
            continue
        if isinstance(node, N.Flatten):
            if pending is not None:
                raise UnsupportedLayerError(f"layer {g.label()}: Flatten must come after a neuron layer")
            continue
        if isinstance(node, N.BatchNorm):
            if pending is None:
                raise UnsupportedLayerError(f"layer {g.label()}: batch norm must follow a synapse")
            pending = (pending[0], *_fold(pending[1], pending[2], node, g.name), *pending[3:])
            continue
        if isinstance(node, (N.LIF, N.LI, N.CubaLIF, N.Recurrent)):
            if pending is None:
                if last_neuron is None or not g.in_shapes or g.in_shapes[0] is None:
                    raise UnsupportedLayerError(f"layer {g.label()}: a neuron layer must follow a synapse")
                n = int(math.prod(g.in_shapes[0]))  # reads the spikes of the neuron before it: one-to-one synapses
                pending = (g.name, torch.eye(n, dtype=torch.float64), None, None, None)
            fields = _neuron_fields(g, node)
            bias = pending[2]
            rec_bias = fields.pop("rec_bias", None)
            if rec_bias is not None:  # the feedback's bias joins the input every step, like the synapse's
                bias = rec_bias if bias is None else bias + rec_bias
            if fields.get("current_decay") is not None and bias is not None:
                raise UnsupportedLayerError(f"layer {pending[0]!r}: a synapse bias into a CUBA neuron would enter its "
                                            f"current (Loihi adds biases to the voltage): give the neuron a bias "
                                            f"instead of the synapse")
            if fields.get("weight_rec") is not None and pending[3] is not None:
                raise UnsupportedLayerError(f"layer {g.name!r}: a recurrent layer cannot have synaptic delays on Loihi "
                                            f"(lava-dl's RecurrentDense drops them)")
            layers.append(FloatLayer(pending[0], pending[1], bias=bias, delay=pending[3], conv=pending[4], **fields))
            pending = None
            last_neuron = node.neuron if isinstance(node, N.Recurrent) else node
            continue
        if isinstance(node, N.Reduce):
            if pending is not None or last_neuron is None:
                raise UnsupportedLayerError(f"layer {g.label()}: the readout over time must follow a neuron layer")
            if isinstance(last_neuron, (N.LIF, N.CubaLIF)) and node.op == "sum":
                readout = "spikes"
            elif isinstance(last_neuron, N.LI) and node.op in _REDUCE_READOUT:
                readout = _REDUCE_READOUT[node.op]
            else:
                raise UnsupportedLayerError(f"layer {g.label()}: readout {node.op!r} of a {last_neuron.kind} layer has "
                                            f"no Loihi counterpart (spike counts of LIF, mean or softmax-sum of a "
                                            f"leaky integrator)")
            continue
        if isinstance(node, N.NEURON_NODES):
            _synapse(g)  # a neuron kind Loihi does not run: raises, saying why
        if pending is not None:
            raise UnsupportedLayerError(f"layer {g.label()}: the synapse {pending[0]!r} must be followed by a neuron "
                                        f"layer")
        if first_shape is None:
            first_shape = g.in_shapes[0] if g.in_shapes else None
        pending = (g.name, *_synapse(g))
    if pending is not None:
        raise UnsupportedLayerError(f"layer {pending[0]!r}: the last synapse has no neuron layer after it")
    if not layers:
        raise UnsupportedLayerError("the network has no synapse -> neuron blocks")
    if readout is None:
        readout = "membrane" if isinstance(last_neuron, N.LI) else "spikes"
    for fl in layers[:-1]:
        if not math.isfinite(fl.v_threshold):
            raise UnsupportedLayerError(f"layer {fl.name!r}: a leaky integrator (no spikes) can only be the last layer")
    return layers, pad, readout, tuple(first_shape) if first_shape is not None else ()


def extract_float_network(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> FloatNetwork:
    """The :class:`FloatNetwork` of ``model`` (see the module docstring).

    Args:
        model: any network built from declared layers, in eval mode (batch norm is folded, dropout is the identity).
        input_shape: per-sample input shape (e.g. ``(C, H, W)`` when the first synapse is a convolution); inferred
            when the first layer is a dense or delayed synapse.
    """
    graph = loihi_graph(model, input_shape)
    adds = graph.find(N.Add)
    if adds:
        raise UnsupportedLayerError(f"layer {adds[0].label()} cannot be mapped to Loihi: a residual addition (the "
                                    f"Loihi mapping handles chains of layers)")
    try:
        chain = graph.chain()
    except GraphStructureError as exc:
        raise UnsupportedLayerError(f"Loihi mapping: {exc}") from exc
    layers, pad, readout, first_shape = _float_layers(chain)
    n_in = layers[0].conv.in_shape if layers[0].conv is not None else first_shape
    if not n_in:
        n_in = (int(layers[0].weight.shape[1]),)
    return FloatNetwork(int(math.prod(n_in)), layers, readout, pad, {"model": type(model).__name__})
