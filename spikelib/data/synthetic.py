"""A synthetic temporal classification task whose class lies in the ORDER of events, not in spike counts.

``C`` input channels are split into ``G`` contiguous groups (channel ``c`` belongs to group ``g(c) = floor(c G / C)``).
In every sample each group fires exactly one burst; a class is the order in which the groups burst (a permutation
``pi_y`` of ``0..G-1``, fixed by ``task_seed``). For sample ``n`` with label ``y``::

    shift        s      ~ U{0, ..., max_shift}                           (whole-sequence offset)
    jitter       j_k    ~ U{-jitter, ..., jitter}          k = 0..G-1    (per burst)
    onset        o_g    = jitter + s + k D + j_k           where pi_y[k] = g   (D = burst_spacing)
    window       W[t,c] = 1  if  o_g(c) <= t < o_g(c) + L  else 0        (L = burst_length)
    burst spike  B[t,c] ~ Bernoulli(burst_rate)
    kept         K[t,c] ~ Bernoulli(1 - drop_prob)
    background   N[t,c] ~ Bernoulli(noise_rate)
    input        x[t,c] = max(W B K, N)                                  in {0, 1}

Every window lies inside ``[0, T)`` (checked), so the spike count of each channel has the same distribution for
every class: ``count_c = #{t in window: B K or N} + #{t outside: N}``, whose law does not depend on where the window
is. A classifier on per-channel (or total) counts is therefore at chance; the class is only visible in *when* groups
fire (a linear classifier on counts in a few time bins per channel does see it; the random shift ``s`` makes absolute
times less informative than relative ones). With ``burst_spacing < burst_length`` consecutive bursts overlap, so
coincidences between groups (which groups are neighbours in time, and in which order) identify the class.

The class orders are chosen greedily (farthest point, from ``task_seed``) to differ as much as possible in their
sets of neighbouring pairs, and no class is the time reversal of another. Samples are balanced over classes
(``n_samples % n_classes`` classes get one extra sample) and generated with ``numpy.random.default_rng(seed)``, so a
``(seed, task_seed, arguments)`` triple always gives the same tensors. Train and test sets share ``task_seed`` and
differ in ``seed``.
"""

from __future__ import annotations

import itertools
import math
import numbers
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SyntheticTemporalDataset", "make_class_orders"]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_prob(value: object, name: str, upper_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not (0.0 <= v <= 1.0) or (upper_open and v == 1.0) or math.isnan(v):
        raise ValueError(f"{name} must be in [0, 1{')' if upper_open else ']'}, got {value}")
    return v


def _pairs(order: Sequence[int]) -> frozenset:
    """Unordered neighbouring pairs of an order: the coincidences it produces when bursts overlap."""
    return frozenset(frozenset(p) for p in zip(order[:-1], order[1:]))


def make_class_orders(n_classes: int, n_groups: int, task_seed: int = 0) -> List[Tuple[int, ...]]:
    """``n_classes`` burst orders (permutations of ``range(n_groups)``), deterministic in ``task_seed``.

    Farthest-point selection: start from a random order, then repeatedly add the order whose set of neighbouring pairs
    differs most from the closest one already chosen (ties broken at random). An order and its reversal have the same
    pairs, so reversals are never both chosen. At most ``n_groups! / 2`` classes exist.
    """
    n_groups = _check_int(n_groups, "n_groups", 2)
    n_classes = _check_int(n_classes, "n_classes", 2)
    task_seed = _check_int(task_seed, "task_seed", 0)
    if n_groups > 8:
        raise ValueError(f"n_groups must be <= 8 (the orders are enumerated), got {n_groups}")
    limit = math.factorial(n_groups) // 2
    if n_classes > limit:
        raise ValueError(
            f"n_classes must be <= n_groups!/2 = {limit} for n_groups={n_groups} (orders and their reversals are "
            f"one class), got {n_classes}"
        )
    rng = np.random.default_rng(task_seed)
    # One representative per reversal pair: the order whose first element is smaller than its last.
    candidates = [p for p in itertools.permutations(range(n_groups)) if p[0] < p[-1]]
    rng.shuffle(candidates)
    pair_sets = [_pairs(p) for p in candidates]
    chosen = [0]
    min_dist = np.array([len(pair_sets[0] ^ s) for s in pair_sets], dtype=np.int64)
    while len(chosen) < n_classes:
        best = int(np.argmax(min_dist))  # first maximum: candidates were shuffled, so ties are broken at random
        chosen.append(best)
        min_dist = np.minimum(min_dist, [len(pair_sets[best] ^ s) for s in pair_sets])
    return [tuple(int(g) for g in candidates[i]) for i in chosen]


class SyntheticTemporalDataset(Dataset):
    """Permutation-coded burst sequences (see the module docstring for the generative equations).

    Args:
        n_samples: number of samples.
        seed: seed of the samples (shift, jitter, spikes, noise, label order).
        n_classes: number of classes (burst orders).
        n_steps: time steps ``T``.
        n_channels: input channels ``C`` (``>= n_groups``).
        n_groups: channel groups ``G``; each bursts once per sample.
        burst_length: steps ``L`` of a burst window.
        burst_spacing: steps ``D`` between consecutive burst onsets (before jitter); ``D < L`` makes bursts overlap.
        jitter: maximum per-burst onset jitter (steps).
        max_shift: maximum offset of the whole sequence (steps).
        burst_rate: spike probability per step and channel inside a burst window.
        drop_prob: probability that a burst spike is dropped.
        noise_rate: background spike probability per step and channel.
        task_seed: seed of the class orders; keep it equal for train and test sets.

    Items are ``(x, y)`` with ``x: float32 [T, C]`` (0/1) and ``y: int64`` scalar; a DataLoader stacks them to
    ``[B, T, C]`` (batch first); transpose to ``[T, B, C]`` before a spikelib model. ``chance_level`` is
    ``1 / n_classes``.
    """

    item_layout = "time_first"  # items [T, C]: batches stack to [B, T, C] (read by spikelib.hardware.energy)

    def __init__(
        self,
        n_samples: int,
        seed: int = 0,
        *,
        n_classes: int = 10,
        n_steps: int = 80,
        n_channels: int = 50,
        n_groups: int = 5,
        burst_length: int = 10,
        burst_spacing: int = 8,
        jitter: int = 2,
        max_shift: int = 30,
        burst_rate: float = 0.5,
        drop_prob: float = 0.2,
        noise_rate: float = 0.05,
        task_seed: int = 0,
    ) -> None:
        self.n_samples = _check_int(n_samples, "n_samples", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.n_steps = _check_int(n_steps, "n_steps", 1)
        self.n_groups = _check_int(n_groups, "n_groups", 2)
        self.n_channels = _check_int(n_channels, "n_channels", 1)
        if self.n_channels < self.n_groups:
            raise ValueError(f"n_channels must be >= n_groups ({self.n_groups}), got {n_channels}")
        self.burst_length = _check_int(burst_length, "burst_length", 1)
        self.burst_spacing = _check_int(burst_spacing, "burst_spacing", 1)
        self.jitter = _check_int(jitter, "jitter", 0)
        self.max_shift = _check_int(max_shift, "max_shift", 0)
        self.burst_rate = _check_prob(burst_rate, "burst_rate")
        if self.burst_rate == 0.0:
            raise ValueError("burst_rate must be > 0 (otherwise there are no bursts), got 0")
        self.drop_prob = _check_prob(drop_prob, "drop_prob", upper_open=True)
        self.noise_rate = _check_prob(noise_rate, "noise_rate", upper_open=True)
        self.task_seed = _check_int(task_seed, "task_seed", 0)
        self.n_classes = _check_int(n_classes, "n_classes", 2)
        needed = 2 * self.jitter + self.max_shift + (self.n_groups - 1) * self.burst_spacing + self.burst_length
        if needed > self.n_steps:
            raise ValueError(
                f"n_steps must be >= 2*jitter + max_shift + (n_groups-1)*burst_spacing + burst_length = {needed} "
                f"so that every burst lies inside the sequence, got n_steps={self.n_steps}"
            )
        self.class_orders = make_class_orders(self.n_classes, self.n_groups, self.task_seed)
        self._x, self.labels = self._generate()

    @property
    def chance_level(self) -> float:
        """Accuracy of guessing (classes are balanced)."""
        return 1.0 / self.n_classes

    def channel_groups(self) -> np.ndarray:
        """Group index ``g(c)`` of every channel, shape ``[C]``."""
        return (np.arange(self.n_channels) * self.n_groups) // self.n_channels

    def _generate(self) -> Tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(self.seed)
        N, T, C, G = self.n_samples, self.n_steps, self.n_channels, self.n_groups
        labels = rng.permutation(np.arange(N) % self.n_classes)
        orders = np.asarray(self.class_orders, dtype=np.int64)[labels]  # [N, G]: group bursting k-th
        shift = rng.integers(0, self.max_shift, size=(N, 1), endpoint=True)
        jit = rng.integers(-self.jitter, self.jitter, size=(N, G), endpoint=True)
        onset_k = self.jitter + shift + np.arange(G) * self.burst_spacing + jit  # [N, K] onset of the k-th burst
        onset_g = np.empty_like(onset_k)
        np.put_along_axis(onset_g, orders, onset_k, axis=1)  # onset_g[n, orders[n, k]] = onset_k[n, k]
        onset_c = onset_g[:, self.channel_groups()]  # [N, C]
        t = np.arange(T)[None, :, None]
        window = (t >= onset_c[:, None, :]) & (t < onset_c[:, None, :] + self.burst_length)  # [N, T, C]
        burst = rng.random((N, T, C)) < self.burst_rate
        kept = rng.random((N, T, C)) >= self.drop_prob
        noise = rng.random((N, T, C)) < self.noise_rate
        x = (window & burst & kept) | noise
        return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

    def tensors(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """All samples at once: ``x: float32 [N, T, C]`` and ``labels: int64 [N]``."""
        return self._x.to(torch.float32), self.labels.clone()

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -self.n_samples <= index < self.n_samples:
            raise IndexError(f"index {index} out of range for {self.n_samples} samples")
        return self._x[index].to(torch.float32), self.labels[index]

    def __repr__(self) -> str:
        return (f"SyntheticTemporalDataset(n_samples={self.n_samples}, seed={self.seed}, n_classes={self.n_classes}, "
                f"n_steps={self.n_steps}, n_channels={self.n_channels}, n_groups={self.n_groups}, "
                f"task_seed={self.task_seed})")
