"""``vexp`` (spikelib.kernels.cpu.vector_math): within 1 ulp of the exact exponential over a dense sample of every
float32 in [-104, 88.7] (subnormal results included), the IEEE special values, float64 equal to numba's ``np.exp``; the
Sigmoid surrogate's generated kernels use it and their gradients stay equal to the torch reference. ``vtanh``: within
3 ulp of the exact tanh over a dense sample of float32 in [-10, 10] and beyond, its special values, float64 equal to
numba's ``np.tanh``, and vectorised in a loop."""

import platform
import re

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from spikelib.functional.lif import lif  # noqa: E402
from spikelib.kernels import backend_calls, reset_backend_calls  # noqa: E402
from spikelib.kernels.cpu.vector_math import vexp, vtanh  # noqa: E402
from spikelib.surrogate import Sigmoid  # noqa: E402


@njit
def _apply(x, out):
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


@njit
def _apply_np_exp(x, out):
    for i in range(x.shape[0]):
        out[i] = np.exp(x[i])


def _vexp(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _apply(x, out)
    return out


def test_float32_within_one_ulp_of_exact():
    # every 97th bit pattern (44 million floats, both signs, all exponents), kept in [-104, 88.7]
    worst, count = 0.0, 0
    for start in range(0, 2 ** 32, 2 ** 30):
        x = np.arange(start, start + 2 ** 30, 97, dtype=np.uint64).astype(np.uint32).view(np.float32)
        x = x[np.isfinite(x) & (x > -104.0) & (x < 88.7)]
        exact = np.exp(x.astype(np.float64))
        ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
        worst = max(worst, float((np.abs(_vexp(x).astype(np.float64) - exact) / ulp).max()))
        count += x.size
    assert count > 20_000_000
    assert worst <= 1.0, worst


def test_float32_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 88.72, 88.73, 1000.0, -1000.0, -103.9, -104.5, 0.0, -0.0, 1.0],
                 dtype=np.float32)
    y = _vexp(x)
    assert np.isnan(y[0])
    assert y[1] == np.inf and y[2] == 0.0
    assert np.isfinite(y[3]) and abs(y[3] / np.float32(np.exp(np.float64(x[3]))) - 1) < 1e-6
    assert y[4] == np.inf and y[5] == np.inf and y[6] == 0.0
    assert 0 < y[7] < np.finfo(np.float32).tiny  # a subnormal, as libm gives
    assert y[8] == 0.0
    assert y[9] == 1.0 and y[10] == 1.0
    assert abs(float(y[11]) - np.e) <= np.spacing(np.float32(np.e))


def test_float64_is_numbas_np_exp():
    x = np.random.default_rng(0).normal(0, 30, 100_000)
    expected = np.empty_like(x)
    _apply_np_exp(x, expected)
    assert np.array_equal(_vexp(x), expected)


def test_sigmoid_kernel_uses_vexp_and_matches_the_reference():
    assert "vexp(" in Sigmoid().kernel_source("xs", "sg", "alpha", "np.float32")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 257, generator=g) * 3
    gy = torch.randn(6, 3, 257, generator=g)
    grads = {}
    for backend, dtype in (("numba", torch.float32), ("torch", torch.float32), ("torch", torch.float64)):
        xi = x.to(dtype).detach().clone().requires_grad_(True)
        reset_backend_calls()
        out = lif(xi, tau=2.0, v_threshold=1.0, reset="hard", decay_input=True, detach_reset=True,
                  surrogate=Sigmoid(alpha=4.0), backend=backend)
        out.spikes.backward(gy.to(dtype))
        assert backend_calls("lif") == {backend: 1}
        grads[(backend, dtype)] = xi.grad.double()
    ref64 = grads[("torch", torch.float64)]
    err_numba = (grads[("numba", torch.float32)] - ref64).abs().max().item()
    err_torch = (grads[("torch", torch.float32)] - ref64).abs().max().item()
    assert err_numba <= 2 * err_torch + 1e-6, (err_numba, err_torch)


@njit(error_model="numpy")  # as spikelib's kernels: no ZeroDivisionError branch in the quotient
def _apply_tanh(x, out):
    for i in range(x.shape[0]):
        out[i] = vtanh(x[i])


@njit
def _apply_np_tanh(x, out):
    for i in range(x.shape[0]):
        out[i] = np.tanh(x[i])


def _vtanh(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _apply_tanh(x, out)
    return out


def test_vtanh_float32_within_three_ulp_of_exact():
    # every 61st bit pattern with |x| < 12 (both signs, every exponent down to the subnormals): ~66 million floats
    worst, count = 0.0, 0
    for start in range(0, 2 ** 32, 2 ** 30):
        x = np.arange(start, start + 2 ** 30, 61, dtype=np.uint64).astype(np.uint32).view(np.float32)
        x = x[np.isfinite(x) & (np.abs(x) < 12.0)]
        exact = np.tanh(x.astype(np.float64))
        ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
        ulp = np.maximum(ulp, np.finfo(np.float32).smallest_subnormal)
        worst = max(worst, float((np.abs(_vtanh(x).astype(np.float64) - exact) / ulp).max()))
        count += x.size
    assert count > 30_000_000
    assert worst <= 3.0, worst


def test_vtanh_float32_special_values_and_saturation():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 20.0, -20.0, 9.1, 0.125, -0.125, 1e-30, -1e-30],
                 dtype=np.float32)
    y = _vtanh(x)
    assert np.isnan(y[0])
    assert y[1] == 1.0 and y[2] == -1.0 and y[3] == 0.0 and y[4] == 0.0
    assert y[5] == 1.0 and y[6] == -1.0 and y[7] == np.float32(np.tanh(9.1))
    assert y[8] == -y[9] and abs(float(y[8]) - np.tanh(0.125)) <= np.spacing(np.float32(0.12))
    assert y[10] == np.float32(1e-30) and y[11] == np.float32(-1e-30)


def test_vtanh_float64_is_numbas_np_tanh():
    x = np.random.default_rng(0).normal(0, 5, 100_000)
    expected = np.empty_like(x)
    _apply_np_tanh(x, expected)
    assert np.array_equal(_vtanh(x), expected)


def test_vtanh_loop_is_vectorised():
    x = np.linspace(-3, 3, 1024, dtype=np.float32)
    _vtanh(x)
    asm = _apply_tanh.inspect_asm(_apply_tanh.signatures[0])
    assert "ymm" in asm or "zmm" in asm or "v4f32" in asm or "xmm" in asm and "ps\t" in asm
