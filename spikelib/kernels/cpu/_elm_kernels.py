"""numba kernels of the ELM memory recurrence (imported lazily by :mod:`.elm_numba`; numba is imported here).

The recurrence of :class:`spikelib.kernels.elm_torch.MemoryScan` with one hidden MLP layer, fused over all time steps
for a range of batch rows (rows are independent, so each thread steps its own rows with no synchronisation). Per row
and step, forward::

    D = k_m m[t-1];  a = U[t] + W_1^m D;  h = act(a);  z = W_2 h + b_2;  th = tanh(2 z / 3);  m[t] = D + gs th

and backward, with the carried gradient ``c`` (``c = 0`` after the last step)::

    gm = dL/dm[t] + c;  gz = gm sc (1 - th^2);  ga = (W_2^T gz) act'(a);  gD = gm + W_1^m^T ga;  c = k_m gD

accumulating ``gm th`` (for the gain) and ``gD m[t-1]`` (for ``k_m``) per row. ``gs = 1.7159 g`` and ``sc = 1.7159
(2/3) g`` come from the caller. At each step the products of all the range's rows are one register-tiled matrix
product each (:func:`._tile_gemm.matmul_rows`: ``[rows, d_m] x [d_m, H]``, ``[rows, H] x [H, d_m]``, and their
transposes backward), at close to the core's peak of multiply-adds, dense: the relu zeros are multiplied like any
other value, so a non-finite weight gives NaN as in torch. (Summing only the nonzero units' weight rows, one batch
row at a time, did half the multiply-adds at a fifth of the rate.) ``tanh`` and the sigmoid of silu are the
vectorisable :func:`.vector_math.vtanh` / :func:`.vector_math.vexp` for float32.
"""

from __future__ import annotations

import numba
import numpy as np

from spikelib.kernels.cpu._tile_gemm import matmul_rows
from spikelib.kernels.cpu.vector_math import vexp, vtanh

_SLOPE = 2.0 / 3.0


_FLAGS = {"contract"}  # fused multiply-adds; no other fast-math liberty (NaN and inf keep their IEEE meaning)


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS, boundscheck=False, error_model="numpy")
def scan_forward(U, k_m, gs, m0, w1m_t, w2_t, b2, relu, M, D, TH, A, chunk, c_begin, c_end):  # pragma: no cover
    """Rows ``[c_begin chunk, min(B, c_end chunk))``. ``U`` ``[T, B, H]``; ``w1m_t`` ``[d_m, H]`` (``W_1^m``
    transposed); ``w2_t`` ``[H, d_m]``; writes ``M, D, TH`` ``[T, B, d_m]`` and ``A`` ``[T, B, H]`` (relu: the
    activation ``h``, whose support is the derivative's; silu: the pre-activation ``a``)."""
    T, B, H = U.shape
    dm = k_m.shape[0]
    r0 = c_begin * chunk
    r1 = min(B, c_end * chunk)
    one = U.dtype.type(1.0)
    slope = U.dtype.type(_SLOPE)
    hidden = np.empty((B, H), dtype=U.dtype)  # silu's h (relu's is A itself); rows r0..r1 used
    z = np.empty((B, dm), dtype=U.dtype)
    for t in range(T):
        for r in range(r0, r1):
            prev = M[t - 1, r] if t else m0[r]
            d = D[t, r]
            for i in range(dm):
                d[i] = k_m[i] * prev[i]
        At = A[t]
        matmul_rows(D[t], w1m_t, At, r0, r1)  # W_1^m D for every row of the range
        for r in range(r0, r1):
            a = A[t, r]
            u = U[t, r]
            if relu:
                for j in range(H):
                    v = u[j] + a[j]
                    if v < 0:
                        v = v * 0  # relu; NaN stays NaN as in torch.relu
                    a[j] = v
            else:
                h = hidden[r]
                for j in range(H):
                    a[j] = u[j] + a[j]
                for j in range(H):
                    h[j] = a[j] / (one + vexp(-a[j]))
        # W_2 h. (Written as two calls: with the array chosen by a conditional expression the inlined product ran
        # 1.5x slower.)
        if relu:
            matmul_rows(At, w2_t, z, r0, r1)
        else:
            matmul_rows(hidden, w2_t, z, r0, r1)
        for r in range(r0, r1):
            zr = z[r]
            th = TH[t, r]
            m = M[t, r]
            d = D[t, r]
            # One output array per loop: LLVM vectorises a loop only after run-time checks that its arrays do not
            # overlap, and gives up when there are many pairs to check.
            for i in range(dm):
                zr[i] = vtanh((zr[i] + b2[i]) * slope)
            for i in range(dm):
                th[i] = zr[i]
            for i in range(dm):
                m[i] = d[i] + zr[i] * gs[i]


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS, boundscheck=False, error_model="numpy")
def scan_backward(grad_M, k_m, sc, m0, w1m, w2, relu, M, TH, A, gZ, gA, carry, acc_k, acc_gain,
                  chunk, c_begin, c_end):  # pragma: no cover
    """Rows ``[c_begin chunk, min(B, c_end chunk))``. ``w1m`` ``[H, d_m]`` and ``w2`` ``[d_m, H]`` as stored;
    writes ``gZ`` ``[T, B, d_m]`` (dL/dz), ``gA`` ``[T, B, H]`` (dL/da), ``carry`` ``[B, d_m]`` (dL/dm0 at the end)
    and adds into ``acc_k`` / ``acc_gain`` ``[B, d_m]`` (zeroed by the caller)."""
    T, B, dm = M.shape
    H = A.shape[2]
    r0 = c_begin * chunk
    r1 = min(B, c_end * chunk)
    one = M.dtype.type(1.0)
    gm = np.empty((B, dm), dtype=M.dtype)  # dL/dm[t] of each row, rows r0..r1 used
    back = np.empty((B, dm), dtype=M.dtype)  # W_1^m^T dL/da
    for r in range(r0, r1):
        c = carry[r]
        for i in range(dm):
            c[i] = 0
    for t in range(T - 1, -1, -1):
        for r in range(r0, r1):
            g = gm[r]
            c = carry[r]
            th = TH[t, r]
            gz = gZ[t, r]
            ag = acc_gain[r]
            gin = grad_M[t, r]
            for i in range(dm):
                g[i] = gin[i] + c[i]
            for i in range(dm):
                ag[i] += g[i] * th[i]
            for i in range(dm):
                gz[i] = g[i] * sc[i] * (one - th[i] * th[i])
        matmul_rows(gZ[t], w2, gA[t], r0, r1)  # W_2^T dL/dz
        for r in range(r0, r1):
            ga = gA[t, r]
            a = A[t, r]
            if relu:
                for j in range(H):
                    if not a[j] > 0:
                        ga[j] = ga[j] * 0  # the relu mask (a NaN or inf product stays NaN, as torch's product)
            else:
                for j in range(H):
                    s = one / (one + vexp(-a[j]))
                    ga[j] = ga[j] * (s * (one + a[j] * (one - s)))
        matmul_rows(gA[t], w1m, back, r0, r1)
        for r in range(r0, r1):
            g = gm[r]
            b = back[r]
            prev = M[t - 1, r] if t else m0[r]
            ak = acc_k[r]
            c = carry[r]
            for i in range(dm):
                b[i] = g[i] + b[i]  # dL/dD
            for i in range(dm):
                ak[i] += b[i] * prev[i]
            for i in range(dm):
                c[i] = b[i] * k_m[i]


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
