"""Multi-step building blocks of the spiking transformers: conv + BN over ``[T, B, C, H, W]`` and operation counts.

The reference implementations (BICLab/Spike-Driven-Transformer ``module/ms_conv.py``, BICLab/Spike-Driven-Transformer-V2
``classification/models.py``, bic-L/MaxFormer ``imagenet/mixer_hub.py``) apply every 2-d convolution and batch norm to
the time steps folded into the batch, ``[T, B, ...] -> [T * B, ...]``; :class:`SeqConvBN` does the same.

Operation counts (for the energy module). A layer whose input is a spike tensor (declared with ``spike_input=True``,
and checked by the tests with hooks on real forward passes) is counted as spike-driven accumulates::

    ACs  = dense_ops * (nonzero inputs / inputs)          (SOP of the Spikformer / SDT papers)
    MACs = dense_ops                                      (real-valued input, e.g. the encoding layer)

where ``dense_ops`` is the number of multiply-accumulates of the dense layer over all ``T * B`` samples. Each counting
module stores the counts of its last forward pass in ``last_ops``; :func:`count_ops` adds them over a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from spikelib.neurons.lif import LIF
from spikelib.surrogate import Sigmoid

__all__ = ["OpCounts", "SeqConvBN", "count_ops", "reference_lif", "check_sequence_image", "fold", "unfold"]


def reference_lif(v_threshold: float = 1.0) -> LIF:
    """The neuron of the references: spikingjelly ``MultiStepLIFNode(tau=2.0, detach_reset=True)``.

    tau 2, hard reset to 0, reset detached, input decayed (``decay_input``), Sigmoid surrogate with alpha 4;
    ``v_threshold`` 1 (0.5 after the attention products). The backend is chosen by spikelib's registry.
    """
    return LIF(tau=2.0, v_threshold=float(v_threshold), v_reset=0.0, reset="hard", decay_input=True,
               detach_reset=True, surrogate=Sigmoid(alpha=4.0))


@dataclass
class OpCounts:
    """Spike-driven accumulates (``acs``) and real-valued multiply-accumulates (``macs``) of one forward pass."""

    acs: float = 0.0
    macs: float = 0.0

    def __add__(self, other: "OpCounts") -> "OpCounts":
        return OpCounts(self.acs + other.acs, self.macs + other.macs)


def count_ops(module: nn.Module) -> OpCounts:
    """Sum of ``last_ops`` over ``module`` and its submodules (the counts of the last forward pass)."""
    total = OpCounts()
    for m in module.modules():
        ops = getattr(m, "last_ops", None)
        if isinstance(ops, OpCounts):
            total = total + ops
    return total


def spike_rate(x: torch.Tensor) -> float:
    """Fraction of nonzero entries (the firing rate of a spike tensor)."""
    return float(torch.count_nonzero(x.detach())) / max(x.numel(), 1)


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


def conv_dense_ops(conv: nn.Conv2d, out: torch.Tensor) -> float:
    """Multiply-accumulates of ``conv`` producing ``out`` ([N, C_out, H, W]) as a dense layer."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return float(out.numel()) * (conv.in_channels // conv.groups) * k


class SeqConvBN(nn.Module):
    """Conv2d + BatchNorm2d on ``[T, B, C, H, W]`` (time folded into the batch), counting its operations.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, groups, bias: as in ``nn.Conv2d``.
        spike_input: the input is a spike tensor (counted as accumulates), else real-valued (MACs).
        bn: follow the convolution by ``BatchNorm2d`` (the references always do).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, spike_input: bool = True, bn: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.spike_input = spike_input
        self.last_ops: Optional[OpCounts] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        y = self.conv(fold(x))
        dense = conv_dense_ops(self.conv, y)
        self.last_ops = OpCounts(acs=dense * spike_rate(x)) if self.spike_input else OpCounts(macs=dense)
        return unfold(self.bn(y), T)
