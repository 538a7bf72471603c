"""Metrics of the training core and the per-epoch metric files of a run.

A metric is a function ``fn(scores [B, classes], y [B]) -> per-sample values [B]`` (float); the trainer sums them
over the batches (and over the processes) and divides by the number of samples. Built in: ``acc`` (top-1 accuracy)
and ``top5``. Files: ``metrics.csv`` and ``metrics.json`` (one row per epoch, both rewritten atomically after every
epoch and from the checkpoint's history when a run resumes), and an optional TensorBoard writer (needs the
``tensorboard`` package)."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence

import torch

from spikelib.training.atomic import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["accuracy", "top5", "METRICS", "write_metrics", "TensorBoardLogger"]


def accuracy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1.0 where ``argmax(scores) == y`` (top-1 accuracy per sample)."""
    return (scores.argmax(1) == y).to(torch.float64)


def top5(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1.0 where ``y`` is among the five highest scores (all classes if there are fewer)."""
    k = min(5, scores.shape[1])
    return (scores.topk(k, dim=1).indices == y[:, None]).any(1).to(torch.float64)


#: built-in metrics by name (``acc`` is always computed)
METRICS: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"acc": accuracy, "top5": top5}


def write_metrics(run_dir: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Write ``history`` (one mapping per epoch) to ``run_dir/metrics.csv`` and ``run_dir/metrics.json``."""
    columns: List[str] = []
    for row in history:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in columns})
    atomic_write_text(Path(run_dir) / "metrics.csv", buf.getvalue())
    atomic_write_text(Path(run_dir) / "metrics.json", json.dumps(list(history), indent=2) + "\n")


class TensorBoardLogger:
    """Scalars per epoch to TensorBoard event files in ``run_dir/tensorboard``."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError("train.tensorboard: true needs the tensorboard package: pip install tensorboard") \
                from exc
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
