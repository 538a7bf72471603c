"""Data sets and generators. Event/sequence items are ``[T, C]`` (models take time-first ``[T, B, C]``); image items
(CIFAR, digits, synthetic images) are static ``[C, H, W]`` that a model presents over time itself."""

from spikelib.data.synthetic import SyntheticTemporalDataset, make_class_orders
from spikelib.data.shd import SHDDataset, SSCDataset, bin_events, pad_collate, train_val_split
from spikelib.data.synthetic_shd import SyntheticSHDConfig, generate_synthetic_shd, write_synthetic_shd
from spikelib.data.augment import (CutMix, NeuronMask, TimeMask, mix_cross_entropy, snn_delays_augmentations,
                                   soft_targets)
from spikelib.data.modelnet import ModelNet40Dataset, RandomScaleShift, normalize_unit_sphere, read_off, sample_surface
from spikelib.data.synthetic_shapes import SHAPE_CLASSES, write_synthetic_shapes
from spikelib.data.cifar import CIFAR10Dataset, CIFAR100Dataset
from spikelib.data.digits import DigitsDataset
from spikelib.data.synthetic_images import SyntheticImageDataset

__all__ = ["SyntheticTemporalDataset", "make_class_orders",
           "SHDDataset", "SSCDataset", "bin_events", "pad_collate", "train_val_split",
           "SyntheticSHDConfig", "generate_synthetic_shd", "write_synthetic_shd",
           "CutMix", "NeuronMask", "TimeMask", "mix_cross_entropy", "snn_delays_augmentations", "soft_targets",
           "ModelNet40Dataset", "RandomScaleShift", "normalize_unit_sphere", "read_off", "sample_surface",
           "SHAPE_CLASSES", "write_synthetic_shapes",
           "CIFAR10Dataset", "CIFAR100Dataset", "DigitsDataset", "SyntheticImageDataset"]
