"""``Linear``: ``nn.Linear`` computed through spikelib's backend registry (event-driven on spike inputs on CPU).

The same layer as ``torch.nn.Linear`` (a subclass: same parameters, initialisation, ``state_dict`` keys and
``repr``), with the map ``y = x W^T + b`` computed by :func:`spikelib.functional.linear.linear`: on CPU float32/float64
tensors ``backend="auto"`` runs the numba backend, which skips zero inputs when at most 15% of them are nonzero
(spikes), for the output and for the weight gradient, and is torch's dense product otherwise; results equal
``nn.Linear``'s up to float summation order. It declares the graph node ``Affine`` as ``nn.Linear`` does, so energy
counting, Loihi mapping and NIR export treat both alike. Replace ``nn.Linear`` by ``spikelib.layers.Linear`` (or load an
``nn.Linear`` checkpoint into it) to get the event path; ``backend="torch"`` forces the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.functional.linear import linear
from spikelib.graph import nodes
from spikelib.neurons._params import check_backend

__all__ = ["Linear"]


class Linear(nn.Linear):
    """``nn.Linear(in_features, out_features, bias)`` over the last dimension, through the ``"linear"`` backends.

    Args:
        in_features: input features ``C_in``.
        out_features: output features ``C_out``.
        bias: learn an additive bias.
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("linear")``).
        device, dtype: as for ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, backend: str = "auto",
                 device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.backend = check_backend(backend, "linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x W^T + b`` for ``x: [..., in_features]``."""
        return linear(x, self.weight, self.bias, backend=self.backend)

    def graph_node(self) -> nodes.Affine:
        """The affine map this layer computes (as ``nn.Linear`` declares it)."""
        return nodes.Affine(self.weight.detach(), None if self.bias is None else self.bias.detach())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"
