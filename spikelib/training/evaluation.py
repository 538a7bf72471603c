"""Batches into the model and evaluation passes of the training core.

Loaders yield batch-first ``(x: [B, T, ...], y: [B])`` (the default collate of a Dataset whose items are
``[T, ...]``); :func:`to_time_first` is the one place where batches become time first ``[T, B, ...]``. A data set
whose ``info["layout"]`` is ``"static"`` (items without a time axis, e.g. images the model repeats over time) is
passed as it is. :func:`spikelib.reset` is called before every batch, so no state leaks between batches.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from spikelib.neurons import reset
from spikelib.training import distributed as D

__all__ = ["to_time_first", "prepare_batch", "evaluate_loader"]


def to_time_first(x: torch.Tensor) -> torch.Tensor:
    """``[B, T, ...] -> [T, B, ...]`` (contiguous): the one place where loader batches become time first."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"a batch must be a tensor [B, T, ...], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    return x.transpose(0, 1).contiguous()


def prepare_batch(batch: Any, device: torch.device, dtype: torch.dtype = torch.float32,
                  layout: str = "time") -> Tuple[torch.Tensor, torch.Tensor]:
    """A loader batch ``(x, y)`` -> model input (time first unless ``layout == "static"``) and ``long`` targets."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("a loader must yield (x, y) pairs with x: [B, T, C] and y: [B]")
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"a loader must yield (x, y) tensor pairs, got ({type(x).__name__}, {type(y).__name__})")
    x = x.to(device=device, dtype=dtype, non_blocking=True)
    if layout != "static":
        x = to_time_first(x)
    return x, y.to(device=device, dtype=torch.long, non_blocking=True)


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader: Iterable, *, loss: Callable, metrics: Mapping[str, Callable],
                    device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                    prepare: Optional[Callable[[Any], Tuple[torch.Tensor, torch.Tensor]]] = None,
                    autocast: Callable = contextlib.nullcontext, context: Callable = contextlib.nullcontext,
                    max_batches: Optional[int] = None, progress: bool = False, desc: str = "eval",
                    layout: str = "time") -> Dict[str, float]:
    """Mean loss and metrics of ``model`` over ``loader`` (summed over processes under DDP): ``{"loss", <metric>...,
    "count"}``. ``loss`` gives per-sample values (or a scalar mean) and ``scores``; ``context`` wraps the pass (e.g.
    rounded delays); the model's training mode is restored afterwards."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    names = list(metrics)
    sums = [0.0] * (len(names) + 2)
    try:
        with context():
            for i, batch in enumerate(tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True,
                                           file=sys.stderr)):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = prepare(batch) if prepare is not None else prepare_batch(batch, device, dtype, layout)
                if y.numel() == 0:
                    continue
                reset(model)
                with autocast():
                    out = model(x)
                per = loss(out, y)
                n = int(y.numel())
                sums[0] += float(per.sum()) if per.dim() else float(per) * n
                scores = loss.scores(out) if hasattr(loss, "scores") else out
                for j, name in enumerate(names):
                    sums[j + 1] += float(metrics[name](scores, y).sum())
                sums[-1] += n
    finally:
        reset(model)
        model.train(was_training)
    sums = D.all_reduce_sum(sums, device)
    count = sums[-1]
    if count == 0:
        raise ValueError(f"{desc}: the loader yielded no samples")
    out = {"loss": sums[0] / count}
    out.update({name: sums[j + 1] / count for j, name in enumerate(names)})
    out["count"] = int(count)
    return out
