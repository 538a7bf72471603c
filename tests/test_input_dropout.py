"""Operation "input_dropout": the numba backend (a draw only where x is nonzero, counter-based) has the torch
reference's distribution exactly, follows torch.manual_seed, does not depend on the thread count, and is the path
that runs for CPU spike input without gradient."""

import math

import pytest
import torch

from spikelib.functional.dropout import input_dropout, keep_threshold
from spikelib.kernels import backend_calls, reset_backend_calls

BACKENDS = ["torch", pytest.param("numba", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba not installed"))]


def _spikes(shape=(40, 16, 300), density=0.2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < density).to(dtype)


def test_keep_threshold_is_the_24_bit_grid_of_torch_rand():
    assert keep_threshold(0.0) == 0 and keep_threshold(0.5) == 1 << 23
    assert keep_threshold(2 ** -24) == 1 and keep_threshold(1.5 * 2 ** -24) == 2
    p = 0.3
    assert (keep_threshold(p) - 1) * 2 ** -24 < p <= keep_threshold(p) * 2 ** -24


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("rescale", [False, True])
def test_values_and_keep_rate(backend, p, rescale):
    x = _spikes() * 1.5
    x.view(-1)[::7] *= -2.0  # not only ones
    torch.manual_seed(1)
    y = input_dropout(x, p, rescale, backend=backend)
    scale = torch.ones(1).div_(1 - p) if rescale else torch.ones(1)
    kept = y != 0
    assert torch.equal(y[x == 0], x[x == 0])  # zeros stay zero
    assert torch.equal(y[kept], x[kept] * scale)  # kept: x times the scale rounded to x's dtype
    assert not bool(kept[x == 0].any())
    n = int((x != 0).sum())
    rate, q = kept.sum().item() / n, (2 ** 24 - keep_threshold(p)) / 2 ** 24
    assert abs(rate - q) < 5 * math.sqrt(q * (1 - q) / n)
    # independence of neighbours: both kept with probability q^2
    both = (kept.view(-1)[:-1] & kept.view(-1)[1:]).sum().item()
    pairs = ((x.view(-1)[:-1] != 0) & (x.view(-1)[1:] != 0)).sum().item()
    assert abs(both / pairs - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / pairs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_follows_manual_seed_and_draws_anew_each_call(backend):
    x = _spikes(dtype=torch.float64)
    torch.manual_seed(3)
    a, b = input_dropout(x, 0.5, backend=backend), input_dropout(x, 0.5, backend=backend)
    torch.manual_seed(3)
    assert torch.equal(input_dropout(x, 0.5, backend=backend), a)
    assert not torch.equal(a, b)


def test_numba_mask_does_not_depend_on_threads(monkeypatch):
    pytest.importorskip("numba")
    x = _spikes(shape=(50, 32, 700))
    out = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("SPIKELIB_NUM_THREADS", threads)
        torch.manual_seed(5)
        out.append(input_dropout(x, 0.4, backend="numba"))
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_auto_picks_numba_for_spikes_and_torch_for_gradients():
    pytest.importorskip("numba")
    x = _spikes(shape=(4, 3, 5))
    reset_backend_calls()
    input_dropout(x, 0.5)
    assert backend_calls("input_dropout") == {"numba": 1}
    xg = x.clone().requires_grad_(True)
    reset_backend_calls()
    y = input_dropout(xg, 0.5, rescale=True)
    assert backend_calls("input_dropout") == {"torch": 1}
    y.sum().backward()
    assert torch.equal(xg.grad[y != 0], torch.full_like(xg.grad[y != 0], 2.0))
    assert torch.equal(xg.grad[(y == 0) & (x != 0)], torch.zeros_like(xg.grad[(y == 0) & (x != 0)]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_inputs_as_the_reference(backend):
    x = torch.tensor([float("inf")] * 400 + [float("nan")] * 400)
    torch.manual_seed(0)
    y = input_dropout(x, 0.5, backend=backend)
    inf_part, nan_part = y[:400], y[400:]
    assert bool(nan_part.isnan().all())
    assert bool(((inf_part == float("inf")) | inf_part.isnan()).all())  # kept inf stays inf, dropped is inf * 0
    assert 100 < int((inf_part == float("inf")).sum()) < 300


def test_bad_arguments_are_named():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="p must be a number in \\[0, 1\\)"):
        input_dropout(x, 1.0)
    with pytest.raises(ValueError, match="p must be"):
        input_dropout(x, True)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        input_dropout(torch.zeros(3, dtype=torch.int64), 0.5)
    with pytest.raises(TypeError, match="rescale must be a bool"):
        input_dropout(x, 0.5, rescale=1)
    assert input_dropout(torch.zeros(0, 4), 0.5).shape == (0, 4)
