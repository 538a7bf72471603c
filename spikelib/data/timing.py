"""A synthetic task whose classes differ only in the relative spike timing between channels (delays needed).

Each of ``C`` channels fires one pattern spike per sample; class ``y`` fixes the offset of every channel,
``o[y, c] = spacing * pi_y(c)`` with ``pi_y`` a random permutation of ``0..C-1`` (from ``task_seed``). For sample ``n``
of class ``y``::

    onset   s      ~ U{1, ..., T - 2 - (C - 1) spacing}        (absolute timing is uninformative)
    jitter  j_c    = +-1 with probability jitter_prob each, else 0
    spike   x[s + o[y, c] + j_c, c] = 1
    noise   x[t, c] = 1 with probability noise_rate (background spikes)

Every channel fires the same number of pattern spikes in every class, and with ``spacing >= 1`` no two channels of a
pattern fire together (up to jitter), so memoryless neurons (``tau ~ 1`` step) without delays only see isolated
spikes: near chance. A neuron that delays channel ``c`` by ``M - o[y, c]`` sees the whole pattern of class ``y``
coincide at one step; fixed random delays align a few channels by chance; learned delays can align all of them.
Samples are balanced over classes and generated with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import numbers
from typing import Tuple

import numpy as np
import torch

__all__ = ["relative_timing_task"]


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _prob(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def relative_timing_task(
    n_samples: int,
    n_classes: int = 8,
    channels: int = 12,
    spacing: int = 1,
    n_steps: int = 40,
    jitter_prob: float = 0.15,
    noise_rate: float = 0.02,
    seed: int = 0,
    task_seed: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Generate ``(x, y)``: ``x`` float32 ``[N, T, C]`` in {0, 1} (batch first, like a loader's batch), ``y`` int64.

    Args:
        n_samples: number of samples ``N``.
        n_classes: number of classes (distinct timing patterns).
        channels: input channels ``C``.
        spacing: steps between consecutive pattern offsets.
        n_steps: sequence length ``T`` (must hold the pattern with its jitter).
        jitter_prob: probability that a pattern spike moves by one step (either way).
        noise_rate: probability of a background spike per step and channel.
        seed: sample generator seed (train and test sets differ in it).
        task_seed: seed of the class patterns (train and test sets share it).
    """
    n_samples = _int(n_samples, "n_samples", 1)
    n_classes = _int(n_classes, "n_classes", 2)
    channels = _int(channels, "channels", 2)
    spacing = _int(spacing, "spacing", 1)
    n_steps = _int(n_steps, "n_steps", 1)
    jitter_prob = _prob(jitter_prob, "jitter_prob")
    noise_rate = _prob(noise_rate, "noise_rate")
    span = (channels - 1) * spacing
    if n_steps < span + 3:
        raise ValueError(f"n_steps must be >= {span + 3} to hold a pattern of {channels} channels spaced {spacing} "
                         f"apart with jitter, got {n_steps}")
    task_rng = np.random.default_rng(task_seed)
    offsets = np.stack([task_rng.permutation(channels) * spacing for _ in range(n_classes)])
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    x = (rng.random((n_samples, n_steps, channels)) < noise_rate).astype(np.float32)
    onset = rng.integers(1, n_steps - span - 1, size=n_samples)
    jitter = rng.choice([-1, 1], size=(n_samples, channels)) * (rng.random((n_samples, channels)) < jitter_prob)
    times = onset[:, None] + offsets[y] + jitter
    x[np.arange(n_samples)[:, None], times, np.arange(channels)[None, :]] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
