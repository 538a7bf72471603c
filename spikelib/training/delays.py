"""Training loop for models with learnable delays (SNN-delays recipe; helpers in :mod:`spikelib.layers.delay_schedule`).

Per batch: cross-entropy on the model's output, backward, both optimisers step, positions are clamped. Per epoch: the
learning-rate schedules step and sigma follows its schedule; evaluation runs with rounded integer delays (what a chip
runs), the training modes are restored afterwards. Loaders yield batch-first ``(x: [B, T, C], y: [B])``.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from typing import Dict, Iterable, List, Optional, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from spikelib.layers.delay_schedule import DelayOptimizers, SigmaSchedule, delay_layers, rounded_delays
from spikelib.neurons import reset
from spikelib.training.loop import evaluate, to_time_first

logger = logging.getLogger(__name__)

__all__ = ["train_delays", "evaluate_rounded"]


def evaluate_rounded(model: nn.Module, loader: Iterable, device: Union[str, torch.device] = "cpu") -> Dict[str, float]:
    """:func:`spikelib.training.loop.evaluate` with every delay layer in integer mode."""
    with rounded_delays(model):
        return evaluate(model, loader, device)


def train_delays(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Optional[Iterable],
    epochs: int,
    lr: float = 1e-3,
    lr_delay: Optional[float] = None,
    weight_decay: float = 1e-5,
    device: Union[str, torch.device] = "cpu",
    progress: bool = False,
    sigma_schedule: Optional[SigmaSchedule] = None,
    finetune_epochs: int = 0,
    finetune_lr: float = 1e-4,
) -> List[Dict[str, float]]:
    """Train with :class:`DelayOptimizers`, then optionally fine-tune with rounded delays.

    The fine-tuning stage (SNN-delays ``model.py`` ``fine_tune``) switches every delay layer to integer delays for
    good and trains the remaining parameters with Adam (``finetune_lr``) for ``finetune_epochs`` epochs, so the
    weights adapt to the delays a chip runs. Returns one dict per epoch (``train_loss``, ``train_acc``, ``sigma``
    (None while fine-tuning), ``test_loss``/``test_acc`` with rounded delays when ``test_loader`` is given,
    ``seconds``).
    """
    for name, value, minimum in (("epochs", epochs, 1), ("finetune_epochs", finetune_epochs, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if isinstance(finetune_lr, bool) or not isinstance(finetune_lr, numbers.Real) or not (
            math.isfinite(finetune_lr) and finetune_lr > 0):
        raise ValueError(f"finetune_lr must be a finite number > 0, got {finetune_lr!r}")
    device = torch.device(device)
    model.to(device)
    opt = DelayOptimizers(model, epochs, lr=lr, lr_delay=lr_delay, weight_decay=weight_decay,
                          sigma_schedule=sigma_schedule)
    history: List[Dict[str, float]] = []
    sigma: Optional[float] = opt.sigma_schedule(0)
    finetune: Optional[torch.optim.Optimizer] = None
    total = epochs + finetune_epochs
    for epoch in range(total):
        start = time.perf_counter()
        if epoch == epochs:
            for layer in delay_layers(model):
                layer.round_delays()
            sigma = None
            finetune = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=finetune_lr)
        model.train()
        loss_sum, correct, count = 0.0, 0, 0
        for xb, yb in tqdm(train_loader, desc=f"epoch {epoch + 1}/{total}", disable=not progress, leave=False):
            x = to_time_first(xb.to(device=device, dtype=torch.float32))
            y = yb.to(device=device, dtype=torch.long)
            reset(model)
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            if finetune is None:
                opt.zero_grad()
                loss.backward()
                opt.step()
            else:
                finetune.zero_grad(set_to_none=True)
                loss.backward()
                finetune.step()
            n = int(y.numel())
            loss_sum += float(loss.detach()) * n
            correct += int((out.detach().argmax(1) == y).sum())
            count += n
        if count == 0:
            raise ValueError("the training loader yielded no samples")
        metrics = {"epoch": epoch + 1, "train_loss": loss_sum / count, "train_acc": correct / count, "sigma": sigma}
        if finetune is None:
            sigma = opt.end_epoch(epoch)
        if test_loader is not None:
            test = evaluate_rounded(model, test_loader, device)
            metrics.update(test_loss=test["loss"], test_acc=test["acc"])
        metrics["seconds"] = time.perf_counter() - start
        history.append(metrics)
        logger.info("epoch %d/%d: %s", epoch + 1, total,
                    ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch" and v is not None))
    return history
