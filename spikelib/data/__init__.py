"""Data sets and generators; every item is batch-first ``[T, C]`` and models take time-first ``[T, B, C]``."""

from spikelib.data.synthetic import SyntheticTemporalDataset, make_class_orders
from spikelib.data.shd import SHDDataset, SSCDataset, bin_events, pad_collate, train_val_split
from spikelib.data.synthetic_shd import SyntheticSHDConfig, generate_synthetic_shd, write_synthetic_shd

__all__ = ["SyntheticTemporalDataset", "make_class_orders",
           "SHDDataset", "SSCDataset", "bin_events", "pad_collate", "train_val_split",
           "SyntheticSHDConfig", "generate_synthetic_shd", "write_synthetic_shd"]
