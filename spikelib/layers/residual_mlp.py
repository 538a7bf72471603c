"""The spiking channel MLP of SDT v1 and Max-Former with its residual connections, over ``[T, B, C, H, W]``.

BICLab/Spike-Driven-Transformer ``module/ms_conv.py`` (``MS_MLP_Conv``) and bic-L/MaxFormer ``*/mixer_hub.py``
(``S_MLP``) return the whole block output, residual included, and add a second, inner residual when the hidden width
equals the input width (``res = in_features == hidden_features``; Max-Former's event-camera models run with
``mlp_ratio = 1``)::

    h = BN(conv1x1(SN(x)))                         (with bias; C -> hidden)
    h = x + h                     if hidden == C   (inner residual)
    y = BN(conv1x1(SN(h))) + (h if hidden == C else x)

Every convolution takes spikes (:class:`~spikelib.layers.multistep.SeqConvBN` with ``spike_input=True``); the
residual stream is real-valued (the "membrane shortcut"). The children have the names of
:class:`~spikelib.layers.spike_attention.SpikingMLP2d` (``fc1_lif``, ``fc1``, ``fc2_lif``, ``fc2``), whose output is
the branch ``y - x`` of the case ``hidden != C``.
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.layers.multistep import SeqConvBN, reference_lif

__all__ = ["ResidualSpikingMLP"]


class ResidualSpikingMLP(nn.Module):
    """``MS_MLP_Conv`` / ``S_MLP``: the MLP block output (module docstring), residuals included.

    Args:
        dim: channels ``C``.
        hidden: hidden channels (``hidden == dim`` adds the inner residual, as the references do).
        neuron: factory of the spiking neurons (default: the references' LIF, :func:`reference_lif`).
    """

    def __init__(self, dim: int, hidden: int, neuron=reference_lif) -> None:
        super().__init__()
        for name, v in (("dim", dim), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.dim, self.hidden, self.inner_residual = dim, hidden, dim == hidden
        self.fc1_lif = neuron()
        self.fc1 = SeqConvBN(dim, hidden, bias=True)
        self.fc2_lif = neuron()
        self.fc2 = SeqConvBN(hidden, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        h = self.fc1(self.fc1_lif(x))
        if self.inner_residual:
            h = identity + h
            identity = h
        return self.fc2(self.fc2_lif(h)) + identity

    def extra_repr(self) -> str:
        return f"{self.dim}, hidden={self.hidden}, inner_residual={self.inner_residual}"
