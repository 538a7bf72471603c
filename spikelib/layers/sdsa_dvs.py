"""Spike-driven self-attention v1 with the event-camera ("DVS") pooling of the Spike-driven Transformer v1.

BICLab/Spike-Driven-Transformer ``module/ms_conv.py`` (``MS_SSA_Conv`` with ``dvs=True``, ``Erode``) applies a
``MaxPool3d`` with kernel ``(1, 3, 3)``, stride 1, padding ``(0, 1, 1)`` to four 5-D tensors; on a 5-D tensor it pools
the last two dimensions, so with ``P`` this pool::

    K = P(SN(BN(conv(s))))  V = P(SN(BN(conv(s))))            [T, B, C, H, W]: 3x3 spatial max per channel
    kv = P(K * V)                                             [T, B, heads, N, d]: 3x3 max over (token, channel)
    out = P(Q * SN_0.5(sum_tokens(kv)))                       the same on the masked queries
    y = BN(conv_proj(out))

The pooling of ``kv`` and of the masked queries runs over (token index, channel within the head), exactly as in the
reference (the token index is the row-major flattened position). Everything else is
:class:`~spikelib.layers.spike_attention.SpikeDrivenAttentionV1` (whose weights and neurons this class keeps).
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.layers.spike_attention import SpikeDrivenAttentionV1

__all__ = ["SpikeDrivenAttentionV1DVS"]


def _split_heads(x: torch.Tensor, h: int) -> torch.Tensor:
    T, B, C, H, W = x.shape
    return x.flatten(3).transpose(-1, -2).reshape(T, B, H * W, h, C // h).transpose(2, 3)


class SpikeDrivenAttentionV1DVS(SpikeDrivenAttentionV1):
    """SDSA v1 with the reference's DVS max-pooling (module docstring); same arguments as the parent."""

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__(dim, num_heads)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=1, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        h = self.num_heads
        s = self.head_lif(x)
        q = _split_heads(self.q_lif(self.q_conv(s)), h)
        k = _split_heads(self.pool(self.k_lif(self.k_conv(s))), h)
        v = _split_heads(self.pool(self.v_lif(self.v_conv(s))), h)
        kv = self.talking_heads_lif(self.pool(k * v).sum(dim=-2, keepdim=True))
        out = self.pool(q * kv)  # [T, B, heads, N, d]
        out = out.transpose(2, 3).reshape(T, B, H * W, C).transpose(-1, -2).reshape(T, B, C, H, W)
        return self.proj_conv(out)
