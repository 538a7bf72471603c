"""numba kernels of the event-driven dense layer (imported lazily by :mod:`.linear_numba`; numba is imported here).

``X: [R, C_in]`` (rows = time steps x batch), ``WT = W^T: [C_in, C_out]`` contiguous, so the synapses of one input
are one contiguous row. The nonzero inputs are found in two passes: :func:`scan` writes a bit mask per 8 inputs (a
vectorised compare, packed by a multiply), counts each row's nonzeros and those that are not 1; :func:`forward_events`
lists the set bits of a row (``ptr[r] .. ptr[r + 1]`` into ``cols``, ascending input index; with their values in
``vals`` unless every nonzero input is 1, as spikes are) and sums the weight rows of the list. The weight gradient
regroups the list by row block and input (:func:`transpose_events`, rows ascending) and sums the output-gradient
rows of each input's list (one partial sum per row block, then added). Both sums are gathers::

    out[u, :] = init + sum_{e in ptr[u] .. ptr[u + 1]} vals[e] src[idx[e], :]       (e ascending; vals = 1 if binary)

    forward:  Y = gather(ptr, cols, vals, WT, init = b)
    weight:   dL/dW^T = gather(ptr_T, rows, vals_T, dL/dY, init = 0)

Four list entries are added per pass over the output row (``o = o + v0 s0 + v1 s1 + v2 s2 + v3 s3``, evaluated left
to right: the same sequence of roundings as one entry at a time), so the output row is loaded and stored once per four
entries. ``fastmath={"contract"}`` lets LLVM fuse a multiply-add (one rounding instead of two: exact for spike values
0/1, and fixed at compile time).

The listing writes each mask byte's 8 candidate positions unconditionally (from a table) into a row buffer and
advances by the byte's number of set bits: no data-dependent branches. Values are read with the same candidate
positions, never through the just-written positions (a load that reads part of a pending vector store stalls;
measured 2.7 ms of 4.4 ms).

Every parallel kernel is serial (``nogil=True``) over a range of units ``[c_begin * chunk, c_end * chunk)`` (rows,
or inputs) run on spikelib's kernel threads (:mod:`.threads`); no two threads write the same element, and each
element's sum runs in a fixed order whatever the number of threads, so results are reproducible.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.extending import intrinsic

_FLAGS = dict(nogil=True, cache=True, boundscheck=False)
_MATH = dict(_FLAGS, fastmath={"contract"})


def _bit_positions() -> np.ndarray:
    """Row ``m`` lists the set bits of the byte ``m`` in ascending order (the rest of the row repeats the last)."""
    table = np.zeros((256, 8), dtype=np.int32)
    for m in range(256):
        bits = [u for u in range(8) if m >> u & 1] or [0]
        table[m] = bits + [bits[-1]] * (8 - len(bits))
    return table


_BIT_POSITIONS = _bit_positions()
_BIT_COUNTS = np.array([bin(m).count("1") for m in range(256)], dtype=np.int64)


@intrinsic
def _popcount(typingctx, x):  # pragma: no cover - compiled
    """Number of set bits (LLVM ``ctpop``)."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return x(x), codegen


@numba.njit(**_FLAGS)
def scan(x, masks, counts, others, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """Bit ``u`` of ``masks[r, b]`` says ``x[r, 8 b + u] != 0``; ``counts[r]`` = nonzeros of row ``r``, ``others[r]``
    = those that are not 1.

    A vectorised compare writes one 0/1 byte per input; every 8 bytes are packed into one mask byte by a multiply
    (``0x0102040810204080`` moves byte ``u``'s low bit to bit ``56 + u``, with no carries between them)."""
    R, C = x.shape
    n_bytes = masks.shape[1]
    flags = np.zeros(n_bytes * 8, dtype=np.uint8)
    words = flags.view(np.uint64)
    magic = np.uint64(0x0102040810204080)
    shift = np.uint64(56)
    for r in range(c_begin * chunk, min(R, c_end * chunk)):
        xr = x[r]
        n = 0
        o = 0
        for j in range(C):
            v = xr[j]
            f = np.uint8(v != 0)
            flags[j] = f
            n += f
            o += (v != 0) & (v != 1)
        mr = masks[r]
        for b in range(n_bytes):
            mr[b] = np.uint8((words[b] * magic) >> shift)
        counts[r] = n
        others[r] = o


@numba.njit(**_FLAGS)
def prefix(counts):  # pragma: no cover - compiled
    """Exclusive prefix sums of ``counts`` (``len(counts) + 1`` entries, the last one the total)."""
    ptr = np.empty(counts.shape[0] + 1, dtype=np.int64)
    total = 0
    for r in range(counts.shape[0]):
        ptr[r] = total
        total += counts[r]
    ptr[counts.shape[0]] = total
    return ptr


@numba.njit(inline="always", **_MATH)
def _gather_ones(o, idx, src, e, end):  # pragma: no cover - compiled
    """``o += sum_{e <= i < end} src[idx[i]]`` (binary inputs: every value is 1)."""
    n = o.shape[0]
    while e + 4 <= end:
        s0 = src[idx[e]]
        s1 = src[idx[e + 1]]
        s2 = src[idx[e + 2]]
        s3 = src[idx[e + 3]]
        for q in range(n):
            o[q] = o[q] + s0[q] + s1[q] + s2[q] + s3[q]
        e += 4
    while e < end:
        s = src[idx[e]]
        for q in range(n):
            o[q] = o[q] + s[q]
        e += 1


@numba.njit(inline="always", **_MATH)
def _gather_values(o, idx, vals, src, e, end):  # pragma: no cover - compiled
    """``o += sum_{e <= i < end} vals[i] src[idx[i]]``."""
    n = o.shape[0]
    while e + 4 <= end:
        v0 = vals[e]
        v1 = vals[e + 1]
        v2 = vals[e + 2]
        v3 = vals[e + 3]
        s0 = src[idx[e]]
        s1 = src[idx[e + 1]]
        s2 = src[idx[e + 2]]
        s3 = src[idx[e + 3]]
        for q in range(n):
            o[q] = o[q] + v0 * s0[q] + v1 * s1[q] + v2 * s2[q] + v3 * s3[q]
        e += 4
    while e < end:
        v = vals[e]
        s = src[idx[e]]
        for q in range(n):
            o[q] = o[q] + v * s[q]
        e += 1


@numba.njit(inline="always", **_FLAGS)
def _list_row(mr, lc):  # pragma: no cover - compiled
    """Write the set bits of the mask bytes ``mr`` to ``lc`` (ascending); returns their number."""
    k = 0
    for b in range(mr.shape[0]):
        m = mr[b]
        base = np.int32(b * 8)
        for u in range(8):
            lc[k + u] = base + _BIT_POSITIONS[m, u]
        k += _BIT_COUNTS[m]
    return k


@numba.njit(inline="always", **_FLAGS)
def _list_values(mr, xr, lv):  # pragma: no cover - compiled
    """The values at the set bits of ``mr`` (read through the table, not through the listed positions)."""
    last = xr.shape[0] - 1
    k = 0
    for b in range(mr.shape[0]):
        m = mr[b]
        base = np.int32(b * 8)
        for u in range(8):
            lv[k + u] = xr[min(base + _BIT_POSITIONS[m, u], last)]
        k += _BIT_COUNTS[m]


@numba.njit(inline="always", **_FLAGS)
def _init_row(yr, bias, has_bias):  # pragma: no cover - compiled
    if has_bias:
        for q in range(yr.shape[0]):
            yr[q] = bias[q]
    else:
        for q in range(yr.shape[0]):
            yr[q] = 0


@numba.njit(**_MATH)
def forward_ones(x, masks, ptr, wt, bias, has_bias, cols, y, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """Binary inputs: list the nonzero inputs of rows ``[lo, hi)`` (``ptr`` from :func:`prefix` of :func:`scan`'s
    counts) and compute ``y[r] = bias + sum WT[cols]``. A row is listed into a local buffer (the unconditional
    writes run up to 7 entries past its end) and copied to its place."""
    R = x.shape[0]
    lc = np.empty(masks.shape[1] * 8 + 8, dtype=np.int32)
    for r in range(c_begin * chunk, min(R, c_end * chunk)):
        k = _list_row(masks[r], lc)
        p0 = ptr[r]
        for e in range(k):
            cols[p0 + e] = lc[e]
        yr = y[r]
        _init_row(yr, bias, has_bias)
        _gather_ones(yr, lc, wt, 0, k)


@numba.njit(**_MATH)
def forward_values(x, masks, ptr, wt, bias, has_bias, cols, vals, y, chunk, c_begin,
                   c_end):  # pragma: no cover - compiled
    """:func:`forward_ones` for any nonzero values: ``y[r] = bias + sum vals WT[cols]``."""
    R = x.shape[0]
    lc = np.empty(masks.shape[1] * 8 + 8, dtype=np.int32)
    lv = np.empty(masks.shape[1] * 8 + 8, dtype=vals.dtype)
    for r in range(c_begin * chunk, min(R, c_end * chunk)):
        k = _list_row(masks[r], lc)
        _list_values(masks[r], x[r], lv)
        p0 = ptr[r]
        for e in range(k):
            cols[p0 + e] = lc[e]
            vals[p0 + e] = lv[e]
        yr = y[r]
        _init_row(yr, bias, has_bias)
        _gather_values(yr, lc, lv, wt, 0, k)


@numba.njit(**_FLAGS)
def transpose_events(ptr, cols, vals, binary, c_in, block_rows, ptr_t, rows, vals_t):  # pragma: no cover - compiled
    """The row lists regrouped by (row block, input): the events of input ``j`` in rows ``[blk * block_rows,
    (blk + 1) * block_rows)`` are ``ptr_t[blk * c_in + j] .. ptr_t[blk * c_in + j + 1]`` into ``rows`` / ``vals_t``,
    rows ascending (a counting sort; ``ptr_t`` has ``n_blocks * c_in + 1`` entries)."""
    R = ptr.shape[0] - 1
    n = ptr_t.shape[0]
    for u in range(n):
        ptr_t[u] = 0
    for r in range(R):
        base = (r // block_rows) * c_in + 1
        for e in range(ptr[r], ptr[r + 1]):
            ptr_t[base + cols[e]] += 1
    for u in range(n - 1):
        ptr_t[u + 1] += ptr_t[u]
    fill = ptr_t[:n - 1].copy()
    for r in range(R):
        base = (r // block_rows) * c_in
        for e in range(ptr[r], ptr[r + 1]):
            u = base + cols[e]
            k = fill[u]
            rows[k] = r
            if not binary:
                vals_t[k] = vals[e]
            fill[u] = k + 1


@numba.njit(**_MATH)
def grad_weight_ones(ptr_t, rows, gy, n_blocks, gwt, part, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``gwt[j] = sum over the events of input j of dL/dy[row]`` (binary inputs) for the inputs ``j`` in
    ``[lo, hi)``, one row block at a time (that block of ``dL/dy`` stays in cache while every input of the range uses
    it); each block's sum is formed in ``part`` (one row per thread) and then added (pairs partial sums, as blocked
    products do)."""
    c_in = gwt.shape[0]
    lo = c_begin * chunk
    hi = min(c_in, c_end * chunk)
    acc = part[c_begin]
    for j in range(lo, hi):
        g = gwt[j]
        for q in range(g.shape[0]):
            g[q] = 0
    for blk in range(n_blocks):
        for j in range(lo, hi):
            u = blk * c_in + j
            if ptr_t[u] == ptr_t[u + 1]:
                continue
            for q in range(acc.shape[0]):
                acc[q] = 0
            _gather_ones(acc, rows, gy, ptr_t[u], ptr_t[u + 1])
            g = gwt[j]
            for q in range(acc.shape[0]):
                g[q] += acc[q]


@numba.njit(**_MATH)
def grad_weight_values(ptr_t, rows, vals_t, gy, n_blocks, gwt, part, chunk, c_begin,
                       c_end):  # pragma: no cover - compiled
    """:func:`grad_weight_ones` for any nonzero values: ``gwt[j] = sum vals dL/dy[row]``."""
    c_in = gwt.shape[0]
    lo = c_begin * chunk
    hi = min(c_in, c_end * chunk)
    acc = part[c_begin]
    for j in range(lo, hi):
        g = gwt[j]
        for q in range(g.shape[0]):
            g[q] = 0
    for blk in range(n_blocks):
        for j in range(lo, hi):
            u = blk * c_in + j
            if ptr_t[u] == ptr_t[u + 1]:
                continue
            for q in range(acc.shape[0]):
                acc[q] = 0
            _gather_values(acc, rows, vals_t, gy, ptr_t[u], ptr_t[u + 1])
            g = gwt[j]
            for q in range(acc.shape[0]):
                g[q] += acc[q]
