"""The event-driven ``linear`` backend (numba) and ``spikelib.layers.Linear``: outputs and every gradient equal to the
reference (``nn.Linear`` / ``F.linear`` under autograd) up to float summation order, checked against float64; the
intended path proven by ``backend_calls``; the dense fallbacks (density, few outputs, non-finite values) and the
layer's declaration (``Affine``, energy counts equal to ``nn.Linear``'s)."""

import pytest
import torch
from torch import nn

pytest.importorskip("numba")

import spikelib  # noqa: E402
from spikelib.functional.linear import linear  # noqa: E402
from spikelib.graph import declare, nodes  # noqa: E402
from spikelib.kernels import backend_calls, reset_backend_calls  # noqa: E402
from spikelib.kernels.cpu import linear_numba  # noqa: E402
from spikelib.kernels.cpu.linear_numba import PATH_OP  # noqa: E402
from spikelib.layers import Linear  # noqa: E402


def _sparse(shape, density, dtype, g, binary=True):
    mask = torch.rand(shape, generator=g) < density
    values = torch.ones(shape, dtype=dtype) if binary else torch.randn(shape, dtype=dtype, generator=g) * 2
    return (values * mask).to(dtype)


def _run(fn, x, w, b, gy):
    """Output and gradients of ``fn(x, w, b)`` for the output gradient ``gy``."""
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    b = None if b is None else b.detach().clone().requires_grad_(True)
    y = fn(x, w, b)
    y.backward(gy)
    return y.detach(), x.grad, w.grad, None if b is None else b.grad


def _reference64(x, w, b, gy):
    return _run(lambda x_, w_, b_: torch.nn.functional.linear(x_, w_, b_), x.double(), w.double(),
                None if b is None else b.double(), gy.double())


def _close_to_reference(ours, dense, ref64, dtype):
    """Each of ours is as close to the float64 result as the dense float product is (with a small margin)."""
    for name, a, d, r in zip(("output", "grad_x", "grad_w", "grad_b"), ours, dense, ref64):
        if r is None:
            assert a is None
            continue
        err = (a.double() - r).abs().max().item()
        err_dense = (d.double() - r).abs().max().item()
        scale = r.abs().max().item() + 1.0
        eps = torch.finfo(dtype).eps
        assert err <= 4 * err_dense + 64 * eps * scale, (name, err, err_dense)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(30, 8, 700, 256), (7, 3, 33, 64), (5, 129, 70), (60, 1, 3, 100)])
def test_events_equal_reference(dtype, binary, bias, shape):
    *lead, c_in, c_out = shape
    g = torch.Generator().manual_seed(c_in * 7 + c_out)
    x = _sparse(tuple(lead) + (c_in,), 0.05, dtype, g, binary)
    x.view(-1, c_in)[0, 0] = 1.0  # at least one event
    w = torch.randn(c_out, c_in, dtype=dtype, generator=g)
    b = torch.randn(c_out, dtype=dtype, generator=g) if bias else None
    gy = torch.randn(tuple(lead) + (c_out,), dtype=dtype, generator=g)
    reset_backend_calls()
    ours = _run(lambda *a: linear(*a, backend="numba"), x, w, b, gy)
    assert backend_calls(PATH_OP) == {"events": 1, "grad_weight_events": 1}
    dense = _run(lambda *a: linear(*a, backend="torch"), x, w, b, gy)
    _close_to_reference(ours, dense, _reference64(x, w, b, gy), dtype)


@pytest.mark.parametrize("density", [0.0, 0.16, 0.6, 1.0])
def test_density_chooses_path(density):
    g = torch.Generator().manual_seed(1)
    x = _sparse((20, 4, 50), density, torch.float32, g)
    w = torch.randn(80, 50, generator=g)
    b = torch.randn(80, generator=g)
    gy = torch.randn(20, 4, 80, generator=g)
    reset_backend_calls()
    ours = _run(lambda *a: linear(*a, backend="numba"), x, w, b, gy)
    expected = "events" if density <= linear_numba.EVENT_DENSITY_MAX else "dense"
    assert backend_calls(PATH_OP).get(expected) == 1 and len(backend_calls(PATH_OP)) == (2 if expected == "events"
                                                                                         else 1)
    dense = _run(lambda *a: linear(*a, backend="torch"), x, w, b, gy)
    _close_to_reference(ours, dense, _reference64(x, w, b, gy), torch.float32)


def test_few_outputs_run_dense():
    g = torch.Generator().manual_seed(2)
    x = _sparse((10, 4, 300), 0.05, torch.float32, g)
    w = torch.randn(linear_numba.EVENT_MIN_OUTPUTS - 1, 300, generator=g)
    reset_backend_calls()
    with torch.no_grad():
        y = linear(x, w, None, backend="numba")
    assert backend_calls(PATH_OP) == {"dense": 1}
    torch.testing.assert_close(y, x @ w.t())


def test_every_mask_byte_pattern_is_listed(monkeypatch):
    """All 256 patterns of 8 inputs (the packed masks), then 8 more inputs, in one batch."""
    patterns = torch.tensor([[m >> u & 1 for u in range(8)] for m in range(256)], dtype=torch.float64)
    x = torch.cat([patterns, patterns[:, :3].flip(0), patterns[:, 5:]], dim=1)  # 16 inputs per row
    w = torch.randn(64, x.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(linear_numba, "EVENT_DENSITY_MAX", 1.0)
    reset_backend_calls()
    with torch.no_grad():
        y = linear(x, w, None, backend="numba")
    assert backend_calls(PATH_OP) == {"events": 1}
    torch.testing.assert_close(y, x @ w.t(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("binary", [True, False])
def test_word_boundaries_of_the_listing(binary):
    """Rows whose nonzero inputs sit at the edges of the listing's 64-bit mask words (0, 63, 64, 127, 128) and in the
    padded last word (129 of 130 inputs), each alone and all together, listed in order with their values."""
    c_in, edges = 130, [0, 63, 64, 127, 128, 129]
    rows = [[j] for j in edges] + [edges, list(range(c_in))[::3], []]
    x = torch.zeros(len(rows), c_in, dtype=torch.float64)
    for r, cols in enumerate(rows):
        x[r, cols] = 1.0 if binary else torch.arange(1, len(cols) + 1, dtype=torch.float64) / 7
    w = torch.randn(64, c_in, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    reset_backend_calls()
    with torch.no_grad():
        y = linear(x, w, None, backend="numba")
    assert backend_calls(PATH_OP) == {"events": 1}
    torch.testing.assert_close(y, x @ w.t(), rtol=1e-12, atol=1e-12)


def test_transposed_weight_reads_without_copies_and_leaf_gradient_keeps_its_layout():
    """A weight that is the transpose of a contiguous ``[C_in, C_out]`` matrix (the ELM's input projection: the
    event kernels read it as it is) gets the reference's gradients through the transpose; a leaf weight's gradient
    has the leaf's (contiguous) layout."""
    g = torch.Generator().manual_seed(12)
    x = _sparse((50, 4, 300), 0.03, torch.float64, g)
    m = torch.randn(300, 128, dtype=torch.float64, generator=g, requires_grad=True)  # [C_in, C_out]
    gy = torch.randn(50, 4, 128, dtype=torch.float64, generator=g)
    reset_backend_calls()
    linear(x, m.t(), None, backend="numba").backward(gy)
    assert backend_calls(PATH_OP) == {"events": 1, "grad_weight_events": 1}
    m_ref = m.detach().clone().requires_grad_(True)
    torch.nn.functional.linear(x, m_ref.t()).backward(gy)
    torch.testing.assert_close(m.grad, m_ref.grad, rtol=1e-12, atol=1e-12)
    leaf = m.detach().t().contiguous().requires_grad_(True)
    linear(x, leaf, None, backend="numba").backward(gy)
    assert leaf.grad.is_contiguous() and leaf.grad.shape == leaf.shape
    torch.testing.assert_close(leaf.grad, m_ref.grad.t(), rtol=1e-12, atol=1e-12)


def test_values_and_weight_gradient_with_forced_events(monkeypatch):
    """Dense real-valued inputs through the event path (every entry an event) against float64."""
    monkeypatch.setattr(linear_numba, "EVENT_DENSITY_MAX", 1.0)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(9, 5, 37, generator=g)
    x[x.abs() < 0.5] = 0
    w = torch.randn(70, 37, generator=g)
    b = torch.randn(70, generator=g)
    gy = torch.randn(9, 5, 70, generator=g)
    reset_backend_calls()
    ours = _run(lambda *a: linear(*a, backend="numba"), x, w, b, gy)
    assert backend_calls(PATH_OP) == {"events": 1, "grad_weight_events": 1}
    dense = _run(lambda *a: linear(*a, backend="torch"), x, w, b, gy)
    _close_to_reference(ours, dense, _reference64(x, w, b, gy), torch.float32)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(5)
    x = _sparse((3, 2, 12), 0.1, torch.float64, g).requires_grad_(True)
    w = torch.randn(64, 12, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(64, dtype=torch.float64, generator=g, requires_grad=True)
    reset_backend_calls()
    assert torch.autograd.gradcheck(lambda *a: linear(*a, backend="numba"), (x, w, b))
    assert backend_calls(PATH_OP).get("events", 0) >= 1


def test_nonfinite_weight_propagates_as_reference():
    """0 * inf is NaN in the dense product: a non-finite weight sends the call to the dense path."""
    g = torch.Generator().manual_seed(6)
    x = _sparse((6, 2, 40), 0.05, torch.float32, g)
    w = torch.randn(64, 40, generator=g)
    w[3, 7] = float("inf")
    reset_backend_calls()
    with torch.no_grad():
        y = linear(x, w, None, backend="numba")
    assert backend_calls(PATH_OP) == {"dense": 1}
    ref = torch.nn.functional.linear(x, w)
    assert torch.equal(torch.isnan(y), torch.isnan(ref)) and torch.equal(torch.isinf(y), torch.isinf(ref))


def test_nonfinite_output_gradient_propagates_as_reference():
    g = torch.Generator().manual_seed(7)
    x = _sparse((6, 2, 40), 0.05, torch.float32, g)
    x[0, 0, :3] = 1.0
    w = torch.randn(64, 40, generator=g)
    gy = torch.randn(6, 2, 64, generator=g)
    gy[0, 0, 5] = float("inf")
    reset_backend_calls()
    ours = _run(lambda *a: linear(*a, backend="numba"), x, w, None, gy)
    assert backend_calls(PATH_OP) == {"events": 1, "grad_weight_dense": 1}
    ref = _run(lambda *a: linear(*a, backend="torch"), x, w, None, gy)
    for a, r in zip(ours[1:3], ref[1:3]):
        assert torch.equal(torch.isnan(a), torch.isnan(r)) and torch.equal(torch.isinf(a), torch.isinf(r))
        finite = torch.isfinite(r)
        torch.testing.assert_close(a[finite], r[finite])


def test_same_result_with_any_thread_count(monkeypatch):
    g = torch.Generator().manual_seed(8)
    x = _sparse((50, 16, 300), 0.05, torch.float32, g)
    w = torch.randn(128, 300, generator=g)
    gy = torch.randn(50, 16, 128, generator=g)
    results = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("SPIKELIB_NUM_THREADS", threads)
        results.append(_run(lambda *a: linear(*a, backend="numba"), x, w, None, gy))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a is None and b is None or torch.equal(a, b)


def test_noncontiguous_input_retain_graph_and_empty():
    g = torch.Generator().manual_seed(9)
    x = _sparse((40, 6, 3), 0.05, torch.float32, g).permute(2, 1, 0)  # [3, 6, 40], not contiguous
    w = torch.randn(64, 40, generator=g, requires_grad=True)
    y = linear(x, w, None, backend="numba")
    torch.testing.assert_close(y, torch.nn.functional.linear(x, w))
    y.sum().backward(retain_graph=True)
    first = w.grad.clone()
    y.sum().backward()
    torch.testing.assert_close(w.grad, 2 * first)
    empty = linear(torch.zeros(0, 4, 40), w.detach(), None, backend="numba")
    assert empty.shape == (0, 4, 64)


def test_bad_arguments_name_the_argument():
    w = torch.randn(8, 5)
    with pytest.raises(ValueError, match="5 features"):
        linear(torch.randn(2, 4), w)
    with pytest.raises(TypeError, match="weight has dtype"):
        linear(torch.randn(2, 5, dtype=torch.float64), w)
    with pytest.raises(ValueError, match="bias"):
        linear(torch.randn(2, 5), w, torch.randn(3))
    with pytest.raises(TypeError, match="floating"):
        linear(torch.ones(2, 5, dtype=torch.int64), w)
    with pytest.raises(ValueError, match="backend"):
        Linear(5, 8, backend="gpu-magic")


def test_layer_is_a_drop_in_nn_linear():
    torch.manual_seed(10)
    ref = nn.Linear(700, 128)
    lin = Linear(700, 128)
    assert isinstance(lin, nn.Linear)
    lin.load_state_dict(ref.state_dict())
    assert set(lin.state_dict()) == set(ref.state_dict())
    assert "backend='auto'" in repr(lin)
    x = _sparse((12, 4, 700), 0.05, torch.float32, torch.Generator().manual_seed(11))
    reset_backend_calls()
    y = lin(x)
    assert backend_calls("linear") == {"numba": 1} and backend_calls(PATH_OP) == {"events": 1}
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    node = declare(lin)
    assert isinstance(node, nodes.Affine)
    assert torch.equal(node.weight, lin.weight) and torch.equal(node.bias, lin.bias)


def test_energy_counts_equal_nn_linear():
    from spikelib.hardware.energy import EnergyCounter

    torch.manual_seed(12)
    ref = nn.Sequential(nn.Linear(30, 64), spikelib.LIF(), nn.Linear(64, 10))
    ours = nn.Sequential(Linear(30, 64), spikelib.LIF(), Linear(64, 10))
    ours.load_state_dict(ref.state_dict())
    x = _sparse((8, 3, 30), 0.2, torch.float32, torch.Generator().manual_seed(13))

    def counts(model):
        with EnergyCounter(model) as counter, torch.no_grad():
            model[2](model[1](model[0](x)))
        return counter.counts()

    a, b = counts(ref), counts(ours)
    for name in ("0", "1", "2"):
        la, lb = a.layer(name), b.layer(name)
        assert (la.sops, la.macs, la.dense_macs, la.in_spikes) == (lb.sops, lb.macs, lb.dense_macs, lb.in_spikes)


def test_auto_runs_torch_off_cpu_dtypes():
    x = _sparse((4, 2, 10), 0.1, torch.float16, torch.Generator().manual_seed(14))
    w = torch.randn(64, 10, dtype=torch.float16)
    reset_backend_calls()
    y = linear(x, w, None)
    assert backend_calls("linear") == {"torch": 1}
    assert y.dtype == torch.float16


def test_autocast_runs_torch_linear_with_its_dtype_rules():
    """Under torch.autocast the layer computes as nn.Linear does (bfloat16 output), never the float32 kernels."""
    import torch

    from spikelib.layers.linear import Linear

    torch.manual_seed(0)
    layer = Linear(64, 80)
    ref = torch.nn.Linear(64, 80)
    ref.load_state_dict(layer.state_dict())
    x = (torch.rand(10, 4, 64) < 0.05).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, want = layer(x), ref(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, want)
