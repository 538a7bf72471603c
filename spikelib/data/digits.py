"""The handwritten-digits images that scikit-learn ships (8 x 8 pixels, 1,797 samples, 10 classes): a small real
image data set that needs no download.

The file is ``sklearn/datasets/data/digits.csv.gz`` inside the installed scikit-learn package (the UCI "Optical
Recognition of Handwritten Digits" test set; 64 pixel values 0..16 and the label per row). It is read directly with
NumPy: scikit-learn is located with :func:`importlib.util.find_spec`, never imported (importing it costs seconds and
SciPy), and nothing is unpickled. Install it with ``pip install "spikelib[digits]"`` (``make`` does).

There is no official split: ``test_fraction`` of the samples of each class (a stratified, seeded choice by
``split_seed``) form the test split. Items are ``(x [1, 8, 8] float32, label)``: pixels scaled to ``[0, 1]`` and, with
``normalize=True``, standardised with the mean and standard deviation of the training split's pixels (both splits use
the training statistics).
"""

from __future__ import annotations

import gzip
import importlib.util
import numbers
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["DigitsDataset", "digits_file", "read_digits"]

N_SAMPLES = 1797
N_CLASSES = 10


def digits_file() -> Path:
    """Path of scikit-learn's ``digits.csv.gz`` (scikit-learn is found, not imported)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits data set is the file scikit-learn ships; install it with "
                          "pip install 'spikelib[digits]' (or pip install scikit-learn)")
    for root in spec.submodule_search_locations:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(f"scikit-learn is installed at {list(spec.submodule_search_locations)} but has no "
                            f"datasets/data/digits.csv.gz")


def read_digits(path: Union[str, Path, None] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(images [1797, 8, 8] uint8 in 0..16, labels [1797] int64)`` from the CSV file (default: scikit-learn's)."""
    path = Path(path) if path is not None else digits_file()
    try:
        with gzip.open(path, "rt", encoding="ascii") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable digits CSV file ({exc})") from None
    if table.shape != (N_SAMPLES, 65):
        raise ValueError(f"{path}: expected {N_SAMPLES} rows of 64 pixels and a label, got shape {table.shape}")
    if not np.all(np.isfinite(table)) or np.any(table != np.round(table)):
        raise ValueError(f"{path}: values must be integers")
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16:
        raise ValueError(f"{path}: pixel values must be in 0..16, got {pixels.min():g}..{pixels.max():g}")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise ValueError(f"{path}: labels must be in 0..9, got {labels.min():g}..{labels.max():g}")
    return pixels.reshape(N_SAMPLES, 8, 8).astype(np.uint8), labels.astype(np.int64)


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Stratified seeded split: ``round(test_fraction * n_c)`` samples of each class ``c`` go to the test split."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits (see the module docstring).

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: share of each class in the test split (in ``(0, 1)``).
        split_seed: seed of the split.
        normalize: standardise with the training split's pixel mean and std (else pixels in ``[0, 1]``).
        path: another copy of ``digits.csv.gz`` (default: scikit-learn's).
    """

    n_classes = N_CLASSES
    shape = (1, 8, 8)

    def __init__(self, split: str = "train", test_fraction: float = 0.25, split_seed: int = 0,
                 normalize: bool = True, path: Optional[Union[str, Path]] = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not (
                0.0 < float(test_fraction) < 1.0):
            raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
        if isinstance(split_seed, bool) or not isinstance(split_seed, numbers.Integral) or split_seed < 0:
            raise ValueError(f"split_seed must be an int >= 0, got {split_seed!r}")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        images, labels = read_digits(path)
        train_idx, test_idx = split_indices(labels, float(test_fraction), int(split_seed))
        x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
        self.mean, self.std = 0.0, 1.0
        if normalize:
            ref = x[torch.from_numpy(train_idx)]
            self.mean, self.std = float(ref.mean()), float(ref.std())
            x = (x - self.mean) / self.std
        idx = torch.from_numpy(train_idx if split == "train" else test_idx)
        self.split = split
        self.x = x[idx].contiguous()
        self.y = torch.from_numpy(labels)[idx].contiguous()

    def __len__(self) -> int:
        return int(self.y.numel())

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])

    @property
    def labels(self) -> torch.Tensor:
        return self.y
