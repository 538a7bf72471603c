"""Augmentations of binned spike inputs from SNN-delays: time masking, neuron (channel) masking, time-axis CutMix.

Source: Thvnvtos/SNN-delays, ``datasets.py`` (``TimeNeurons_mask_aug``, ``CutMix``) with the values of
``best_config_SHD.py`` (``TN_mask_aug_proba = 0.65``, ``time_mask_size = max_delay // 3``,
``neuron_mask_size = n_inputs // 5``, ``cutmix_aug_proba = 0.5``). Our own implementation of the same operations
(:func:`snn_delays_augmentations` builds the published settings).

For a sample ``x`` of shape ``[T, C]`` (or each sample of a batch ``[B, T, C]``):

``TimeMask(max_size, p)``
    with probability ``p``: ``s ~ U{0, ..., max_size - 1}``, ``a ~ U{0, ..., T - s}``; ``x[a:a+s, :] = 0``.
``NeuronMask(max_size, p)``
    the same along channels: ``x[:, a:a+s] = 0``.
``CutMix(p)`` (on a batch, with labels)
    for ``i = 0..B-2`` with probability ``p``: ``lam0 ~ U(0, 1)``, ``s = floor(lam0 T)``, ``a ~ U{0, ..., T - s}``;
    ``x'[i, a:a+s] = x[i+1, a:a+s]`` (the partner's *original* steps), ``lam_i = s / T``, ``y_b[i] = y[i+1]``.
    Unmixed samples have ``lam_i = 0``. Targets: ``(1 - lam_i) onehot(y_a[i]) + lam_i onehot(y_b[i])``
    (:func:`soft_targets`), or the equal loss ``(1 - lam) CE(z, y_a) + lam CE(z, y_b)`` (:func:`mix_cross_entropy`).

Differences from the reference, on purpose: the span start is drawn over every position where the span fits
(``0..T - s``; the reference draws ``0..T - max_size - 1`` and fails on sequences shorter than ``max_size``), the
label weight is the exact mixed fraction ``s / T`` (the reference uses ``lam0``, off by the rounding of ``s``), and the
input is never changed in place. Each transform owns a ``numpy`` generator seeded by ``(seed, DataLoader worker
seed)`` on first use in each process, so runs repeat given the seeds and workers do not draw the same masks.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["TimeMask", "NeuronMask", "CutMix", "Compose", "soft_targets", "mix_cross_entropy",
           "snn_delays_augmentations"]


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_p(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"p must be a probability in [0, 1], got {value!r}")
    return float(value)


class _Seeded:
    """A numpy generator per process: ``default_rng([seed, worker_seed])``, created on first use."""

    def __init__(self, seed: Optional[int]) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
        self.seed = seed
        self._rng: Optional[np.random.Generator] = None
        self._pid: Optional[int] = None

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None or self._pid != os.getpid():
            info = torch.utils.data.get_worker_info()
            base = int(torch.initial_seed()) if self.seed is None else self.seed
            entropy = [base] if info is None else [base, int(info.seed) % (2 ** 63)]
            self._rng, self._pid = np.random.default_rng(entropy), os.getpid()
        return self._rng

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_rng"], state["_pid"] = None, None
        return state


def _as_batch(x: torch.Tensor) -> Tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ValueError(f"expected a tensor [T, C] or [B, T, C], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    return (x.unsqueeze(0), True) if x.dim() == 2 else (x, False)


class _SpanMask(_Seeded):
    axis = 0

    def __init__(self, max_size: int, p: float = 0.65, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.max_size = _check_size(max_size, "max_size")
        self.p = _check_p(p)

    def draw(self, length: int) -> Optional[Tuple[int, int]]:
        """Draw one sample's span ``(start, size)`` along an axis of ``length``, or ``None`` (no mask)."""
        rng = self.rng
        if rng.random() >= self.p:
            return None
        size = int(rng.integers(0, self.max_size))
        size = min(size, length)
        return int(rng.integers(0, length - size + 1)), size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch, single = _as_batch(x)
        out = batch.clone()
        for b in range(out.shape[0]):
            span = self.draw(out.shape[1 + self.axis])
            if span is not None:
                start, size = span
                if self.axis == 0:
                    out[b, start:start + size, :] = 0
                else:
                    out[b, :, start:start + size] = 0
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_size={self.max_size}, p={self.p}, seed={self.seed})"


class TimeMask(_SpanMask):
    """Zero a random span of time steps (``[T, C]`` or each sample of ``[B, T, C]``); see the module docstring."""

    axis = 0


class NeuronMask(_SpanMask):
    """Zero a random span of channels (``[T, C]`` or each sample of ``[B, T, C]``); see the module docstring."""

    axis = 1


class Compose:
    """Apply sample transforms in order."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x


class CutMix(_Seeded):
    """Time-axis CutMix on a batch: ``(x [B, T, C], y [B]) -> (x', y_a, y_b, lam [B])``; see the module docstring."""

    def __init__(self, p: float = 0.5, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.p = _check_p(p)

    def draw(self, batch: int, steps: int) -> List[Tuple[int, int, int, int]]:
        """The mixes of one batch: ``(i, j, start, size)`` meaning ``x'[i, start:start+size] = x[j, ...]``."""
        rng = self.rng
        mixes = []
        for i in range(batch - 1):
            if rng.random() < self.p:
                size = int(math.floor(rng.random() * steps))
                mixes.append((i, i + 1, int(rng.integers(0, steps - size + 1)), size))
        return mixes

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"CutMix expects a batch x [B, T, C], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        y = torch.as_tensor(y)
        if y.shape != (x.shape[0],):
            raise ValueError(f"CutMix expects integer labels y [B] = [{x.shape[0]}], got shape {tuple(y.shape)}")
        steps = x.shape[1]
        out = x.clone()
        y_b = y.clone()
        lam = torch.zeros(x.shape[0], dtype=torch.float32)
        for i, j, start, size in self.draw(x.shape[0], steps):
            out[i, start:start + size] = x[j, start:start + size]
            y_b[i] = y[j]
            lam[i] = size / steps
        return out, y, y_b, lam

    def __repr__(self) -> str:
        return f"CutMix(p={self.p}, seed={self.seed})"


def soft_targets(y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(1 - lam) onehot(y_a) + lam onehot(y_b)``, shape ``[B, n_classes]`` (float32)."""
    one_a = torch.nn.functional.one_hot(y_a.long(), n_classes).float()
    one_b = torch.nn.functional.one_hot(y_b.long(), n_classes).float()
    lam = lam.float().unsqueeze(1)
    return (1 - lam) * one_a + lam * one_b


def mix_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mean of ``(1 - lam) CE(logits, y_a) + lam CE(logits, y_b)`` (equal to CE against :func:`soft_targets`)."""
    ce = torch.nn.functional.cross_entropy
    lam = lam.to(logits.dtype)
    return ((1 - lam) * ce(logits, y_a, reduction="none") + lam * ce(logits, y_b, reduction="none")).mean()


def snn_delays_augmentations(n_inputs: int = 140, max_delay: int = 25, seed: Optional[int] = None
                             ) -> Tuple[Compose, CutMix]:
    """The SNN-delays SHD settings: ``(sample transform, batch CutMix)``.

    Time mask ``max_delay // 3`` steps and neuron mask ``n_inputs // 5`` channels, each with probability 0.65;
    CutMix with probability 0.5 (best_config_SHD.py; there ``max_delay = 250 ms // 10 ms``, made odd: 25).
    """
    seeds = (None, None, None) if seed is None else (seed, seed + 1, seed + 2)
    sample = Compose([TimeMask(max(1, max_delay // 3), 0.65, seeds[0]), NeuronMask(max(1, n_inputs // 5), 0.65,
                                                                                   seeds[1])])
    return sample, CutMix(0.5, seeds[2])
