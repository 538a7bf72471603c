"""Reference architectures, time first ``[T, B, ...]``."""

from spikelib.models.mlp import SpikingMLP

__all__ = ["SpikingMLP"]
