"""The products of spike-driven self-attention as modules, so that tools walking a model see them.

With spikes ``Q, K, V in {0, 1}^{N x d}`` per head (``[..., N, d]``, any leading dims)::

    SpikeAttentionProduct (v2, SDSA-3):  out = Q (K^T V) * scale      K^T V first: no N x N matrix
    SpikeColumnSum        (v1, SDSA):    out = sum_tokens(K * V)      the Hadamard product is a mask (AND); the
                                                                      event-camera variant max-pools K * V first

Every product has a binary operand, so it is a sum of selected rows (accumulates). Sources: BICLab/
Spike-Driven-Transformer-V2 ``classification/models.py`` (``MS_Attention_RepConv_qkv_id``), BICLab/
Spike-Driven-Transformer ``module/ms_conv.py`` (``MS_SSA_Conv``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spikelib.graph import nodes

__all__ = ["SpikeAttentionProduct", "SpikeColumnSum"]


class SpikeAttentionProduct(nn.Module):
    """``forward(q, k, v) = (q @ (k^T @ v)) * scale`` on ``[..., N, d]`` tensors (see the module docstring)."""

    def __init__(self, num_heads: int, scale: float = 0.125) -> None:
        super().__init__()
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
        self.num_heads, self.scale = num_heads, float(scale)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (q @ (k.transpose(-2, -1) @ v)) * self.scale

    def graph_node(self) -> nodes.AttentionProduct:
        return nodes.AttentionProduct(self.num_heads, self.scale)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, scale={self.scale:g}"


class SpikeColumnSum(nn.Module):
    """``forward(k, v) = sum over tokens (dim -2) of k * v``, keeping the token dim (see the module docstring).

    Args:
        pool: a pooling applied to ``k * v`` before the sum (the event-camera variant's max-pool), or None.
    """

    def __init__(self, pool: "nn.Module | None" = None) -> None:
        super().__init__()
        self.pool = pool

    def summand(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The spikes that are summed: ``k * v`` (an AND), pooled when the layer has a pool."""
        kv = k * v
        return kv if self.pool is None else self.pool(kv)

    def forward(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.summand(k, v).sum(dim=-2, keepdim=True)

    def graph_node(self) -> nodes.SpikeColumnSum:
        return nodes.SpikeColumnSum()
