"""numba kernel of ``index_add_rows`` (imported lazily by :mod:`.rows_numba`; numba is imported here)."""

from __future__ import annotations

import numba


@numba.njit(nogil=True, cache=True)
def add_rows(out, idx, src):  # pragma: no cover - compiled
    """``out[idx[r], :] += src[r, :]`` for every row ``r``, in order (serial). ``out: [N, C]``, ``src: [P, C]``,
    ``idx: [P]`` int64. Returns the position of the first index outside ``[0, N)`` (rows before it are added), or
    ``-1`` when every index is valid."""
    n, c = out.shape
    for r in range(idx.shape[0]):
        o = idx[r]
        if o < 0 or o >= n:
            return r
        row = out[o]
        s = src[r]
        for j in range(c):
            row[j] += s[j]
    return -1
