"""numba kernels of the integer-delay synapses (imported lazily by :mod:`.delay_numba`; numba is imported here).

Layout: channel-major, ``xT[i] = x[:, :, i]`` flattened over ``(t, b)`` (length ``T B``), ``yT[j]`` likewise. A
synapse ``(j, i)`` of delay ``d`` adds ``w[j, i] xT[i, : (T - d) B]`` to ``yT[j, d B :]``: one contiguous,
vectorisable multiply-add of ``(T - d) B`` elements, whatever ``D_max`` is. Outputs are split into blocks of
``BLOCK`` rows over threads (``prange``), so each block reads every input row once and writes only its own rows.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

BLOCK = 8


@numba.njit(parallel=True, cache=True)
def forward(xT, w, d, T, B, yT):  # pragma: no cover - compiled
    c_out, c_in = w.shape
    n_blocks = (c_out + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        j0 = blk * BLOCK
        j1 = min(c_out, j0 + BLOCK)
        for j in range(j0, j1):
            yT[j, :] = 0
        for i in range(c_in):
            xi = xT[i]
            for j in range(j0, j1):
                dd = d[j, i]
                if dd >= T:
                    continue
                wv = w[j, i]
                n = (T - dd) * B
                ys = yT[j, dd * B:]  # a view: indices below start at 0, so the loop vectorises
                for k in range(n):
                    ys[k] += wv * xi[k]


@numba.njit(parallel=True, cache=True)
def backward_x(gT, w, d, T, B, gxT):  # pragma: no cover - compiled
    c_out, c_in = w.shape
    n_blocks = (c_in + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        i0 = blk * BLOCK
        i1 = min(c_in, i0 + BLOCK)
        for i in range(i0, i1):
            gxT[i, :] = 0
        for j in range(c_out):
            gj = gT[j]
            for i in range(i0, i1):
                dd = d[j, i]
                if dd >= T:
                    continue
                wv = w[j, i]
                n = (T - dd) * B
                gs = gj[dd * B:]
                gi = gxT[i]
                for k in range(n):
                    gi[k] += wv * gs[k]


@numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def backward_w(gT, xT, d, T, B, gw):  # pragma: no cover - compiled
    c_out, c_in = gw.shape
    for j in prange(c_out):
        gj = gT[j]
        zero = np.zeros(1, dtype=gw.dtype)
        for i in range(c_in):
            dd = d[j, i]
            if dd >= T:
                gw[j, i] = 0
                continue
            n = (T - dd) * B
            gs = gj[dd * B:]
            xi = xT[i]
            acc = zero[0]
            for k in range(n):
                acc += gs[k] * xi[k]
            gw[j, i] = acc
