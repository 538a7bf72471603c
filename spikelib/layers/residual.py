"""Residual connections as modules: ``Add`` (the sum of its inputs) and ``Residual`` (``x + body(x)``).

A sum written as ``x + f(x)`` inside a ``forward`` is also recognised by :func:`spikelib.graph.trace`, but a module
makes the connection explicit, named and countable (``Add`` costs one addition per element and input beyond the
first). ``Residual(*layers)`` runs ``layers`` as a :class:`~spikelib.layers.sequential.Sequential` on ``[T, B, ...]``.
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.graph import nodes
from spikelib.layers.sequential import Sequential

__all__ = ["Add", "Residual"]


class Add(nn.Module):
    """``forward(*xs) = xs[0] + xs[1] + ...`` (same shapes; no broadcasting, so a mix-up is an error)."""

    temporal = True  # elementwise: works on any layout

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) < 2:
            raise ValueError(f"Add needs at least two inputs, got {len(xs)}")
        shape = xs[0].shape
        for i, x in enumerate(xs[1:], 1):
            if x.shape != shape:
                raise ValueError(f"Add: input {i} has shape {tuple(x.shape)}, input 0 has {tuple(shape)}")
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def graph_node(self) -> nodes.Add:
        return nodes.Add()


class Residual(nn.Module):
    """``x + body(x)`` with ``body = Sequential(*layers)`` (time first; the output shape must equal the input's)."""

    temporal = True

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        if not layers:
            raise ValueError("Residual needs at least one layer")
        self.body = Sequential(*layers)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(x, self.body(x))
