"""Two small conveniences on the training core for classifiers with ready DataLoaders: :func:`train_classifier`
(Adam, cross-entropy on the model's logits, the test split evaluated after every epoch, the last epoch's weights kept)
and :func:`evaluate` (mean cross-entropy and accuracy). Both run :class:`spikelib.training.Trainer` /
:func:`spikelib.training.evaluation.evaluate_loader`; loaders yield batch-first ``(x: [B, T, C], y: [B])``, models
take time first ``[T, B, C]`` (:func:`to_time_first`) and map it to logits ``[B, classes]``.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Dict, Iterable, List, Optional, Union

import torch
from torch import nn

from spikelib.training.evaluation import evaluate_loader, to_time_first
from spikelib.training.losses import CrossEntropy
from spikelib.training.metrics import accuracy

__all__ = ["to_time_first", "evaluate", "train_classifier"]


def evaluate(model: nn.Module, loader: Iterable, device: Union[str, torch.device] = "cpu",
             progress: bool = False, desc: str = "eval") -> Dict[str, float]:
    """Mean cross-entropy ``loss``, accuracy ``acc`` and sample ``count`` of ``model`` over ``loader``."""
    return evaluate_loader(model, loader, loss=CrossEntropy(), metrics={"acc": accuracy}, device=device,
                           progress=progress, desc=desc)


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
    """Train ``model`` with Adam on cross-entropy and evaluate it on ``test_loader`` after every epoch.

    Args:
        model: maps ``[T, B, C]`` to logits ``[B, classes]``.
        train_loader, test_loader: yield ``(x: [B, T, C], y: [B])``.
        epochs: number of passes over ``train_loader``.
        lr: Adam learning rate.
        device: where to train (the model is moved there).
        progress: show tqdm progress bars (on a terminal).
        on_epoch_end: called with each epoch's metrics as soon as they are known (e.g. to print them).

    Returns:
        One dict per epoch: ``epoch``, ``train_loss``, ``train_acc`` (running, during the epoch), ``test_loss``,
        ``test_acc``, ``seconds``. The model keeps the last epoch's weights; the caller's random generators are
        used as they are (not re-seeded).
    """
    from spikelib.training.trainer import Trainer

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
    history: List[Dict[str, float]] = []

    def collect(trainer: "Trainer", event: str) -> None:
        if event == "epoch_end":
            row = {k: trainer.history[-1][k] for k in keys}
            history.append(row)
            if on_epoch_end is not None:
                on_epoch_end(dict(row))

    config = {"optim": {"name": "adam", "lr": float(lr)},
              "train": {"epochs": int(epochs), "device": str(torch.device(device)), "select": "last", "amp": False,
                        "evaluate_test": False, "progress": bool(progress)}}
    Trainer(config, None, model=model, loaders={"train": train_loader, "test": test_loader}, monitor=("test",),
            callbacks=[collect], reseed=False).fit()
    return history
