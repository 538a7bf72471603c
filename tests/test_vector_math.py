"""``vexp`` (spikelib.kernels.cpu.vector_math): within 1 ulp of the exact exponential over a dense sample of every
float32 in [-104, 88.7] (subnormal results included), the IEEE special values, float64 equal to numba's ``np.exp``; the
Sigmoid surrogate's generated kernels use it and their gradients stay equal to the torch reference."""

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from spikelib.functional.lif import lif  # noqa: E402
from spikelib.kernels import backend_calls, reset_backend_calls  # noqa: E402
from spikelib.kernels.cpu.vector_math import vexp  # noqa: E402
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
