"""The spectral path of ``delay_shifted_matmul``, the grouped event kernels and the Gaussian kernel's recurrence,
against the direct per-tap sums in float64 (spikelib.kernels.delay_torch.DenseShiftedMatmul)."""

from __future__ import annotations

import pytest
import torch

from spikelib.functional.delay import GaussianRequest, delayed_linear_gaussian, gaussian_delay_kernel
from spikelib.kernels import available_backends, backend_calls, reset_backend_calls
from spikelib.kernels.delay_spectral import SpectralShiftedMatmul, path_costs, spectral_check
from spikelib.kernels.delay_torch import DenseShiftedMatmul

needs_numba = pytest.mark.skipif("numba" not in available_backends("delay_shifted_matmul"), reason="numba missing")


def _case(T, B, c_in, c_out, taps, density, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, c_in, generator=g) < density).to(dtype) * torch.randint(1, 4, (T, B, c_in), generator=g)
    kernel = torch.randn(taps, c_in, c_out, generator=g, dtype=dtype)
    G = torch.randn(T * B, c_out, generator=g, dtype=dtype)
    return x, kernel, G


def _direct(x, kernel, G):
    y = DenseShiftedMatmul.forward(x, kernel)
    gx, gk = DenseShiftedMatmul.backward(x, G, kernel, True, True)
    return y, gx.view(x.shape), gk


@pytest.mark.parametrize("T,B,c_in,c_out,taps", [(37, 3, 9, 7, 25), (100, 4, 6, 5, 25), (12, 2, 3, 4, 6),
                                                  (1, 2, 5, 4, 7), (5, 3, 4, 4, 9), (16, 1, 2, 3, 2)])
def test_spectral_equals_the_direct_sums_in_float64(T, B, c_in, c_out, taps):
    """Even and odd lengths N = T + K - 1, T shorter than the kernel, one step: equal to rounding (float64)."""
    x, kernel, G = _case(T, B, c_in, c_out, taps, 0.3)
    y, gx, gk = _direct(x, kernel, G)
    y_s = SpectralShiftedMatmul.forward(x, kernel)
    gx_s, gk_s = SpectralShiftedMatmul.backward(x, G, kernel, True, True)
    for ours, ref in ((y_s, y), (gx_s.reshape(gx.shape), gx), (gk_s, gk)):
        assert ours.shape == ref.shape and ours.dtype == torch.float64
        assert (ours - ref).abs().max() <= 1e-12 * max(1.0, float(ref.abs().max()))
    gx_only, none = SpectralShiftedMatmul.backward(x, G, kernel, True, False)
    assert none is None and torch.equal(gx_only, gx_s)


def test_spectral_float32_error_is_that_of_the_direct_float32_sums():
    """The SNN-delays layer's shape (T=100, K=25): both float32 paths within a few 1e-7 of the largest value."""
    x, kernel, G = _case(100, 8, 40, 48, 25, 0.1)
    y64, gx64, gk64 = _direct(x, kernel, G)
    x32, k32, G32 = x.float(), kernel.float(), G.float()
    y_d, gx_d, gk_d = _direct(x32, k32, G32)
    y_s = SpectralShiftedMatmul.forward(x32, k32)
    gx_s, gk_s = SpectralShiftedMatmul.backward(x32, G32, k32, True, True)
    for spectral, direct, ref in ((y_s, y_d, y64), (gx_s.reshape(gx_d.shape), gx_d, gx64), (gk_s, gk_d, gk64)):
        scale = float(ref.abs().max())
        err_s = float((spectral.double() - ref).abs().max()) / scale
        err_d = float((direct.double() - ref).abs().max()) / scale
        assert err_s < 2e-6 and err_d < 2e-6, (err_s, err_d)


def _request(T, B, c_in, c_out, taps, density, auto=True):
    return GaussianRequest(torch.device("cpu"), torch.float32, density, T, taps, B, c_in, c_out, auto)


def test_cost_model_picks_spectral_for_many_taps_and_not_for_few():
    snn_delays = _request(100, 64, 256, 256, 25, 0.05)
    costs = path_costs(snn_delays)
    assert costs["spectral"] < costs["events"] < costs["direct"]
    assert spectral_check(snn_delays) is None
    assert "estimated cheaper" in spectral_check(_request(100, 64, 256, 256, 5, 0.05))
    assert "estimated cheaper" in spectral_check(_request(300, 32, 256, 256, 9, 0.05))  # long T: transforms cost
    assert spectral_check(_request(100, 64, 256, 256, 5, 0.05, auto=False)) is None  # asked for by name: any shape
    half = GaussianRequest(torch.device("cpu"), torch.float16, 0.05, 100, 25, 64, 256, 256, False)
    assert "float32 and float64" in spectral_check(half)


def test_auto_runs_the_spectral_path_on_an_snn_delays_layer():
    torch.manual_seed(0)
    x = (torch.rand(100, 4, 140) < 0.1).float().requires_grad_(True)
    w = (torch.randn(256, 140) * 0.1).requires_grad_(True)
    d = (torch.rand(256, 140) * 24).requires_grad_(True)
    reset_backend_calls()
    y = delayed_linear_gaussian(x, w, d, 12.27, 24)
    y.square().sum().backward()
    assert backend_calls("delay_shifted_matmul") == {"spectral": 1}
    grads = [t.grad.clone() for t in (x, w, d)]
    x64, w64, d64 = (t.detach().double().requires_grad_(True) for t in (x, w, d))
    y64 = delayed_linear_gaussian(x64, w64, d64, 12.27, 24, backend="torch")
    y64.square().sum().backward()
    assert (y.double() - y64).abs().max() <= 2e-6 * y64.abs().max()
    for ours, ref in zip(grads, (x64.grad, w64.grad, d64.grad)):
        assert (ours.double() - ref).abs().max() <= 1e-5 * ref.abs().max()


@needs_numba
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("T,B,c_in,c_out,taps", [(50, 11, 7, 64, 9), (3, 5, 4, 300, 6), (40, 1, 3, 2, 25)])
def test_grouped_event_kernels_equal_the_direct_sums(monkeypatch, threads, T, B, c_in, c_out, taps):
    """Batch sizes that are not a multiple of the group, T shorter than the kernel, one or two kernel threads."""
    from spikelib.kernels.cpu.delay_numba import EventShiftedMatmul, _event_group

    monkeypatch.setenv("SPIKELIB_NUM_THREADS", threads)
    x, kernel, G = _case(T, B, c_in, c_out, taps, 0.2)
    y, _, gk = _direct(x, kernel, G)
    assert B % _event_group(T, c_out, 8) != 0 or B == 1
    torch.testing.assert_close(EventShiftedMatmul.forward(x, kernel), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(EventShiftedMatmul.grad_kernel(x, G, kernel), gk, rtol=1e-12, atol=1e-12)


@needs_numba
@pytest.mark.parametrize("sigma", [0.27, 0.5, 3.0, 12.27, 40.0])
def test_gaussian_kernel_recurrence_equals_the_expression(sigma):
    """The numba kernel's three-exponential recurrence against torch's one exponential per tap (float64), with
    delays inside, at the ends of and outside ``[0, D_max]`` and taps beyond the cutoff."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 9, generator=g, dtype=torch.float64)
    d = torch.rand(6, 9, generator=g, dtype=torch.float64) * 30 - 3  # -3 .. 27 for D_max = 24
    d[0, :3] = torch.tensor([0.0, 24.0, 12.5], dtype=torch.float64)
    reset_backend_calls()
    ours = delayed_linear_gaussian(torch.zeros(2, 1, 9, dtype=torch.float64), w, d, sigma, 24, backend="numba")
    assert backend_calls("delay_gaussian_kernel") == {"numba": 1} and ours.abs().max() == 0
    from spikelib.kernels.cpu.delay_numba import gaussian_kernel_numba

    k = gaussian_kernel_numba(w, d, sigma, 24)
    ref = gaussian_delay_kernel(w, d, sigma, 24)
    torch.testing.assert_close(k, ref, rtol=1e-13, atol=1e-300)
    assert torch.equal(k == 0, ref == 0)  # the same taps cut off
