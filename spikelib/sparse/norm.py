"""Batch normalisation of the active sites of a sparse tensor.

The statistics are those of ``nn.BatchNorm1d`` over the features of the active sites only (inactive sites are not
zeros of the layer, they are absent): for features ``[N, C]`` the mean and variance of every channel over the ``N``
sites; for multi-step features ``[T, N, C]`` over all ``T N`` entries (time folded into the batch, as the multi-step
layers of spikelib do). bollossom/E-3DSNN (classify_seg/pointcept/models/sparse_unet/E_3DSNN.py) applies
``nn.BatchNorm1d(eps=1e-3, momentum=0.01)`` to spconv's feature matrix the same way.
"""

from __future__ import annotations

from torch import nn

from spikelib.sparse.tensor import SparseSpikeTensor

__all__ = ["SparseBatchNorm"]


class SparseBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the active features of a :class:`SparseSpikeTensor` (same arguments)."""

    def forward(self, x: SparseSpikeTensor) -> SparseSpikeTensor:  # type: ignore[override]
        """Normalise ``x.features`` per channel; coordinates (and the kernel-map cache) are kept."""
        if not isinstance(x, SparseSpikeTensor):
            raise TypeError(f"x must be a SparseSpikeTensor, got {type(x).__name__}")
        if x.num_channels != self.num_features:
            raise ValueError(f"x has {x.num_channels} channels, SparseBatchNorm expects {self.num_features}")
        f = x.features
        if self.training and f.shape[:-1].numel() < 2:
            raise ValueError(f"SparseBatchNorm in training needs at least 2 active entries per channel, got "
                             f"features of shape {tuple(f.shape)}")
        y = super().forward(f.reshape(-1, f.shape[-1])).reshape(f.shape)
        return x.replace_features(y)
