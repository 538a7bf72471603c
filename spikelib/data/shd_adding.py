"""SHD-Adding (Spieler et al., ICLR 2024; AaronSpieler/elmneuron ``src/shd/shd_data_loader.py``, ``SHDAdding``).

A transform over any dataset whose items are ``(spikes [T, C] tensor, label)`` with SHD labels ``0..19`` (0-9 the
English digits, 10-19 the German ones). Item ``n`` of the new dataset is the pair ``(i_n, j_n)`` of source items::

    x = concat_time(x_i, x_j)                 [T_i + T_j, C]
    y = (y_i mod 10) + (y_j mod 10)           in 0..18   (19 classes; language ignored)

As in the reference, both members of a pair are drawn independently and uniformly with replacement; here the pairs
are fixed by ``seed`` (``numpy.random.default_rng(seed).integers(0, N, (num_samples, 2))``), so the same arguments
always give the same dataset.
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SHDAdding", "NUM_CLASSES"]

NUM_CLASSES = 19


class SHDAdding(Dataset):
    """SHD-Adding over ``base`` (see the module docstring).

    Args:
        base: a map-style dataset of ``(spikes [T, C], label in 0..19)``.
        num_samples: number of pairs (default ``len(base)``).
        seed: seed of the pairing.
    """

    def __init__(self, base: Dataset, num_samples: Optional[int] = None, seed: int = 0) -> None:
        if not hasattr(base, "__getitem__") or not hasattr(base, "__len__"):
            raise TypeError(f"base must be a map-style dataset (with __len__ and __getitem__), got "
                            f"{type(base).__name__}")
        n = len(base)
        if n < 1:
            raise ValueError("base is empty: SHD-Adding needs at least one sample")
        if num_samples is None:
            num_samples = n
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.base = base
        self.seed = int(seed)
        self.pairs = np.random.default_rng(self.seed).integers(0, n, size=(int(num_samples), 2))

    def __len__(self) -> int:
        return len(self.pairs)

    def _item(self, index: int) -> Tuple[torch.Tensor, int]:
        item = self.base[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"base[{index}] must be a (spikes, label) pair, got {type(item).__name__}")
        x, y = item
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"base[{index}] spikes must be a tensor [T, C], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if isinstance(y, torch.Tensor):
            if y.numel() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                raise ValueError(f"base[{index}] label must be one integer, got {y!r}")
            y = int(y)
        if isinstance(y, bool) or not isinstance(y, numbers.Integral) or not 0 <= y <= 19:
            raise ValueError(f"base[{index}] label must be an SHD label in 0..19, got {y!r}")
        return x, int(y)

    def __getitem__(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(n).__name__}")
        if not -len(self) <= n < len(self):
            raise IndexError(f"index {n} out of range for {len(self)} samples")
        i, j = (int(v) for v in self.pairs[n])
        xa, ya = self._item(i)
        xb, yb = self._item(j)
        if xa.shape[1] != xb.shape[1] or xa.dtype != xb.dtype:
            raise ValueError(f"base[{i}] and base[{j}] differ in channels or dtype ({tuple(xa.shape)} {xa.dtype} vs "
                             f"{tuple(xb.shape)} {xb.dtype}); they cannot be concatenated in time")
        return torch.cat([xa, xb], 0), torch.tensor(ya % 10 + yb % 10, dtype=torch.int64)
