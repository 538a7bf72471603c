"""Non-finite inputs have one semantics in every backend: IEEE arithmetic of the documented equations, with the torch
reference as the ground truth. For integer delays a NaN or inf at ``x[s, b, i]`` reaches exactly
``y[s + D[j, i], b, j]`` (the torch fallback used to spread it through ``0 * NaN`` to every step of every delay)."""

import pytest
import torch

from spikelib.functional.delay import delayed_linear_int
from spikelib.kernels import available_backends, backend_calls, reset_backend_calls
from spikelib.kernels.cpu import delay_numba


def _brute_force_delays(x, w, d):
    T, B, _ = x.shape
    y = torch.zeros(T, B, w.shape[0], dtype=torch.float64)
    for t in range(T):
        for j in range(w.shape[0]):
            for i in range(w.shape[1]):
                s = t - int(d[j, i])
                if s >= 0:
                    y[t, :, j] += float(w[j, i]) * x[s, :, i].double()
    return y


@pytest.mark.parametrize("backend", available_backends("delay_linear_int"))
@pytest.mark.parametrize("events", [False, True])
def test_integer_delays_nonfinite_inputs_reach_only_their_synapses(backend, events, monkeypatch):
    if events:
        monkeypatch.setattr(delay_numba, "INT_EVENT_DENSITY_MAX", 1.0)
    T, B, c_in, c_out = 9, 2, 4, 5
    x = (torch.rand(T, B, c_in) < 0.3).float() * torch.rand(T, B, c_in)
    x[2, 0, 1] = float("nan")
    x[5, 1, 3] = float("inf")
    x[7, 1, 0] = -float("inf")
    w = torch.randn(c_out, c_in)
    w[0, 3] = 0.0  # 0 * inf is NaN by the equation, in every backend
    d = torch.randint(0, 4, (c_out, c_in))
    d[:, 1] = torch.tensor([0, 1, 2, 3, 8])  # the NaN reaches steps 2, 3, 4, 5 and never step 10 (past the end)
    reset_backend_calls()
    y = delayed_linear_int(x, w, d, backend=backend)
    assert backend_calls("delay_linear_int") == {backend: 1}
    ref = _brute_force_delays(x, w, d)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(torch.isinf(y) & (y > 0), torch.isinf(ref) & (ref > 0))
    assert torch.equal(torch.isinf(y) & (y < 0), torch.isinf(ref) & (ref < 0))
    finite = torch.isfinite(ref)
    assert 0 < int((~finite).sum()) < finite.numel() // 3
    torch.testing.assert_close(y[finite].double(), ref[finite], rtol=1e-5, atol=1e-5)


def test_integer_delays_nonfinite_gradients_agree():
    T, B, c_in, c_out = 6, 2, 3, 4
    base = torch.rand(T, B, c_in)
    base[1, 0, 2] = float("nan")
    base[3, 1, 0] = float("inf")
    w0 = torch.randn(c_out, c_in)
    d = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 1, 1], [3, 0, 0]])
    g = torch.randn(T, B, c_out)
    grads = {}
    for backend in available_backends("delay_linear_int"):
        x = base.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        (delayed_linear_int(x, w, d, backend=backend) * g).sum().backward()
        grads[backend] = (x.grad, w.grad)
    gx, gw = grads["torch"]
    assert torch.isfinite(gx).all()  # dy/dx is w: finite wherever the input is
    assert torch.isnan(gw[:, 2]).all() and torch.isfinite(gw[:, 1]).all()  # g * NaN, summed over the outputs
    for backend, (bx, bw) in grads.items():
        torch.testing.assert_close(bx, gx, equal_nan=True)
        torch.testing.assert_close(bw, gw, equal_nan=True)
