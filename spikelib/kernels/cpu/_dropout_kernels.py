"""numba kernel of ``input_dropout`` (imported lazily by :mod:`.dropout_numba`; numba is imported here)."""

from __future__ import annotations

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@numba.njit(nogil=True, cache=True)
def drop_chunks(x, out, seed, threshold, scale, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``out[i] = x[i] * scale[0]`` where the draw of element ``i`` is at least ``threshold``, else ``x[i] * 0``;
    zeros are copied without a draw. The draw is the top 24 bits of SplitMix64(``seed + (i + 1) * golden``).
    ``x``, ``out``: flat, same dtype; ``scale``: one element of that dtype; chunks ``[c_begin, c_end)`` of
    ``chunk`` elements."""
    n = x.shape[0]
    s = scale[0]
    zero = scale[0] * 0
    for c in range(c_begin, c_end):
        hi = min(n, (c + 1) * chunk)
        for i in range(c * chunk, hi):
            v = x[i]
            if v == 0:
                out[i] = v
                continue
            z = seed + np.uint64(i + 1) * _GOLDEN
            z = (z ^ (z >> np.uint64(30))) * _MIX1
            z = (z ^ (z >> np.uint64(27))) * _MIX2
            z = z ^ (z >> np.uint64(31))
            if np.int64(z >> np.uint64(40)) >= threshold:
                out[i] = v * s
            else:
                out[i] = v * zero
