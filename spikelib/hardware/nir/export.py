"""NIR export: any network built from declared layers -> ``nir.NIRGraph`` (see :mod:`spikelib.hardware.nir`)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from spikelib.graph import Graph, GraphNode, GraphStructureError, TraceError, UndeclaredLayerError, trace
from spikelib.graph import nodes as N
from spikelib.graph.fold import fold_batchnorm
from spikelib.hardware.nir.common import DEFAULT_DT, NIRConversionError, nir_module

__all__ = ["to_nir"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _neuron_arrays(shape: Tuple[int, ...], **values: Any) -> Dict[str, np.ndarray]:
    n = int(np.prod(shape))
    out = {}
    for k, v in values.items():
        arr = np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
        out[k] = np.broadcast_to(arr.reshape(-1) if arr.size == n else arr, (n,)).copy().reshape(shape)
    return out


def _steps_meta(tau: Any) -> Any:
    t = torch.as_tensor(tau, dtype=torch.float64).reshape(-1)
    return t.numpy().copy() if t.numel() > 1 else float(t)


def _lif_node(nir, g: GraphNode, shape: Tuple[int, ...], dt: float):
    node: N.LIF = g.node
    if node.reset != "hard":
        raise NIRConversionError(f"layer {g.name!r}: reset={node.reset!r}; NIR's LIF resets to v_reset (hard reset "
                                 f"only)")
    tau = torch.as_tensor(node.tau, dtype=torch.float64).reshape(-1)
    if bool(torch.isinf(tau).any()):
        if not bool(torch.isinf(tau).all()) or node.decay_input:
            raise NIRConversionError(f"layer {g.name!r}: tau = inf (no leak) must hold for every neuron, with "
                                     f"decay_input=False (an integrate-and-fire neuron)")
        p = _neuron_arrays(shape, r=1.0 / dt, v_threshold=torch.as_tensor(node.v_threshold,
                                                                          dtype=torch.float64).reshape(-1),
                           v_reset=node.v_reset)
        return nir.IF(**p, metadata={"spikelib_dt": dt})  # NIR's IF: dv/dt = r I, one step of dt: V += X
    p = _neuron_arrays(shape, tau=tau * dt, r=1.0 if node.decay_input else tau, v_leak=node.v_reset,
                       v_threshold=torch.as_tensor(node.v_threshold, dtype=torch.float64).reshape(-1),
                       v_reset=node.v_reset)
    meta = {"spikelib_decay_input": int(node.decay_input), "spikelib_dt": dt, "spikelib_tau_steps": _steps_meta(tau)}
    return nir.LIF(**p, metadata=meta)


def _li_node(nir, g: GraphNode, shape: Tuple[int, ...], dt: float):
    node: N.LI = g.node
    tau = torch.as_tensor(node.tau, dtype=torch.float64).reshape(-1)
    r = torch.as_tensor(node.r, dtype=torch.float64).reshape(-1)
    p = _neuron_arrays(shape, tau=tau * dt, r=r if node.decay_input else r * tau, v_leak=node.v_leak)
    return nir.LI(**p, metadata={"spikelib_decay_input": int(node.decay_input), "spikelib_tau_steps": _steps_meta(tau),
                                 "spikelib_dt": dt})


def _cuba_node(nir, g: GraphNode, node: N.CubaLIF, shape: Tuple[int, ...], dt: float):
    """NIR's CubaLIF from the discrete form: ``tau_syn = 1/current_decay``, ``w_in = input_gain tau_syn``,
    ``tau_mem = 1/voltage_decay``, ``r = current_gain tau_mem``, ``v_leak = bias tau_mem`` (times in steps, then
    ``* dt``)."""
    if node.reset != "hard":
        raise NIRConversionError(f"layer {g.name!r}: reset={node.reset!r}; NIR's CubaLIF resets to v_reset")
    arr = lambda v: np.broadcast_to(np.asarray(torch.as_tensor(v, dtype=torch.float64).numpy()).reshape(-1)  # noqa
                                    if torch.as_tensor(v).numel() > 1 else np.asarray(float(v)), (int(np.prod(shape)),)
                                    ).reshape(shape).astype(np.float64)
    du, dv = arr(node.current_decay), arr(node.voltage_decay)
    if np.any(du <= 0) or np.any(dv <= 0):
        raise NIRConversionError(f"layer {g.name!r}: a decay of 0 (no leak) has no NIR CubaLIF time constant")
    tau_syn, tau_mem = 1.0 / du, 1.0 / dv
    return nir.CubaLIF(tau_syn=tau_syn * dt, tau_mem=tau_mem * dt, r=arr(node.current_gain) * tau_mem,
                       v_leak=arr(node.bias) * tau_mem, v_threshold=arr(node.v_threshold), v_reset=arr(node.v_reset),
                       w_in=arr(node.input_gain) * tau_syn,
                       metadata={"spikelib_dt": dt, "spikelib_tau_syn_steps": tau_syn,
                                 "spikelib_tau_mem_steps": tau_mem, "spikelib_current_decay": du,
                                 "spikelib_voltage_decay": dv, "spikelib_bias": arr(node.bias)})


def _delayed_graph(nir, node: N.DelayedAffine, dt: float):
    w = node.weight
    c_out, c_in = (int(s) for s in w.shape)
    delays = node.delay.to(torch.int64)
    nodes = {"input": nir.Input(input_type={"input": np.array([c_in])}),
             "output": nir.Output(output_type={"output": np.array([c_out])})}
    edges = []
    for d in sorted(int(k) for k in torch.unique(delays[w != 0])):
        wd = torch.where(delays == d, w, torch.zeros_like(w))
        nodes[f"delay{d}"] = nir.Delay(np.full(c_in, d * dt, dtype=np.float64), metadata={"spikelib_delay_steps": d})
        nodes[f"w{d}"] = nir.Linear(_np(wd))
        edges += [("input", f"delay{d}"), (f"delay{d}", f"w{d}"), (f"w{d}", "output")]
    if node.bias is not None:
        nodes["bias"] = nir.Affine(np.zeros((c_out, c_in), dtype=np.float32), _np(node.bias))
        edges += [("input", "bias"), ("bias", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikelib_layer": "DelayedLinear",
                                                           "spikelib_max_delay": node.max_delay, "spikelib_dt": dt})


def _folded(g: GraphNode, bn: Optional[GraphNode]) -> N.Node:
    """The synapse node of ``g`` with the batch norm ``bn`` that follows it folded in (float32 like the layers)."""
    if bn is None:
        return g.node
    node = g.node
    try:
        w, b = fold_batchnorm(node.weight, node.bias, bn.node, bn.name)
    except ValueError as exc:
        raise NIRConversionError(str(exc)) from exc
    w, b = w.to(node.weight.dtype), b.to(node.weight.dtype)
    if isinstance(node, N.DelayedAffine):
        return N.DelayedAffine(w, node.delay, node.max_delay, node.mode, b)
    if isinstance(node, N.Conv):
        return N.Conv(w, b, node.stride, node.padding, node.dilation, node.groups, node.padding_mode)
    return N.Affine(w, b)


def _conv_node(nir, g: GraphNode, node: N.Conv):
    if node.padding_mode != "zeros":
        raise NIRConversionError(f"layer {g.name!r}: padding_mode {node.padding_mode!r} (NIR has zero padding)")
    if node.ndim not in (1, 2):
        raise NIRConversionError(f"layer {g.label()}: NIR has 1-d and 2-d convolutions only")
    shape = g.in_shapes[0]
    bias = _np(node.bias) if node.bias is not None else np.zeros(node.weight.shape[0], dtype=np.float32)
    one = (lambda v: v[0]) if node.ndim == 1 else (lambda v: v)  # noqa: E731
    pad = node.padding if isinstance(node.padding, str) else one(node.padding)
    cls = nir.Conv1d if node.ndim == 1 else nir.Conv2d
    return cls(input_shape=one(tuple(shape[1:])), weight=_np(node.weight), stride=one(node.stride), padding=pad,
               dilation=one(node.dilation), groups=node.groups, bias=bias)


def _pool_node(nir, g: GraphNode, node: N.Pool):
    if node.op != "avg" or len(node.kernel_size) != 2:
        raise NIRConversionError(f"layer {g.label()}: NIR has 2-d average (and sum) pooling only")
    if node.ceil_mode or node.divisor_override not in (None, 1) or (not node.count_include_pad and any(node.padding)):
        raise NIRConversionError(f"layer {g.name!r}: average pooling options have no NIR counterpart")
    cls = nir.SumPool2d if node.divisor_override == 1 else nir.AvgPool2d
    out = cls(kernel_size=np.array(node.kernel_size), stride=np.array(node.stride), padding=np.array(node.padding))
    out.input_type, out.output_type = {"input": np.array(g.in_shapes[0])}, {"output": np.array(g.out_shape)}
    return out


def _to_nir_node(nir, g: GraphNode, node: N.Node, dt: float):
    shape = g.in_shapes[0] if g.in_shapes else None
    if shape is None:
        raise NIRConversionError(f"layer {g.label()}: its input has no recognisable [T, B, ...] layout")
    if isinstance(node, N.DelayedAffine):
        if node.mode == "gaussian":
            raise NIRConversionError(f"layer {g.name!r}: delays are in their Gaussian training form; round them first "
                                     f"(layer.round_delays() or spikelib.layers.delay_schedule.rounded_delays)")
        if node.mode == "none":
            node = N.Affine(node.weight, node.bias)
        else:
            return _delayed_graph(nir, node, dt)
    if isinstance(node, N.Affine):
        return nir.Affine(_np(node.weight), _np(node.bias)) if node.bias is not None else nir.Linear(_np(node.weight))
    if isinstance(node, N.LIF):
        return _lif_node(nir, g, tuple(shape), dt)
    if isinstance(node, N.LI):
        return _li_node(nir, g, tuple(shape), dt)
    if isinstance(node, N.CubaLIF):
        return _cuba_node(nir, g, node, tuple(shape), dt)
    if isinstance(node, N.Delay):
        steps = _np(node.delay).reshape(shape)
        return nir.Delay(steps.astype(np.float64) * dt, metadata={"spikelib_delay_steps": steps})
    if isinstance(node, N.Conv):
        return _conv_node(nir, g, node)
    if isinstance(node, N.Pool):
        return _pool_node(nir, g, node)
    if isinstance(node, N.Flatten):
        if node.start_dim < 1:
            raise NIRConversionError(f"layer {g.name!r}: Flatten must keep the batch dimension (start_dim >= 1)")
        end = node.end_dim - 1 if node.end_dim >= 0 else node.end_dim
        return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=node.start_dim - 1, end_dim=end)
    raise NIRConversionError(f"layer {g.label()} cannot be exported to NIR (no NIR node for {node.kind})")


def _export_graph(graph: Graph) -> Tuple[Graph, Dict[str, Optional[GraphNode]], Dict[str, Any]]:
    """Fold batch norms into the synapses before them, drop Reduce/TimePad nodes into metadata."""
    meta: Dict[str, Any] = {}
    folded: Dict[str, Optional[GraphNode]] = {}
    for g in graph.find(N.BatchNorm):
        src = graph.nodes[g.inputs[0]]
        if not isinstance(src.node, (N.Affine, N.Conv, N.DelayedAffine)) or graph.successors(src.name) != [g.name]:
            raise NIRConversionError(f"layer {g.label()}: batch norm is exported folded into the synapse before it; "
                                     f"it must directly follow a Linear/Conv/DelayedLinear layer")
        folded[src.name] = g
    reduces = graph.find(N.Reduce)
    if reduces:
        last = reduces[-1]
        if len(reduces) > 1 or graph.output.inputs != [last.name]:
            raise NIRConversionError(f"layer {last.label()}: a readout over time must be the network's last layer")
        meta["spikelib_readout"] = last.node.op
    pads = graph.find(N.TimePad)
    if pads:
        meta["spikelib_time_pad"] = {g.inputs[0].replace(".", "_") if g.inputs[0] != "input" else "input":
                                     int(g.node.steps) for g in pads}
    return graph.without(N.BatchNorm, N.Reduce, N.TimePad), folded, meta


def to_nir(model: nn.Module, input_shape: Optional[Sequence[int]] = None, dt: float = DEFAULT_DT):
    """Export ``model`` to a ``nir.NIRGraph`` (see the module docstring).

    Args:
        model: any network built from declared layers (eval mode: batch norm is folded, dropout dropped).
        input_shape: per-sample input shape; needed when the first layer is not a Linear/DelayedLinear.
        dt: seconds per step (NIR's time constants and delays are in seconds).
    """
    nir = nir_module()
    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0 (seconds per step), got {dt!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    from spikelib.layers.delay_schedule import rounded_delays

    try:
        with rounded_delays(model):  # learnable delays in their inference form (what a chip runs)
            graph = trace(model, input_shape=input_shape).simplified()
        graph.check_no_functions("NIR export")
    except (UndeclaredLayerError, GraphStructureError, TraceError) as exc:
        raise NIRConversionError(str(exc)) from exc
    except ValueError as exc:
        if "input_shape" in str(exc):
            raise NIRConversionError(str(exc)) from exc
        raise
    if not graph.layers():
        raise NIRConversionError("the model has no layers to export")
    graph, folded, meta = _export_graph(graph)
    key = {g.name: g.name.replace(".", "_").replace("#", "_call") for g in graph.nodes.values()}

    def sources(name: str) -> List[str]:  # an Add's readers read its inputs (NIR sums the edges into a node)
        g = graph.nodes[name]
        if isinstance(g.node, N.Add):
            return [s for src in g.inputs for s in sources(src)]
        return [key[name]]

    nodes: Dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(graph.input.out_shape)})}
    edges: List[Tuple[str, str]] = []
    for g in graph.layers():
        if isinstance(g.node, N.Add):
            continue
        nodes[key[g.name]] = _to_nir_node(nir, g, _folded(g, folded.get(g.name)), float(dt))
        edges += [(src, key[g.name]) for inp in g.inputs for src in sources(inp)]
    out = graph.output
    nodes["output"] = nir.Output(output_type={"output": np.array(out.out_shape if out.out_shape is not None
                                                                   else graph.nodes[out.inputs[0]].out_shape)})
    edges += [(src, "output") for inp in out.inputs for src in sources(inp)]
    meta.update({"spikelib_model": type(model).__name__, "spikelib_dt": float(dt)})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
