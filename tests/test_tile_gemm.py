"""The register-tiled products of the numba kernels (``spikelib.kernels.cpu._tile_gemm``): equal to float64 products
for every tail of rows and columns in float32 and float64, the same bits however the rows are split (as threads split
them), NaN and inf as in a dense product, and the tiles' packed fused multiply-adds in the compiled code."""

import re

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from spikelib.kernels.cpu import _tile_gemm  # noqa: E402

SHAPES = [(1, 1, 1), (4, 1, 16), (3, 5, 7), (7, 3, 5), (13, 17, 33), (32, 100, 200), (5, 200, 100), (9, 8, 24)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_product_equals_float64(dtype, shape):
    R, K, N = shape
    rng = np.random.default_rng(R * 1000 + K * 10 + N)
    a = rng.standard_normal((R, K)).astype(dtype)
    w = rng.standard_normal((K, N)).astype(dtype)
    out = np.full((R, N), np.nan, dtype=dtype)
    _tile_gemm.matmul(a, w, out)
    ref = a.astype(np.float64) @ w.astype(np.float64)
    bound = np.abs(a).astype(np.float64) @ np.abs(w).astype(np.float64)  # sum |a w|: the error scale of a dot product
    assert np.all(np.abs(out - ref) <= K * np.finfo(dtype).eps * bound + np.finfo(dtype).tiny)


@numba.njit
def _rows(a, w, out, r0, r1):
    _tile_gemm.matmul_rows(a, w, out, r0, r1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_split_of_the_rows_gives_the_same_bits(dtype):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((23, 100)).astype(dtype)
    w = rng.standard_normal((100, 37)).astype(dtype)
    whole = np.empty((23, 37), dtype=dtype)
    _rows(a, w, whole, 0, 23)
    for cut in (1, 3, 4, 5, 11, 22):
        parts = np.full_like(whole, np.nan)
        _rows(a, w, parts, 0, cut)
        _rows(a, w, parts, cut, 23)
        np.testing.assert_array_equal(parts, whole)
    only = np.zeros_like(whole)
    _rows(a, w, only, 6, 9)  # rows outside the range are not written
    np.testing.assert_array_equal(only[6:9], whole[6:9])
    assert not only[:6].any() and not only[9:].any()


def test_nonfinite_values_propagate_as_in_a_dense_product():
    a = np.zeros((5, 9), dtype=np.float32)
    w = np.ones((9, 19), dtype=np.float32)
    w[2, 0] = np.nan  # a vector tile's column
    w[4, 18] = np.inf  # the scalar tail's column
    out = np.empty((5, 19), dtype=np.float32)
    _tile_gemm.matmul(a, w, out)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(out, a @ w)  # 0 * nan and 0 * inf are NaN: columns 0 and 18 are NaN
    assert np.isnan(out[:, 0]).all() and np.isnan(out[:, 18]).all() and not out[:, 1:18].any()


def test_the_tiles_are_packed_fused_multiply_adds():
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    if not (features.get("avx2") and features.get("fma")):
        pytest.skip("the host has no AVX2 + FMA: the vectors are split by LLVM")
    a = np.ones((8, 4), dtype=np.float32)
    w = np.ones((4, 16), dtype=np.float32)
    _tile_gemm.matmul(a, w, np.empty((8, 16), dtype=np.float32))
    asm = _tile_gemm.matmul.inspect_asm(_tile_gemm.matmul.signatures[0])
    assert len(re.findall(r"vfmadd\w*ps\s+%ymm", asm)) >= 8  # one 4 x 2 tile: eight 8-lane multiply-adds
