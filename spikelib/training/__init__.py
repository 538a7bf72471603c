"""Training: one core (:class:`Trainer`: fit / evaluate with pluggable losses, metrics, callbacks, optimiser groups,
schedules stepped per batch or per epoch, stages), validated YAML run configurations, verified resumable
checkpoints, locked run folders, DDP, and :func:`load_run` for everything that reads a run back.

Python API for a model and data set of your own::

    from spikelib.training import DatasetBundle, Trainer
    trainer = Trainer({"optim": {"lr": 1e-3}, "train": {"epochs": 5}}, "runs/mine", model=my_model,
                      datasets=DatasetBundle(train_set, test_set, {"n_classes": 10}), loss=my_loss)
    result = trainer.fit()          # trainer.evaluate("test"), trainer.history, trainer.model
"""

from spikelib.training.callbacks import Callback, EventCallback
from spikelib.training.checkpoint import load_checkpoint
from spikelib.training.config import RunConfig, load_config, parse_config
from spikelib.training.datasets import DatasetBundle, build_datasets, list_datasets, register_dataset
from spikelib.training.errors import (CheckpointError, ConfigError, RunLockedError, TrainingDivergedError,
                                      TrainingInterrupted)
from spikelib.training.evaluation import evaluate_loader, to_time_first
from spikelib.training.loop import evaluate, train_classifier
from spikelib.training.losses import Loss, build_loss, list_losses, register_loss
from spikelib.training.run import LoadedRun, load_run
from spikelib.training.trainer import Trainer

__all__ = ["Callback", "CheckpointError", "ConfigError", "DatasetBundle", "EventCallback", "LoadedRun", "Loss",
           "RunConfig", "RunLockedError", "Trainer", "TrainingDivergedError", "TrainingInterrupted", "build_datasets",
           "build_loss", "evaluate", "evaluate_loader", "list_datasets", "list_losses", "load_checkpoint",
           "load_config", "load_run", "parse_config", "register_dataset", "register_loss", "to_time_first",
           "train_classifier"]
