"""NIR export and import of spikelib networks (Neuromorphic Intermediate Representation, neuromorphs/NIR).

Node semantics follow NIR's continuous-time definitions (neuromorphs/NIR ``nir/ir/neuron.py``) discretised with forward
Euler at a time step ``dt`` (seconds; default ``1e-4``, the ``dt`` snnTorch's importer assumes, jeshraghian/snntorch
``snntorch/import_nir.py``). For a LIF node ``tau dv/dt = (v_leak - v) + r I``, one step is
``v += (dt / tau) (v_leak - v + r I)``; spikelib's LIF (:mod:`spikelib.functional.lif`) with ``tau`` in steps is

    decay_input=True :  NIR LIF(tau = tau dt, r = 1,   v_leak = v_reset, v_threshold, v_reset)
    decay_input=False:  NIR LIF(tau = tau dt, r = tau, v_leak = v_reset, v_threshold, v_reset)

Other nodes: ``nn.Linear`` -> ``Linear`` / ``Affine``; ``DelayedLinear`` with integer delays -> a sub-``NIRGraph``
``Input -> Delay(d dt) -> Linear(W masked to delay d) -> Output`` per distinct delay ``d`` (NIR's ``Delay`` delays
whole channels, so per-synapse delays become parallel branches summed at the output; the delays of zero weights are not
represented); the non-firing readouts (SpikingMLP's membrane readout, SNN-delays' readout) -> ``LI``; ``nn.Conv1d`` /
``nn.Conv2d`` -> ``Conv1d`` / ``Conv2d`` (``input_shape`` written); ``nn.AvgPool2d`` -> ``AvgPool2d`` (``SumPool2d``
with ``divisor_override=1``); ``nn.Flatten`` -> ``Flatten`` (dims counted without the batch); batch norm is folded
into ``Affine`` (eval mode). Every neuron parameter is written per neuron with its shape; ``Input``/``Output`` carry
the shapes. spikelib facts NIR cannot hold (tau in steps, ``decay_input``, the readout kind, SNN-delays' padding) are
written as node/graph ``metadata`` so that :func:`from_nir` rebuilds the network exactly.

:func:`from_nir` builds a :class:`NIRSequential` (time first ``[T, B, ...]``) from a chain of nodes, including graphs
exported by snnTorch and norse (``LIF`` with ``r = 1`` or ``r = tau / dt``, ``CubaLIF``, ``LI``, ``Delay``).
Differences of the peers (checked in tests/test_nir.py): norse's ``from_nir`` ignores ``r`` (warns), so only
``decay_input=True`` layers mean the same there, and it needs ``dt`` passed; snnTorch maps ``LIF`` to
``Leaky(beta = 1 - dt/tau, threshold = v_th / (r dt / tau), reset='zero')`` with ``dt = 1e-4`` fixed, i.e. it rescales
the membrane instead of the input (same spikes); neither imports ``Delay`` or ``LI``. spikelib spikes at
``v >= v_th``, NIR/norse/snnTorch at ``v > v_th`` (differs only on exact ties).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from spikelib._atomic import atomic_path

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "NIRSequential", "LeakyIntegrator", "CubaLIF",
           "ChannelDelay", "NIRConversionError"]

DEFAULT_DT = 1e-4


class NIRConversionError(ValueError):
    """A module or NIR node that has no counterpart here (the message names it)."""


def _nir():
    try:
        import nir
    except ImportError as exc:
        raise ImportError("NIR support needs the 'nir' package: pip install 'spikelib[nir]'") from exc
    return nir


# ------------------------------------------------------------------------------------------------ runtime modules
class LeakyIntegrator(nn.Module):
    """Non-firing LIF membrane ``[T, B, N] -> [T, B, N]`` (the charge equation of :mod:`spikelib.functional.lif`)."""

    def __init__(self, tau: float, decay_input: bool = True, r: float = 1.0, v_leak: float = 0.0) -> None:
        super().__init__()
        self.tau, self.decay_input, self.r, self.v_leak = float(tau), bool(decay_input), float(r), float(v_leak)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.full_like(x[0], self.v_leak)
        out = []
        for x_t in x.unbind(0):
            if self.decay_input:
                v = v + (self.r * x_t - (v - self.v_leak)) / self.tau
            else:
                v = v - (v - self.v_leak) / self.tau + self.r * x_t
            out.append(v)
        return torch.stack(out)


class CubaLIF(nn.Module):
    """NIR's current-based LIF, Euler steps of size 1 with time constants in steps (``[T, B, N]`` spikes out)::

        I += (w_in X - I) / tau_syn;   V += (v_leak - V + r I) / tau_mem;   S = V > v_th;   V = v_reset where S
    """

    def __init__(self, tau_syn, tau_mem, r, v_leak, v_threshold, v_reset, w_in) -> None:
        super().__init__()
        for name, value in (("tau_syn", tau_syn), ("tau_mem", tau_mem), ("r", r), ("v_leak", v_leak),
                            ("v_threshold", v_threshold), ("v_reset", v_reset), ("w_in", w_in)):
            self.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float64)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = torch.zeros_like(x[0])
        v = torch.zeros_like(x[0]) + self.v_leak
        out = []
        for x_t in x.unbind(0):
            i = i + (self.w_in * x_t - i) / self.tau_syn
            v = v + (self.v_leak - v + self.r * i) / self.tau_mem
            s = (v > self.v_threshold).to(x.dtype)
            v = torch.where(s > 0, self.v_reset, v)
            out.append(s)
        return torch.stack(out)


class ChannelDelay(nn.Module):
    """Per-channel integer delays: ``y[t, :, c] = x[t - d_c, :, c]`` (zeros before the start)."""

    def __init__(self, delays: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("delays", torch.as_tensor(delays).to(torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        idx = torch.arange(T)[:, None] - self.delays.reshape(-1)[None, :]  # [T, C]
        flat = x.reshape(T, x.shape[1], -1)
        out = torch.gather(flat, 0, idx.clamp_min(0)[:, None, :].expand_as(flat))
        return (out * (idx >= 0)[:, None, :].to(x.dtype)).reshape(x.shape)


class NIRSequential(nn.Module):
    """A chain of modules run time first: sequence modules see ``[T, B, ...]``, per-step modules (linear, conv,
    pooling, flatten) see the time steps folded into the batch."""

    def __init__(self, layers: Sequence[nn.Module], metadata: Optional[Dict[str, Any]] = None,
                 names: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.metadata = dict(metadata or {})
        if names is not None and len(names) != len(self.layers):
            raise ValueError(f"names must have one entry per layer ({len(self.layers)}), got {len(names)}")
        self.names = list(names) if names is not None else [str(i) for i in range(len(self.layers))]

    @staticmethod
    def _is_sequence_module(m: nn.Module) -> bool:
        from spikelib.layers.delay import DelayedLinear
        from spikelib.neurons.lif import _LIFBase

        return isinstance(m, (_LIFBase, LeakyIntegrator, CubaLIF, ChannelDelay, DelayedLinear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.layers:
            if self._is_sequence_module(m):
                x = m(x)
            else:
                T, B = x.shape[:2]
                y = m(x.reshape((T * B,) + tuple(x.shape[2:])))
                x = y.reshape((T, B) + tuple(y.shape[1:]))
        return x


# ---------------------------------------------------------------------------------------------------------- export
def _modules_of(model: nn.Module) -> Tuple[List[Tuple[str, nn.Module]], Dict[str, Any]]:
    """Flatten a supported model into named modules (batch norm folded into a Linear) and graph metadata."""
    from spikelib.hardware.loihi.extract import _fold_bn
    from spikelib.models.mlp import SpikingMLP
    from spikelib.models.snn_delays import SNNDelays

    if isinstance(model, SpikingMLP):
        mods: List[Tuple[str, nn.Module]] = []
        for i, (lin, lif) in enumerate(zip(model.linears, model.lifs)):
            mods += [(f"linears.{i}", lin), (f"lifs.{i}", lif)]
        mods.append(("out", model.out))
        if model.readout == "spikes":
            mods.append(("out_lif", model.out_lif))
        else:
            mods.append(("readout", LeakyIntegrator(model.tau_out, decay_input=True)))
        return mods, {"spikelib_model": "SpikingMLP", "spikelib_readout": model.readout}
    if isinstance(model, SNNDelays):
        if model.training:
            raise NIRConversionError("SNNDelays is in training mode; call model.eval() (batch norm is folded)")
        mods = []
        for i, (syn, norm, lif) in enumerate(zip(model.synapses, model.norms, model.neurons)):
            if isinstance(norm, nn.BatchNorm1d):
                syn = _folded_delayed(syn, *_fold_bn(syn.weight.detach().double(), None, norm, f"norms.{i}"))
            mods += [(f"synapses.{i}", syn), (f"neurons.{i}", lif)]
        ro = model._readout_lif
        mods += [("readout", model.readout),
                 ("readout_lif", LeakyIntegrator(ro["tau"], decay_input=bool(ro["decay_input"])))]
        return mods, {"spikelib_model": "SNNDelays", "spikelib_readout": "softmax_sum",
                      "spikelib_right_padding": model.right_padding}
    if isinstance(model, NIRSequential):
        return list(zip(model.names, model.layers)), dict(model.metadata)
    if isinstance(model, nn.Sequential):
        return list(model.named_children()), {}
    raise NIRConversionError(f"model {type(model).__name__} cannot be exported to NIR: supported are SpikingMLP, "
                             f"SNNDelays, NIRSequential and nn.Sequential")


def _folded_delayed(syn, weight: torch.Tensor, bias: torch.Tensor):
    from spikelib.layers.delay import DelayedLinear

    out = DelayedLinear(syn.in_features, syn.out_features, syn.max_delay, delays="random", bias=True)
    with torch.no_grad():
        out.weight.copy_(weight.float())
        out.bias.copy_(bias.float())
        out.delay.copy_(syn.integer_delays().float() if syn.delays != "none" else torch.zeros_like(out.delay))
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _neuron_arrays(n: int, **values: Any) -> Dict[str, np.ndarray]:
    out = {}
    for k, v in values.items():
        arr = np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
        out[k] = np.broadcast_to(arr, (n,)).copy()
    return out


def _lif_node(nir, m, name: str, shape: Tuple[int, ...], dt: float):
    c = m.config
    if c.reset != "hard":
        raise NIRConversionError(f"layer {name!r}: reset={c.reset!r}; NIR's LIF resets to v_reset (hard reset only)")
    tau = m.tau_value()
    n = int(np.prod(shape))
    tau_t = torch.as_tensor(tau, dtype=torch.float64).reshape(-1)
    p = _neuron_arrays(n, tau=tau_t * dt, r=1.0 if c.decay_input else tau_t,
                       v_leak=c.v_reset, v_threshold=torch.as_tensor(m.v_threshold, dtype=torch.float64).reshape(-1),
                       v_reset=c.v_reset)
    p = {k: v.reshape(shape) for k, v in p.items()}
    meta = {"spikelib_decay_input": int(c.decay_input), "spikelib_dt": dt,
            "spikelib_tau_steps": tau_t.numpy().copy() if tau_t.numel() > 1 else float(tau_t)}
    return nir.LIF(**p, metadata=meta)


def _delayed_graph(nir, m, dt: float):
    w, delays = m.weight.detach(), m.integer_delays() if m.delays != "none" else torch.zeros_like(m.weight).long()
    nodes = {"input": nir.Input(input_type={"input": np.array([m.in_features])}),
             "output": nir.Output(output_type={"output": np.array([m.out_features])})}
    edges = []
    for d in sorted(int(k) for k in torch.unique(delays[w != 0])):
        wd = torch.where(delays == d, w, torch.zeros_like(w))
        nodes[f"delay{d}"] = nir.Delay(np.full(m.in_features, d * dt, dtype=np.float64),
                                       metadata={"spikelib_delay_steps": d})
        nodes[f"w{d}"] = nir.Linear(_np(wd))
        edges += [("input", f"delay{d}"), (f"delay{d}", f"w{d}"), (f"w{d}", "output")]
    if m.bias is not None:
        nodes["bias"] = nir.Affine(np.zeros((m.out_features, m.in_features), dtype=np.float32), _np(m.bias))
        edges += [("input", "bias"), ("bias", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikelib_layer": "DelayedLinear",
                                                           "spikelib_max_delay": m.max_delay, "spikelib_dt": dt})


def to_nir(model: nn.Module, input_shape: Optional[Sequence[int]] = None, dt: float = DEFAULT_DT):
    """Export ``model`` to a ``nir.NIRGraph`` (see the module docstring). ``input_shape`` (per sample, no batch) is
    needed when the first layer is not a Linear/DelayedLinear."""
    nir = _nir()
    from spikelib.layers.delay import DelayedLinear
    from spikelib.models.snn_delays import TimeSharedDropout
    from spikelib.neurons.lif import _LIFBase

    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0 (seconds per step), got {dt!r}")
    mods, meta = _modules_of(model)
    mods = [(n, m) for n, m in mods if not isinstance(m, (nn.Dropout, nn.Identity, TimeSharedDropout))]
    if not mods:
        raise NIRConversionError("the model has no layers to export")
    if input_shape is None:
        first = mods[0][1]
        if not isinstance(first, (nn.Linear, DelayedLinear)):
            raise NIRConversionError(f"input_shape is required when the first layer ({mods[0][0]!r}, "
                                     f"{type(first).__name__}) is not a Linear/DelayedLinear")
        input_shape = (first.in_features,)
    shape = tuple(int(s) for s in input_shape)
    nodes: Dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    edges, prev = [], "input"
    for name, m in mods:
        key = name.replace(".", "_")
        if isinstance(m, DelayedLinear):
            node, shape = _delayed_graph(nir, m, dt), (m.out_features,)
        elif isinstance(m, nn.Linear):
            node = nir.Affine(_np(m.weight), _np(m.bias)) if m.bias is not None else nir.Linear(_np(m.weight))
            shape = (m.out_features,)
        elif isinstance(m, _LIFBase):
            node = _lif_node(nir, m, name, shape, dt)
        elif isinstance(m, LeakyIntegrator):
            n = int(np.prod(shape))
            node = nir.LI(**{k: v.reshape(shape) for k, v in _neuron_arrays(
                n, tau=m.tau * dt, r=m.r if m.decay_input else m.r * m.tau, v_leak=m.v_leak).items()},
                metadata={"spikelib_decay_input": int(m.decay_input), "spikelib_tau_steps": m.tau, "spikelib_dt": dt})
        elif isinstance(m, CubaLIF):
            node = nir.CubaLIF(tau_syn=_np(m.tau_syn).astype(np.float64) * dt, tau_mem=_np(m.tau_mem) * 1.0 * dt,
                               r=_np(m.r), v_leak=_np(m.v_leak), v_threshold=_np(m.v_threshold),
                               v_reset=_np(m.v_reset), w_in=_np(m.w_in),
                               metadata={"spikelib_dt": dt, "spikelib_tau_syn_steps": _np(m.tau_syn),
                                         "spikelib_tau_mem_steps": _np(m.tau_mem)})
        elif isinstance(m, ChannelDelay):
            node = nir.Delay(_np(m.delays).astype(np.float64).reshape(shape) * dt,
                             metadata={"spikelib_delay_steps": _np(m.delays).reshape(shape)})
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            if m.padding_mode != "zeros":
                raise NIRConversionError(f"layer {name!r}: padding_mode {m.padding_mode!r} (NIR has zero padding)")
            cls = nir.Conv1d if isinstance(m, nn.Conv1d) else nir.Conv2d
            spatial = shape[1:] if isinstance(m, nn.Conv2d) else shape[1]
            bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
            pad = m.padding if isinstance(m.padding, str) else (m.padding if isinstance(m, nn.Conv2d) else m.padding[0])
            node = cls(input_shape=spatial, weight=_np(m.weight), stride=m.stride if isinstance(m, nn.Conv2d)
                       else m.stride[0], padding=pad, dilation=m.dilation if isinstance(m, nn.Conv2d)
                       else m.dilation[0], groups=m.groups, bias=bias)
            shape = tuple(int(s) for s in m(torch.zeros((1,) + shape)).shape[1:])
        elif isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or (m.divisor_override not in (None, 1)) or (not m.count_include_pad and m.padding):
                raise NIRConversionError(f"layer {name!r}: AvgPool2d options have no NIR counterpart")
            cls = nir.SumPool2d if m.divisor_override == 1 else nir.AvgPool2d
            pair = lambda v: np.array(v if isinstance(v, (tuple, list)) else (v, v))  # noqa: E731
            node = cls(kernel_size=pair(m.kernel_size), stride=pair(m.stride), padding=pair(m.padding))
            new = tuple(int(s) for s in m(torch.zeros((1,) + shape)).shape[1:])
            node.input_type, node.output_type = {"input": np.array(shape)}, {"output": np.array(new)}
            shape = new
        elif isinstance(m, nn.Flatten):
            end = m.end_dim - 1 if m.end_dim >= 0 else m.end_dim
            node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=m.start_dim - 1, end_dim=end)
            shape = tuple(int(s) for s in node.output_type["output"])
        else:
            raise NIRConversionError(f"layer {name!r} ({type(m).__name__}) cannot be exported to NIR")
        nodes[key] = node
        edges.append((prev, key))
        prev = key
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={**meta, "spikelib_dt": dt})


# ----------------------------------------------------------------------------------------------------------- files
def write_nir(graph, path: Union[str, os.PathLike]) -> Path:
    """``nir.write`` to a temporary file in the same folder, fsync, then ``os.replace`` (never a partial file)."""
    nir = _nir()
    path = Path(path)
    with atomic_path(path, create_parent=False) as tmp:
        nir.write(str(tmp), graph)
    return path


def read_nir(path: Union[str, os.PathLike]):
    """``nir.read`` with a clear error for a missing file."""
    nir = _nir()
    if not Path(path).is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    return nir.read(str(path))


from spikelib.hardware._nir_import import from_nir  # noqa: E402  (the importer lives in its own module)
