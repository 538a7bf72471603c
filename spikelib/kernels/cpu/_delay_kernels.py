"""numba kernels of the integer-delay synapses (imported lazily by :mod:`.delay_numba`; numba is imported here).

Layout: channel-major, ``xT[i] = x[:, :, i]`` flattened over ``(t, b)`` (length ``T B``), ``yT[j]`` likewise. A
synapse ``(j, i)`` of delay ``d`` adds ``w[j, i] xT[i, : (T - d) B]`` to ``yT[j, d B :]``: one contiguous,
vectorisable multiply-add of ``(T - d) B`` elements, whatever ``D_max`` is; output rows are processed in blocks of
``BLOCK``, so each block reads every input row once and writes only its own rows.

Every kernel is serial (``nogil=True``) and works on the units ``[lo, hi)`` of its parallel dimension (output rows,
input channels or batch entries), with ``lo = c_begin * chunk``: :func:`spikelib.kernels.cpu.threads.run_chunked`
runs disjoint ranges on torch's OpenMP threads (or a thread pool; never a second OpenMP runtime, see that module), so
no two threads write the same element.

The event path of the integer delays (:func:`int_event_table`, :func:`int_events_forward`) adds, for every nonzero
``x[s, b, i]``, ``x[s, b, i] w[j, i]`` to ``y[s + d, b, j]`` for each synapse ``(j, d)`` of input ``i`` (a table
sorted by delay); it runs over batch entries, each accumulating in its own contiguous ``[T, C_out]`` buffer.
"""

from __future__ import annotations

import numba
import numpy as np

BLOCK = 8
SCAN = 16  # inputs tested at once for any nonzero bit by int_events_forward


@numba.njit(nogil=True, cache=True)
def forward(xT, w, d, T, B, yT, chunk, c_begin, c_end):  # pragma: no cover - compiled
    c_out, c_in = w.shape
    hi = min(c_out, c_end * chunk)
    for j0 in range(c_begin * chunk, hi, BLOCK):
        j1 = min(hi, j0 + BLOCK)
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


@numba.njit(nogil=True, cache=True)
def backward_x(gT, w, d, T, B, gxT, chunk, c_begin, c_end):  # pragma: no cover - compiled
    c_out, c_in = w.shape
    hi = min(c_in, c_end * chunk)
    for i0 in range(c_begin * chunk, hi, BLOCK):
        i1 = min(hi, i0 + BLOCK)
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


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def backward_w(gT, xT, d, T, B, gw, chunk, c_begin, c_end):  # pragma: no cover - compiled
    c_out, c_in = gw.shape
    for j in range(c_begin * chunk, min(c_out, c_end * chunk)):
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


@numba.njit(nogil=True, cache=True)
def count_nonzero_steps(x, step):  # pragma: no cover - compiled
    """Nonzero elements of ``x[::step]`` for a contiguous ``x: [T, ...]`` (every ``step``-th time step; serial: a
    torch reduction this size would start torch's OpenMP threads, which then spin beside the kernel that follows, see
    :mod:`.threads`)."""
    T = x.shape[0]
    rows = x.reshape(T, x.size // T) if T else x.reshape(0, 0)
    n = 0
    for t in range(0, T, step):
        row = rows[t]
        for k in range(row.size):
            if row[k] != 0:
                n += 1
    return n


@numba.njit(nogil=True, cache=True)
def max_value(a):  # pragma: no cover - compiled
    """The largest element of a contiguous non-empty array (serial, as :func:`count_nonzero_steps`)."""
    flat = a.reshape(-1)
    m = flat[0]
    for k in range(1, flat.size):
        if flat[k] > m:
            m = flat[k]
    return m


@numba.njit(nogil=True, cache=True)
def int_event_table(w, d, off, wt, nlt):  # pragma: no cover - compiled
    """The synapses of each input channel sorted by delay (counting sort; stable, so by output within a delay), for
    :func:`int_events_forward`. ``w``, ``d``: ``[C_out, C_in]``; ``nlt``: ``[C_in, L + 1]`` with ``L = min(D_max + 1,
    T)`` (synapses of delay ``>= L`` reach no output and are left out). Writes, for input ``i`` and its ``k``-th
    synapse ``(j, d)``: ``off[i, k] = d C_out + j`` (its element in a ``[T, C_out]`` buffer, relative to row ``s``;
    int32 where ``L C_out`` fits, which halves the table the event loop streams),
    ``wt[i, k] = w[j, i]``, and ``nlt[i, m]`` = the number of its synapses of delay ``< m``."""
    c_out, c_in = w.shape
    L = nlt.shape[1] - 1
    for i in range(c_in):
        n = nlt[i]
        n[:] = 0
        for j in range(c_out):
            dd = d[j, i]
            if dd < L:
                n[dd + 1] += 1
        for m in range(L):
            n[m + 1] += n[m]
        pos = n[:L].copy()
        for j in range(c_out):
            dd = d[j, i]
            if dd < L:
                k = pos[dd]
                pos[dd] = k + 1
                off[i, k] = dd * c_out + j
                wt[i, k] = w[j, i]


@numba.njit(nogil=True, cache=True)
def int_events_forward(x, xbits, off, wt, nlt, y, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """Integer delays driven by the nonzero inputs: ``y[(s + d) B + b, j] += x[s, b, i] w[j, i]`` for every nonzero
    ``x[s, b, i]`` and synapse ``(j, d)`` of input ``i`` with ``s + d < T`` (the table of :func:`int_event_table`,
    sorted by delay, so the synapses that stay inside the sequence are a prefix of length ``nlt[i, T - s]``).
    ``x: [T, B, C_in]``, ``xbits``: the same memory as integers of the same width (``x.view(int32)`` for float32),
    ``y: [T B, C_out]`` (written whole). Parallel over b: each b owns its rows.

    The nonzero inputs of a step are found ``SCAN`` at a time: a group whose bits are all zero (only ``+0.0``) is
    skipped with one test, the others are tested element by element (``x != 0``, so ``-0.0`` is zero and NaN is not).
    One batch entry at a time, the sums go to a contiguous ``[T, C_out]`` buffer (the ``L`` rows in reach of a step
    stay in L1; rows of ``y`` for one ``b`` lie ``B C_out`` elements apart, and at power-of-two strides they would
    evict each other from the cache), which is then copied into ``y``'s rows of ``b``."""
    T, B, c_in = x.shape
    c_out = y.shape[1]
    L = nlt.shape[1] - 1
    acc = np.zeros((T, c_out), dtype=y.dtype)
    flat = acc.reshape(-1)
    spikes = np.empty(c_in + SCAN, dtype=np.int64)
    groups = c_in // SCAN
    for b in range(c_begin * chunk, min(B, c_end * chunk)):
        for s in range(T):
            m = min(L, T - s)
            xs = x[s, b]
            bits = xbits[s, b]
            rows = flat[s * c_out:]  # row s on: the synapse offsets index it directly
            n = 0
            for g in range(groups):
                lo = g * SCAN
                any_bits = bits[lo]
                for u in range(1, SCAN):
                    any_bits |= bits[lo + u]
                if any_bits == 0:
                    continue
                for i in range(lo, lo + SCAN):  # the nonzero inputs' indices, without a branch per input
                    spikes[n] = i
                    n += xs[i] != 0
            for i in range(groups * SCAN, c_in):
                spikes[n] = i
                n += xs[i] != 0
            for q in range(n):
                i = spikes[q]
                v = xs[i]
                oi = off[i]
                wi = wt[i]
                for k in range(nlt[i, m]):
                    rows[np.uint64(oi[k])] += v * wi[k]  # unsigned: no negative-index wraparound test (~20% faster)
        for t in range(T):  # copy out, and zero the buffer for the next b
            row = y[t * B + b]
            at = acc[t]
            for j in range(c_out):
                row[j] = at[j]
                at[j] = 0


@numba.njit(nogil=True, cache=True)
def gauss_kernel_forward(w, delay, sigma, cutoff, eps, kernel, gauss, chunk, c_begin, c_end):  # pragma: no cover
    """gauss[d, i, j] = e_d / (sum e + eps) with e_d = exp(-(d - D)^2 / (2 sigma^2)) (0 beyond the cutoff), and
    kernel = w gauss (both ``[D + 1, C_in, C_out]``; ``gauss`` is kept for the backward pass).

    Three exponentials per synapse instead of one per tap, in float64: from the tap ``p`` nearest ``D``, the ratio
    of neighbouring taps ``e_{d+1} / e_d = exp(-(2 (d - D) + 1) h)`` (``h = 1 / (2 sigma^2)``) changes by the factor
    ``exp(-2 h)`` per tap, so ``e`` follows by multiplications outwards in both directions (relative error about
    ``1e-16`` per tap, far below float32's; the values only shrink, so nothing overflows)."""
    c_out, c_in = w.shape
    taps = kernel.shape[0]
    inv = 1.0 / sigma
    h = 0.5 * inv * inv
    step = np.exp(-2.0 * h)
    e = np.empty(taps)
    for i in range(c_begin * chunk, min(c_in, c_end * chunk)):
        for j in range(c_out):
            dj = float(delay[j, i])
            p = min(max(int(np.floor(dj + 0.5)), 0), taps - 1)
            peak = np.exp(-h * (p - dj) * (p - dj))
            e[p] = peak
            total = peak
            v = peak
            ratio = np.exp(-(2.0 * (p - dj) + 1.0) * h)
            for d in range(p + 1, taps):
                v *= ratio
                ratio *= step
                e[d] = v
                total += v
            v = peak
            ratio = np.exp((2.0 * (p - dj) - 1.0) * h)  # e_{d-1} / e_d at d = p
            for d in range(p - 1, -1, -1):
                v *= ratio
                ratio *= step
                e[d] = v
                total += v
            far = max(abs(dj), abs(taps - 1 - dj)) * inv  # the farthest tap, in sigmas
            if 0.5 * far * far >= cutoff:  # some taps are beyond the cutoff
                total = 0.0
                for d in range(taps):
                    z = (d - dj) * inv
                    if 0.5 * z * z >= cutoff:
                        e[d] = 0.0
                    total += e[d]
            norm = 1.0 / (total + eps)
            wj = w[j, i]
            for d in range(taps):
                g = e[d] * norm
                gauss[d, i, j] = g
                kernel[d, i, j] = wj * g


@numba.njit(nogil=True, cache=True)
def gauss_kernel_backward(gk, gauss, w, delay, sigma, gw, gd, chunk, c_begin, c_end):  # pragma: no cover
    """Gradients of :func:`gauss_kernel_forward` w.r.t. ``w`` and ``delay`` given ``gk = dL/dkernel``::

    gw = sum_d G_d g_d,   gd = w / sigma^2 (sum_d G_d g_d (d - D) - gw sum_d g_d (d - D)).
    """
    c_out, c_in = w.shape
    taps = gk.shape[0]
    inv2 = 1.0 / (sigma * sigma)
    for i in range(c_begin * chunk, min(c_in, c_end * chunk)):
        a = np.zeros(c_out)
        m = np.zeros(c_out)
        mean = np.zeros(c_out)
        for d in range(taps):
            for j in range(c_out):
                g = gauss[d, i, j]
                off = d - delay[j, i]
                gv = gk[d, i, j] * g
                a[j] += gv
                m[j] += gv * off
                mean[j] += g * off
        for j in range(c_out):
            gw[j, i] = a[j]
            gd[j, i] = w[j, i] * inv2 * (m[j] - a[j] * mean[j])


@numba.njit(nogil=True, cache=True)
def events_forward_grouped(x, kt, y, group, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """y[(s + d) B + b, :] = sum over nonzero x[s, b, i] of x[s, b, i] kt[i, d, :] (x: [T, B, C_in], kt: the
    kernel input-major [C_in, D + 1, C_out], y: [T B, C_out], every row of the range written). Parallel over batch
    entries, ``group`` at a time: the group's outputs accumulate in a contiguous buffer (no cache-set aliasing) while
    each input's kernel slice (``(D + 1) C_out``, in L1) serves all of the group's events of that input."""
    T, B, c_in = x.shape
    taps = kt.shape[1]
    c_out = kt.shape[2]
    lo = c_begin * chunk
    hi = min(B, c_end * chunk)
    buf = np.empty((group, T, c_out), dtype=y.dtype)
    for g0 in range(lo, hi, group):
        g1 = min(hi, g0 + group)
        buf[:] = 0
        for i in range(c_in):
            ki = kt[i]
            for b in range(g0, g1):
                bl = buf[b - g0]
                for s in range(T):
                    v = x[s, b, i]
                    if v == 0:
                        continue
                    for d in range(min(taps, T - s)):
                        row = bl[s + d]
                        kd = ki[d]
                        for o in range(c_out):
                            row[o] += v * kd[o]
        for b in range(g0, g1):
            bl = buf[b - g0]
            for t in range(T):
                row = y[t * B + b]
                src = bl[t]
                for o in range(c_out):
                    row[o] = src[o]


@numba.njit(nogil=True, cache=True)
def events_grad_kernel_grouped(x, g, gk, group, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """gk[d, i, :] = sum over nonzero x[s, b, i] of x[s, b, i] g[(s + d) B + b, :] for the input channels of the
    range (every element of them written). The gradient rows of ``group`` batch entries are copied time-contiguous
    (no cache-set aliasing) and serve every channel's events in that group; each channel accumulates in its own
    contiguous ``[D + 1, C_out]`` slice."""
    T, B, c_in = x.shape
    taps = gk.shape[0]
    c_out = gk.shape[2]
    lo = c_begin * chunk
    hi = min(c_in, c_end * chunk)
    if hi <= lo:
        return
    acc = np.zeros((hi - lo, taps, c_out), dtype=gk.dtype)
    gb = np.empty((group, T, c_out), dtype=g.dtype)
    for g0 in range(0, B, group):
        g1 = min(B, g0 + group)
        for b in range(g0, g1):
            for t in range(T):
                dst = gb[b - g0, t]
                src = g[t * B + b]
                for o in range(c_out):
                    dst[o] = src[o]
        for i in range(lo, hi):
            a = acc[i - lo]
            for b in range(g0, g1):
                gl = gb[b - g0]
                for s in range(T):
                    v = x[s, b, i]
                    if v == 0:
                        continue
                    for d in range(min(taps, T - s)):
                        ad = a[d]
                        gr = gl[s + d]
                        for o in range(c_out):
                            ad[o] += v * gr[o]
    for i in range(lo, hi):
        for d in range(taps):
            dst = gk[d, i]
            src = acc[i - lo, d]
            for o in range(c_out):
                dst[o] = src[o]
