"""NIR import: a NIR graph -> :class:`spikelib.layers.Sequential` (a chain) or :class:`spikelib.layers.GraphNetwork`
(any other acyclic graph); the mapping is described in :mod:`spikelib.hardware.nir`."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple, Union  # noqa: F401

import numpy as np
import torch
from torch import nn

from spikelib.hardware.nir import common as _api
from spikelib.hardware.nir.cuba import CubaLIF
from spikelib.hardware.nir.files import read_nir

__all__ = ["from_nir"]


def _meta(node: Any, key: str, default: Any = None) -> Any:
    value = (getattr(node, "metadata", None) or {}).get(key, default)
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _arr(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _finite_node(node: Any, name: str) -> None:
    """Every numeric field of a NIR node must be finite (a NaN tau or threshold would only fail at forward)."""
    for field in ("weight", "bias", "tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in",
                  "delay"):
        value = getattr(node, field, None)
        if value is None or isinstance(value, str):
            continue
        a = np.asarray(value)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise _api.NIRConversionError(f"node {name!r}: {field} holds NaN or infinite values")


def _whole_steps(delay_s: np.ndarray, dt: float, name: str, what: str = "delays") -> np.ndarray:
    """Delays in seconds -> integer steps ``>= 0``, exactly (no rounding, no clamping)."""
    steps = np.round(delay_s / dt)
    if not np.allclose(delay_s, steps * dt, rtol=1e-6, atol=1e-12):
        raise _api.NIRConversionError(f"node {name!r}: {what} must be whole numbers of steps of dt={dt:g}")
    if np.any(steps < 0):
        raise _api.NIRConversionError(f"node {name!r}: {what} must be >= 0 steps, got {steps.min():g}")
    return steps


def _uniform(value: Any, what: str, name: str) -> float:
    a = _arr(value).reshape(-1)
    if a.size == 0 or not np.all(a == a[0]):
        raise _api.NIRConversionError(f"node {name!r}: {what} must be the same for all neurons here")
    return float(a[0])


def _decay_input(node: Any, name: str, r: np.ndarray, tau_steps: np.ndarray) -> Tuple[bool, float]:
    """``(decay_input, input scale)`` from NIR's resistance ``r``: 1 -> True, tau/dt -> False (scale 1)."""
    flag = _meta(node, "spikelib_decay_input")
    if flag is not None:
        return bool(flag), 1.0
    if np.allclose(r, 1.0, rtol=1e-6, atol=0):
        return True, 1.0
    if np.allclose(r, tau_steps, rtol=1e-6, atol=0):
        return False, 1.0
    return True, _uniform(r, "r (resistance)", name)


def _tau_steps(node: Any, tau: Any, dt: float, key: str = "spikelib_tau_steps") -> np.ndarray:
    stored = _meta(node, key)
    if stored is not None:
        return np.broadcast_to(_arr(stored), _arr(tau).shape).copy()
    return _arr(tau) / dt


def _lif(nir, name: str, node, dt: float) -> nn.Module:
    from spikelib.neurons import LIF

    tau = _tau_steps(node, node.tau, dt)
    if np.any(tau < 1.0):
        raise _api.NIRConversionError(f"node {name!r}: tau / dt must be >= 1 step (got {tau.min():g}); pass the "
                                      f"graph's dt to from_nir")
    v_reset = _uniform(node.v_reset, "v_reset", name)
    if not np.allclose(_arr(node.v_leak), v_reset):
        raise _api.NIRConversionError(f"node {name!r}: v_leak must equal v_reset (spikelib's LIF leaks to v_reset)")
    decay_input, scale = _decay_input(node, name, _arr(node.r), tau)
    if scale != 1.0:
        raise _api.NIRConversionError(f"node {name!r}: r must be 1 or tau/dt, got {scale:g}")
    tau_p = float(tau.reshape(-1)[0]) if np.all(tau == tau.reshape(-1)[0]) else torch.from_numpy(tau).float()
    vth = _arr(node.v_threshold)
    vth_p = float(vth.reshape(-1)[0]) if np.all(vth == vth.reshape(-1)[0]) else torch.from_numpy(vth).float()
    return LIF(tau=tau_p, v_threshold=vth_p, v_reset=v_reset, reset="hard", decay_input=decay_input)


def _cuba(node: Any, name: str, dt: float) -> nn.Module:
    """spikelib's CubaLIF when the node's gains are 1 (``w_in = tau_syn``, ``r = tau_mem``: Loihi's form, what spikelib
    exports), exactly from the stored decays; NIR's general CubaLIF otherwise."""
    from spikelib.neurons import CubaLIF as SpikelibCuba

    tau_syn = _tau_steps(node, node.tau_syn, dt, "spikelib_tau_syn_steps")
    tau_mem = _tau_steps(node, node.tau_mem, dt, "spikelib_tau_mem_steps")
    in_gain, cur_gain = _arr(node.w_in) / tau_syn, _arr(node.r) / tau_mem
    reset = _arr(node.v_reset).reshape(-1)
    if np.allclose(in_gain, 1.0, rtol=1e-6) and np.allclose(cur_gain, 1.0, rtol=1e-6) and np.all(reset == reset[0]):
        def value(key: str, default: np.ndarray) -> Any:
            a = _arr(_meta(node, key, default)).reshape(-1)
            return float(a[0]) if np.all(a == a[0]) else torch.from_numpy(a.reshape(_arr(default).shape)).float()

        return SpikelibCuba(current_decay=value("spikelib_current_decay", 1.0 / tau_syn),
                            voltage_decay=value("spikelib_voltage_decay", 1.0 / tau_mem),
                            v_threshold=value("spikelib_v_threshold", _arr(node.v_threshold)),
                            bias=value("spikelib_bias", _arr(node.v_leak) / tau_mem), v_reset=float(reset[0]))
    return CubaLIF(tau_syn, tau_mem, node.r, node.v_leak, node.v_threshold, node.v_reset, node.w_in)


def _delayed_linear(nir, name: str, sub, dt: float) -> nn.Module:
    from spikelib.layers.delay import DelayedLinear

    inp = [n for n in sub.nodes.values() if isinstance(n, nir.Input)]
    out = [n for n in sub.nodes.values() if isinstance(n, nir.Output)]
    if len(inp) != 1 or len(out) != 1:
        raise _api.NIRConversionError(f"node {name!r}: sub-graph needs one Input and one Output")
    n_in, n_out = int(np.prod(inp[0].input_type["input"])), int(np.prod(out[0].output_type["output"]))
    src = {b: a for a, b in sub.edges}
    weight, delay, bias = torch.zeros(n_out, n_in), torch.zeros(n_out, n_in), None
    for key, node in sub.nodes.items():
        if isinstance(node, (nir.Input, nir.Output, nir.Delay)):
            continue
        if not isinstance(node, (nir.Linear, nir.Affine)):
            raise _api.NIRConversionError(f"node {name!r}/{key!r} ({type(node).__name__}): a delayed-linear "
                                          f"sub-graph holds only Delay -> Linear branches")
        _finite_node(node, f"{name}/{key}")
        w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
        before = sub.nodes.get(src.get(key, ""))
        if isinstance(before, nir.Delay):
            _finite_node(before, f"{name}/{src[key]}")
            steps = _whole_steps(_arr(before.delay), dt, f"{name}/{src[key]}")
            d = _meta(before, "spikelib_delay_steps", steps.reshape(-1)[0])
            if not np.allclose(steps, steps.reshape(-1)[0]) or not np.allclose(_arr(d), steps.reshape(-1)[0]):
                raise _api.NIRConversionError(f"node {name!r}/{src[key]!r}: delays must be one integer number of "
                                              f"steps per branch")
            weight += w
            delay = torch.where(w != 0, torch.full_like(delay, float(d)), delay)
        elif isinstance(node, nir.Affine) and not np.any(node.weight):
            bias = torch.from_numpy(np.asarray(node.bias, dtype=np.float32))
        else:
            weight += w
        if isinstance(node, nir.Affine) and np.any(node.weight):
            raise _api.NIRConversionError(f"node {name!r}/{key!r}: biases belong to a zero-weight Affine branch")
    max_delay = int(_meta(sub, "spikelib_max_delay", max(1, int(delay.max()))))
    if int(delay.max()) > max_delay or max_delay < 1:
        raise _api.NIRConversionError(f"node {name!r}: a delay of {int(delay.max())} steps exceeds the sub-graph's "
                                      f"spikelib_max_delay {max_delay} (delays are never clamped on import)")
    layer = DelayedLinear(n_in, n_out, max_delay, delays="random", bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.delay.copy_(delay)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _convert(nir, name: str, node, dt: float) -> Optional[nn.Module]:
    if not isinstance(node, nir.NIRGraph):
        _finite_node(node, name)
    if isinstance(node, nir.Affine):
        w = np.asarray(node.weight, dtype=np.float32)
        m = nn.Linear(w.shape[1], w.shape[0], bias=True)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(w))
            m.bias.copy_(torch.from_numpy(np.asarray(node.bias, dtype=np.float32)))
        return m
    if isinstance(node, nir.Linear):
        w = np.asarray(node.weight, dtype=np.float32)
        m = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(w))
        return m
    if isinstance(node, nir.LIF):
        return _lif(nir, name, node, dt)
    if isinstance(node, nir.LI):
        tau = _tau_steps(node, node.tau, dt)
        decay_input, r = _decay_input(node, name, _arr(node.r), tau)
        from spikelib.neurons import LeakyIntegrator

        return LeakyIntegrator(_uniform(tau, "tau", name), decay_input, _uniform(node.v_leak, "v_leak", name), r)
    if isinstance(node, nir.IF):
        from spikelib.neurons import IF

        gain = _uniform(_arr(node.r) * dt, "r dt", name)
        if not np.isclose(gain, 1.0, rtol=1e-6):
            raise _api.NIRConversionError(f"node {name!r}: an IF node imports when r dt = 1 (V += X per step), got "
                                          f"{gain:g}")
        vth = _arr(node.v_threshold)
        vth_p = float(vth.reshape(-1)[0]) if np.all(vth == vth.reshape(-1)[0]) else torch.from_numpy(vth).float()
        return IF(v_threshold=vth_p, v_reset=_uniform(node.v_reset, "v_reset", name))
    if isinstance(node, nir.CubaLIF):
        return _cuba(node, name, dt)
    if isinstance(node, nir.Delay):
        steps = _whole_steps(_arr(node.delay), dt, name)
        stored = _meta(node, "spikelib_delay_steps")
        if stored is not None and not np.array_equal(_arr(stored).reshape(steps.shape), steps):
            raise _api.NIRConversionError(f"node {name!r}: spikelib_delay_steps disagrees with delay / dt")
        from spikelib.layers import ChannelDelay

        return ChannelDelay(torch.from_numpy(steps.astype(np.int64)))
    if isinstance(node, nir.NIRGraph):
        return _delayed_linear(nir, name, node, dt)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = np.asarray(node.weight, dtype=np.float32)
        cls = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d
        pad = node.padding if isinstance(node.padding, str) else node.padding
        m = cls(w.shape[1] * node.groups, w.shape[0], tuple(w.shape[2:]), stride=node.stride, padding=pad,
                dilation=node.dilation, groups=node.groups, bias=True)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(w))
            m.bias.copy_(torch.from_numpy(np.asarray(node.bias, dtype=np.float32)))
        return m
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = (tuple(int(v) for v in np.asarray(x).reshape(-1)) for x in (node.kernel_size, node.stride,
                                                                            node.padding))
        return nn.AvgPool2d(k, s, p, divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
    if isinstance(node, nir.Flatten):
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return nn.Flatten(node.start_dim + 1, end)
    if type(node).__name__ == "Identity":  # nir.ir.graph.Identity (not exported at the top level in nir 1.0)
        return nn.Identity()
    raise _api.NIRConversionError(f"node {name!r} ({type(node).__name__}) has no spikelib counterpart")


def _structure(nir, graph) -> Tuple[str, str, Dict[str, List[str]]]:
    """(input key, output key, node -> the nodes it reads) of a NIR graph, checked."""
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise _api.NIRConversionError(f"the graph must have exactly one Input and one Output node, found inputs "
                                      f"{inputs} and outputs {outputs}")
    reads: Dict[str, List[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise _api.NIRConversionError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
        if b == inputs[0]:
            raise _api.NIRConversionError(f"edge ({a!r}, {b!r}) enters the Input node")
        reads[b].append(a)
    for k, srcs in reads.items():
        if k != inputs[0] and not srcs:
            raise _api.NIRConversionError(f"node {k!r} reads no node")
    return inputs[0], outputs[0], reads


def _module_name(key: str) -> str:
    name = key.replace(".", "_")
    return name if name not in ("input", "output") else f"{name}_node"


def from_nir(graph: Union[Any, str, os.PathLike], dt: Optional[float] = None) -> nn.Module:
    """Build a time-first network from a NIR graph (or a ``.nir`` file): a :class:`spikelib.layers.Sequential` for a
    chain of nodes, a :class:`spikelib.layers.GraphNetwork` otherwise (several edges into a node are summed). A
    ``spikelib_readout`` in the graph's metadata appends a :class:`spikelib.layers.TimeReduce`, a ``spikelib_time_pad``
    re-inserts the zero time padding spikelib exported. The graph's metadata is kept as ``module.nir_metadata``.

    ``dt`` (seconds per step) converts NIR's time constants and delays to steps; default: the graph's
    ``spikelib_dt`` metadata, else ``1e-4``.
    """
    from collections import OrderedDict

    from spikelib.layers import GraphNetwork, Sequential, TimePad, TimeReduce

    nir = _api.nir_module()
    if isinstance(graph, (str, os.PathLike)):
        graph = read_nir(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph or a path, got {type(graph).__name__}")
    if dt is None:
        dt = float(_meta(graph, "spikelib_dt", _api.DEFAULT_DT))
    if not (isinstance(dt, float) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    in_key, out_key, reads = _structure(nir, graph)
    name = {k: ("input" if k == in_key else _module_name(k)) for k in graph.nodes}
    modules: Dict[str, nn.Module] = {}
    inputs: Dict[str, List[str]] = {}
    for key, node in graph.nodes.items():
        if key in (in_key, out_key):
            continue
        modules[name[key]] = _convert(nir, key, node, dt)
        inputs[name[key]] = [name[s] for s in reads[key]]
    outputs = [name[s] for s in reads[out_key]]
    pads = dict((graph.metadata or {}).get("spikelib_time_pad") or {})
    for src, steps in pads.items():  # re-insert zero time padding after the node (or the input) it followed
        src = "input" if src == "input" else _module_name(str(src))
        if src != "input" and src not in modules:
            raise _api.NIRConversionError(f"metadata spikelib_time_pad names {src!r}, which is not a node")
        pad = f"{src}_time_pad"
        for readers in list(inputs.values()) + [outputs]:
            readers[:] = [pad if r == src else r for r in readers]
        modules[pad], inputs[pad] = TimePad(int(steps)), [src]
    if not modules:
        raise _api.NIRConversionError("the graph has no nodes between its Input and its Output")
    readers_of = {k: [n for n, srcs in inputs.items() if k in srcs] + (["output"] if k in outputs else [])
                  for k in ["input"] + list(modules)}
    chain, at = [], "input"
    while len(readers_of[at]) == 1 and readers_of[at][0] != "output" and len(inputs[readers_of[at][0]]) == 1:
        at = readers_of[at][0]
        chain.append(at)
    is_chain = len(chain) == len(modules) and outputs == [at]
    if is_chain:
        net: nn.Module = Sequential(OrderedDict((k, modules[k]) for k in chain))
    else:
        net = GraphNetwork(modules, inputs, outputs)
    readout = _meta(graph, "spikelib_readout")
    if readout is not None:
        if is_chain:
            net.add_module("reduce", TimeReduce(str(readout)))
        else:
            net = Sequential(OrderedDict(graph=net, reduce=TimeReduce(str(readout))))
    net.nir_metadata = {k: _meta(graph, k) for k in (graph.metadata or {})}
    return net
