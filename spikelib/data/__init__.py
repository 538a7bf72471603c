"""Data sets and generators; every item is batch-first ``[T, C]`` and models take time-first ``[T, B, C]``."""

from spikelib.data.synthetic import SyntheticTemporalDataset, make_class_orders

__all__ = ["SyntheticTemporalDataset", "make_class_orders"]
