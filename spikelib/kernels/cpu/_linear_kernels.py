"""numba kernels of the event-driven dense layer (imported lazily by :mod:`.linear_numba`; numba is imported here).

``X: [R, C_in]`` (rows = time steps x batch), ``WT = W^T: [C_in, C_out]`` contiguous, so the synapses of one input
are one contiguous row. The nonzero inputs are found in two passes: :func:`scan` writes a bit mask per 8 inputs (a
vectorised compare, packed by a multiply), counts each row's nonzeros and those that are not 1;
:func:`forward_ones` / :func:`forward_values` list the set bits of a row (``ptr[r] .. ptr[r + 1]`` into ``cols``,
ascending input index; with their values in ``vals`` unless every nonzero input is 1, as spikes are) and sum the
weight rows of the list. The weight gradient
regroups the list by row block and input (:func:`transpose_events`, rows ascending) and sums the output-gradient
rows of each input's list (one partial sum per row block, then added). Both sums are gathers::

    out[u, :] = init + sum_{e in ptr[u] .. ptr[u + 1]} vals[e] src[idx[e], :]       (e ascending; vals = 1 if binary)

    forward:  Y = gather(ptr, cols, vals, WT, init = b)
    weight:   dL/dW^T = gather(ptr_T, rows, vals_T, dL/dY, init = 0)

Four list entries are added per pass over the output row (``o = o + v0 s0 + v1 s1 + v2 s2 + v3 s3``, evaluated left
to right: the same sequence of roundings as one entry at a time), so the output row is loaded and stored once per four
entries. ``fastmath={"contract"}`` lets LLVM fuse a multiply-add (one rounding instead of two: exact for spike values
0/1, and fixed at compile time).

The listing reads a row's mask as 64-bit words (the mask rows are padded to whole words with zeros) and takes the
set bits of each word lowest first (count trailing zeros, clear the lowest bit): work in proportion to the nonzero
inputs plus one step per 64 inputs. (Writing each mask byte's 8 candidate positions from a table, branch-free, took
2.7 ms for 6400 rows of 704 inputs on one core at any density; the word loop 0.7 ms at 2.5% nonzero, 1.3 ms at 15%.)
Values are read at the column just computed (in a register), not through the list being written.

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


@intrinsic
def _popcount(typingctx, x):  # pragma: no cover - compiled
    """Number of set bits (LLVM ``ctpop``)."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return x(x), codegen


@intrinsic
def _trailing_zeros(typingctx, x):  # pragma: no cover - compiled
    """Index of the lowest set bit of a nonzero integer (LLVM ``cttz``; undefined for zero, never called with it)."""
    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))
    return x(x), codegen


@numba.njit(**_FLAGS)
def scan(x, masks, counts, others, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """Bit ``u`` of ``masks[r, b]`` says ``x[r, 8 b + u] != 0``; ``counts[r]`` = nonzeros of row ``r``, ``others[r]``
    = those that are not 1. Bytes past the row's ``C`` inputs (``masks`` rows may be padded, to whole 64-bit words
    for the listing) are zero.

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
def _list_row(mw, lc):  # pragma: no cover - compiled
    """Write the set bits of the mask words ``mw`` (uint64, bit ``u`` of word ``b`` is input ``64 b + u``) to ``lc``
    (ascending); returns their number."""
    k = 0
    one = np.uint64(1)
    for b in range(mw.shape[0]):
        w = mw[b]
        base = np.int32(b * 64)
        while w:
            lc[k] = base + np.int32(_trailing_zeros(w))
            k += 1
            w &= w - one
    return k


@numba.njit(inline="always", **_FLAGS)
def _list_row_values(mw, xr, lc, lv):  # pragma: no cover - compiled
    """:func:`_list_row` and the listed inputs' values into ``lv``."""
    k = 0
    one = np.uint64(1)
    for b in range(mw.shape[0]):
        w = mw[b]
        base = np.int32(b * 64)
        while w:
            c = base + np.int32(_trailing_zeros(w))
            lc[k] = c
            lv[k] = xr[c]
            k += 1
            w &= w - one
    return k


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
    """Binary inputs: list the nonzero inputs of rows ``[lo, hi)`` (``masks``: :func:`scan`'s masks viewed as
    uint64 words; ``ptr`` from :func:`prefix` of its counts) and compute ``y[r] = bias + sum WT[cols]``. A row is
    listed into a local buffer and copied to its place."""
    R = x.shape[0]
    lc = np.empty(masks.shape[1] * 64, dtype=np.int32)
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
    lc = np.empty(masks.shape[1] * 64, dtype=np.int32)
    lv = np.empty(masks.shape[1] * 64, dtype=vals.dtype)
    for r in range(c_begin * chunk, min(R, c_end * chunk)):
        k = _list_row_values(masks[r], x[r], lc, lv)
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
