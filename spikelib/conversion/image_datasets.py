"""The image data sets of the IIR-SNN recipes in the trainer's data set registry (``data.dataset`` names):
``digits`` (scikit-learn's 8x8 handwritten digits), ``cifar10`` / ``cifar100`` (the official binary files) and
``synthetic_images`` (blob layouts, no download). Items are static images ``[C, H, W]`` (``info["layout"] =
"static"``): the models present them at every time step themselves
(:class:`~spikelib.models.iir_blocks.DirectInputSNN`).

CIFAR trains with the reference's augmentation (random crop after 4-pixel padding, horizontal flip) and validates on
``val_size`` training images held out *without* augmentation (a seeded choice, given to the trainer as the data set's
validation split; the reference itself selects on the test set).

Importing this module registers the names (:mod:`spikelib.conversion.iir` does); the builders are plain functions
that the training package's own registry module can take over as they are.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import Subset

from spikelib.training.datasets import DatasetBundle, list_datasets, register_dataset

__all__ = ["digits", "cifar10", "cifar100", "synthetic_images"]


def _info(n_classes: int, shape: tuple, **more) -> dict:
    return {"n_classes": n_classes, "n_channels": shape[0], "image_size": shape[-1], "chance": 1.0 / n_classes,
            "layout": "static", **more}


def digits(seed: int, test_fraction: float = 0.25, split_seed: int = 0, normalize: bool = True) -> DatasetBundle:
    """scikit-learn's handwritten digits (:class:`spikelib.data.DigitsDataset`): 1,797 images 8x8, a stratified
    seeded test split of ``test_fraction``; the validation split comes from the training part (``data.val_fraction``).
    """
    from spikelib.data.digits import DigitsDataset

    kw = dict(test_fraction=test_fraction, split_seed=split_seed, normalize=normalize)
    train, test = DigitsDataset("train", **kw), DigitsDataset("test", **kw)
    return DatasetBundle(train, test, _info(10, DigitsDataset.shape))


def _cifar(cls, root: str, augment: bool, val_size: int, seed: int, **kw) -> DatasetBundle:
    train_aug = cls(root, "train", augment=augment, **kw)
    plain = cls(root, "train", augment=False, **kw) if augment else train_aug
    test = cls(root, "test", augment=False, **kw)
    n = len(train_aug)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < n:
        raise ValueError(f"val_size must be an int in [0, {n}), got {val_size!r}")
    val = None
    if val_size:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
        train_aug, val = Subset(train_aug, sorted(perm[val_size:])), Subset(plain, sorted(perm[:val_size]))
    return DatasetBundle(train_aug, test, _info(test.n_classes, (3, 32, 32), augment=augment), val=val)


def cifar10(seed: int, root: str = "data/cifar", augment: bool = True, normalize: bool = True,
            val_size: int = 5000) -> DatasetBundle:
    """CIFAR-10 from the binary files in ``root`` (:class:`spikelib.data.CIFAR10Dataset`); ``val_size`` training
    images (not augmented) form the validation split."""
    from spikelib.data.cifar import CIFAR10Dataset

    return _cifar(CIFAR10Dataset, root, augment, val_size, seed, normalize=normalize)


def cifar100(seed: int, root: str = "data/cifar", augment: bool = True, normalize: bool = True,
             label: str = "fine", val_size: int = 5000) -> DatasetBundle:
    """CIFAR-100 from the binary files (:class:`spikelib.data.CIFAR100Dataset`; ``label``: fine or coarse)."""
    from spikelib.data.cifar import CIFAR100Dataset

    return _cifar(CIFAR100Dataset, root, augment, val_size, seed, normalize=normalize, label=label)


def synthetic_images(seed: int, n_train: int = 2000, n_test: int = 500, data_seed: Optional[int] = None,
                     task_seed: int = 0, n_classes: int = 10, channels: int = 3, size: int = 32, blobs: int = 3,
                     jitter: float = 6.0, noise: float = 2.0) -> DatasetBundle:
    """Blob-layout images (:class:`spikelib.data.SyntheticImageDataset`), no download; train and test share
    ``task_seed`` and get seeds drawn from ``data_seed`` (default: the run's seed)."""
    from spikelib.data.synthetic_images import SyntheticImageDataset

    s_train, s_test = (int(s) % (2**31) for s in np.random.SeedSequence(
        seed if data_seed is None else data_seed).generate_state(2))
    kw = dict(task_seed=task_seed, n_classes=n_classes, channels=channels, size=size, blobs=blobs, jitter=jitter,
              noise=noise)
    train, test = SyntheticImageDataset(n_train, s_train, **kw), SyntheticImageDataset(n_test, s_test, **kw)
    return DatasetBundle(train, test, _info(n_classes, train.shape, chance=train.chance_level))


for _name, _fn in (("digits", digits), ("cifar10", cifar10), ("cifar100", cifar100),
                   ("synthetic_images", synthetic_images)):
    if _name not in list_datasets():
        register_dataset(_name)(_fn)
