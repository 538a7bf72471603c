"""numba kernels of the Winograd ``F(2x2, 3x3)`` transforms (imported lazily by :mod:`.winograd_numba`, which holds
the equations).

Layouts: ``x[n, c]`` is an ``H x W`` plane (row-major); the transformed tiles are ``V[k, c P + n T + t]`` (row ``k``
of a ``[16, C P + pad]`` buffer: ``P = N T`` columns per channel, the padding keeps the 16 rows from starting at
addresses 4 KiB apart, where they would share the first-level cache's sets and evict each other) with
``k = 4 i + j`` the position in a 4x4 tile and ``t = ty TX + tx`` the tile (``T = TY TX`` tiles per image, tile
``(ty, tx)`` covering output rows ``2 ty, 2 ty + 1`` and columns ``2 tx, 2 tx + 1``; its 4x4 input tile starts at row
``2 ty - 1``, column ``2 tx - 1`` of the image: the zero padding of one pixel). Each kernel copies a plane into a
zero-bordered buffer first, so that the loops over the tiles have no bounds to test: the transforms are separable,
a pass over a tile row's rows (element-wise over the columns) and then a pass over its tiles (contiguous in ``tx``).
Every kernel is serial (``nogil=True``) over the channels of its chunk range, and for each channel over the ``N``
images in turn, so that it writes (or reads) each of the 16 rows ``V[k, c]`` from start to end;
:func:`spikelib.kernels.cpu.threads.run_chunked` runs disjoint ranges on several threads, and no two channels write
the same element. (Measured on one thread, the input transform of ``[8, 768, 8, 8]``: 3.5 ms running over the planes
in ``n C + c`` order, which writes 16 scattered pieces of ``TX`` values per tile row; 2.8 ms over the channels with
unpadded rows; 1.0-1.7 ms with the padding.)
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def input_transform(x, v, tiles_x, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``V = B^T d B`` of every 4x4 input tile ``d`` of the planes in the chunk range."""
    images, channels, h, w = x.shape
    tiles_y = (h + 1) // 2
    per_image = tiles_y * tiles_x
    columns = images * per_image
    width = 2 * tiles_x + 2
    xp = np.zeros((2 * tiles_y + 2, width), x.dtype)  # the plane, one zero pixel around (and one more if odd)
    s = np.empty((4, width), x.dtype)
    for c in range(c_begin * chunk, min(channels, c_end * chunk)):
        for n in range(images):
            for row in range(h):
                for col in range(w):
                    xp[row + 1, col + 1] = x[n, c, row, col]
            for ty in range(tiles_y):
                r = 2 * ty
                for col in range(width):  # B^T d, over every column of the tile row
                    a0 = xp[r, col]
                    a1 = xp[r + 1, col]
                    a2 = xp[r + 2, col]
                    a3 = xp[r + 3, col]
                    s[0, col] = a0 - a2
                    s[1, col] = a1 + a2
                    s[2, col] = a2 - a1
                    s[3, col] = a1 - a3
                q = c * columns + n * per_image + ty * tiles_x
                for i in range(4):  # (B^T d) B, tile by tile
                    for tx in range(tiles_x):
                        b0 = s[i, 2 * tx]
                        b1 = s[i, 2 * tx + 1]
                        b2 = s[i, 2 * tx + 2]
                        b3 = s[i, 2 * tx + 3]
                        v[4 * i, q + tx] = b0 - b2
                        v[4 * i + 1, q + tx] = b1 + b2
                        v[4 * i + 2, q + tx] = b2 - b1
                        v[4 * i + 3, q + tx] = b1 - b3


@numba.njit(nogil=True, cache=True)
def output_transform(m, bias, y, tiles_x, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``y = A^T M A + b`` of every tile of the output planes in the chunk range (``bias`` of ``C_out`` values)."""
    images, channels, h, w = y.shape
    tiles_y = (h + 1) // 2
    per_image = tiles_y * tiles_x
    columns = images * per_image
    width = 2 * tiles_x
    yp = np.empty((2 * tiles_y, width), y.dtype)
    r = np.empty((2, 4, tiles_x), y.dtype)
    for o in range(c_begin * chunk, min(channels, c_end * chunk)):
        b = bias[o]
        for n in range(images):
            for ty in range(tiles_y):
                q = o * columns + n * per_image + ty * tiles_x
                for j in range(4):  # A^T M, tile by tile
                    for tx in range(tiles_x):
                        m0 = m[j, q + tx]
                        m1 = m[4 + j, q + tx]
                        m2 = m[8 + j, q + tx]
                        m3 = m[12 + j, q + tx]
                        r[0, j, tx] = m0 + m1 + m2
                        r[1, j, tx] = m1 - m2 - m3
                for i in range(2):  # (A^T M) A
                    for tx in range(tiles_x):
                        yp[2 * ty + i, 2 * tx] = r[i, 0, tx] + r[i, 1, tx] + r[i, 2, tx] + b
                        yp[2 * ty + i, 2 * tx + 1] = r[i, 1, tx] - r[i, 2, tx] - r[i, 3, tx] + b
            for row in range(h):
                for col in range(w):
                    y[n, o, row, col] = yp[row, col]


@numba.njit(nogil=True, cache=True)
def output_adjoint(g, dm, tiles_x, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``dM = A G A^T`` of every 2x2 output-gradient tile ``G`` (zeros outside the output)."""
    images, channels, h, w = g.shape
    tiles_y = (h + 1) // 2
    per_image = tiles_y * tiles_x
    columns = images * per_image
    width = 2 * tiles_x
    gp = np.zeros((2 * tiles_y, width), g.dtype)  # the plane (a zero row and column more if odd)
    s = np.empty((4, width), g.dtype)
    for o in range(c_begin * chunk, min(channels, c_end * chunk)):
        for n in range(images):
            for row in range(h):
                for col in range(w):
                    gp[row, col] = g[n, o, row, col]
            for ty in range(tiles_y):
                for col in range(width):  # A G, over every column of the tile row
                    a0 = gp[2 * ty, col]
                    a1 = gp[2 * ty + 1, col]
                    s[0, col] = a0
                    s[1, col] = a0 + a1
                    s[2, col] = a0 - a1
                    s[3, col] = -a1
                q = o * columns + n * per_image + ty * tiles_x
                for i in range(4):  # (A G) A^T, tile by tile
                    for tx in range(tiles_x):
                        b0 = s[i, 2 * tx]
                        b1 = s[i, 2 * tx + 1]
                        dm[4 * i, q + tx] = b0
                        dm[4 * i + 1, q + tx] = b0 + b1
                        dm[4 * i + 2, q + tx] = b0 - b1
                        dm[4 * i + 3, q + tx] = -b1


@numba.njit(nogil=True, cache=True)
def input_adjoint(dv, gx, tiles_x, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``gx = sum over tiles of B dV B^T`` placed at each tile's input position (the overlapping tiles added, the
    padding dropped)."""
    images, channels, h, w = gx.shape
    tiles_y = (h + 1) // 2
    per_image = tiles_y * tiles_x
    columns = images * per_image
    width = 2 * tiles_x + 2
    gp = np.empty((2 * tiles_y + 2, width), gx.dtype)
    z = np.empty((4, width), gx.dtype)  # a tile row's dV B^T, its tiles' columns side by side (overlaps added)
    for c in range(c_begin * chunk, min(channels, c_end * chunk)):
        for n in range(images):
            gp[:] = 0
            for ty in range(tiles_y):
                q = c * columns + n * per_image + ty * tiles_x
                for i in range(4):  # dV B^T, tile by tile
                    z[i, :] = 0
                    for tx in range(tiles_x):
                        v0 = dv[4 * i, q + tx]
                        v1 = dv[4 * i + 1, q + tx]
                        v2 = dv[4 * i + 2, q + tx]
                        v3 = dv[4 * i + 3, q + tx]
                        z[i, 2 * tx] += v0
                        z[i, 2 * tx + 1] += v1 - v2 + v3
                        z[i, 2 * tx + 2] += v1 + v2 - v0
                        z[i, 2 * tx + 3] -= v3
                r = 2 * ty
                for col in range(width):  # B (dV B^T), added into the four rows the tile row read
                    z0 = z[0, col]
                    z1 = z[1, col]
                    z2 = z[2, col]
                    z3 = z[3, col]
                    gp[r, col] += z0
                    gp[r + 1, col] += z1 - z2 + z3
                    gp[r + 2, col] += z1 + z2 - z0
                    gp[r + 3, col] -= z3
            for row in range(h):
                for col in range(w):
                    gx[n, c, row, col] = gp[row + 1, col + 1]


@numba.njit(nogil=True, cache=True)
def weight_transform(w, u, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``U[k, f] = (G W_f G^T)[k]`` of the filters ``w[f]`` (3x3, ``f = o C_in + c``) in the chunk range."""
    filters = w.shape[0]
    for f in range(c_begin * chunk, min(filters, c_end * chunk)):
        a0, a1, a2 = w[f, 0, 0], w[f, 0, 1], w[f, 0, 2]
        b0, b1, b2 = w[f, 1, 0], w[f, 1, 1], w[f, 1, 2]
        c0, c1, c2 = w[f, 2, 0], w[f, 2, 1], w[f, 2, 2]
        _filter_row(u, 0, f, a0, a1, a2)  # the rows of G W, each times G^T
        _filter_row(u, 4, f, (a0 + b0 + c0) * 0.5, (a1 + b1 + c1) * 0.5, (a2 + b2 + c2) * 0.5)
        _filter_row(u, 8, f, (a0 - b0 + c0) * 0.5, (a1 - b1 + c1) * 0.5, (a2 - b2 + c2) * 0.5)
        _filter_row(u, 12, f, c0, c1, c2)


@numba.njit(nogil=True, cache=True, inline="always")
def _filter_row(u, k, f, t0, t1, t2):  # pragma: no cover - compiled
    u[k, f] = t0
    u[k + 1, f] = (t0 + t1 + t2) * 0.5
    u[k + 2, f] = (t0 - t1 + t2) * 0.5
    u[k + 3, f] = t2


@numba.njit(nogil=True, cache=True)
def weight_adjoint(du, gw, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``gw[f] = G^T dU[:, f] G`` (3x3) of the filters in the chunk range."""
    filters = gw.shape[0]
    for f in range(c_begin * chunk, min(filters, c_end * chunk)):
        p0, p1, p2 = _row_times_g(du, 0, f)  # the rows of dU G
        q0, q1, q2 = _row_times_g(du, 4, f)
        r0, r1, r2 = _row_times_g(du, 8, f)
        s0, s1, s2 = _row_times_g(du, 12, f)
        gw[f, 0, 0] = p0 + (q0 + r0) * 0.5  # G^T (dU G)
        gw[f, 0, 1] = p1 + (q1 + r1) * 0.5
        gw[f, 0, 2] = p2 + (q2 + r2) * 0.5
        gw[f, 1, 0] = (q0 - r0) * 0.5
        gw[f, 1, 1] = (q1 - r1) * 0.5
        gw[f, 1, 2] = (q2 - r2) * 0.5
        gw[f, 2, 0] = (q0 + r0) * 0.5 + s0
        gw[f, 2, 1] = (q1 + r1) * 0.5 + s1
        gw[f, 2, 2] = (q2 + r2) * 0.5 + s2


@numba.njit(nogil=True, cache=True, inline="always")
def _row_times_g(du, k, f):  # pragma: no cover - compiled
    x0, x1, x2, x3 = du[k, f], du[k + 1, f], du[k + 2, f], du[k + 3, f]
    return x0 + (x1 + x2) * 0.5, (x1 - x2) * 0.5, (x1 + x2) * 0.5 + x3
