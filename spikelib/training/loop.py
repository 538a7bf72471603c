"""A small training loop for spiking classifiers: Adam, cross-entropy on the model's logits, per-epoch metrics.

Loaders yield batch-first ``(x: [B, T, C], y: [B])`` (the default collate of a Dataset whose items are ``[T, C]``);
:func:`to_time_first` is the one place where batches become time first ``[T, B, C]``. The model maps ``[T, B, C]`` to
logits ``[B, classes]`` (e.g. :class:`spikelib.models.SpikingMLP`, whose logits are a readout's mean membrane or the
output spike counts). :func:`spikelib.reset` is called before every batch, so no state leaks between batches.
Progress is shown with tqdm bars (on stderr; ``progress=False`` turns them off); metrics are logged at INFO level.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from spikelib.neurons import reset

logger = logging.getLogger(__name__)

__all__ = ["to_time_first", "evaluate", "train_classifier"]


def to_time_first(x: torch.Tensor) -> torch.Tensor:
    """``[B, T, ...] -> [T, B, ...]`` (contiguous): the one place where loader batches become time first."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"a batch must be a tensor [B, T, ...], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    return x.transpose(0, 1).contiguous()


def _batch(batch: object, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("a loader must yield (x, y) pairs with x: [B, T, C] and y: [B]")
    x, y = batch
    x = to_time_first(x.to(device=device, dtype=torch.float32, non_blocking=True))
    return x, y.to(device=device, dtype=torch.long, non_blocking=True)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: Union[str, torch.device] = "cpu",
             progress: bool = False, desc: str = "eval") -> Dict[str, float]:
    """Mean cross-entropy ``loss`` and accuracy ``acc`` of ``model`` over ``loader`` (no gradients)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
            x, y = _batch(batch, device)
            reset(model)
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += int(y.numel())
    finally:
        reset(model)
        model.train(was_training)
    if count == 0:
        raise ValueError("the evaluation loader yielded no samples")
    return {"loss": loss_sum / count, "acc": correct / count}


def train_classifier(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable,
    epochs: int,
    lr: float = 1e-3,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    on_epoch_end: Optional[Callable[[Dict[str, float]], None]] = None,
) -> List[Dict[str, float]]:
    """Train ``model`` with Adam on cross-entropy and evaluate it after every epoch.

    Args:
        model: maps ``[T, B, C]`` to logits ``[B, classes]``.
        train_loader, test_loader: yield ``(x: [B, T, C], y: [B])``.
        epochs: number of passes over ``train_loader``.
        lr: Adam learning rate.
        device: where to train (the model is moved there).
        progress: show tqdm progress bars.
        on_epoch_end: called with each epoch's metrics as soon as they are known (e.g. to print them).

    Returns:
        One dict per epoch: ``epoch``, ``train_loss``, ``train_acc`` (running, during the epoch), ``test_loss``,
        ``test_acc``, ``seconds``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(lr))
    history: List[Dict[str, float]] = []
    for epoch in range(1, int(epochs) + 1):
        start = time.perf_counter()
        model.train()
        loss_sum, correct, count = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", disable=not progress, dynamic_ncols=True)
        for batch in bar:
            x, y = _batch(batch, device)
            reset(model)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = int(y.numel())
            loss_sum += float(loss.detach()) * n
            correct += int((logits.detach().argmax(1) == y).sum())
            count += n
            bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}")
        bar.close()
        if count == 0:
            raise ValueError("the training loader yielded no samples")
        test = evaluate(model, test_loader, device, progress=progress, desc=f"test {epoch}/{epochs}")
        metrics = {
            "epoch": epoch,
            "train_loss": loss_sum / count,
            "train_acc": correct / count,
            "test_loss": test["loss"],
            "test_acc": test["acc"],
            "seconds": time.perf_counter() - start,
        }
        history.append(metrics)
        logger.info("epoch %d/%d: train loss %.4f acc %.3f | test loss %.4f acc %.3f | %.1f s", epoch, epochs,
                    metrics["train_loss"], metrics["train_acc"], metrics["test_loss"], metrics["test_acc"],
                    metrics["seconds"])
        if on_epoch_end is not None:
            on_epoch_end(dict(metrics))
    return history
