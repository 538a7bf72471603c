"""Training: the configurable :class:`Trainer` behind ``spikelib train`` (validated YAML configs, atomic resumable
checkpoints, schedules, mixed precision, DDP), and the small classifier loops used by the tests and recipes."""

from spikelib.training.checkpoint import CheckpointError, load_checkpoint
from spikelib.training.config import ConfigError, RunConfig, load_config, parse_config
from spikelib.training.loop import evaluate, to_time_first, train_classifier
from spikelib.training.trainer import Trainer

__all__ = ["CheckpointError", "ConfigError", "RunConfig", "Trainer", "evaluate", "load_checkpoint", "load_config",
           "parse_config", "to_time_first", "train_classifier"]
