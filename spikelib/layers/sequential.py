"""``Sequential``: a time-first chain of layers, each run the way it takes time.

Sequence modules (``module.temporal`` is true: neurons, delayed synapses, these containers) get the whole sequence
``[T, B, ...]``; every other module (``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm2d``, pooling, ``nn.Flatten``, ...)
works per step and gets the time steps folded into the batch, ``[T * B, ...]``, its output unfolded again. After a
module with ``reduces_time = True`` (:class:`~spikelib.layers.readout.TimeReduce`) the tensor has no time axis and
later modules get it as it is. ``spikelib.layers.Sequential(nn.Conv2d(2, 8, 3), spikelib.LIF(), nn.Flatten(), ...)``
is a spiking CNN over ``[T, B, C, H, W]``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Tuple, Union

import torch
from torch import nn

from spikelib.graph import is_temporal

__all__ = ["Sequential", "apply_layer"]


def apply_layer(module: nn.Module, x: torch.Tensor, time_first: bool = True) -> torch.Tensor:
    """``module(x)`` for a sequence module or when ``x`` has no time axis, else per step with time folded into the
    batch: ``[T, B, ...] -> [T * B, ...] -> module -> [T, B, ...]``."""
    if is_temporal(module) or not time_first:
        return module(x)
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"{type(module).__name__} is a per-step layer inside a time-first container: its input "
                         f"must be [T, B, ...], got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}")
    T, B = x.shape[:2]
    y = module(x.reshape((T * B,) + tuple(x.shape[2:])))
    return y.reshape((T, B) + tuple(y.shape[1:]))


class Sequential(nn.Sequential):
    """``nn.Sequential`` over time-first input (see the module docstring); accepts modules or an ``OrderedDict``."""

    temporal = True

    def __init__(self, *layers: Union[nn.Module, "OrderedDict[str, nn.Module]"]) -> None:
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        time_first = True
        for module in self:
            x = apply_layer(module, x, time_first)
            if getattr(module, "reduces_time", False):
                time_first = False
        return x

    @property
    def names(self) -> Tuple[str, ...]:
        """The names of the layers (``"0"``, ``"1"``, ... unless given by an ``OrderedDict``)."""
        return tuple(self._modules.keys())
