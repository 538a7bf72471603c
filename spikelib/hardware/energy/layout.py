"""Which dimension of a batch is the sample dimension: the layout contract of :func:`~.counting.measure`.

Models take time-first input ``[T, B, ...]`` (spikelib's convention; point clouds ``[P, B, C]`` likewise put the
batch second), so the samples of a batch are its dimension 1. Three other layouts exist and are read as follows:

- a static batch ``[B, *sample]`` (an image batch a spiking transformer repeats over its time steps): one dimension
  fewer than a sequence, recognised from the first layer that tells the rank of one sample (a ``Linear``: ``[C]``, a
  ``ConvNd``: ``[C, *N spatial]``); samples = dimension 0, passed as it is;
- batch-first sequences ``[B, T, ...]`` (what a ``DataLoader`` stacks): the caller declares them (``time_first=False``)
  or the loader does (below); they are transposed to ``[T, B, ...]`` for the model, samples = dimension 0;
- self-describing inputs: a sparse tensor with a ``batch_size`` (E-3DSNN's voxels).

A loader declares its layout through its collate function (attribute ``batch_layout``: ``"batch_first"`` or
``"time_first"``; :func:`spikelib.data.pad_collate` declares ``"batch_first"``); torch's default collate stacks items
along a new dimension 0, so its batches are batch first. A dataset may state what one item is (attribute
``item_layout``: ``"time_first"`` for ``[T, C]`` sequences, ``"points_first"`` for ``[P, C]`` clouds, ``"static"`` for
an item without a time dimension): then a batch-first batch is transposed (sequences, clouds) or passed as it is
(static) without looking at the model.

Where neither the caller, the loader nor the shapes settle it (the model's first layers do not tell the rank of a
sample, or the input fits neither reading), :func:`batch_input` raises a ``ValueError`` that says how to declare it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import torch
from torch import nn

from spikelib.graph import declared_layers
from spikelib.graph import nodes as N

__all__ = ["BATCH_FIRST", "TIME_FIRST", "BatchInput", "loader_time_first", "loader_item_layout", "sample_rank",
           "batch_input"]

BATCH_FIRST = "batch_first"
TIME_FIRST = "time_first"
ITEM_LAYOUTS = ("time_first", "points_first", "static")


class BatchInput(NamedTuple):
    """The model input of one batch, its number of samples, and whether it is static (no time dimension)."""

    x: Any
    samples: int
    static: bool


def _dataset_of(loader: Any) -> Any:
    """The innermost dataset of a loader (through ``Subset`` wrappers)."""
    ds = getattr(loader, "dataset", None)
    for _ in range(8):
        inner = getattr(ds, "dataset", None)
        if inner is None or getattr(ds, "item_layout", None) is not None:
            break
        ds = inner
    return ds


def loader_time_first(batches: Any) -> Optional[bool]:
    """``False`` for a loader whose batches are batch first (a ``DataLoader`` with torch's default collate, or a
    collate declaring ``batch_layout = "batch_first"``), ``True`` for a declared ``"time_first"`` collate, None when
    ``batches`` does not say (a plain iterable, or a collate without a declaration)."""
    collate = getattr(batches, "collate_fn", None)
    if collate is None:
        return None
    declared = getattr(collate, "batch_layout", None)
    if declared is not None:
        if declared not in (BATCH_FIRST, TIME_FIRST):
            raise ValueError(f"collate function {getattr(collate, '__name__', collate)!r} declares batch_layout="
                             f"{declared!r}; expected {BATCH_FIRST!r} or {TIME_FIRST!r}")
        return declared == TIME_FIRST
    from torch.utils.data import default_collate

    if collate is default_collate and getattr(batches, "batch_size", None) is not None:
        return False
    return None


def loader_item_layout(batches: Any) -> Optional[str]:
    """The ``item_layout`` the loader's dataset declares (see the module docstring), or None."""
    layout = getattr(_dataset_of(batches), "item_layout", None)
    if layout is not None and layout not in ITEM_LAYOUTS:
        raise ValueError(f"dataset declares item_layout={layout!r}; expected one of {list(ITEM_LAYOUTS)}")
    return layout


def sample_rank(model: nn.Module) -> Optional[int]:
    """The rank of one input sample without time and batch, from the first declared layer that tells it (``Linear``,
    delayed ``Linear``, ELM: 1; ``ConvNd``: ``1 + N``); None when an earlier layer or none tells it."""
    for _, _, node in declared_layers(model):
        if isinstance(node, (N.Affine, N.DelayedAffine, N.ELM)):
            return 1
        if isinstance(node, N.Conv):
            return 1 + node.ndim
        if isinstance(node, (N.Free, N.TimePad, N.Flatten, N.LIF, N.LI, N.CubaLIF, N.IntegerSpike, N.BatchNorm)):
            continue  # shape-preserving or elementwise: the next layer tells
        return None
    return None


def _declare_hint(shape: Sequence[int]) -> str:
    return (f"pass time_first=True if the input {tuple(shape)} is time first [T, B, ...] (samples = dim 1), or "
            "time_first=False if it is batch first [B, T, ...] or a static batch [B, ...] (samples = dim 0); a "
            "DataLoader can declare it instead (collate_fn.batch_layout, dataset.item_layout)")


def batch_input(batch: Any, time_first: Optional[bool], rank: Optional[int],
                item_layout: Optional[str] = None) -> BatchInput:
    """The model input and sample count of one batch (``x`` or ``(x, label, ...)``) under the layout contract.

    Args:
        batch: the loader's batch.
        time_first: True (``[T, B, ...]``), False (batch first) or None (not declared: decided from the shapes).
        rank: :func:`sample_rank` of the model (None: unknown).
        item_layout: the dataset's declared item layout (with a batch-first loader).
    """
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if not isinstance(x, torch.Tensor):
        size = getattr(x, "batch_size", None)
        if isinstance(size, int) and hasattr(x, "features"):  # a sparse tensor knows its batch
            return BatchInput(x, size, False)
        raise TypeError(f"a batch must be a tensor, a sparse tensor, or a (tensor, label) pair; got "
                        f"{type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"a batch input must have a batch dimension, got shape {tuple(x.shape)}")
    if item_layout is not None and time_first is False:
        if item_layout == "static":
            return BatchInput(x, int(x.shape[0]), True)
        return BatchInput(x.transpose(0, 1).contiguous(), int(x.shape[0]), False)
    if rank is not None:
        if x.dim() == rank + 1:
            return BatchInput(x, int(x.shape[0]), True)  # static [B, *sample]: no other reading
        if x.dim() != rank + 2:
            raise ValueError(f"an input of shape {tuple(x.shape)} fits neither [T, B, *sample] nor a static "
                             f"[B, *sample] batch for a model whose first layer takes samples of rank {rank}")
        if time_first is False:
            return BatchInput(x.transpose(0, 1).contiguous(), int(x.shape[0]), False)
        return BatchInput(x, int(x.shape[1]), False)  # the contract: time first
    if time_first is None:
        raise ValueError("cannot tell which dimension of the input is the batch: the model's first layers do not "
                         "tell the rank of one sample; " + _declare_hint(x.shape))
    if time_first:
        return BatchInput(x, int(x.shape[1]), False)
    if x.dim() == 2:
        return BatchInput(x, int(x.shape[0]), True)
    return BatchInput(x.transpose(0, 1).contiguous(), int(x.shape[0]), False)

