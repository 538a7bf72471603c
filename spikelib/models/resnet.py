"""ResNet for IIR-SNN: the ANN (``resnet_ann``) and its spiking twin (``resnet_snn``), as in the reference
(SayeedChowdhury/IIR-SNN ``resnet_bn.py``, ``resnet_spiking_bnfused_biasconv.py``).

A pre-processing stack ``conv(C, 64) BN ReLU Dropout conv(64, 64) BN ReLU Dropout conv(64, 64) BN ReLU AvgPool(2)``,
then four stages of basic blocks (widths 64, 128, 256, 512; the first stage with stride 1, the others 2), each block
``relu(body(x) + shortcut(x))`` with ``body = conv3x3(stride) BN ReLU Dropout conv3x3 BN`` and
``shortcut = conv1x1(stride) BN`` where the shape changes (else the identity), and one linear layer without bias on
the flattened features (``512 * 2 * 2`` for 32x32 images). ResNet20 has ``(2, 2, 2, 2)`` blocks (3 + 16 convs + the
linear layer; the reference's spiking file: resnet6 ``(1, 1, 0, 0)``, resnet12 ``(1, 1, 1, 1)``, resnet34
``(3, 4, 6, 3)``). ``resnet_tiny`` (widths 8, 16, blocks ``(1, 1)``) is the CI-size variant for 8x8 digits.

The spiking twin folds batch norm into the convs (every conv has a bias), replaces every ReLU by the IIR neuron
(the block's output neuron reads the sum ``conv2(s) + shortcut(s)``, an :class:`~spikelib.layers.Add` layer), every
dropout by :class:`~spikelib.models.iir_blocks.SequenceDropout`, keeps the average pooling on spikes, and sums the
linear layer's output over time (the reference's non-spiking integrator output). Layer names: ``conv<i>``, ``bn<i>``,
``act<i>``, ``drop<i>``, ``pool1``, ``layer<s>_<b>`` (blocks: ``body.conv1``, ..., ``shortcut.conv``,
``shortcut.bn``, ``relu`` / ``add``, ``neuron``), ``flatten``, ``fc_out``, ``readout``.
"""

from __future__ import annotations

import functools
import numbers
from collections import OrderedDict
from typing import Any, Optional, Sequence

from torch import nn

from spikelib.layers import Sequential, TimeReduce
from spikelib.models.iir_blocks import (DirectInputSNN, ResidualBlock, SequenceDropout, SpikingResidualBlock,
                                        check_timesteps)
from spikelib.models.registry import register_model
from spikelib.models.vgg import iir_neuron, reference_init_

__all__ = ["RESNET_BLOCKS", "resnet_ann", "resnet_snn"]

#: blocks per stage of the reference's spiking ResNets (resnet_spiking_bnfused_biasconv.py)
RESNET_BLOCKS = {"resnet6": (1, 1, 0, 0), "resnet12": (1, 1, 1, 1), "resnet20": (2, 2, 2, 2),
                 "resnet34": (3, 4, 6, 3)}


def _ints(values: Sequence[int], name: str, minimum: int) -> tuple:
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum for v in out):
        raise ValueError(f"{name} must be a non-empty list of ints >= {minimum}, got {values!r}")
    return tuple(int(v) for v in out)


def _build(spiking: bool, blocks: Sequence[int], widths: Sequence[int], pre_channels: int, in_channels: int,
           image_size: int, num_classes: int, dropout: float, batch_norm: bool, neuron: Any) -> "OrderedDict":
    blocks = _ints(blocks, "blocks", 0)
    widths = _ints(widths, "widths", 1)
    if len(blocks) != len(widths):
        raise ValueError(f"blocks and widths must have the same length, got {blocks} and {widths}")
    (pre_channels, in_channels, image_size, num_classes) = _ints(
        (pre_channels, in_channels, image_size, num_classes), "pre_channels, in_channels, image_size, num_classes", 1)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    seq = Sequential if spiking else nn.Sequential
    bias = spiking or not batch_norm

    def conv(cin: int, cout: int, k: int, stride: int) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)

    def unit(layers: "OrderedDict", i: int, cin: int, cout: int, stride: int = 1, act: bool = True,
             drop: bool = True) -> None:
        layers[f"conv{i}"] = conv(cin, cout, 3, stride)
        if not spiking and batch_norm:
            layers[f"bn{i}"] = nn.BatchNorm2d(cout)
        if act:
            layers[f"act{i}"] = neuron() if spiking else nn.ReLU()
        if drop:
            layers[f"drop{i}"] = SequenceDropout(dropout) if spiking else nn.Dropout(dropout)

    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    unit(layers, 1, in_channels, pre_channels)
    unit(layers, 2, pre_channels, pre_channels)
    unit(layers, 3, pre_channels, pre_channels, drop=False)
    layers["pool1"] = nn.AvgPool2d(2)
    size, channels = image_size // 2, pre_channels
    if size < 1:
        raise ValueError(f"image_size {image_size} is too small for the 2x2 pooling")
    for s, (n, width) in enumerate(zip(blocks, widths), 1):
        for b in range(n):
            stride = 1 if s == 1 or b > 0 else 2
            body: "OrderedDict[str, nn.Module]" = OrderedDict()
            unit(body, 1, channels, width, stride)
            unit(body, 2, width, width, act=False, drop=False)
            shortcut = None
            if stride != 1 or channels != width:
                sc: "OrderedDict[str, nn.Module]" = OrderedDict(conv=conv(channels, width, 1, stride))
                if not spiking and batch_norm:
                    sc["bn"] = nn.BatchNorm2d(width)
                shortcut = seq(sc)
            if spiking:
                layers[f"layer{s}_{b}"] = SpikingResidualBlock(Sequential(body), shortcut, neuron())
            else:
                layers[f"layer{s}_{b}"] = ResidualBlock(nn.Sequential(body), shortcut)
            size = (size - 1) // stride + 1
            channels = width
    layers["flatten"] = nn.Flatten()
    layers["fc_out"] = nn.Linear(channels * size * size, num_classes, bias=False)
    if spiking:
        layers["readout"] = TimeReduce("sum")
    return layers


def resnet_ann(blocks: Sequence[int] = RESNET_BLOCKS["resnet20"], widths: Sequence[int] = (64, 128, 256, 512),
               pre_channels: int = 64, in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
               dropout: float = 0.2, batch_norm: bool = True) -> nn.Sequential:
    """The ANN ResNet (an ``nn.Sequential`` on ``[B, C, H, W]``; see the module docstring), reference-initialised.

    Args:
        blocks: basic blocks per stage (ResNet20: ``(2, 2, 2, 2)``).
        widths: channels per stage.
        pre_channels: channels of the pre-processing convs.
        in_channels, image_size, num_classes: data shape.
        dropout: dropout probability after the ReLUs of the pre-processing stack and inside blocks.
        batch_norm: batch norm after every conv (folded at conversion); without it the convs have a bias.
    """
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")
    net = nn.Sequential(_build(False, blocks, widths, pre_channels, in_channels, image_size, num_classes, dropout,
                               batch_norm, None))
    return reference_init_(net)


def resnet_snn(blocks: Sequence[int] = RESNET_BLOCKS["resnet20"], widths: Sequence[int] = (64, 128, 256, 512),
               pre_channels: int = 64, in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
               dropout: float = 0.2, timesteps: int = 5, v_threshold: float = 1.0, leak: float = 1.0,
               learn: bool = True) -> DirectInputSNN:
    """The spiking twin of :func:`resnet_ann` (see the module docstring), one threshold and leak per neuron layer.

    Args:
        timesteps: ``T`` for static image batches.
        v_threshold, leak, learn: initial threshold and leak of every neuron layer, and whether they are trained.
        Others as in :func:`resnet_ann`.
    """
    check_timesteps(timesteps)
    net = Sequential(_build(True, blocks, widths, pre_channels, in_channels, image_size, num_classes, dropout, True,
                            lambda: iir_neuron(v_threshold, leak, None, learn)))
    return DirectInputSNN(reference_init_(net), timesteps, sample_dims=3)


_TINY = dict(blocks=(1, 1), widths=(8, 16), pre_channels=8, in_channels=1, image_size=8)

register_model("resnet_ann")(resnet_ann)
register_model("resnet_snn")(resnet_snn)
register_model("resnet20_ann")(functools.partial(resnet_ann, blocks=RESNET_BLOCKS["resnet20"]))
register_model("resnet20_snn")(functools.partial(resnet_snn, blocks=RESNET_BLOCKS["resnet20"]))
register_model("resnet_tiny_ann")(functools.partial(resnet_ann, **_TINY))  # CI size: 8x8 one-channel images
register_model("resnet_tiny_snn")(functools.partial(resnet_snn, **_TINY))
