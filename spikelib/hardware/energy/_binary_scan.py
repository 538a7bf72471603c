"""One pass over a float32 tensor that tests exactly whether it holds binary spikes and counts them (numba).

The energy counter tests every layer input that no neuron layer produced (typically the network's input) for spikes
on every call. The portable test (:func:`spikelib.hardware.energy.counters.spike_stats`) takes three torch
reductions (``aminmax``, ``frac().sum()`` and ``sum``, the second one writing a temporary as large as the input).
For the common case, binary float32 spikes, this kernel reads the input once and writes nothing: it compares the bit
pattern of every element with those of ``+0.0`` and ``1.0`` (exact: two floats are equal exactly when their bits are,
except ``-0.0``, which is simply reported as "not binary" and left to the portable test) and counts the ones.

It stops after the first block that holds any other value, so a real-valued input costs one block before the
portable test takes over. Imported lazily by the counters; without numba the portable test is used alone.
"""

from __future__ import annotations

from typing import Optional

import numba
import numpy as np
import torch

__all__ = ["binary_spike_count"]

_ONE_BITS = 0x3F800000  # IEEE 754 single precision 1.0
_BLOCK = 1 << 14  # elements per block between early-exit checks (64 KiB of float32)
_MIN_ELEMENTS = 1 << 12  # below this, the three torch reductions are as fast as a call into numba


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scan(bits: np.ndarray, block: int) -> int:  # pragma: no cover - compiled
    """Number of nonzero elements, or -1 as soon as a block holds a value other than +0.0 and 1.0.

    Written so that LLVM vectorises the inner loop: integer compares and sums over a slice, no branch (an inner
    loop over ``range(start, stop)`` of the whole array measured 5x slower: it was not vectorised).
    """
    total = 0
    for start in range(0, bits.shape[0], block):
        seg = bits[start:start + block]
        other = 0
        count = 0
        for i in range(seg.shape[0]):
            b = seg[i]
            nonzero = b != 0
            count += nonzero
            other |= nonzero & (b != _ONE_BITS)
        if other:
            return -1
        total += count
    return total


def binary_spike_count(x: torch.Tensor) -> Optional[int]:
    """The number of spikes of ``x`` when it is a contiguous float32 CPU tensor of exact 0.0/1.0 values, else None
    (not binary, another dtype or device, or too small to be worth it: use the portable test)."""
    if (x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous()
            or x.numel() < _MIN_ELEMENTS):
        return None
    ones = _scan(x.detach().reshape(-1).view(torch.int32).numpy(), _BLOCK)
    return None if ones < 0 else int(ones)
