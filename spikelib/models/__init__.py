"""Reference architectures, time first ``[T, B, ...]``."""

from spikelib.models.elm_net import ELMClassifier
from spikelib.models.mlp import SpikingMLP
from spikelib.models.snn_delays import SNNDelays

__all__ = ["ELMClassifier", "SNNDelays", "SpikingMLP"]
