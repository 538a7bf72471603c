"""Synthetic image classification that needs no download: each class is a layout of coloured Gaussian blobs.

A class ``y`` has ``blobs`` blobs (fixed by ``task_seed``): centre ``m_k`` (pixels), width ``w_k`` and a colour
``a_k`` (one signed amplitude per channel). A sample of class ``y`` (drawn from ``seed``) is::

    centre jitter   m'_k = m_k + U[-jitter, jitter]^2            per blob
    gain            g    ~ U[0.7, 1.3]                           per sample
    image           x[c, i, j] = g sum_k a_k[c] exp(-|(i, j) - m'_k|^2 / (2 w_k^2)) + noise N(0, 1)

so classes differ in where the blobs are and what colour they have, and noise, jitter and gain make them overlap
(harder with more ``noise``). Samples are balanced over classes and generated with ``numpy.random.default_rng``:
the same ``(seed, task_seed, arguments)`` always give the same tensors; train and test share ``task_seed``. Items are
``(x [channels, size, size] float32, label)``, the layout of the CIFAR reader.
"""

from __future__ import annotations

import numbers
from typing import Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SyntheticImageDataset"]


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _real(value: object, name: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


class SyntheticImageDataset(Dataset):
    """Blob-layout images (see the module docstring).

    Args:
        n_samples: number of samples.
        seed: seed of the samples.
        task_seed: seed of the class layouts (shared by train and test).
        n_classes: number of classes.
        channels, size: image shape ``[channels, size, size]``.
        blobs: blobs per class.
        jitter: largest shift of a blob centre, in pixels.
        noise: standard deviation of the pixel noise (blob amplitudes are about 1).
    """

    def __init__(self, n_samples: int = 2000, seed: int = 0, task_seed: int = 0, n_classes: int = 10,
                 channels: int = 3, size: int = 32, blobs: int = 3, jitter: float = 6.0, noise: float = 2.0) -> None:
        n = _int(n_samples, "n_samples", 1)
        seed, task_seed = _int(seed, "seed", 0), _int(task_seed, "task_seed", 0)
        self.n_classes = _int(n_classes, "n_classes", 2)
        c, s, k = _int(channels, "channels", 1), _int(size, "size", 4), _int(blobs, "blobs", 1)
        jitter, noise = _real(jitter, "jitter"), _real(noise, "noise")
        task = np.random.default_rng(task_seed)
        centres = task.uniform(0.2 * s, 0.8 * s, size=(self.n_classes, k, 2))
        widths = task.uniform(0.08 * s, 0.18 * s, size=(self.n_classes, k))
        colours = task.choice([-1.0, 1.0], size=(self.n_classes, k, c)) * task.uniform(0.6, 1.0, (self.n_classes, k, c))
        rng = np.random.default_rng(seed)
        labels = np.arange(n) % self.n_classes
        labels = labels[rng.permutation(n)]
        m = centres[labels] + rng.uniform(-jitter, jitter, size=(n, k, 2))
        gain = rng.uniform(0.7, 1.3, size=(n, 1, 1, 1))
        grid = np.arange(s, dtype=np.float64)
        di = (grid[None, None, :] - m[:, :, 0:1]) ** 2  # [n, k, s]
        dj = (grid[None, None, :] - m[:, :, 1:2]) ** 2
        w2 = 2.0 * widths[labels][:, :, None, None] ** 2
        blob = np.exp(-(di[:, :, :, None] + dj[:, :, None, :]) / w2)  # [n, k, s, s]
        images = np.einsum("nkc,nkij->ncij", colours[labels], blob) * gain
        images += noise * rng.standard_normal(images.shape)
        self.x = torch.from_numpy(images.astype(np.float32))
        self.y = torch.from_numpy(labels.astype(np.int64))
        self.shape = (c, s, s)
        self.chance_level = float(np.bincount(labels, minlength=self.n_classes).max()) / n

    def __len__(self) -> int:
        return int(self.y.numel())

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])
