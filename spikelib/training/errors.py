"""The training package's error types (a leaf module). Each is an *expected* failure: the ``spikelib`` command prints
its message as one ``error:`` line (exit status 2)."""

from __future__ import annotations

__all__ = ["ConfigError", "CheckpointError", "RunLockedError", "TrainingDivergedError", "TrainingInterrupted"]


class ConfigError(ValueError):
    """A run configuration is missing, unreadable, or has an unknown key or a bad value (the message names it)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt, or does not fit the model/configuration (the message says why)."""


class RunLockedError(RuntimeError):
    """Another process holds the run folder (two runs must never write into one folder)."""


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite (the message names the epoch and batch and what to change)."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped a run at a batch boundary; the message says where its checkpoint is."""
