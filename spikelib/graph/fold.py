"""Folding a batch norm into the synapse before it: ``BN(W x + b) = W' x + b'`` (eval mode, running statistics)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from spikelib.graph import nodes as N

__all__ = ["fold_batchnorm"]


def fold_batchnorm(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: N.BatchNorm,
                   name: str = "") -> Tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of a synapse ``W, b`` (``W [C_out, ...]``, scaled per output channel) followed by batch norm
    ``bn``, in float64::

        W' = W gamma / sqrt(var + eps)          b' = beta + gamma (b - mean) / sqrt(var + eps)

    Raises ValueError (naming ``name``) for a batch norm in training mode or without running statistics.
    """
    where = f"layer {name!r}: " if name else ""
    if bn.training:
        raise ValueError(f"{where}batch norm in training mode (or without running statistics) cannot be folded; "
                         f"call model.eval() first")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{where}batch norm without running statistics cannot be folded")
    s = torch.sqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(s)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(s)
    b = bias.double() if bias is not None else torch.zeros_like(s)
    scale = (gamma / s).reshape((-1,) + (1,) * (weight.dim() - 1))
    return weight.double() * scale, beta + gamma * (b - bn.running_mean.double()) / s
