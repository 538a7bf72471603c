"""numba kernels of the cochlea model (equations in :mod:`spikelib.data.heidelberg.cochlea`).

All arrays are time-major ``[T, C]``: the inner loop runs over a block of channels at one time step, so the
per-channel recurrences vectorise across channels and blocks run in parallel. Each channel's arithmetic is exactly
the scalar recurrence (no fastmath), so results do not depend on the block size or thread count. Random numbers come
from one splitmix64 stream per channel, seeded by the caller, so spikes are reproducible on any number of threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np

BLOCK = 64


@numba.njit(parallel=True, cache=True)
def meddis(u, fs, y, g, l, r, x, a, b, h, m):  # noqa: E741 - the model's names
    n_t, n_ch = u.shape
    out = np.empty((n_t, n_ch))
    ymdt, xdt, ydt, rdt = y * m / fs, x / fs, y / fs, r / fs
    gdt, hdt, lrdt = g / fs, h / fs, (l + r) / fs
    k0 = g * a / (a + b)
    c_rest = m * y * k0 / (l * k0 + y * (l + r))
    n_blk = (n_ch + BLOCK - 1) // BLOCK
    for blk in numba.prange(n_blk):
        lo = blk * BLOCK
        hi = min(lo + BLOCK, n_ch)
        c = np.full(hi - lo, c_rest)
        q = c * (l + r) / k0
        w = c * r / x
        for t in range(n_t):
            for j in range(hi - lo):
                drive = u[t, lo + j] + a
                k = gdt * drive / (drive + b) if drive > 0 else 0.0
                qj, cj, wj = q[j], c[j], w[j]
                refill = ymdt - ydt * qj if qj < m else 0.0
                eject = k * qj
                reprocess = xdt * wj
                q_new = qj + refill - eject + reprocess
                c_new = cj + eject - lrdt * cj
                w_new = wj + rdt * cj - reprocess
                q[j] = q_new if q_new > 0 else 0.0
                c[j] = c_new if c_new > 0 else 0.0
                w[j] = w_new if w_new > 0 else 0.0
                out[t, lo + j] = c[j] * hdt
    return out


@numba.njit(inline="always")
def _uniform(state, j):
    z = state[j] = state[j] + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(inline="always")
def _binomial(n, p, state, j):
    """Binomial(n, p) by inversion (n <= a few dozen): one uniform, a short walk up the CDF."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    u = _uniform(state, j)
    if u <= 1.0 - n * p:  # (1 - p)^n >= 1 - n p (Bernoulli's inequality): no fibre fires, exactly
        return 0
    base = 1.0 - p
    prob = 1.0
    e = n
    while e:  # (1 - p)^n by squaring
        if e & 1:
            prob *= base
        base *= base
        e >>= 1
    cdf = prob
    k = 0
    ratio = p / (1.0 - p)
    while u > cdf and k < n:
        prob *= (n - k) / (k + 1) * ratio
        k += 1
        cdf += prob
    return k


@numba.njit(parallel=True, cache=True)
def fibres(prob, fs, n_conv, tau_ref, seeds):
    n_t, n_ch = prob.shape
    counts = np.empty((n_t, n_ch), dtype=np.int16)
    dead = int(math.ceil(tau_ref * fs)) - 1
    n_blk = (n_ch + BLOCK - 1) // BLOCK
    for blk in numba.prange(n_blk):
        lo = blk * BLOCK
        hi = min(lo + BLOCK, n_ch)
        state = seeds[lo:hi].copy()
        ring = np.zeros((max(dead, 1), hi - lo), dtype=np.int64)
        busy = np.zeros(hi - lo, dtype=np.int64)
        for t in range(n_t):
            slot = t % dead if dead > 0 else 0
            for j in range(hi - lo):
                fired = _binomial(n_conv - busy[j], prob[t, lo + j], state, j)
                counts[t, lo + j] = fired
                if dead > 0:
                    busy[j] += fired - ring[slot, j]
                    ring[slot, j] = fired
    return counts


@numba.njit(parallel=True, cache=True)
def lif(counts, fs, n_conv, tau_mem, tau_syn, tau_ref, weight):
    n_t, n_ch = counts.shape
    spikes = np.zeros((n_t, n_ch), dtype=np.uint8)
    dt = 1.0 / fs
    dec_m = math.exp(-dt / tau_mem)
    dec_s = math.exp(-dt / tau_syn)
    ref_steps = tau_ref * fs
    w = weight / n_conv
    n_blk = (n_ch + BLOCK - 1) // BLOCK
    for blk in numba.prange(n_blk):
        lo = blk * BLOCK
        hi = min(lo + BLOCK, n_ch)
        current = np.zeros(hi - lo)
        v_prev = np.zeros(hi - lo)
        counter = np.zeros(hi - lo)
        for t in range(n_t):
            for j in range(hi - lo):
                v = 0.0
                if t > 0:
                    if counter[j] <= 0:
                        if v_prev[j] < 1.0:
                            v = v_prev[j] * dec_m
                        else:
                            counter[j] = ref_steps
                            spikes[t - 1, lo + j] = 1
                    current[j] = current[j] * dec_s
                current[j] += counts[t, lo + j]
                if counter[j] <= 0:
                    v += current[j] * w * dt
                if v > 1.0:
                    v = 1.0
                counter[j] -= 1
                v_prev[j] = v
    return spikes


@numba.njit(parallel=True, cache=True)
def fold(v_low, v_high, spectrum, rev):
    """out[j, k] = v_low[j, k] X[j] + v_high[j, k] conj(X[rev[j]]): the half spectrum of the real inverse FFT."""
    n_f, n_ch = v_low.shape
    out = np.empty((n_f, n_ch), dtype=np.complex128)
    for j in numba.prange(n_f):
        a = spectrum[j]
        b = np.conj(spectrum[rev[j]])
        for k in range(n_ch):
            out[j, k] = v_low[j, k] * a + v_high[j, k] * b
    return out
