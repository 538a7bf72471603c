"""Global average and max pooling over the active sites of each batch item.

For batch item ``b`` with active sites ``A_b``::

    avg: y[b] = (1 / |A_b|) sum_{i in A_b} x[i]          max: y[b] = max_{i in A_b} x[i]

(per channel, and per time step for ``[T, N, C]`` features). Inactive sites are absent, not zeros: this is the mean
that bollossom/E-3DSNN (classify_seg/pointcept/models/sparse_unet/E_3DSNN.py, ``scatter(..., reduce="mean")`` over the
batch index) takes at the end of the network. A batch item with no active site has no pooled value: it raises.
"""

from __future__ import annotations

import torch

from spikelib.sparse.tensor import SparseSpikeTensor

__all__ = ["global_avg_pool", "global_max_pool"]


def _prepare(x: SparseSpikeTensor):
    if not isinstance(x, SparseSpikeTensor):
        raise TypeError(f"x must be a SparseSpikeTensor, got {type(x).__name__}")
    b = x.batch_index()
    counts = torch.bincount(b, minlength=x.batch_size)
    if x.batch_size == 0 or bool((counts == 0).any()):
        empty = (counts == 0).nonzero().flatten().tolist() if x.batch_size else []
        raise ValueError(f"global pooling needs at least one active site per batch item; batch items {empty} of "
                         f"{x.batch_size} have none")
    return b, counts


def global_avg_pool(x: SparseSpikeTensor) -> torch.Tensor:
    """Mean of the active features of each batch item: ``[B, C]`` (or ``[T, B, C]``)."""
    b, counts = _prepare(x)
    f = x.features
    if f.dim() == 2:
        s = f.new_zeros(x.batch_size, f.shape[1]).index_add(0, b, f)
        return s / counts.unsqueeze(1).to(f.dtype)
    s = f.new_zeros(f.shape[0], x.batch_size, f.shape[2]).index_add(1, b, f)
    return s / counts.unsqueeze(1).to(f.dtype)


def global_max_pool(x: SparseSpikeTensor) -> torch.Tensor:
    """Maximum of the active features of each batch item: ``[B, C]`` (or ``[T, B, C]``)."""
    b, _ = _prepare(x)
    f = x.features
    if f.dim() == 2:
        idx = b.unsqueeze(1).expand_as(f)
        out = f.new_zeros(x.batch_size, f.shape[1])
        return out.scatter_reduce(0, idx, f, reduce="amax", include_self=False)
    idx = b.view(1, -1, 1).expand_as(f)
    out = f.new_zeros(f.shape[0], x.batch_size, f.shape[2])
    return out.scatter_reduce(1, idx, f, reduce="amax", include_self=False)
