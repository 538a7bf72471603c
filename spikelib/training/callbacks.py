"""Callbacks of the training core.

A :class:`Callback` overrides any of the hooks below; each gets the :class:`~spikelib.training.Trainer` (its
``model``, ``optimizers`` (slots), ``epoch``, ``batch``, ``stage``, ``history``, ``row`` (the metrics of the epoch
being built, where a callback may add values with ``trainer.log(key, value)``), ...). Order within an epoch::

    on_fit_start -> on_stage_start -> [on_epoch_start -> (batch: forward, loss, backward, optimisers step,
    per-step schedules step, on_step_end, metrics, on_batch_end)* -> per-epoch schedules step -> on_train_epoch_end
    -> validation -> best model -> last.pt (on_checkpoint) -> on_epoch_end]* -> (next stage) ... -> on_fit_end

``eval_context(trainer)`` may return a context manager that wraps every evaluation pass (e.g. rounded delays).
``state_dict()`` / ``load_state_dict()`` put a callback's state into the checkpoint, so a resumed run continues it.
A plain function ``fn(trainer, event)`` is accepted as a callback too (:class:`EventCallback`), with ``event`` one of
``"stage_start"``, ``"batch_end"``, ``"epoch_end"``, ``"checkpoint"`` and ``"fit_end"``.

Built-in: :class:`MetricFiles` (``metrics.csv``/``metrics.json`` after every epoch, and on resume from the
checkpoint's history), :class:`TensorBoardCallback` and, for learnable delays,
:class:`spikelib.training.delays.DelayCallback` (sigma schedule, clamping, rounded evaluation). Learning-rate
schedules belong to the optimiser slots (:mod:`spikelib.training.optim`) and step per batch or per epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Optional

__all__ = ["Callback", "EventCallback", "MetricFiles", "TensorBoardCallback", "as_callback"]


class Callback:
    """Base class of the trainer's callbacks (every hook is a no-op here)."""

    def on_fit_start(self, trainer: Any) -> None:
        """Before the first epoch (also when a run resumes)."""

    def on_stage_start(self, trainer: Any) -> None:
        """After a stage is set up (time steps applied, optimisers built), also when a run resumes in it."""

    def on_epoch_start(self, trainer: Any) -> None:
        """Before the first batch of an epoch (also when a run resumes mid-epoch)."""

    def on_step_end(self, trainer: Any) -> None:
        """After every optimiser step (and the per-step schedules)."""

    def on_batch_end(self, trainer: Any) -> None:
        """After a training batch's metrics are added (``trainer.batch`` already counts it)."""

    def on_train_epoch_end(self, trainer: Any) -> None:
        """After an epoch's last training batch and the per-epoch schedules, before validation."""

    def on_epoch_end(self, trainer: Any) -> None:
        """After an epoch's row is complete and ``last.pt`` is written."""

    def on_checkpoint(self, trainer: Any) -> None:
        """After ``last.pt`` is written."""

    def on_fit_end(self, trainer: Any, result: Dict[str, Any]) -> None:
        """After the final evaluation."""

    def eval_context(self, trainer: Any) -> Optional[ContextManager]:
        """A context manager wrapping every evaluation pass, or ``None``."""
        return None

    def state_dict(self) -> Dict[str, Any]:
        """State to keep in checkpoints (plain values and tensors)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class EventCallback(Callback):
    """A plain function ``fn(trainer, event)`` as a callback (see the module docstring for the events)."""

    def __init__(self, fn: Callable[[Any, str], None]) -> None:
        self.fn = fn

    def on_stage_start(self, trainer: Any) -> None:
        self.fn(trainer, "stage_start")

    def on_batch_end(self, trainer: Any) -> None:
        self.fn(trainer, "batch_end")

    def on_epoch_end(self, trainer: Any) -> None:
        self.fn(trainer, "epoch_end")

    def on_checkpoint(self, trainer: Any) -> None:
        self.fn(trainer, "checkpoint")

    def on_fit_end(self, trainer: Any, result: Dict[str, Any]) -> None:
        self.fn(trainer, "fit_end")


def as_callback(obj: Any) -> Callback:
    """A :class:`Callback` as it is, a plain function as an :class:`EventCallback`."""
    if isinstance(obj, Callback):
        return obj
    if callable(obj):
        return EventCallback(obj)
    raise TypeError(f"a callback must be a spikelib.training.Callback or a function fn(trainer, event), got "
                    f"{type(obj).__name__}")


class MetricFiles(Callback):
    """``metrics.csv`` and ``metrics.json`` of the run folder, rewritten after every epoch and, when a run resumes,
    from the checkpoint's history (so a run killed between ``last.pt`` and these files loses no epoch)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def _write(self, trainer: Any) -> None:
        from spikelib.training.metrics import write_metrics

        write_metrics(self.run_dir, trainer.history)

    def on_fit_start(self, trainer: Any) -> None:
        if trainer.history:
            self._write(trainer)

    def on_epoch_end(self, trainer: Any) -> None:
        self._write(trainer)


class TensorBoardCallback(Callback):
    """Scalars of every epoch to TensorBoard event files in ``run_dir/tensorboard`` (needs ``tensorboard``)."""

    def __init__(self, run_dir: Path) -> None:
        from spikelib.training.metrics import TensorBoardLogger

        self.logger = TensorBoardLogger(Path(run_dir))

    def on_epoch_end(self, trainer: Any) -> None:
        row = dict(trainer.history[-1])
        self.logger.log(row, trainer.global_epoch)

    def on_fit_end(self, trainer: Any, result: Dict[str, Any]) -> None:
        self.logger.close()

