"""The structural part of ANN -> SNN conversion: every ANN module becomes its spiking counterpart, built from
spikelib layers (so the result is declared: energy counting, the Loihi mapping and NIR export read it).

Rules, applied to the children of a container in order (IIR-SNN, SayeedChowdhury/IIR-SNN ``absorb_bn.py``,
``vgg_spiking_bnfused_biasyes.py``):

- ``Conv1d/2d/3d`` or ``Linear`` followed by ``BatchNorm`` (eval statistics): one synapse with the batch norm folded
  into its weight and bias (``W' = W gamma / sqrt(var + eps)``, ``b' = beta + gamma (b - mean) / sqrt(var + eps)``,
  :func:`spikelib.graph.fold.fold_batchnorm`; computed in float64, stored in the synapse's dtype); without a batch
  norm the synapse is copied;
- ``ReLU`` -> a spiking neuron (``neuron(shape)``; default the IIR neuron, :func:`spikelib.neurons.iir_lif`);
- ``Dropout`` -> :class:`~spikelib.models.iir_blocks.SequenceDropout` (one mask for all steps);
- average pooling (``AvgPool``, ``AdaptiveAvgPool``), ``Flatten``, ``Identity``: kept (pooling acts on the spikes as
  part of the next synapse);
- ``nn.Sequential`` (also :class:`spikelib.layers.Sequential`) -> :class:`spikelib.layers.Sequential` of the converted
  children (names kept); :class:`~spikelib.models.iir_blocks.ResidualBlock` ->
  :class:`~spikelib.models.iir_blocks.SpikingResidualBlock` (its ReLU after the sum becomes the block's neuron);
- anything else is a :class:`ConversionError` naming the layer: max pooling (the maximum of spike trains is not the
  spike train of the maximum: replace it by average pooling), other activations (the IIR neuron approximates a ReLU),
  a batch norm that does not follow a synapse, modules without a rule (add one with :func:`register_converter`).

The whole network is wrapped in :class:`~spikelib.models.iir_blocks.DirectInputSNN` with a readout
``TimeReduce("sum")`` after the last layer: the last synapse becomes the reference's non-spiking integrator output,
whose final membrane ``sum_t W s[t]`` is the logit. Names are kept, so ``convert_structure(vgg_ann(...))`` has the
state-dict keys of ``vgg_snn(...)`` (a test checks it).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple, Type

import torch
from torch import nn

from spikelib.graph import nodes as N
from spikelib.graph.fold import fold_batchnorm
from spikelib.layers import Sequential, TimeReduce
from spikelib.models.iir_blocks import DirectInputSNN, ResidualBlock, SequenceDropout, SpikingResidualBlock
from spikelib.models.vgg import iir_neuron

__all__ = ["ConversionError", "NeuronFactory", "convert_structure", "register_converter", "Converter"]

NeuronFactory = Callable[[Optional[Tuple[int, ...]]], nn.Module]


class ConversionError(ValueError):
    """A module of the ANN has no spiking counterpart (the message names it and says why)."""


class Converter:
    """What a module converter receives: ``convert(name, module)`` converts a child (recursively) and
    ``neuron(name)`` builds the neuron that replaces the ReLU called ``name``."""

    def __init__(self, neuron: NeuronFactory, shapes: Dict[str, Tuple[int, ...]]) -> None:
        self._neuron = neuron
        self._shapes = shapes

    def neuron(self, name: str) -> nn.Module:
        return self._neuron(self._shapes.get(name))

    def convert(self, name: str, module: nn.Module) -> nn.Module:
        fn = _find(module)
        if fn is None:
            raise ConversionError(f"layer {name!r} ({type(module).__name__}): {_why(module)}")
        return fn(self, name, module)


_CONVERTERS: Dict[Type[nn.Module], Callable[[Converter, str, nn.Module], nn.Module]] = {}


def register_converter(cls: Type[nn.Module]):
    """Decorator: ``fn(converter, name, module) -> spiking module`` converts modules of class ``cls`` (and
    subclasses unless a closer class is registered)."""

    def deco(fn: Callable[[Converter, str, nn.Module], nn.Module]):
        _CONVERTERS[cls] = fn
        return fn

    return deco


def _find(module: nn.Module):
    for cls in type(module).__mro__:
        if cls in _CONVERTERS:
            return _CONVERTERS[cls]
    return None


_SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_KEPT = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
         nn.Flatten, nn.Identity)
_MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
             nn.AdaptiveMaxPool3d)
_ACTIVATIONS = (nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                nn.Softplus, nn.Mish, nn.Hardtanh)


def _why(module: nn.Module) -> str:
    if isinstance(module, _MAXPOOLS):
        return ("max pooling has no spiking counterpart here (the maximum of spike trains is not the spike train of "
                "the maximum); train the ANN with average pooling (nn.AvgPool2d)")
    if isinstance(module, _ACTIVATIONS):
        return "only ReLU activations convert (the IIR neuron's firing rate approximates a ReLU)"
    if isinstance(module, _BATCHNORMS):
        return "a batch norm converts only right after a Conv or Linear layer (it is folded into it)"
    return ("no conversion rule for this module; register one with spikelib.conversion.register_converter, or build "
            "the ANN from Conv/Linear, BatchNorm, ReLU, Dropout, AvgPool, Flatten, Sequential and ResidualBlock")


def _synapse(module: nn.Module, bn: Optional[nn.Module], name: str) -> nn.Module:
    new = _copy(module)
    if bn is None:
        return new
    if bn.training:
        raise ConversionError(f"layer {name!r}: its batch norm is in training mode; call ann.eval() before "
                              f"converting (the running statistics are folded)")
    if not bn.track_running_stats or bn.running_mean is None:
        raise ConversionError(f"layer {name!r}: its batch norm keeps no running statistics, nothing to fold")
    node = N.BatchNorm(bn.running_mean, bn.running_var, bn.weight, bn.bias, float(bn.eps), False)
    w, b = fold_batchnorm(module.weight.detach(), None if module.bias is None else module.bias.detach(), node, name)
    if isinstance(module, nn.Linear):
        new = nn.Linear(module.in_features, module.out_features, bias=True)
    else:
        new = type(module)(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                           module.padding, module.dilation, module.groups, True, module.padding_mode)
    new = new.to(device=module.weight.device, dtype=module.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(w.to(module.weight.dtype))
        new.bias.copy_(b.to(module.weight.dtype))
    return new


def _copy(module: nn.Module) -> nn.Module:
    new = copy.deepcopy(module)
    new.train(False)
    return new


def _children(conv: Converter, name: str, module: nn.Module) -> "OrderedDict[str, nn.Module]":
    items: List[Tuple[str, nn.Module]] = list(module.named_children())
    out: "OrderedDict[str, nn.Module]" = OrderedDict()
    i = 0
    while i < len(items):
        key, child = items[i]
        path = f"{name}.{key}" if name else key
        if isinstance(child, _SYNAPSES):
            bn = None
            if i + 1 < len(items) and isinstance(items[i + 1][1], _BATCHNORMS):
                bn = items[i + 1][1]
                i += 1
            out[key] = _synapse(child, bn, path)
        else:
            out[key] = conv.convert(path, child)
        i += 1
    return out


@register_converter(nn.Sequential)
def _sequential(conv: Converter, name: str, module: nn.Module) -> nn.Module:
    return Sequential(_children(conv, name, module))


@register_converter(nn.ReLU)
def _relu(conv: Converter, name: str, module: nn.Module) -> nn.Module:
    return conv.neuron(name)


@register_converter(nn.Dropout)
def _dropout(conv: Converter, name: str, module: nn.Module) -> nn.Module:
    return SequenceDropout(module.p)


for _cls in _KEPT:
    register_converter(_cls)(lambda conv, name, module: _copy(module))


@register_converter(ResidualBlock)
def _residual(conv: Converter, name: str, module: nn.Module) -> nn.Module:
    def part(key: str, sub: Optional[nn.Module]) -> Optional[Sequential]:
        if sub is None or (isinstance(sub, nn.Sequential) and len(sub) == 0):
            return None
        if not isinstance(sub, nn.Sequential):
            sub = nn.Sequential(OrderedDict([(key, sub)]))
        return Sequential(_children(conv, f"{name}.{key}", sub))

    return SpikingResidualBlock(part("body", module.body), part("shortcut", module.shortcut),
                                conv.neuron(f"{name}.relu"))


def default_neuron(leak: float = 1.0, learn: bool = True) -> NeuronFactory:
    """The IIR neuron (threshold 1 until balanced), one leak and threshold per layer or per neuron (``shape``)."""
    return lambda shape: iir_neuron(1.0, leak, shape, learn)


def relu_shapes(ann: nn.Module, example: torch.Tensor) -> Dict[str, Tuple[int, ...]]:
    """Per-sample output shape of every ReLU of ``ann`` (qualified name) on ``example [B, ...]``."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    hooks = []
    for name, m in ann.named_modules():
        if isinstance(m, nn.ReLU):
            hooks.append(m.register_forward_hook(
                lambda mod, args, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
    try:
        with torch.no_grad():
            ann(example)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def convert_structure(ann: nn.Module, *, timesteps: int = 5, neuron: Optional[NeuronFactory] = None,
                      per_neuron_example: Optional[torch.Tensor] = None) -> DirectInputSNN:
    """The spiking network of ``ann`` (module docstring) with thresholds not yet balanced.

    Args:
        ann: the trained ANN, in eval mode (batch norms are folded with their running statistics).
        timesteps: ``T`` of the result for static inputs.
        neuron: ``fn(shape) -> module`` building the neuron that replaces a ReLU (``shape`` is the ReLU's per-sample
            output shape when ``per_neuron_example`` is given, else ``None``); default: the IIR neuron.
        per_neuron_example: an input batch ``[B, ...]``; when given, every neuron gets one leak and threshold per
            neuron (the reference's ``individual_thresh``), shaped by running the ANN on it.
    """
    if not isinstance(ann, nn.Module):
        raise TypeError(f"ann must be an nn.Module, got {type(ann).__name__}")
    if ann.training:
        raise ConversionError("the ANN is in training mode; call ann.eval() before converting (batch norms are "
                              "folded with their running statistics, dropout is replaced)")
    shapes = relu_shapes(ann, per_neuron_example) if per_neuron_example is not None else {}
    conv = Converter(neuron or default_neuron(), shapes)
    if not isinstance(ann, nn.Sequential):
        ann = nn.Sequential(OrderedDict([("net", ann)]))
    net = conv.convert("", ann)
    net.add_module("readout", TimeReduce("sum"))
    first = next((m for m in net.modules() if isinstance(m, _SYNAPSES)), None)
    if first is None:
        raise ConversionError("the ANN has no Conv or Linear layer")
    sample_dims = 1 if isinstance(first, nn.Linear) else first.weight.dim() - 1
    return DirectInputSNN(net, timesteps, sample_dims=sample_dims)
