"""VGG for IIR-SNN: the ANN (``vgg_ann``) that is trained first and converted, and its spiking twin (``vgg_snn``).

As in the reference (SayeedChowdhury/IIR-SNN ``vgg_bn.py``, ``vgg_bn_bias.py``, ``vgg_spiking_bnfused_biasyes.py``):
the configuration lists conv widths and ``"A"`` (2x2 average pooling, which replaces the dropout after the conv before
it); every conv is ``3x3, padding 1`` followed (ANN) by batch norm, ReLU and dropout; the classifier is ``Linear ->
ReLU -> Dropout`` for each ``hidden`` width and a last ``Linear``, all linears without bias. VGG16 is
``[64, 64, A, 128, 128, A, 256, 256, 256, A, 512, 512, 512, A, 512, 512, 512]`` with ``hidden = (4096, 4096)`` (on
32x32 CIFAR images the classifier reads ``512 * 2 * 2`` features). ``vgg_tiny`` (``[16, A, 32, A]``, ``hidden=(64,)``)
is the CI-size variant for 8x8 digits.

The spiking twin has the same layer names and shapes with batch norm folded into the conv (so every conv has a
bias), each ReLU replaced by the IIR neuron (:func:`spikelib.neurons.iir_lif`: ``u <- leak u + W x``, spike when
``u / V - 1 > 0``, soft reset; leak and threshold learnable), each dropout by :class:`SequenceDropout` (one mask for
all steps), average pooling kept on the spikes (a synapse: the next conv reads the pooled spikes), and a readout that
sums the last linear layer's output over time (the non-spiking integrator of the reference, whose final membrane
``sum_t W s[t]`` is the logit). :func:`spikelib.conversion.convert` builds exactly this network from a trained
``vgg_ann``; ``vgg_snn`` builds it with default thresholds (training from scratch, or a skeleton to load weights into).

Layer names: ``conv<i>``, ``bn<i>`` (ANN), ``act<i>`` (ReLU / neuron), ``drop<i>`` or ``pool<j>``, ``flatten``,
``fc<k>``, ``act_fc<k>``, ``drop_fc<k>``, ``fc_out``, ``readout`` (SNN).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections import OrderedDict
from typing import Any, List, Optional, Sequence, Tuple, Union

from torch import nn

from spikelib.layers import Sequential, TimeReduce
from spikelib.models.iir_blocks import DirectInputSNN, SequenceDropout, check_timesteps
from spikelib.models.registry import register_model
from spikelib.neurons import iir_lif

__all__ = ["VGG_CONFIGS", "vgg_ann", "vgg_snn", "reference_init_", "iir_neuron"]

Config = Sequence[Union[int, str]]

#: the reference's configurations (vgg_bn.py) and the CI-size ``tiny``
VGG_CONFIGS = {
    "vgg4": [64, "A", 128, "A"],
    "vgg5": [64, "A", 128, 128, "A"],
    "vgg9": [64, "A", 128, 256, "A", 256, 512, "A", 512, "A", 512],
    "vgg11": [64, "A", 128, 256, "A", 512, 512, "A", 512, "A", 512, 512],
    "vgg13": [64, 64, "A", 128, 128, "A", 256, 256, "A", 512, 512, 512, "A", 512],
    "vgg16": [64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512],
    "vgg19": [64, 64, "A", 128, 128, "A", 256, 256, 256, 256, "A", 512, 512, 512, 512, "A", 512, 512, 512, 512],
    "tiny": [16, "A", 32, "A"],
}


def reference_init_(model: nn.Module, linear: bool = True) -> nn.Module:
    """The reference's ``_initialize_weights2``: conv ``N(0, sqrt(2 / (k_h k_w C_out)))``, bias 0; batch norm 1, 0;
    linear ``N(0, 0.01)``, bias 0 (``linear=False`` keeps PyTorch's linear init, as the reference's spiking VGG
    does through an indentation slip)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear:
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def iir_neuron(v_threshold: float = 1.0, leak: float = 1.0, shape: Optional[Tuple[int, ...]] = None,
               learn: bool = True) -> nn.Module:
    """The IIR-SNN neuron of these models (:func:`spikelib.neurons.iir_lif`, one leak and threshold per layer, or per
    neuron when ``shape`` is given)."""
    return iir_lif(v_threshold=v_threshold, leak=leak, shape=shape, learn=learn)


def _config(cfg: Union[str, Config]) -> List[Union[int, str]]:
    if isinstance(cfg, str):
        key = cfg.lower()
        if key not in VGG_CONFIGS:
            raise ValueError(f"cfg must be one of {sorted(VGG_CONFIGS)} or a list of widths and 'A', got {cfg!r}")
        return list(VGG_CONFIGS[key])
    items = list(cfg)
    if not items or any(not (v == "A" or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1))
                        for v in items):
        raise ValueError(f"cfg must list conv widths (ints >= 1) and 'A' (average pooling), got {cfg!r}")
    if items[0] == "A" or any(a == b == "A" for a, b in zip(items, items[1:])):
        raise ValueError(f"cfg: every 'A' must follow a conv width, got {cfg!r}")
    return items


def _check(in_channels: int, image_size: int, num_classes: int, hidden: Sequence[int], dropout: float,
           kernel_size: int) -> Tuple[int, ...]:
    for name, v, lo in (("in_channels", in_channels, 1), ("image_size", image_size, 1),
                        ("num_classes", num_classes, 2), ("kernel_size", kernel_size, 1)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
    hidden = tuple(hidden)
    if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a list of ints >= 1, got {hidden!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return tuple(int(h) for h in hidden)


def _layers(cfg: Union[str, Config], in_channels: int, image_size: int, num_classes: int, hidden: Sequence[int],
            dropout: float, kernel_size: int, spiking: bool, batch_norm: bool, neuron: Any) -> "OrderedDict":
    items = _config(cfg)
    hidden = _check(in_channels, image_size, num_classes, hidden, dropout, kernel_size)
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    size, channels, conv, pool = image_size, in_channels, 0, 0
    drop = (lambda p: SequenceDropout(p)) if spiking else (lambda p: nn.Dropout(p))
    for item in items:
        if item == "A":
            if size < 2:
                raise ValueError(f"cfg pools {image_size}x{image_size} images below 1 pixel")
            layers.popitem()  # the dropout after the previous conv
            pool += 1
            layers[f"pool{pool}"] = nn.AvgPool2d(2, 2)
            size //= 2
            continue
        conv += 1
        width = int(item)
        layers[f"conv{conv}"] = nn.Conv2d(channels, width, kernel_size, padding=(kernel_size - 1) // 2,
                                          bias=spiking or not batch_norm)
        if not spiking and batch_norm:
            layers[f"bn{conv}"] = nn.BatchNorm2d(width)
        layers[f"act{conv}"] = neuron() if spiking else nn.ReLU()
        layers[f"drop{conv}"] = drop(dropout)
        channels = width
    layers["flatten"] = nn.Flatten()
    features = channels * size * size
    for k, width in enumerate(hidden, 1):
        layers[f"fc{k}"] = nn.Linear(features, width, bias=False)
        layers[f"act_fc{k}"] = neuron() if spiking else nn.ReLU()
        layers[f"drop_fc{k}"] = drop(dropout)
        features = width
    layers["fc_out"] = nn.Linear(features, num_classes, bias=False)
    if spiking:
        layers["readout"] = TimeReduce("sum")
    return layers


def vgg_ann(cfg: Union[str, Config] = "vgg16", in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
            hidden: Sequence[int] = (4096, 4096), dropout: float = 0.2, batch_norm: bool = True,
            kernel_size: int = 3) -> nn.Sequential:
    """The ANN (an ``nn.Sequential`` on ``[B, C, H, W]``; see the module docstring), reference-initialised.

    Args:
        cfg: a name of :data:`VGG_CONFIGS` or a list of conv widths and ``"A"``.
        in_channels, image_size: input images ``[in_channels, image_size, image_size]``.
        num_classes: outputs.
        hidden: widths of the hidden linear layers.
        dropout: dropout probability after every ReLU (the reference: 0.5 for the ANN in ann_bn.py, 0.2 in its
            absorb/SNN scripts).
        batch_norm: batch norm after every conv (folded at conversion); without it the convs have a bias.
        kernel_size: conv kernel (odd).
    """
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")
    net = nn.Sequential(_layers(cfg, in_channels, image_size, num_classes, hidden, dropout, kernel_size, False,
                                batch_norm, None))
    return reference_init_(net)


def vgg_snn(cfg: Union[str, Config] = "vgg16", in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
            hidden: Sequence[int] = (4096, 4096), dropout: float = 0.2, kernel_size: int = 3, timesteps: int = 5,
            v_threshold: float = 1.0, leak: float = 1.0, learn: bool = True) -> DirectInputSNN:
    """The spiking twin of :func:`vgg_ann` (see the module docstring) with one threshold ``v_threshold`` and leak for
    every layer, convs reference-initialised and linears with PyTorch's init (as the reference's spiking VGG).

    Args:
        timesteps: ``T`` for static image batches (:meth:`DirectInputSNN.set_timesteps` changes it).
        v_threshold, leak: initial threshold and leak of every neuron layer.
        learn: leak and threshold trainable (the reference trains both).
        Others as in :func:`vgg_ann`.
    """
    check_timesteps(timesteps)
    net = Sequential(_layers(cfg, in_channels, image_size, num_classes, hidden, dropout, kernel_size, True, True,
                             lambda: iir_neuron(v_threshold, leak, None, learn)))
    return DirectInputSNN(reference_init_(net, linear=False), timesteps, sample_dims=3)


_TINY = dict(cfg="tiny", in_channels=1, image_size=8, hidden=(64,))

# Registered with their full signatures (partials keep the parameter list, only the defaults change).
register_model("vgg_ann")(vgg_ann)
register_model("vgg_snn")(vgg_snn)
register_model("vgg16_ann")(functools.partial(vgg_ann, cfg="vgg16"))
register_model("vgg16_snn")(functools.partial(vgg_snn, cfg="vgg16"))
register_model("vgg_tiny_ann")(functools.partial(vgg_ann, **_TINY))  # CI size: 8x8 one-channel images (digits)
register_model("vgg_tiny_snn")(functools.partial(vgg_snn, **_TINY))
