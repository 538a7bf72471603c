"""Training: a small classifier loop (Adam, cross-entropy, per-epoch metrics, tqdm progress)."""

from spikelib.training.loop import evaluate, to_time_first, train_classifier

__all__ = ["evaluate", "to_time_first", "train_classifier"]
