"""``TimeReduce``: a readout over time as a module (the last step of a classifier), so that tools see it.

For ``x: [T, B, ...]``::

    "sum"          y = sum_t x[t]                   spike counts
    "mean"         y = (1 / T) sum_t x[t]           mean membrane (SpikingMLP's membrane readout)
    "softmax_sum"  y = sum_t softmax(x[t], dim=-1)  SNN-delays (Thvnvtos/SNN-delays, ``model.py``, loss 'sum')
    "last"         y = x[T - 1]                     the readout at the last step (ELM)

It is part of reading the output, not of the network a chip runs: energy counting treats it as free, Loihi mapping
applies the same reduction to the chip's output, NIR export records it in the graph's metadata.
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.graph import nodes

__all__ = ["TimeReduce", "REDUCTIONS"]

REDUCTIONS = ("sum", "mean", "softmax_sum", "last")


def reduce_time(x: torch.Tensor, op: str) -> torch.Tensor:
    """The reduction ``op`` of ``x: [T, B, ...]`` over time (see the module docstring)."""
    if op == "sum":
        return x.sum(0)
    if op == "mean":
        return x.mean(0)
    if op == "softmax_sum":
        return torch.softmax(x, dim=-1).sum(0)
    if op == "last":
        return x[-1]
    raise ValueError(f"op must be one of {list(REDUCTIONS)}, got {op!r}")


class TimeReduce(nn.Module):
    """``[T, B, ...] -> [B, ...]`` by ``op`` (see the module docstring)."""

    temporal = True
    reduces_time = True

    def __init__(self, op: str = "sum") -> None:
        super().__init__()
        if op not in REDUCTIONS:
            raise ValueError(f"op must be one of {list(REDUCTIONS)}, got {op!r}")
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError(f"TimeReduce needs x: [T, B, ...], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return reduce_time(x, self.op)

    def graph_node(self) -> nodes.Reduce:
        return nodes.Reduce(self.op)

    def extra_repr(self) -> str:
        return f"op={self.op!r}"
