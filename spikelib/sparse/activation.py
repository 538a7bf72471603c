"""Spiking activations on sparse features: E-3DSNN's integer spike and the multi-step LIF.

Integer spike (bollossom/E-3DSNN, classify_seg/pointcept/models/sparse_unet/E_3DSNN.py, ``multispike``), with
``D = max_spikes`` (4 in the reference)::

    forward : s = floor(clamp(x, 0, D) + 1/2)            (an integer 0..D: the spike count of D binary steps)
    backward: ds/dx = 1 if 0 < x < D else 0              (straight-through inside the range)

Multi-step LIF: sparse features ``[T, N, C]`` are a ``[T, B, ...]`` sequence with the ``N`` active sites as the batch,
so :func:`spikelib.functional.lif` (equations in its module docstring) runs on them unchanged; the sites of the
output are those of the input.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from spikelib.functional.lif import lif
from spikelib.graph import nodes
from spikelib.sparse.tensor import SparseSpikeTensor
from spikelib.surrogate import Surrogate

__all__ = ["integer_spike", "IntegerSpike", "SparseLIF"]

Features = Union[torch.Tensor, SparseSpikeTensor]


class _IntegerSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, max_spikes: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.max_spikes = max_spikes
        return torch.floor(torch.clamp(x, 0.0, max_spikes) + 0.5)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        inside = (x > 0) & (x < ctx.max_spikes)
        return grad * inside.to(grad.dtype), None


def integer_spike(x: torch.Tensor, max_spikes: int = 4) -> torch.Tensor:
    """``floor(clamp(x, 0, max_spikes) + 0.5)`` with the straight-through gradient on ``(0, max_spikes)``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if isinstance(max_spikes, bool) or not isinstance(max_spikes, int) or max_spikes < 1:
        raise ValueError(f"max_spikes must be a positive int, got {max_spikes!r}")
    return _IntegerSpike.apply(x, float(max_spikes))


def _apply(x: Features, fn) -> Features:
    if isinstance(x, SparseSpikeTensor):
        return x.replace_features(fn(x.features))
    if isinstance(x, torch.Tensor):
        return fn(x)
    raise TypeError(f"x must be a SparseSpikeTensor or a tensor, got {type(x).__name__}")


class IntegerSpike(nn.Module):
    """E-3DSNN's integer spiking activation (see the module docstring) on a tensor or a sparse tensor's features.

    Args:
        max_spikes: ``D``, the largest spike count (4 in the reference).
    """

    def __init__(self, max_spikes: int = 4) -> None:
        super().__init__()
        if isinstance(max_spikes, bool) or not isinstance(max_spikes, int) or max_spikes < 1:
            raise ValueError(f"max_spikes must be a positive int, got {max_spikes!r}")
        self.max_spikes = max_spikes

    def forward(self, x: Features) -> Features:
        return _apply(x, lambda f: integer_spike(f, self.max_spikes))

    def graph_node(self) -> nodes.IntegerSpike:
        return nodes.IntegerSpike(self.max_spikes)

    def extra_repr(self) -> str:
        return f"max_spikes={self.max_spikes}"


class SparseLIF(nn.Module):
    """Multi-step LIF on sparse features ``[T, N, C]`` (every active site and channel is one neuron).

    Args:
        tau, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, backend: as in
            :func:`spikelib.functional.lif` (a fresh state at every call: the sites differ between inputs).
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0, reset: str = "hard",
                 decay_input: bool = True, detach_reset: bool = False, surrogate: Union[str, Surrogate] = "atan",
                 backend: str = "auto") -> None:
        super().__init__()
        self.kw = dict(tau=tau, v_threshold=v_threshold, v_reset=v_reset, reset=reset, decay_input=decay_input,
                       detach_reset=detach_reset, surrogate=surrogate, backend=backend)

    def forward(self, x: Features) -> Features:
        def run(f: torch.Tensor) -> torch.Tensor:
            if f.dim() != 3:
                raise ValueError(f"SparseLIF needs multi-step features [T, N, C], got shape {tuple(f.shape)}")
            return lif(f, **self.kw).spikes

        return _apply(x, run)

    def graph_node(self) -> nodes.LIF:
        kw = self.kw
        return nodes.LIF(kw["tau"], kw["v_threshold"], kw["v_reset"], kw["reset"], kw["decay_input"])
