"""Spike-driven self-attention (v1 and v2 "SDSA-3"), spiking MLP and transformer block over ``[T, B, C, H, W]``.

Sources (read, not copied): BICLab/Spike-Driven-Transformer ``module/ms_conv.py`` (v1: ``MS_SSA_Conv``,
``MS_MLP_Conv``), BICLab/Spike-Driven-Transformer-V2 ``classification/models.py`` (``MS_Attention_RepConv_qkv_id``,
``MS_MLP``, ``MS_Block``), bic-L/MaxFormer ``imagenet/mixer_hub.py`` (``SSA``, ``S_MLP``: 1x1 convolutions for Q, K, V).

With ``N = H W`` tokens, ``h`` heads of width ``d = C / h``, spikes ``Q, K, V in {0, 1}^{N x d}`` per head
(each ``LIF(BN(conv(SN(x))))``, neurons with threshold 1)::

    v1 (SDSA, O(N d)):   out = SN_0.5( sum_tokens(K * V) ) * Q         Hadamard products and a column sum
    v2 (SDSA-3):         out = SN_0.5( Q (K^T V) * 0.125 )             K^T V first: O(N d^2), no N x N matrix
    both:                y = BN(conv_proj(out))

``SN_0.5`` is the LIF with threshold 0.5. Every matrix product has a binary operand, so it is a sum of selected rows
(accumulates); the Hadamard products are masks. Block (Meta-SpikeFormer): ``x = x + attn(x); x = x + mlp(x)`` with
``mlp(x) = BN(conv(SN(BN(conv(SN(x))))))`` (1x1 convolutions; the "membrane shortcut": the residual stream is
real-valued, every convolution and attention product takes spikes).

The products are modules (:mod:`spikelib.layers.attention_products`), so the energy counter sees them: ``K^T V``
costs ``nnz(K) d`` accumulates, ``Q (K^T V)`` costs ``nnz(Q) d``, the v1 column sum ``nnz(K * V)``; masks and the
scale (foldable into the threshold) are not counted.
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.layers.attention_products import SpikeAttentionProduct, SpikeColumnSum
from spikelib.layers.multistep import SeqConvBN, reference_lif
from spikelib.layers.repconv import RepConv

__all__ = ["SpikeDrivenAttentionV1", "SpikeDrivenAttentionV2", "SpikingMLP2d", "MetaTransformerBlock"]


def _check_heads(dim: int, num_heads: int) -> None:
    if num_heads < 1 or dim % num_heads != 0:
        raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[T, B, C, H, W] -> [T, B, heads, N, C / heads]``."""
    T, B, C, H, W = x.shape
    return x.flatten(3).transpose(-1, -2).reshape(T, B, H * W, num_heads, C // num_heads).transpose(2, 3)


def _merge(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """``[T, B, heads, N, d] -> [T, B, C, H, W]``."""
    T, B, h, N, d = x.shape
    return x.transpose(2, 3).reshape(T, B, N, h * d).transpose(-1, -2).reshape(T, B, h * d, H, W)


class SpikeDrivenAttentionV1(nn.Module):
    """Spike-driven self-attention of Spike-driven Transformer v1 (Hadamard + column sum), 1x1 conv Q/K/V."""

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.head_lif = reference_lif()
        self.q_conv, self.k_conv, self.v_conv = (SeqConvBN(dim, dim) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = reference_lif(), reference_lif(), reference_lif()
        self.column_sum = SpikeColumnSum()
        self.talking_heads_lif = reference_lif(0.5)
        self.proj_conv = SeqConvBN(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.head_lif(x)
        q = _heads(self.q_lif(self.q_conv(s)), self.num_heads)
        k = _heads(self.k_lif(self.k_conv(s)), self.num_heads)
        v = _heads(self.v_lif(self.v_conv(s)), self.num_heads)
        kv = self.talking_heads_lif(self.column_sum(k, v))  # column sum of K AND V over tokens, then SN_0.5
        out = _merge(q * kv, H, W)  # mask
        return self.proj_conv(out)


class SpikeDrivenAttentionV2(nn.Module):
    """SDSA-3 of Meta-SpikeFormer: ``SN_0.5(Q (K^T V) * scale)`` then a projection.

    Args:
        dim, num_heads: channels and heads (``dim % num_heads == 0``).
        qkv: ``"repconv"`` (Meta-SpikeFormer: RepConv + BN for Q, K, V and the projection) or ``"conv1x1"``
            (Max-Former's ``SSA``: 1x1 conv + BN, projection 1x1 conv with bias + BN).
        scale: 0.125 in both references.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv: str = "repconv", scale: float = 0.125) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        if qkv not in ("repconv", "conv1x1"):
            raise ValueError(f"qkv must be 'repconv' or 'conv1x1', got {qkv!r}")
        self.dim, self.num_heads, self.scale, self.qkv = dim, num_heads, float(scale), qkv
        self.head_lif = reference_lif()
        if qkv == "repconv":
            self.q_conv, self.k_conv, self.v_conv, self.proj_conv = (RepConv(dim, dim, post_bn=True) for _ in range(4))
        else:
            self.q_conv, self.k_conv, self.v_conv = (SeqConvBN(dim, dim) for _ in range(3))
            self.proj_conv = SeqConvBN(dim, dim, bias=True)
        self.q_lif, self.k_lif, self.v_lif = reference_lif(), reference_lif(), reference_lif()
        self.product = SpikeAttentionProduct(num_heads, self.scale)
        self.attn_lif = reference_lif(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        s = self.head_lif(x)
        q = _heads(self.q_lif(self.q_conv(s)), self.num_heads)
        k = _heads(self.k_lif(self.k_conv(s)), self.num_heads)
        v = _heads(self.v_lif(self.v_conv(s)), self.num_heads)
        out = self.attn_lif(_merge(self.product(q, k, v), H, W))
        return self.proj_conv(out)


class SpikingMLP2d(nn.Module):
    """``BN(conv1x1(SN(BN(conv1x1(SN(x))))))`` with biases, as ``MS_MLP`` (v2) and ``S_MLP`` (Max-Former)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1_lif = reference_lif()
        self.fc1 = SeqConvBN(dim, hidden, bias=True)
        self.fc2_lif = reference_lif()
        self.fc2 = SeqConvBN(hidden, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc2_lif(self.fc1(self.fc1_lif(x))))


class MetaTransformerBlock(nn.Module):
    """``x = x + attn(x); x = x + mlp(x)`` (``MS_Block`` of Meta-SpikeFormer; Max-Former's ``Block_SSA`` is the same
    with ``attention="v2", qkv="conv1x1"``).

    Args:
        dim, num_heads, mlp_ratio: width, heads and MLP expansion.
        attention: ``"v2"`` (SDSA-3) or ``"v1"`` (Hadamard + column sum).
        qkv: Q/K/V convolution of the v2 attention (``"repconv"`` or ``"conv1x1"``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, attention: str = "v2",
                 qkv: str = "repconv") -> None:
        super().__init__()
        if attention == "v2":
            self.attn: nn.Module = SpikeDrivenAttentionV2(dim, num_heads, qkv=qkv)
        elif attention == "v1":
            self.attn = SpikeDrivenAttentionV1(dim, num_heads)
        else:
            raise ValueError(f"attention must be 'v1' or 'v2', got {attention!r}")
        self.mlp = SpikingMLP2d(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)
