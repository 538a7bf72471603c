"""numba kernels of the ELM memory recurrence (imported lazily by :mod:`.elm_numba`; numba is imported here).

The recurrence of :class:`spikelib.kernels.elm_torch.MemoryScan` with one hidden MLP layer, fused over all time steps
for a range of batch rows (rows are independent, so each thread steps its own rows with no synchronisation). Per row
and step, forward::

    D = k_m m[t-1];  a = U[t] + W_1^m D;  h = act(a);  z = W_2 h + b_2;  th = tanh(2 z / 3);  m[t] = D + gs th

and backward, with the carried gradient ``c`` (``c = 0`` after the last step)::

    gm = dL/dm[t] + c;  gz = gm sc (1 - th^2);  ga = (W_2^T gz) act'(a);  gD = gm + W_1^m^T ga;  c = k_m gD

accumulating ``gm th`` (for the gain) and ``gD m[t-1]`` (for ``k_m``) per row. ``gs = 1.7159 g`` and ``sc = 1.7159
(2/3) g`` come from the caller. Relu activations ``h`` are zero for about half of the hidden units and the backward's
``ga`` where they are: with ``sparse`` set (by the caller, when every weight is finite) the products skip those units'
rows of the weights, where the dense product adds exactly zero (with a non-finite weight it adds NaN: then every row
is summed, as torch does). Matrix-vector products run one batch row at a time: the nonzero inputs are listed,
then four weight rows (contiguous) are added into the output vector per pass (:func:`_accumulate`; one load and store
of the output per four multiply-adds), in an inner loop that LLVM vectorises with fused multiply-adds; ``tanh`` and
the sigmoid of silu are the vectorisable :func:`.vector_math.vtanh` / :func:`.vector_math.vexp` for float32.
"""

from __future__ import annotations

import numba
import numpy as np

from spikelib.kernels.cpu.vector_math import vexp, vtanh

_SLOPE = 2.0 / 3.0


_FLAGS = {"contract"}  # fused multiply-adds; no other fast-math liberty (NaN and inf keep their IEEE meaning)


@numba.njit(inline="always", fastmath=_FLAGS)
def _accumulate(out, coef, rows, n, W):  # pragma: no cover - compiled
    """``out[j] += sum_{k < n} coef[rows[k]] W[rows[k], j]``, four weight rows per pass over ``out``."""
    H = out.shape[0]
    k = 0
    while k + 4 <= n:
        i0 = rows[k]
        i1 = rows[k + 1]
        i2 = rows[k + 2]
        i3 = rows[k + 3]
        c0 = coef[i0]
        c1 = coef[i1]
        c2 = coef[i2]
        c3 = coef[i3]
        w0 = W[i0]
        w1 = W[i1]
        w2 = W[i2]
        w3 = W[i3]
        for j in range(H):
            out[j] += (c0 * w0[j] + c1 * w1[j]) + (c2 * w2[j] + c3 * w3[j])
        k += 4
    while k < n:
        c = coef[rows[k]]
        w = W[rows[k]]
        for j in range(H):
            out[j] += c * w[j]
        k += 1


@numba.njit(inline="always", fastmath=_FLAGS)
def _accumulate_pair(out0, out1, coef0, coef1, W):  # pragma: no cover - compiled
    """``out0 += coef0 W`` and ``out1 += coef1 W`` (dense, ``W`` ``[K, H]``): each weight vector loaded once for two
    batch rows, four weight rows per pass."""
    K, H = W.shape
    k = 0
    while k + 4 <= K:
        a0 = coef0[k]
        a1 = coef0[k + 1]
        a2 = coef0[k + 2]
        a3 = coef0[k + 3]
        b0 = coef1[k]
        b1 = coef1[k + 1]
        b2 = coef1[k + 2]
        b3 = coef1[k + 3]
        for j in range(H):
            w0 = W[k, j]
            w1 = W[k + 1, j]
            w2 = W[k + 2, j]
            w3 = W[k + 3, j]
            out0[j] += (a0 * w0 + a1 * w1) + (a2 * w2 + a3 * w3)
            out1[j] += (b0 * w0 + b1 * w1) + (b2 * w2 + b3 * w3)
        k += 4
    while k < K:
        a = coef0[k]
        b = coef1[k]
        for j in range(H):
            out0[j] += a * W[k, j]
            out1[j] += b * W[k, j]
        k += 1


@numba.njit(inline="always")
def _nonzero(v, rows):  # pragma: no cover - compiled
    """The indices of ``v``'s nonzero (or NaN) elements into ``rows``; returns their number."""
    n = 0
    for j in range(v.shape[0]):  # branch-free: relu zeros fall at random, a branch would be mispredicted half the time
        rows[n] = j
        n += v[j] != 0
    return n


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS, boundscheck=False, error_model="numpy")
def scan_forward(U, k_m, gs, m0, w1m_t, w2_t, b2, relu, sparse, M, D, TH, A, chunk, c_begin, c_end):  # pragma: no cover
    """Rows ``[c_begin chunk, min(B, c_end chunk))``. ``U`` ``[T, B, H]``; ``w1m_t`` ``[d_m, H]`` (``W_1^m``
    transposed); ``w2_t`` ``[H, d_m]``; writes ``M, D, TH`` ``[T, B, d_m]`` and ``A`` ``[T, B, H]`` (relu: the
    activation ``h``, whose support is the derivative's; silu: the pre-activation ``a``)."""
    T, B, H = U.shape
    dm = k_m.shape[0]
    r0 = c_begin * chunk
    r1 = min(B, c_end * chunk)
    one = U.dtype.type(1.0)
    slope = U.dtype.type(_SLOPE)
    h = np.empty(H, dtype=U.dtype)
    z = np.empty(dm, dtype=U.dtype)
    all_dm = np.arange(dm)
    live = np.arange(H)
    h1 = np.empty(H, dtype=U.dtype)
    for t in range(T):
        for r in range(r0, r1):
            prev = M[t - 1, r] if t else m0[r]
            d = D[t, r]
            for i in range(dm):
                d[i] = k_m[i] * prev[i]
        for r in range(r0, r1, 2):
            paired = r + 1 < r1
            for j in range(H):
                h[j] = 0
            if paired:  # the dense product of two rows at once: each weight vector loaded once for both
                for j in range(H):
                    h1[j] = 0
                _accumulate_pair(h, h1, D[t, r], D[t, r + 1], w1m_t)
            else:
                _accumulate(h, D[t, r], all_dm, dm, w1m_t)
            for q in range(2 if paired else 1):
                row = r + q
                hq = h if q == 0 else h1
                d = D[t, row]
                a = A[t, row]
                u = U[t, row]
                if relu:
                    for j in range(H):
                        v = u[j] + hq[j]
                        if v < 0:
                            v = v * 0  # relu; NaN stays NaN as in torch.relu
                        a[j] = v
                        hq[j] = v
                else:
                    for j in range(H):
                        v = u[j] + hq[j]
                        a[j] = v
                        hq[j] = v / (one + vexp(-v))
                for i in range(dm):
                    z[i] = b2[i]
                _accumulate(z, hq, live, _nonzero(hq, live) if sparse else H, w2_t)
                # One output array per loop: LLVM vectorises a loop only after run-time checks that its arrays do
                # not overlap, and gives up when there are many pairs to check.
                for i in range(dm):
                    z[i] = vtanh(z[i] * slope)
                th = TH[t, row]
                m = M[t, row]
                for i in range(dm):
                    th[i] = z[i]
                for i in range(dm):
                    m[i] = d[i] + z[i] * gs[i]


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS, boundscheck=False, error_model="numpy")
def scan_backward(grad_M, k_m, sc, m0, w1m, w2, relu, sparse, M, TH, A, gZ, gA, carry, acc_k, acc_gain,
                  chunk, c_begin, c_end):  # pragma: no cover
    """Rows ``[c_begin chunk, min(B, c_end chunk))``. ``w1m`` ``[H, d_m]`` and ``w2`` ``[d_m, H]`` as stored;
    writes ``gZ`` ``[T, B, d_m]`` (dL/dz), ``gA`` ``[T, B, H]`` (dL/da), ``carry`` ``[B, d_m]`` (dL/dm0 at the end)
    and adds into ``acc_k`` / ``acc_gain`` ``[B, d_m]`` (zeroed by the caller)."""
    T, B, dm = M.shape
    H = A.shape[2]
    r0 = c_begin * chunk
    r1 = min(B, c_end * chunk)
    one = M.dtype.type(1.0)
    gm = np.empty(dm, dtype=M.dtype)
    gd = np.empty(dm, dtype=M.dtype)
    all_dm = np.arange(dm)
    live = np.arange(H)
    for r in range(r0, r1):
        c = carry[r]
        for i in range(dm):
            c[i] = 0
    gm1 = np.empty(dm, dtype=M.dtype)
    for t in range(T - 1, -1, -1):
        for r in range(r0, r1, 2):
            paired = r + 1 < r1
            n_rows = 2 if paired else 1
            for q in range(n_rows):
                row = r + q
                g = gm if q == 0 else gm1
                c = carry[row]
                th = TH[t, row]
                gz = gZ[t, row]
                ag = acc_gain[row]
                gin = grad_M[t, row]
                for i in range(dm):
                    g[i] = gin[i] + c[i]
                for i in range(dm):
                    ag[i] += g[i] * th[i]
                for i in range(dm):
                    gz[i] = g[i] * sc[i] * (one - th[i] * th[i])
                ga = gA[t, row]
                for j in range(H):
                    ga[j] = 0
            if paired:  # the dense product of two rows at once: each weight vector loaded once for both
                _accumulate_pair(gA[t, r], gA[t, r + 1], gZ[t, r], gZ[t, r + 1], w2)
            else:
                _accumulate(gA[t, r], gZ[t, r], all_dm, dm, w2)
            for q in range(n_rows):
                row = r + q
                g = gm if q == 0 else gm1
                ga = gA[t, row]
                a = A[t, row]
                if relu:
                    for j in range(H):
                        if not a[j] > 0:
                            ga[j] = ga[j] * 0  # the relu mask (a NaN or inf product stays NaN, as torch's product)
                else:
                    for j in range(H):
                        s = one / (one + vexp(-a[j]))
                        ga[j] = ga[j] * (s * (one + a[j] * (one - s)))
                for i in range(dm):
                    gd[i] = g[i]
                _accumulate(gd, ga, live, _nonzero(ga, live) if sparse else H, w1m)
                prev = M[t - 1, row] if t else m0[row]
                ak = acc_k[row]
                c = carry[row]
                for i in range(dm):
                    ak[i] += gd[i] * prev[i]
                for i in range(dm):
                    c[i] = gd[i] * k_m[i]


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def trace_forward(u, k, s0, out, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """``out[t, b] = k * out[t-1, b] + u[t, b]`` (``out[-1] = s0``) for rows ``b`` in
    ``[c_begin chunk, min(B, c_end chunk))``; ``u``, ``out`` ``[T, B, N]``, ``k`` ``[N]``, ``s0`` ``[B, N]``."""
    T, B, N = u.shape
    r0 = c_begin * chunk
    r1 = min(B, c_end * chunk)
    for t in range(T):
        for b in range(r0, r1):
            prev = out[t - 1, b] if t else s0[b]
            o = out[t, b]
            x = u[t, b]
            for j in range(N):
                o[j] = x[j] + prev[j] * k[j]


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def trace_backward(g, k, grad_u, chunk, c_begin, c_end):  # pragma: no cover - compiled
    """The adjoint ``grad_u[t] = g[t] + k * grad_u[t+1]`` (``grad_u[T] = 0``) for rows in
    ``[c_begin chunk, min(B, c_end chunk))``; ``g``, ``grad_u`` ``[T, B, N]``."""
    T, B, N = g.shape
    r0 = c_begin * chunk
    r1 = min(B, c_end * chunk)
    for t in range(T - 1, -1, -1):
        for b in range(r0, r1):
            o = grad_u[t, b]
            x = g[t, b]
            if t == T - 1:
                for j in range(N):
                    o[j] = x[j]
            else:
                nxt = grad_u[t + 1, b]
                for j in range(N):
                    o[j] = x[j] + nxt[j] * k[j]
