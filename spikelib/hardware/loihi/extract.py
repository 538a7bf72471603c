"""Read a trained spikelib network as a chain of float layers ``synapse -> LIF`` that Loihi can run.

Each :class:`FloatLayer` is one dense synapse (weight, optional bias, optional integer delays) feeding one LIF layer,
in spikelib's float units: the LIF input is ``X[t] = W s[t - D] + b`` (see :mod:`spikelib.functional.lif` for the LIF
equations). Supported networks:

- :class:`~spikelib.models.SpikingMLP`: ``nn.Linear -> LIF`` blocks; readout ``"spikes"`` (an output LIF) or
  ``"membrane"`` (the non-firing leaky integrator ``U = U + (I - U) / tau_out``: a LIF without threshold).
- :class:`~spikelib.models.SNNDelays` in eval mode: ``DelayedLinear`` (its rounded integer delays, as the layer uses
  at inference) ``-> BatchNorm1d`` (folded into weight and bias with the running statistics) ``-> LIF``; dropout is the
  identity; the readout is the non-firing LIF (threshold 1e9). Its ``right_padding`` zero steps are recorded.
- ``nn.Sequential`` or :class:`~spikelib.hardware.nir.NIRSequential` of ``nn.Linear`` / ``DelayedLinear``
  [``BatchNorm1d``] / ``nn.Conv2d`` (needs ``input_shape``) ``LIF`` [dropout / ``nn.Identity``] blocks, with
  ``nn.Flatten`` between a conv block and a dense one (inputs flattened in ``C, H, W`` order).

Anything else raises :class:`UnsupportedLayerError` naming the layer: pooling (lava-dl 0.6 netx does not implement
``pool``), attention, recurrent layers, soft reset or ``v_reset != 0`` (Loihi resets to 0), per-neuron
``tau``/threshold (netx neuron parameters are per layer). ``ParametricLIF`` maps with its current ``tau``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

__all__ = ["FloatLayer", "FloatNetwork", "UnsupportedLayerError", "extract_float_network"]


class UnsupportedLayerError(ValueError):
    """A layer of the network has no Loihi mapping here (the message names it)."""


@dataclass
class FloatLayer:
    """``X = W s[t - D] + b`` into a LIF (``tau`` steps, threshold ``v_threshold``; ``inf`` = never fires)."""

    name: str
    weight: torch.Tensor
    tau: float
    v_threshold: float
    decay_input: bool
    bias: Optional[torch.Tensor] = None
    delay: Optional[torch.Tensor] = None
    conv: Any = None  # a ConvGeometry for nn.Conv2d synapses (weight [C_out, C_in / groups, kh, kw])


@dataclass
class FloatNetwork:
    """The float layers of a network, its input size, how its output is read and its extra zero steps."""

    input_size: int
    layers: List[FloatLayer]
    readout: str  # "spikes" (spike counts), "membrane_mean" (mean of U), "softmax_sum" (sum_t softmax(U[t]))
    pad_steps: int = 0  # zero steps the float model appends to the input in total (SNNDelays' right padding)
    info: Dict[str, Any] = field(default_factory=dict)


_IGNORED = (nn.Dropout, nn.Identity)


def _scalar(value: Any, what: str, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            if bool((value == value.reshape(-1)[0]).all()):
                return float(value.reshape(-1)[0])
            raise UnsupportedLayerError(f"layer {name!r}: per-neuron {what} cannot be mapped (netx neuron parameters "
                                        f"are one value per layer)")
        return float(value)
    return float(value)


def _lif_params(module: nn.Module, name: str) -> Tuple[float, float, bool]:
    from spikelib.neurons.lif import _LIFBase

    if not isinstance(module, _LIFBase):
        raise UnsupportedLayerError(f"layer {name!r} ({type(module).__name__}) is not a LIF layer")
    c = module.config
    if c.reset != "hard" or c.v_reset != 0.0:
        raise UnsupportedLayerError(f"layer {name!r}: reset={c.reset!r}, v_reset={c.v_reset:g}; Loihi's CUBA neuron "
                                    f"resets v to 0 (hard reset, v_reset=0)")
    tau = _scalar(module.tau_value(), "tau", name)
    vth = _scalar(module.v_threshold, "v_threshold", name)
    if not math.isfinite(tau) or tau < 1.0:
        raise UnsupportedLayerError(f"layer {name!r}: tau must be finite and >= 1, got {tau}")
    if not vth > 0:
        raise UnsupportedLayerError(f"layer {name!r}: v_threshold must be > 0 for Loihi, got {vth}")
    return tau, vth, c.decay_input


def _fold_bn(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.BatchNorm1d, name: str):
    if bn.training:
        raise UnsupportedLayerError(f"layer {name!r}: BatchNorm1d in training mode; call model.eval() first")
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedLayerError(f"layer {name!r}: BatchNorm1d without running statistics cannot be folded")
    s = torch.sqrt(bn.running_var.detach().double() + bn.eps)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(s)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(s)
    b = bias if bias is not None else torch.zeros_like(s)
    return weight * (gamma / s)[:, None], beta + gamma * (b - bn.running_mean.detach().double()) / s


def _synapse(module: nn.Module, name: str, shape: Optional[Tuple[int, ...]]):
    """``(weight, bias, delays, conv geometry, output shape)`` of a synapse module."""
    from spikelib.hardware.loihi.network import ConvGeometry
    from spikelib.layers.delay import DelayedLinear

    if isinstance(module, DelayedLinear):
        w = module.weight.detach().double()
        b = module.bias.detach().double() if module.bias is not None else None
        d = None if module.delays == "none" else module.integer_delays().detach().to(torch.int64)
        return w, b, d, None, (module.out_features,)
    if isinstance(module, nn.Linear):
        b = module.bias.detach().double() if module.bias is not None else None
        return module.weight.detach().double(), b, None, None, (module.out_features,)
    if isinstance(module, nn.Conv2d):
        if shape is None or len(shape) != 3:
            raise UnsupportedLayerError(f"layer {name!r} (Conv2d): needs a (C, H, W) input shape (pass input_shape)")
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise UnsupportedLayerError(f"layer {name!r} (Conv2d): only numeric zero padding maps to netx")
        geom = ConvGeometry(shape, module.stride, module.padding, module.dilation, module.groups)
        w = module.weight.detach().double()
        b = module.bias.detach().double() if module.bias is not None else None
        return w, b, None, geom, geom.out_shape(w)
    raise UnsupportedLayerError(
        f"layer {name!r} ({type(module).__name__}) cannot be mapped to Loihi: supported synapses are nn.Linear, "
        f"DelayedLinear and nn.Conv2d, followed by LIF (pooling, attention and recurrent layers are not supported)")


def _from_modules(modules: List[Tuple[str, nn.Module]],
                  input_shape: Optional[Tuple[int, ...]] = None) -> List[FloatLayer]:
    """Group ``(name, module)`` pairs into ``synapse [BatchNorm1d] LIF`` blocks (``nn.Flatten`` between them)."""
    from spikelib.models.snn_delays import TimeSharedDropout

    layers: List[FloatLayer] = []
    pending = None
    shape = tuple(input_shape) if input_shape is not None else None
    for name, m in modules:
        if isinstance(m, _IGNORED + (TimeSharedDropout,)):
            continue
        if isinstance(m, nn.Flatten):
            if pending is not None:
                raise UnsupportedLayerError(f"layer {name!r}: Flatten must come after a LIF layer")
            shape = (int(math.prod(shape)),) if shape is not None else None
            continue
        if isinstance(m, nn.BatchNorm1d):
            if pending is None or pending[4] is not None:
                raise UnsupportedLayerError(f"layer {name!r}: BatchNorm1d must follow a Linear/DelayedLinear synapse")
            pending = (pending[0], *_fold_bn(pending[1], pending[2], m, name), *pending[3:])
            continue
        if hasattr(m, "config") and hasattr(m, "tau_value"):
            if pending is None:
                raise UnsupportedLayerError(f"layer {name!r}: a LIF layer must follow a synapse (Linear)")
            tau, vth, decay_input = _lif_params(m, name)
            layers.append(FloatLayer(pending[0], pending[1], tau, vth, decay_input, pending[2], pending[3],
                                     pending[4]))
            pending = None
            continue
        if pending is not None:
            raise UnsupportedLayerError(f"layer {name!r} ({type(m).__name__}): the synapse {pending[0]!r} must be "
                                        f"followed by a LIF layer")
        w, b, d, geom, shape = _synapse(m, name, shape)
        pending = (name, w, b, d, geom)
    if pending is not None:
        raise UnsupportedLayerError(f"layer {pending[0]!r}: the last synapse has no LIF layer after it")
    if not layers:
        raise UnsupportedLayerError("the network has no synapse -> LIF blocks")
    return layers


def extract_float_network(model: nn.Module, input_shape: Optional[Tuple[int, ...]] = None) -> FloatNetwork:
    """The :class:`FloatNetwork` of a supported spikelib model (see the module docstring); ``input_shape``
    ``(C, H, W)`` is needed when the first synapse is an ``nn.Conv2d``."""
    from spikelib.hardware.nir import NIRSequential
    from spikelib.models.mlp import SpikingMLP
    from spikelib.models.snn_delays import READOUT_THRESHOLD, SNNDelays

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, SpikingMLP):
        mods: List[Tuple[str, nn.Module]] = []
        for i, (lin, lif) in enumerate(zip(model.linears, model.lifs)):
            mods += [(f"linears.{i}", lin), (f"lifs.{i}", lif)]
        layers = _from_modules(mods)
        if model.readout == "spikes":
            layers += _from_modules([("out", model.out), ("out_lif", model.out_lif)])
            readout = "spikes"
        else:
            b = model.out.bias.detach().double() if model.out.bias is not None else None
            layers.append(FloatLayer("out", model.out.weight.detach().double(), model.tau_out, math.inf, True, b))
            readout = "membrane_mean"
        return FloatNetwork(model.in_features, layers, readout, 0, {"model": "SpikingMLP"})
    if isinstance(model, SNNDelays):
        if model.training:
            raise UnsupportedLayerError("SNNDelays is in training mode (dropout, batch statistics); call model.eval()")
        mods = []
        for i, (syn, norm, lif) in enumerate(zip(model.synapses, model.norms, model.neurons)):
            mods += [(f"synapses.{i}", syn), (f"norms.{i}", norm), (f"neurons.{i}", lif)]
        layers = _from_modules(mods)
        ro = model.readout
        b = ro.bias.detach().double() if ro.bias is not None else None
        d = None if ro.delays == "none" else ro.integer_delays().to(torch.int64)
        lif = model._readout_lif
        if lif["v_threshold"] < READOUT_THRESHOLD:
            raise UnsupportedLayerError("SNNDelays readout: expected the non-firing readout LIF")
        layers.append(FloatLayer("readout", ro.weight.detach().double(), float(lif["tau"]), math.inf,
                                 bool(lif["decay_input"]), b, d))
        pad = model.right_padding * (len(layers))
        return FloatNetwork(model.synapses[0].in_features, layers, "softmax_sum", pad, {"model": "SNNDelays"})
    if isinstance(model, (nn.Sequential, NIRSequential)):
        mods = list(model.named_children()) if isinstance(model, nn.Sequential) else \
            list(zip(model.names, model.layers))
        layers = _from_modules(mods, input_shape)
        n_in = layers[0].conv.in_shape if layers[0].conv is not None else (layers[0].weight.shape[1],)
        return FloatNetwork(int(math.prod(n_in)), layers, "spikes", 0, {"model": type(model).__name__})
    raise UnsupportedLayerError(
        f"model {type(model).__name__} cannot be mapped to Loihi: supported are SpikingMLP, SNNDelays and "
        f"nn.Sequential of Linear/DelayedLinear [BatchNorm1d] LIF blocks")
