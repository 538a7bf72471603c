"""Register-tiled matrix products inside numba kernels (imported by kernel modules; numba and llvmlite are imported
here).

:func:`matmul_rows` computes ``out[r] = a[r] @ w`` for the rows ``r0 <= r < r1`` of C-contiguous 2-D float32 or
float64 arrays (``a [R, K]``, ``w [K, N]``, ``out [R, N]``). numba's loop vectoriser keeps an output row in memory
and reloads and stores it for every few rows of ``w``; here a tile of 4 rows x 2 vectors of ``out`` (8 + 8 float32 or
4 + 4 float64 columns) stays in registers for the whole sum over ``k``, each loaded vector of ``w`` serving 4 rows
and each broadcast ``a[r, k]`` 2 vectors: 8 vector multiply-adds per 2 loads and 4 broadcasts. LLVM's loop and SLP
vectorisers do not produce this from Python loops (the accumulators would be array elements, which may alias the
inputs), so the tiles are written in LLVM IR (:func:`_tile`, an ``@intrinsic``): ``<8 x float>`` / ``<4 x double>``
vectors and ``llvm.fma``. Rows left over (fewer than 4) take a one-row tile, columns left over a one-vector tile;
the last ``N mod lanes`` columns a one-vector tile ending at column ``N`` (it recomputes a few columns, with the same
bits), or a scalar loop when ``N`` is below one vector. (A scalar loop for them, one dependent multiply-add after the
other, took 4 of 100 columns and half the time of ``[32, 200] x [200, 100]``.)

Every element is ``sum_k a[r, k] w[k, j]`` accumulated from zero in ascending ``k`` with one rounding per step (a
fused multiply-add), whichever tile computes it: results do not depend on ``r0, r1`` or on how rows are split over
threads. Measured (2-core AMD EPYC, one thread, float32 ``[32, 100] x [100, 192]``): 33-39 GFMA/s, the core's peak
of two 8-lane FMAs per cycle at 2.45 GHz being 39; the vectorised loop form it replaces 15-26, torch's ``mm`` 23-33.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_TILE_ROWS = 4


def _lane_count(dtype: types.Type) -> int:
    """Vector lanes of a 256-bit register for ``dtype``."""
    return 8 if dtype == types.float32 else 4


def _tile(rows: int, vectors: int):
    """An intrinsic ``tile(a, w, out, r0, j0)``: ``out[r0:r0+rows, j0:j0+vectors*lanes] = a[r0:r0+rows] @ w[:, same
    columns]`` with the accumulators in vector registers (see the module docstring)."""

    @intrinsic
    def tile(typingctx, a, w, out, r0, j0):  # pragma: no cover - compiled
        arrays = (a, w, out)
        if not all(isinstance(x, types.Array) and x.ndim == 2 and x.layout == "C" for x in arrays):
            return None
        if a.dtype not in (types.float32, types.float64) or w.dtype != a.dtype or out.dtype != a.dtype:
            return None
        dtype = a.dtype

        def codegen(context, builder, signature, args):
            a_arr = context.make_array(signature.args[0])(context, builder, args[0])
            w_arr = context.make_array(signature.args[1])(context, builder, args[1])
            o_arr = context.make_array(signature.args[2])(context, builder, args[2])
            row0, col0 = args[3], args[4]
            lanes = _lane_count(dtype)
            scalar = context.get_value_type(dtype)
            vec = ir.VectorType(scalar, lanes)
            vec_ptr = vec.as_pointer()
            index = ir.IntType(64)
            k_count = cgutils.unpack_tuple(builder, a_arr.shape, 2)[1]
            w_cols = cgutils.unpack_tuple(builder, w_arr.shape, 2)[1]
            o_cols = cgutils.unpack_tuple(builder, o_arr.shape, 2)[1]
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{lanes}{'f32' if lanes == 8 else 'f64'}")
            zero = ir.Constant(vec, [0.0] * lanes)
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(vectors)] for _ in range(rows)]
            a_rows = [builder.gep(a_arr.data, [builder.mul(builder.add(row0, ir.Constant(index, r)), k_count)])
                      for r in range(rows)]
            splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            with cgutils.for_range(builder, k_count) as loop:
                k = loop.index
                w_row = builder.gep(w_arr.data, [builder.add(builder.mul(k, w_cols), col0)])
                w_vecs = [builder.load(builder.bitcast(builder.gep(w_row, [ir.Constant(index, v * lanes)]), vec_ptr),
                                       align=1) for v in range(vectors)]
                for r in range(rows):
                    coef = builder.load(builder.gep(a_rows[r], [k]))
                    coef = builder.insert_element(ir.Constant(vec, ir.Undefined), coef, ir.Constant(ir.IntType(32), 0))
                    coef = builder.shuffle_vector(coef, coef, splat)
                    for v in range(vectors):
                        builder.store(builder.call(fma, [coef, w_vecs[v], builder.load(acc[r][v])]), acc[r][v])
            for r in range(rows):
                o_row = builder.gep(o_arr.data, [builder.add(builder.mul(builder.add(row0, ir.Constant(index, r)),
                                                                         o_cols), col0)])
                for v in range(vectors):
                    target = builder.bitcast(builder.gep(o_row, [ir.Constant(index, v * lanes)]), vec_ptr)
                    builder.store(builder.load(acc[r][v]), target, align=1)
            return context.get_dummy_value()

        return types.void(a, w, out, types.intp, types.intp), codegen

    return tile


@intrinsic
def _lanes(typingctx, out):  # pragma: no cover - compiled
    """The vector lane count for ``out``'s dtype, as a compile-time constant."""
    if not isinstance(out, types.Array) or out.dtype not in (types.float32, types.float64):
        return None
    lanes = _lane_count(out.dtype)

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, lanes)

    return types.intp(out), codegen


_tile_4x2 = _tile(_TILE_ROWS, 2)
_tile_1x2 = _tile(1, 2)
_tile_4x1 = _tile(_TILE_ROWS, 1)
_tile_1x1 = _tile(1, 1)


@numba.njit(inline="always", fastmath={"contract"}, boundscheck=False)
def matmul_rows(a, w, out, r0, r1):  # pragma: no cover - compiled
    """``out[r] = a[r] @ w`` for ``r0 <= r < r1`` (C-contiguous 2-D ``a [R, K]``, ``w [K, N]``, ``out [R, N]`` of
    one float dtype, ``K >= 1``; ``out`` must not overlap ``a`` or ``w``)."""
    K = a.shape[1]
    N = w.shape[1]
    lanes = _lanes(out)
    j = 0
    while j + 2 * lanes <= N:
        r = r0
        while r + 4 <= r1:
            _tile_4x2(a, w, out, r, j)
            r += 4
        while r < r1:
            _tile_1x2(a, w, out, r, j)
            r += 1
        j += 2 * lanes
    while j + lanes <= N:
        r = r0
        while r + 4 <= r1:
            _tile_4x1(a, w, out, r, j)
            r += 4
        while r < r1:
            _tile_1x1(a, w, out, r, j)
            r += 1
        j += lanes
    if j < N and N >= lanes:
        # The last columns by one more one-vector tile ending at column N, over columns already written: they are
        # computed again by the same sequence of operations, so rewritten with the same bits.
        j = N - lanes
        r = r0
        while r + 4 <= r1:
            _tile_4x1(a, w, out, r, j)
            r += 4
        while r < r1:
            _tile_1x1(a, w, out, r, j)
            r += 1
    elif j < N:
        for r in range(r0, r1):
            ar = a[r]
            orow = out[r]
            for c in range(j, N):
                s = ar[0] * w[0, c]  # = fma(a, w, 0), the tiles' first step
                for k in range(1, K):
                    s = s + ar[k] * w[k, c]  # contracted to one fused multiply-add, as in the tiles
                orow[c] = s


@numba.njit(nogil=True, boundscheck=False)
def matmul(a, w, out):  # pragma: no cover - compiled
    """``out = a @ w`` over all rows (for tests and benchmarks of :func:`matmul_rows`)."""
    matmul_rows(a, w, out, 0, a.shape[0])


__all__ = ["matmul_rows", "matmul"]
