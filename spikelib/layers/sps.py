"""Spiking patch splitting (``MS_SPS``) of the Spike-driven Transformer v1, over ``[T, B, C, H, W]``.

Follows BICLab/Spike-Driven-Transformer ``module/sps.py`` (``MS_SPS``); read, not copied. For embedding width ``E``
and the four pooling flags ``pooling_stat = p0 p1 p2 p3`` (``"1111"`` on ImageNet, ``"0011"`` on CIFAR and
CIFAR10-DVS, ``"0111"`` on DVS128 Gesture)::

    s0 = SN(BN(conv3x3(x)))          C_in -> E/8     (the image or event frame: real-valued input, MACs)
    s0 = MaxPool(s0)                 if p0
    s1 = SN(BN(conv3x3(s0)))         E/8 -> E/4      [MaxPool if p1]
    s2 = SN(BN(conv3x3(s1)))         E/4 -> E/2      [MaxPool if p2]
    a  = BN(conv3x3(s2))             E/2 -> E        [MaxPool if p3]
    y  = BN(conv3x3(SN(a))) + a                      relative position embedding, membrane shortcut

MaxPool is 3x3, stride 2, padding 1 (time folded into the batch). Every convolution after the first takes spikes.
The neurons come from a factory (the reference: LIF ``tau = 2`` or PLIF, ``spike_mode``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from spikelib.layers.multistep import SeqConvBN, fold, reference_lif, unfold
from spikelib.layers.pool import MaxPool2d

__all__ = ["SpikingPatchSplitting"]


class SpikingPatchSplitting(nn.Module):
    """``MS_SPS`` (module docstring).

    Args:
        in_channels: input channels (3 for images, 2 for event polarities).
        embed_dim: ``E`` (divisible by 8).
        pooling_stat: four characters ``0``/``1``: max-pool after stage ``i``.
        neuron: factory of the spiking neurons (default: :func:`~spikelib.layers.multistep.reference_lif`).
    """

    def __init__(self, in_channels: int, embed_dim: int, pooling_stat: str = "1111",
                 neuron: Callable[[], nn.Module] = reference_lif) -> None:
        super().__init__()
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 8 or embed_dim % 8:
            raise ValueError(f"embed_dim must be a positive multiple of 8, got {embed_dim!r}")
        if not isinstance(pooling_stat, str) or len(pooling_stat) != 4 or set(pooling_stat) - {"0", "1"}:
            raise ValueError(f"pooling_stat must be four characters 0/1 (e.g. '1111'), got {pooling_stat!r}")
        self.pooling_stat = pooling_stat
        E = embed_dim
        widths = [in_channels, E // 8, E // 4, E // 2, E]
        self.convs = nn.ModuleList(SeqConvBN(widths[i], widths[i + 1], 3, 1, 1, spike_input=i > 0) for i in range(4))
        self.lifs = nn.ModuleList(neuron() for _ in range(4))
        self.pools = nn.ModuleList(MaxPool2d(3, 2, 1) if p == "1" else nn.Identity() for p in pooling_stat)
        self.rpe = SeqConvBN(E, E, 3, 1, 1)

    @property
    def stride(self) -> int:
        """Total downsampling factor (2 per pooled stage)."""
        return 2 ** self.pooling_stat.count("1")

    @staticmethod
    def _pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x if isinstance(pool, nn.Identity) else unfold(pool(fold(x)), x.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(3):
            x = self._pool(self.pools[i], self.lifs[i](self.convs[i](x)))
        a = self._pool(self.pools[3], self.convs[3](x))
        return self.rpe(self.lifs[3](a)) + a
