"""NIR import: a chain of NIR nodes -> :class:`spikelib.hardware.nir.NIRSequential` (the mapping is described in
:mod:`spikelib.hardware.nir`)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from spikelib.hardware import nir as _api

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


def _uniform(value: Any, what: str, name: str) -> float:
    a = _arr(value).reshape(-1)
    if a.size == 0 or not np.all(a == a[0]):
        raise _api.NIRConversionError(f"node {name!r}: {what} must be the same for all neurons here")
    return float(a[0])


def _chain(graph) -> List[Tuple[str, Any]]:
    """Nodes from the Input to the Output, excluding both; errors for anything but a single chain."""
    nir = _api._nir()
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise _api.NIRConversionError(f"the graph must have exactly one Input node, found {inputs}")
    succ: Dict[str, List[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise _api.NIRConversionError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
        succ[a].append(b)
    chain, name, seen = [], inputs[0], set()
    while True:
        nxt = succ[name]
        if len(nxt) != 1:
            raise _api.NIRConversionError(f"node {name!r} has {len(nxt)} successors; only chains of nodes import "
                                          f"(per-synapse delays as spikelib's DelayedLinear sub-graph)")
        name = nxt[0]
        if name in seen:
            raise _api.NIRConversionError(f"node {name!r} closes a cycle; recurrent graphs do not import")
        seen.add(name)
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            return chain
        chain.append((name, node))


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
        w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
        before = sub.nodes.get(src.get(key, ""))
        if isinstance(before, nir.Delay):
            steps = np.round(_arr(before.delay) / dt)
            d = _meta(before, "spikelib_delay_steps", steps.reshape(-1)[0])
            if not np.allclose(steps, steps.reshape(-1)[0]) or not np.allclose(_arr(before.delay), steps * dt):
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
    layer = DelayedLinear(n_in, n_out, max_delay, delays="random", bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.delay.copy_(delay)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _convert(nir, name: str, node, dt: float) -> Optional[nn.Module]:
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
        return _api.LeakyIntegrator(_uniform(tau, "tau", name), decay_input, r, _uniform(node.v_leak, "v_leak", name))
    if isinstance(node, nir.CubaLIF):
        return _api.CubaLIF(_tau_steps(node, node.tau_syn, dt, "spikelib_tau_syn_steps"),
                            _tau_steps(node, node.tau_mem, dt, "spikelib_tau_mem_steps"), node.r, node.v_leak,
                            node.v_threshold, node.v_reset, node.w_in)
    if isinstance(node, nir.Delay):
        steps = _meta(node, "spikelib_delay_steps")
        steps = np.round(_arr(node.delay) / dt) if steps is None else _arr(steps)
        if not np.allclose(_arr(node.delay), steps * dt, rtol=1e-6, atol=1e-12):
            raise _api.NIRConversionError(f"node {name!r}: delays must be whole numbers of steps of dt={dt:g}")
        return _api.ChannelDelay(torch.from_numpy(steps.astype(np.int64)))
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
        return None
    raise _api.NIRConversionError(f"node {name!r} ({type(node).__name__}) has no spikelib counterpart")


def from_nir(graph: Union[Any, str, os.PathLike], dt: Optional[float] = None) -> "_api.NIRSequential":
    """Build a :class:`~spikelib.hardware.nir.NIRSequential` from a NIR graph (or a ``.nir`` file).

    ``dt`` (seconds per step) converts NIR's time constants and delays to steps; default: the graph's
    ``spikelib_dt`` metadata, else ``1e-4``.
    """
    nir = _api._nir()
    if isinstance(graph, (str, os.PathLike)):
        graph = _api.read_nir(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph or a path, got {type(graph).__name__}")
    if dt is None:
        dt = float(_meta(graph, "spikelib_dt", _api.DEFAULT_DT))
    if not (isinstance(dt, float) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    layers, names = [], []
    for name, node in _chain(graph):
        module = _convert(nir, name, node, dt)
        if module is not None:
            layers.append(module)
            names.append(name)
    meta = {k: _meta(graph, k) for k in (graph.metadata or {})}
    return _api.NIRSequential(layers, meta, names)
