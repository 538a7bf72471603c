"""The ``max_pool2d`` backends and ``spikelib.layers.pool.MaxPool2d``: outputs, indices and gradients equal to
``torch.nn.functional.max_pool2d`` bit for bit (ties, NaN and -inf included), the intended path proven by
``backend_calls``, the shape rules of ``"auto"``, clear errors, and the layer interchangeable with ``nn.MaxPool2d``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikelib  # noqa: F401  (registers the backends)
from spikelib.functional.pool import max_pool2d
from spikelib.graph import declare
from spikelib.kernels import BackendUnavailableError, available_backends, backend_calls, reset_backend_calls
from spikelib.layers.pool import MaxPool2d

GEOMETRIES = [
    {"kernel_size": 3, "stride": 2, "padding": 1},  # Max-Former's and the SPS's pooling
    {"kernel_size": 2},
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0)},
    {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
]


def _pool_and_grad(fn, x, gy_seed=3):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(gy_seed), dtype=x.dtype)
    y.backward(gy)
    return y.detach(), x.grad


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("values", ["ties", "real", "special"])
def test_channels_last_equals_reference_bit_for_bit(geometry, values):
    g = torch.Generator().manual_seed(0)
    if values == "ties":  # few distinct values: many windows hold several maxima
        x = torch.randint(0, 3, (3, 8, 11, 10), generator=g).float()
    else:
        x = torch.randn(3, 8, 11, 10, generator=g)
    if values == "special":
        x[0, 1, 2, 3] = float("nan")
        x[1, 2, :, :] = float("-inf")
        x[2, 3, 5, 5] = float("inf")
    reset_backend_calls()
    ours = _pool_and_grad(lambda t: max_pool2d(t, **geometry), x)
    assert backend_calls("max_pool2d") == {"channels_last": 1}
    ref = _pool_and_grad(lambda t: F.max_pool2d(t, **geometry), x)
    for a, r in zip(ours, ref):
        assert a.is_contiguous() and a.shape == r.shape
        assert torch.equal(a.isnan(), r.isnan())
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(r))
    y, idx = max_pool2d(x, return_indices=True, **geometry)
    y_ref, idx_ref = F.max_pool2d(x, return_indices=True, **geometry)
    assert torch.equal(idx, idx_ref) and torch.equal(y.isnan(), y_ref.isnan())


def test_auto_rules_and_explicit_backends():
    x = torch.randn(2, 4, 8, 8)
    cases = [
        (x, "channels_last"),
        (x.contiguous(memory_format=torch.channels_last), "torch"),  # already fast
        (x[:, :, ::2], "torch"),  # strided
        (x[0], "torch"),  # unbatched [C, H, W]
    ]
    for t, expected in cases:
        reset_backend_calls()
        assert torch.equal(max_pool2d(t, 3, 2, 1), F.max_pool2d(t, 3, 2, 1))
        assert backend_calls("max_pool2d") == {expected: 1}
    # named explicitly, a channels-last or strided input is pooled on a channels-last copy too; the result is row-major
    reset_backend_calls()
    y = max_pool2d(x[:, :, ::2], 3, 2, 1, backend="channels_last")
    assert backend_calls("max_pool2d") == {"channels_last": 1}
    assert y.is_contiguous() and torch.equal(y, F.max_pool2d(x[:, :, ::2], 3, 2, 1))
    with pytest.raises(BackendUnavailableError, match="batched"):
        max_pool2d(x[0], 3, backend="channels_last")
    with pytest.raises(ValueError, match="unknown backend"):
        max_pool2d(x, 3, backend="fast")
    assert set(available_backends("max_pool2d")) == {"torch", "channels_last"}


def test_channels_last_second_derivatives_and_no_grad_path():
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    fn = lambda t: max_pool2d(t, 3, 2, 1, backend="channels_last")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    with torch.no_grad():  # no autograd node: indices are made only when asked for
        y = max_pool2d(x, 3, 2, 1, backend="channels_last")
    assert y.grad_fn is None and torch.equal(y, F.max_pool2d(x.detach(), 3, 2, 1))


def test_bad_arguments_name_what_was_expected():
    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(ValueError, match="3-d .* or 4-d"):
        max_pool2d(torch.randn(8, 8), 2)
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        max_pool2d(x, 0)
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        max_pool2d(x, 2, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="padding must be an int or a pair"):
        max_pool2d(x, 2, padding=-1)
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        MaxPool2d(2, backend="fast")


def test_layer_is_an_nn_max_pool2d():
    ours, ref = MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, 1)
    assert isinstance(ours, nn.MaxPool2d) and repr(ours) == repr(ref)
    assert repr(MaxPool2d(2, backend="torch")).endswith("backend='torch')")
    assert ours.state_dict() == {} and repr(declare(ours)) == repr(declare(ref))
    x = torch.randn(2, 6, 9, 9)
    seen = []
    ours.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    assert seen == [torch.Size([2, 6, 5, 5])]
    y, idx = MaxPool2d(2, return_indices=True)(x)
    y_ref, idx_ref = nn.MaxPool2d(2, return_indices=True)(x)
    assert torch.equal(y, y_ref) and torch.equal(idx, idx_ref)
    torch.testing.assert_close(MaxPool2d(3, 2, 1)(x[0]), ref(x[0]), rtol=0, atol=0)  # unbatched: torch's path


def test_max_former_training_step_equal_with_torch_pooling():
    """A Max-Former step (tiny) gives bit-for-bit the same loss and gradients with either pooling backend."""
    from spikelib.models import get_model

    torch.manual_seed(0)
    model = get_model("maxformer_10_384", T=1, num_classes=10)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    pools = [m for m in model.modules() if isinstance(m, MaxPool2d)]
    assert pools, "Max-Former should pool with spikelib's MaxPool2d"

    def grads(backend):
        for m in pools:
            m.backend = backend
        model.zero_grad(set_to_none=True)
        reset_backend_calls()
        loss = model(x).square().mean()
        loss.backward()
        assert set(backend_calls("max_pool2d")) == {backend}
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss_a, g_a = grads("channels_last")
    loss_b, g_b = grads("torch")
    assert torch.equal(loss_a, loss_b) and len(g_a) == len(g_b)
    assert all(torch.equal(a, b) for a, b in zip(g_a, g_b))
