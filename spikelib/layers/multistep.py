"""Multi-step building blocks of the spiking transformers: conv + BN over ``[T, B, C, H, W]`` and operation counts.

The reference implementations (BICLab/Spike-Driven-Transformer ``module/ms_conv.py``, BICLab/Spike-Driven-Transformer-V2
``classification/models.py``, bic-L/MaxFormer ``imagenet/mixer_hub.py``) apply every 2-d convolution and batch norm to
the time steps folded into the batch, ``[T, B, ...] -> [T * B, ...]``; :class:`SeqConvBN` does the same, with
:class:`spikelib.layers.conv.Conv2d` (``nn.Conv2d`` through the ``"conv2d"`` backends).

Operation counts are not kept here: the energy counter (:mod:`spikelib.hardware.energy`) counts every convolution,
batch norm and neuron from their declarations during an evaluation pass. ``spike_input`` documents (and lets tests
check) that a layer's input is spikes.
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.layers.conv import Conv2d
from spikelib.neurons.lif import LIF
from spikelib.surrogate import Sigmoid

__all__ = ["SeqConvBN", "reference_lif", "check_sequence_image", "fold", "unfold"]


def reference_lif(v_threshold: float = 1.0) -> LIF:
    """The neuron of the references: spikingjelly ``MultiStepLIFNode(tau=2.0, detach_reset=True)``.

    tau 2, hard reset to 0, reset detached, input decayed (``decay_input``), Sigmoid surrogate with alpha 4;
    ``v_threshold`` 1 (0.5 after the attention products). The backend is chosen by spikelib's registry.
    """
    return LIF(tau=2.0, v_threshold=float(v_threshold), v_reset=0.0, reset="hard", decay_input=True,
               detach_reset=True, surrogate=Sigmoid(alpha=4.0))


def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T * B, ...]``."""
    return x.flatten(0, 1)


def unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T * B, ...] -> [T, B, ...]``."""
    return x.reshape(T, x.shape[0] // T, *x.shape[1:])


def check_sequence_image(x: torch.Tensor, channels: int, name: str = "x") -> None:
    """Raise a clear error unless ``x`` is ``[T, B, channels, H, W]`` with ``T >= 1``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(f"{name} must be [T, B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} has T = {x.shape[0]} time steps; T must be >= 1")
    if x.shape[2] != channels:
        raise ValueError(f"{name} has {x.shape[2]} channels (dim 2 of [T, B, C, H, W]); expected {channels}")


class SeqConvBN(nn.Module):
    """Conv2d + BatchNorm2d on ``[T, B, C, H, W]`` (time folded into the batch).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, groups, bias: as in ``nn.Conv2d``.
        spike_input: the input is a spike tensor (documentation, checked by tests), else real-valued.
        bn: follow the convolution by ``BatchNorm2d`` (the references always do).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, spike_input: bool = True, bn: bool = True) -> None:
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.spike_input = spike_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        return unfold(self.bn(self.conv(fold(x))), T)
