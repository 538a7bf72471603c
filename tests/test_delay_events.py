"""The event-driven forward pass of the numba ``delay_linear_int`` backend (sparse inputs): equal to the dense rounded
convolution at every density and edge case, chosen automatically by the input density, and gradients unchanged."""

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("numba")

from spikelib.functional.delay import delayed_linear_int  # noqa: E402
from spikelib.kernels import backend_calls, reset_backend_calls  # noqa: E402
from spikelib.kernels.cpu import delay_numba  # noqa: E402
from spikelib.kernels.cpu.delay_numba import INT_EVENT_DENSITY_MAX, INT_PATH_OP  # noqa: E402
from spikelib.layers import DelayedLinear  # noqa: E402

TOL = {torch.float32: dict(rtol=1e-5, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _dense_rounded(x, weight, delays, max_delay):
    """The dense reference: a (max_delay + 1)-tap kernel, one-hot at each synapse's integer delay, via conv1d."""
    kernel = torch.zeros(weight.shape + (max_delay + 1,), dtype=weight.dtype)
    kernel = kernel.scatter(2, (max_delay - delays)[..., None], weight[..., None])
    return F.conv1d(F.pad(x.permute(1, 2, 0), (max_delay, 0)), kernel).permute(2, 0, 1)


def _sparse(shape, density, dtype, g, binary=False):
    mask = torch.rand(shape, generator=g) < density
    values = torch.ones(shape, dtype=dtype) if binary else torch.randn(shape, dtype=dtype, generator=g) * 2
    return values * mask


def _path_calls():
    return backend_calls(INT_PATH_OP)


@pytest.fixture
def force_events(monkeypatch):
    """Run the event path at any density (so that dense inputs test it too)."""
    monkeypatch.setattr(delay_numba, "INT_EVENT_DENSITY_MAX", 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("density", [0.0, 0.01, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(50, 4, 13, 11, 25), (6, 3, 5, 17, 9), (1, 1, 1, 1, 1), (23, 7, 31, 3, 4)])
def test_events_equal_dense_rounded_conv(force_events, dtype, density, shape):
    T, B, c_in, c_out, max_delay = shape
    g = torch.Generator().manual_seed(T * 1000 + c_in)
    x = _sparse((T, B, c_in), density, dtype, g)
    w = torch.randn(c_out, c_in, dtype=dtype, generator=g)
    delays = torch.randint(0, max_delay + 1, (c_out, c_in), generator=g)
    delays[0, 0] = 0  # both ends of the range
    delays[-1, -1] = max_delay
    reset_backend_calls()
    with torch.no_grad():
        y = delayed_linear_int(x, w, delays, backend="numba")
    assert _path_calls() == {"events": 1}
    torch.testing.assert_close(y, _dense_rounded(x, w, delays, max_delay), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_events_sequence_shorter_than_delays(force_events, dtype):
    """T below max_delay: synapses of delay >= T reach no output (all of them, in the last case)."""
    g = torch.Generator().manual_seed(3)
    for T, max_delay, low in ((3, 20, 0), (1, 5, 0), (4, 30, 10)):
        x = _sparse((T, 5, 9), 0.5, dtype, g)
        w = torch.randn(6, 9, dtype=dtype, generator=g)
        delays = torch.randint(low, max_delay + 1, (6, 9), generator=g)
        reset_backend_calls()
        y = delayed_linear_int(x, w, delays, backend="numba")
        assert _path_calls() == {"events": 1}
        torch.testing.assert_close(y, _dense_rounded(x, w, delays, max_delay), **TOL[dtype])
        if low >= T:
            assert not y.any()


def test_events_agree_with_the_dense_kernel_binary_spikes():
    """The SHD-like case: binary spikes, float32; the automatic choice takes the event path at 5% and the dense one
    above the threshold, and both give the dense reference."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 30, generator=g)
    delays = torch.randint(0, 13, (40, 30), generator=g)
    for density, path in ((0.05, "events"), (min(1.0, 2 * INT_EVENT_DENSITY_MAX + 0.1), "dense")):
        x = _sparse((60, 8, 30), density, torch.float32, g, binary=True)
        reset_backend_calls()
        with torch.no_grad():
            y = delayed_linear_int(x, w, delays)
        assert backend_calls("delay_linear_int") == {"numba": 1}
        assert _path_calls() == {path: 1}
        torch.testing.assert_close(y, _dense_rounded(x, w, delays, 12), **TOL[torch.float32])


def test_all_zero_input_takes_the_event_path():
    x = torch.zeros(10, 3, 4, dtype=torch.float64)
    reset_backend_calls()
    y = delayed_linear_int(x, torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 4, (5, 4)))
    assert _path_calls() == {"events": 1}
    assert y.shape == (10, 3, 5) and not y.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_after_the_event_forward(dtype):
    """With autograd the forward may be event-driven; the backward (dense) gives the reference gradients."""
    g = torch.Generator().manual_seed(5)
    x = _sparse((40, 5, 12), 0.04, dtype, g).requires_grad_(True)
    w = torch.randn(9, 12, dtype=dtype, generator=g).requires_grad_(True)
    delays = torch.randint(0, 16, (9, 12), generator=g)
    reset_backend_calls()
    y = delayed_linear_int(x, w, delays)
    assert _path_calls() == {"events": 1}
    x_ref, w_ref = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    y_ref = _dense_rounded(x_ref, w_ref, delays, 15)
    grad = torch.randn(y.shape, dtype=dtype, generator=g)
    y.backward(grad)
    y_ref.backward(grad)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL[dtype])
    torch.testing.assert_close(w.grad, w_ref.grad, **TOL[dtype])


def test_gradcheck_through_the_event_forward(force_events):
    g = torch.Generator().manual_seed(2)
    x = _sparse((9, 2, 3), 0.2, torch.float64, g).requires_grad_(True)
    w = torch.randn(4, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    delays = torch.randint(0, 11, (4, 3), generator=g)  # some >= T
    assert torch.autograd.gradcheck(lambda x, w: delayed_linear_int(x, w, delays, backend="numba"), (x, w))


def test_layer_inference_uses_events_and_threads_agree(monkeypatch):
    """A DelayedLinear in integer mode on spikes; 1 and 3 kernel threads (batch ranges) give the same output."""
    torch.manual_seed(7)
    layer = DelayedLinear(33, 21, 10).round_delays()
    x = (torch.rand(37, 11, 33) < 0.05).float()
    reset_backend_calls()
    monkeypatch.setenv("SPIKELIB_NUM_THREADS", "1")
    with torch.no_grad():
        y1 = layer(x)
    monkeypatch.setenv("SPIKELIB_NUM_THREADS", "3")
    with torch.no_grad():
        y3 = layer(x)
    assert _path_calls() == {"events": 2}
    torch.testing.assert_close(y3, y1)
    torch.testing.assert_close(y1, _dense_rounded(x, layer.weight.detach(), layer.integer_delays(), 10),
                               **TOL[torch.float32])


def test_run_dynamic_covers_every_chunk_once():
    """The dynamic scheduler of the event kernel hands out each chunk exactly once (and re-raises a worker's error)."""
    import threading

    from spikelib.kernels.cpu.threads import run_dynamic

    seen, lock = [], threading.Lock()

    def kernel(out, chunk, c_begin, c_end):
        with lock:
            seen.append((c_begin, c_end))
        for u in range(c_begin * chunk, min(len(out), c_end * chunk)):
            out[u] += 1

    for m, chunk, threads in ((10, 3, 3), (7, 1, 2), (5, 8, 4), (1, 1, 1)):
        out, seen[:] = [0] * m, []
        run_dynamic(kernel, (out,), m, chunk, threads)
        assert out == [1] * m
        assert sorted(seen) == ([(0, -(-m // chunk))] if len(seen) == 1 else [(c, c + 1) for c in range(len(seen))])

    def failing(chunk, c_begin, c_end):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_dynamic(failing, (), 6, 1, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_event_scan_groups_edges_negative_zero_and_non_finite(force_events, dtype):
    """The event scan tests 16 inputs at once by their bits: a lone input at either end of a group or in the tail
    past the last full group is found; -0.0 counts as zero (its bits are not) and NaN as nonzero."""
    from spikelib.kernels.cpu._delay_kernels import SCAN

    c_in = 2 * SCAN + 7
    g = torch.Generator().manual_seed(11)
    w = torch.randn(5, c_in, dtype=dtype, generator=g)
    delays = torch.randint(0, 4, (5, c_in), generator=g)
    delays[:2, SCAN + 5] = torch.tensor([0, 2])  # where the NaN goes: one synapse reaches the last step, one not
    x = torch.zeros(6, 3, c_in, dtype=dtype)
    for s, b, i in ((0, 0, 0), (1, 0, SCAN - 1), (2, 1, SCAN), (3, 2, 2 * SCAN - 1), (4, 0, c_in - 1), (5, 2, 2 * SCAN)):
        x[s, b, i] = 1.5
    x[1, 1, 3] = -0.0  # only a negative zero in its group
    x[2, 2, SCAN + 3] = -0.0
    with torch.no_grad():
        y = delayed_linear_int(x, w, delays, backend="numba")
        torch.testing.assert_close(y, _dense_rounded(x, w, delays, 3), **TOL[dtype])
        assert torch.equal(y, delayed_linear_int(x.abs(), w, delays, backend="numba"))
        x[5, 1, SCAN + 5] = float("nan")
        y = delayed_linear_int(x, w, delays, backend="numba")
    reached = delays[:, SCAN + 5] == 0  # the last step: only delay-0 synapses of that input reach it
    assert torch.equal(torch.isnan(y[5, 1]), reached)
    assert not torch.isnan(y[:5]).any() and not torch.isnan(y[:, [0, 2]]).any()


def test_sampled_density_counts_every_fourth_step():
    from spikelib.kernels.cpu.delay_numba import DENSITY_SAMPLE_STEP, sampled_density

    assert DENSITY_SAMPLE_STEP == 4
    x = torch.zeros(10, 2, 5)
    x[0, 0, :2] = 1.0  # sampled: steps 0, 4, 8
    x[4, 1, 0] = -0.5
    x[1] = 1.0  # not sampled
    x[8, 0, 4] = -0.0  # a negative zero is zero
    assert sampled_density(x) == pytest.approx(3 / 30)
    assert sampled_density(torch.ones(1, 3, 2)) == 1.0  # one step: all of it
    assert sampled_density(torch.zeros(0, 3, 2)) == 0.0
    x = torch.zeros(7, 3, 4)
    x[::4] = 1.0
    assert sampled_density(x) == 1.0 and sampled_density(x[1:].contiguous()) == 0.0


def test_path_follows_the_sampled_steps_and_both_equal_the_reference():
    """The path is chosen on the sampled steps' density; whichever runs, the result is the dense reference's."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(9, 12, generator=g)
    delays = torch.randint(0, 6, (9, 12), generator=g)
    for dense_steps, path in (((0, 4, 8), "dense"), ((1, 2, 3, 5), "events")):
        x = torch.zeros(11, 3, 12)
        x[list(dense_steps)] = torch.randn(len(dense_steps), 3, 12, generator=g)
        reset_backend_calls()
        with torch.no_grad():
            y = delayed_linear_int(x, w, delays, backend="numba")
        assert _path_calls() == {path: 1}
        torch.testing.assert_close(y, _dense_rounded(x, w, delays, 5), **TOL[torch.float32])
