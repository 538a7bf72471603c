"""``TimePad``: append zero time steps to a sequence (SNN-delays pads every delayed layer's input this way, so late
inputs still reach the next layer; Thvnvtos/SNN-delays ``snn_delays.py``). A module, so that tools walking a model
see it: it moves data only and adds no spikes."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from spikelib.graph import nodes

__all__ = ["TimePad"]


class TimePad(nn.Module):
    """Append ``steps`` zero time steps to ``x: [T, B, ...]`` (a module, so that tools walking the model, such as the
    energy counter, see it: it moves data only and adds no spikes)."""

    temporal = True

    def __init__(self, steps: int) -> None:
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        self.steps = int(steps)

    def graph_node(self) -> nodes.TimePad:
        return nodes.TimePad(self.steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.steps == 0:
            return x
        return torch.cat([x, x.new_zeros((self.steps,) + tuple(x.shape[1:]))], 0)

    def extra_repr(self) -> str:
        return f"steps={self.steps}"
