"""The ``conv2d`` backends (1x1 convolutions as one matrix product, depth-wise convolutions in channels-last, 3x3
convolutions by Winograd's F(2x2, 3x3)) and
``spikelib.layers.conv.Conv2d``: outputs and every gradient equal to ``torch.nn.functional.conv2d`` under autograd up to
float summation order (checked against float64), the intended path proven by ``backend_calls``, the shape rules of
``"auto"``, clear errors, and the layer interchangeable with ``nn.Conv2d`` (parameters, checkpoint, hooks, graph
declaration, the models' reference equivalence)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikelib  # noqa: F401  (registers the backends)
from spikelib.functional.conv import POINTWISE_GEMM_MAX_PIXELS, conv2d
from spikelib.graph import declare
from spikelib.kernels import BackendUnavailableError, available_backends, backend_calls, reset_backend_calls
from spikelib.kernels.cpu import winograd_numba
from spikelib.kernels.cpu.depthwise_numba import MIN_PIXELS as DEPTHWISE_MIN_PIXELS
from spikelib.layers.conv import Conv2d


def _run(fn, x, w, b, gy):
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    b = None if b is None else b.detach().clone().requires_grad_(True)
    y = fn(x, w, b)
    y.backward(gy)
    return y.detach(), x.grad, w.grad, None if b is None else b.grad


def _inputs(x_shape, w_shape, bias, dtype, seed=0, spikes=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(x_shape, generator=g) < 0.3).to(dtype) if spikes else torch.randn(x_shape, generator=g, dtype=dtype)
    w = torch.randn(w_shape, generator=g, dtype=dtype) / w_shape[1] ** 0.5
    b = torch.randn(w_shape[0], generator=g, dtype=dtype) if bias else None
    return x, w, b


def _assert_like_reference(backend, x, w, b, kw, expect_path):
    """``backend`` against F.conv2d: each result as close to the float64 one as F.conv2d's own in x's dtype."""
    y_ref = F.conv2d(x, w, b, **kw)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(7), dtype=x.dtype)
    reset_backend_calls()
    ours = _run(lambda x_, w_, b_: conv2d(x_, w_, b_, backend=backend, **kw), x, w, b, gy)
    assert backend_calls("conv2d") == {expect_path: 1}
    dense = _run(lambda x_, w_, b_: F.conv2d(x_, w_, b_, **kw), x, w, b, gy)
    ref64 = _run(lambda x_, w_, b_: F.conv2d(x_, w_, b_, **kw), x.double(), w.double(),
                 None if b is None else b.double(), gy.double())
    eps = torch.finfo(x.dtype).eps
    for name, a, d, r in zip(("output", "grad_x", "grad_w", "grad_b"), ours, dense, ref64):
        if r is None:
            assert a is None, name
            continue
        assert a.shape == r.shape and a.dtype == x.dtype, name
        err = (a.double() - r).abs().max().item()
        err_dense = (d.double() - r).abs().max().item()
        assert err <= 4 * err_dense + 64 * eps * (r.abs().max().item() + 1.0), (name, err, err_dense)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(8, 384, 4, 4, 384), (8, 96, 8, 8, 192), (3, 5, 2, 7, 11), (1, 1, 1, 1, 1)])
def test_pointwise_gemm_equals_reference(dtype, bias, shape):
    n, c_in, h, w_, c_out = shape
    x, w, b = _inputs((n, c_in, h, w_), (c_out, c_in, 1, 1), bias, dtype, spikes=c_in > 8)
    _assert_like_reference("auto", x, w, b, {}, "pointwise_gemm")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("geometry", [
    ((8, 96, 32, 32), 7, {"padding": 3}),
    ((8, 384, 6, 6), 3, {}),
    ((2, 16, 9, 11), 5, {"padding": 2, "stride": 2}),
    ((2, 16, 9, 11), 3, {"padding": (1, 2), "dilation": 2}),
    ((2, 6, 10, 10), 3, {"padding": "same"}),
])
def test_depthwise_channels_last_equals_reference(dtype, bias, geometry):
    x_shape, k, kw = geometry
    c = x_shape[1]
    x, w, b = _inputs(x_shape, (c, 1, k, k), bias, dtype)
    _assert_like_reference("depthwise_channels_last", x, w, b, {**kw, "groups": c}, "depthwise_channels_last")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("geometry", [
    ((8, 96, 32, 32), 7, {"padding": 3}),  # Meta-SpikeFormer's sizes: several segments of the kernel's dot products
    ((8, 384, 8, 8), 7, {"padding": 3}),
    ((8, 192, 8, 8), 5, {"padding": 2}),
    ((8, 384, 6, 6), 3, {}),
    ((2, 16, 9, 11), 3, {"padding": (1, 2), "dilation": 2}),
    ((2, 16, 9, 11), (3, 5), {"padding": (2, 0), "dilation": (1, 2)}),
    ((2, 6, 10, 10), 3, {"padding": "same"}),
    ((3, 4, 5, 7), 5, {"padding": "valid"}),
    ((1, 2, 1, 1), 3, {"padding": 1}),
])
def test_depthwise_numba_equals_reference(dtype, bias, geometry):
    x_shape, k, kw = geometry
    kh, kw_ = (k, k) if isinstance(k, int) else k
    c = x_shape[1]
    x, w, b = _inputs(x_shape, (c, 1, kh, kw_), bias, dtype, spikes=c > 8)
    _assert_like_reference("depthwise_numba", x, w, b, {**kw, "groups": c}, "depthwise_numba")


def test_depthwise_numba_weight_gradient_kernel_against_float64_loops():
    """The kernel's weight gradient against an independent float64 sum over taps and pixels."""
    from spikelib.kernels.cpu.depthwise_numba import depthwise_weight_grad

    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, 7, 6, generator=g, dtype=torch.float64)
    (ph, pw), (dh, dw), (kh, kw) = (2, 1), (2, 1), (3, 4)
    ho, wo = 7 + 2 * ph - dh * (kh - 1), 6 + 2 * pw - dw * (kw - 1)
    gy = torch.randn(3, 5, ho, wo, generator=g, dtype=torch.float64)
    xp = F.pad(x, (pw, pw, ph, ph))
    expected = torch.zeros(5, 1, kh, kw, dtype=torch.float64)
    for p in range(kh):
        for q in range(kw):
            expected[:, 0, p, q] = (xp[:, :, p * dh:p * dh + ho, q * dw:q * dw + wo] * gy).sum((0, 2, 3))
    got = depthwise_weight_grad(x, gy, (kh, kw), (ph, pw), (dh, dw))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_depthwise_numba_gradients_only_where_needed():
    x, w, b = _inputs((2, 8, 8, 8), (8, 1, 3, 3), True, torch.float64)
    for wanted in ("x", "w", "b"):
        args = {"x": x.clone(), "w": w.clone(), "b": b.clone()}
        args[wanted].requires_grad_(True)
        reset_backend_calls()
        (got,) = torch.autograd.grad(conv2d(args["x"], args["w"], args["b"], padding=1, groups=8).square().sum(),
                                     args[wanted])
        assert backend_calls("conv2d") == {"depthwise_numba": 1}
        (ref,) = torch.autograd.grad(F.conv2d(args["x"], args["w"], args["b"], padding=1, groups=8).square().sum(),
                                     args[wanted])
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_depthwise_numba_non_finite_inputs_like_the_convolution():
    """An infinite or NaN pixel: the weight gradient comes from oneDNN, so NaN and inf land where F.conv2d puts them."""
    x, w, b = _inputs((2, 8, 8, 8), (8, 1, 3, 3), True, torch.float32)
    x[0, 2, 0, 7] = float("inf")  # the last column: the kernel's padded reads would meet it in neighbouring taps
    x[1, 5, 4, 0] = float("nan")
    gy = torch.randn(2, 8, 8, 8)
    ours = _run(lambda x_, w_, b_: conv2d(x_, w_, b_, padding=1, groups=8, backend="depthwise_numba"), x, w, b, gy)
    ref = _run(lambda x_, w_, b_: F.conv2d(x_, w_, b_, padding=1, groups=8), x, w, b, gy)
    for a, r in zip(ours, ref):
        assert torch.equal(a.isnan(), r.isnan()) and torch.equal(a.isinf(), r.isinf())
        finite = a.isfinite()
        torch.testing.assert_close(a[finite], r[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("geometry", [
    ((4, 192, 8, 8), 384, {"padding": 1}),  # Meta-SpikeFormer's kind: several threads, spikes in
    ((2, 96, 16, 16), 192, {"padding": 1}),
    ((2, 5, 7, 9), 6, {"padding": 1}),  # odd sizes: partial tiles at the bottom and on the right
    ((3, 4, 2, 9), 3, {"padding": "same"}),
    ((2, 3, 1, 6), 2, {"padding": 1}),
    ((1, 1, 1, 1), 1, {"padding": 1}),
])
def test_winograd_numba_equals_reference(dtype, bias, geometry):
    x_shape, c_out, kw = geometry
    x, w, b = _inputs(x_shape, (c_out, x_shape[1], 3, 3), bias, dtype, spikes=x_shape[1] > 8)
    _assert_like_reference("winograd_numba", x, w, b, kw, "winograd_numba")


def test_winograd_numba_float64_to_rounding_and_gradcheck():
    """In float64 every transform and adjoint is exact up to ~1e-15 of the values: the output and all gradients
    against ``F.conv2d`` to 1e-12 (partial tiles included), and autograd's numerical checks of the first and second
    derivatives."""
    for shape, c_out in (((2, 6, 9, 7), 5), ((3, 40, 8, 8), 24)):
        x, w, b = _inputs(shape, (c_out, shape[1], 3, 3), True, torch.float64, seed=11)
        gy = torch.randn(shape[0], c_out, *shape[2:], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        reset_backend_calls()
        ours = _run(lambda x_, w_, b_: conv2d(x_, w_, b_, padding=1, backend="winograd_numba"), x, w, b, gy)
        assert backend_calls("conv2d") == {"winograd_numba": 1}
        ref = _run(lambda x_, w_, b_: F.conv2d(x_, w_, b_, padding=1), x, w, b, gy)
        for name, a, r in zip(("output", "grad_x", "grad_w", "grad_b"), ours, ref):
            torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12 * r.abs().max().item(), msg=name)
    args = tuple(t.clone().requires_grad_(True) for t in _inputs((2, 3, 5, 4), (2, 3, 3, 3), True, torch.float64,
                                                                  seed=4))
    fn = lambda x_, w_, b_: conv2d(x_, w_, b_, padding=1, backend="winograd_numba")  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_winograd_numba_input_transform_against_tiles_in_float64():
    """The kernel's ``B^T d B`` of every tile against the tiles cut out with ``unfold`` and multiplied by the matrices
    of the module docstring."""
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    bt = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
    tiles = F.pad(x, (1, 1, 1, 2)).unfold(2, 4, 2).unfold(3, 4, 2)  # [N, C, TY, TX, 4, 4] (an odd height: one more)
    expected = torch.einsum("ij,nctsjk,lk->ilcnts", bt, tiles, bt).reshape(16, 3, -1)
    got = winograd_numba.transform_input(x)[1]
    assert got.shape == expected.shape == (16, 3, 2 * 3 * 3)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    g = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected_u = torch.einsum("ij,ocjk,lk->iloc", g, w, g).reshape(16, 4, 3)
    torch.testing.assert_close(winograd_numba.transform_weight(w), expected_u, rtol=1e-15, atol=1e-15)


def test_winograd_numba_gradients_only_where_needed():
    x, w, b = _inputs((2, 6, 8, 8), (5, 6, 3, 3), True, torch.float64)
    for wanted in ("x", "w", "b"):
        args = {"x": x.clone(), "w": w.clone(), "b": b.clone()}
        args[wanted].requires_grad_(True)
        reset_backend_calls()
        (got,) = torch.autograd.grad(conv2d(args["x"], args["w"], args["b"], padding=1,
                                            backend="winograd_numba").square().sum(), args[wanted])
        assert backend_calls("conv2d") == {"winograd_numba": 1}
        (ref,) = torch.autograd.grad(F.conv2d(args["x"], args["w"], args["b"], padding=1).square().sum(),
                                     args[wanted])
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_winograd_numba_non_finite_values_like_the_convolution():
    """An infinite or NaN input pixel, weight or output gradient: oneDNN's path, so NaN and inf land where F.conv2d
    puts them (the transforms would spread a NaN over whole tiles)."""
    x, w, b = _inputs((2, 8, 8, 8), (6, 8, 3, 3), True, torch.float32)
    gy = torch.randn(2, 6, 8, 8)
    cases = []
    xi = x.clone()
    xi[0, 2, 0, 7] = float("inf")
    xi[1, 5, 4, 0] = float("nan")
    cases.append((xi, w, gy))
    wi = w.clone()
    wi[3, 1, 1, 1] = float("inf")
    cases.append((x, wi, gy))
    gi = gy.clone()
    gi[1, 2, 3, 3] = float("inf")
    cases.append((x, w, gi))
    for xc, wc, gc in cases:
        ours = _run(lambda x_, w_, b_: conv2d(x_, w_, b_, padding=1, backend="winograd_numba"), xc, wc, b, gc)
        ref = _run(lambda x_, w_, b_: F.conv2d(x_, w_, b_, padding=1), xc, wc, b, gc)
        for a, r in zip(ours, ref):
            assert torch.equal(a.isnan(), r.isnan()) and torch.equal(a.isinf(), r.isinf())
            finite = a.isfinite()
            torch.testing.assert_close(a[finite], r[finite], rtol=1e-5, atol=1e-5)


def test_winograd_numba_layouts():
    """A channels-last input gives a channels-last result (as F.conv2d does); a strided input is read as it is."""
    x, w, b = _inputs((2, 6, 8, 8), (5, 6, 3, 3), True, torch.float64)
    y = conv2d(x.to(memory_format=torch.channels_last), w, b, padding=1, backend="winograd_numba")
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1))
    xs = torch.randn(2, 6, 16, 8, dtype=torch.float64)[:, :, ::2]
    torch.testing.assert_close(conv2d(xs, w, b, padding=1, backend="winograd_numba"), F.conv2d(xs, w, b, padding=1))


def test_winograd_numba_tile_buffers_share_the_scratch_arena():
    """Every pass's tile buffers come from the thread's scratch arena: after layers of three sizes, the workspace
    keeps one block of the largest pass's size (whole MiB), not one block per buffer size, and a further call makes
    no new block; results equal F.conv2d's."""
    workspace = pytest.importorskip("spikelib.kernels.cpu.workspace")
    winograd_numba = pytest.importorskip("spikelib.kernels.cpu.winograd_numba")
    layers = [((4, 32, 8, 8), (96, 32, 3, 3)), ((4, 96, 8, 8), (32, 96, 3, 3)), ((4, 16, 16, 16), (48, 16, 3, 3))]
    workspace.clear()
    largest = 0
    for shape_x, shape_w in layers:
        (n, c_in, h, w), c_out = shape_x, shape_w[0]
        columns = n * ((h + 1) // 2) * ((w + 1) // 2)
        largest = max(largest, sum(winograd_numba.tile_bytes(c, p, torch.float32)
                                   for c, p in ((c_in, columns), (c_out, c_in), (c_out, columns))))
    inputs = [tuple(t.requires_grad_() for t in _inputs(sx, sw, True, torch.float32)) for sx, sw in layers]
    for x, w, b in sorted(inputs, key=lambda t: -t[0].numel() * t[1].shape[0]) + inputs:
        y = conv2d(x, w, b, padding=1, backend="winograd_numba")
        gx, gw, gb = torch.autograd.grad(y.square().sum(), (x, w, b))
        ref = F.conv2d(x, w, b, padding=1)
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close((gx, gw, gb), torch.autograd.grad(ref.square().sum(), (x, w, b)),
                                   rtol=1e-4, atol=1e-3)
    arena = -(-largest // (1 << 20)) * (1 << 20)
    assert workspace.free_bytes() == arena
    x, w, b = inputs[0]
    before = workspace.stats()["new_blocks"]
    torch.autograd.grad(conv2d(x, w, b, padding=1, backend="winograd_numba").sum(), (x, w))
    assert workspace.stats()["new_blocks"] == before


def test_depthwise_with_channel_multiplier_and_layouts():
    x, w, b = _inputs((2, 8, 12, 12), (16, 1, 3, 3), True, torch.float64)
    _assert_like_reference("auto", x, w, b, {"padding": 1, "groups": 8}, "depthwise_channels_last")
    # the result keeps the input's memory format; a strided input is read as it is
    y = conv2d(x.to(memory_format=torch.channels_last), w, b, padding=1, groups=8)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert conv2d(x, w, b, padding=1, groups=8).is_contiguous()
    xs = torch.randn(2, 8, 24, 12, dtype=torch.float64)[:, :, ::2]
    torch.testing.assert_close(conv2d(xs, w, b, padding=1, groups=8), F.conv2d(xs, w, b, padding=1, groups=8))


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel lengths")
def test_auto_rules():
    """``auto``: 1x1 up to POINTWISE_GEMM_MAX_PIXELS pixels; depth-wise of stride 1, one filter per channel and
    symmetric padding from MIN_PIXELS pixels by the numba weight gradient, other depth-wise ones channels-last (CPU);
    everything else torch."""
    cases = [
        ((2, 8, 8, 8), (4, 8, 1, 1), {}, "pointwise_gemm"),
        ((2, 8, 9, 8), (4, 8, 1, 1), {}, "torch"),  # 72 pixels
        ((2, 8, 4, 4), (4, 8, 1, 1), {"stride": 2}, "torch"),
        ((2, 8, 4, 4), (4, 8, 1, 1), {"padding": 1}, "torch"),
        ((2, 8, 4, 4), (4, 4, 1, 1), {"groups": 2}, "torch"),
        ((2, 8, 4, 4), (4, 8, 3, 3), {}, "torch"),
        ((2, 8, 4, 4), (8, 1, 3, 3), {"groups": 8}, "depthwise_channels_last"),  # 16 pixels
        ((2, 8, 8, 8), (8, 1, 3, 3), {"groups": 8, "padding": 1}, "depthwise_numba"),
        ((2, 8, 8, 8), (8, 1, 3, 3), {"groups": 8, "stride": 2}, "depthwise_channels_last"),
        ((2, 8, 8, 8), (8, 1, 4, 4), {"groups": 8, "padding": "same"}, "depthwise_channels_last"),  # asymmetric
        ((2, 8, 8, 8), (16, 1, 3, 3), {"groups": 8}, "depthwise_channels_last"),  # two filters per channel
        ((2, 1, 4, 4), (1, 1, 3, 3), {"groups": 1}, "torch"),  # one channel: not depth-wise
        ((2, 128, 8, 8), (128, 128, 3, 3), {"padding": 1}, "winograd_numba"),
        ((2, 64, 16, 16), (256, 64, 3, 3), {"padding": "same"}, "winograd_numba"),
        ((2, 64, 16, 17), (256, 64, 3, 3), {"padding": 1}, "torch"),  # 272 pixels
        ((2, 128, 7, 9), (128, 128, 3, 3), {"padding": 1}, "torch"),  # 63 pixels
        ((2, 127, 8, 8), (128, 127, 3, 3), {"padding": 1}, "torch"),  # C_in C_out below 128 * 128
        ((2, 128, 8, 8), (128, 128, 3, 3), {"padding": 1, "stride": 2}, "torch"),
        ((2, 128, 8, 8), (128, 128, 3, 3), {"padding": 2, "dilation": 2}, "torch"),
        ((2, 128, 8, 8), (128, 128, 3, 3), {}, "torch"),  # no padding
        ((2, 128, 8, 8), (128, 64, 3, 3), {"padding": 1, "groups": 2}, "torch"),
    ]
    assert POINTWISE_GEMM_MAX_PIXELS == 64 and DEPTHWISE_MIN_PIXELS == 64
    assert (winograd_numba.MIN_PIXELS, winograd_numba.MAX_PIXELS, winograd_numba.MIN_CHANNEL_PRODUCT) == (64, 256,
                                                                                                       128 * 128)
    for x_shape, w_shape, kw, expected in cases:
        x, w, _ = _inputs(x_shape, w_shape, False, torch.float32)
        reset_backend_calls()
        torch.testing.assert_close(conv2d(x, w, **kw), F.conv2d(x, w, **kw), rtol=1e-5, atol=1e-5)
        assert backend_calls("conv2d") == {expected: 1}, (x_shape, w_shape, kw)
    # named explicitly, the matrix product takes any image size
    x, w, _ = _inputs((2, 8, 16, 16), (4, 8, 1, 1), False, torch.float64)
    reset_backend_calls()
    torch.testing.assert_close(conv2d(x, w, backend="pointwise_gemm"), F.conv2d(x, w))
    assert backend_calls("conv2d") == {"pointwise_gemm": 1}


def test_explicit_backend_that_cannot_run_says_why():
    x, w, _ = _inputs((2, 8, 4, 4), (4, 8, 3, 3), False, torch.float32)
    with pytest.raises(BackendUnavailableError, match="1x1 convolutions"):
        conv2d(x, w, backend="pointwise_gemm")
    with pytest.raises(BackendUnavailableError, match="depth-wise"):
        conv2d(x, w, backend="depthwise_channels_last")
    with pytest.raises(BackendUnavailableError, match="one filter per channel"):
        conv2d(x, w, backend="depthwise_numba")
    xd, wd, _ = _inputs((2, 8, 8, 8), (8, 1, 3, 3), False, torch.float32)
    with pytest.raises(BackendUnavailableError, match="stride 1"):
        conv2d(xd, wd, stride=2, groups=8, backend="depthwise_numba")
    with pytest.raises(BackendUnavailableError, match="float32 and float64"):
        conv2d(xd.half(), wd.half(), groups=8, backend="depthwise_numba")
    with pytest.raises(BackendUnavailableError, match="3x3 convolutions with stride 1, padding 1"):
        conv2d(x, w, backend="winograd_numba")  # no padding
    with pytest.raises(BackendUnavailableError, match="3x3 convolutions with stride 1, padding 1"):
        conv2d(xd, wd, padding=1, groups=8, backend="winograd_numba")
    with pytest.raises(BackendUnavailableError, match="float32 and float64"):
        conv2d(x.half(), w.half(), padding=1, backend="winograd_numba")
    with pytest.raises(ValueError, match="unknown backend"):
        conv2d(x, w, backend="winograd")
    assert set(available_backends("conv2d")) == {"torch", "pointwise_gemm", "depthwise_channels_last",
                                                 "depthwise_numba", "winograd_numba"}


def test_bad_arguments_name_what_was_expected():
    x, w, b = _inputs((2, 8, 4, 4), (4, 8, 1, 1), True, torch.float32)
    with pytest.raises(ValueError, match=r"x must be a 4-d tensor \[N, C_in, H, W\]"):
        conv2d(x[0], w)
    with pytest.raises(TypeError, match="floating dtype"):
        conv2d(x.long(), w)
    with pytest.raises(ValueError, match="weight must be a 4-d tensor"):
        conv2d(x, w[:, :, 0, 0])
    with pytest.raises(ValueError, match="expects 16"):
        conv2d(x, torch.randn(4, 16, 1, 1))
    with pytest.raises(ValueError, match="groups must be a positive int"):
        conv2d(x, w, groups=0)
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        conv2d(x, torch.randn(3, 4, 1, 1), groups=2)
    with pytest.raises(TypeError, match="weight must have x's dtype"):
        conv2d(x, w.double())
    with pytest.raises(ValueError, match=r"bias must be None or a tensor of shape \(4,\)"):
        conv2d(x, w, b[:3])
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="padding must be an int, a pair of ints, 'same' or 'valid'"):
        conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="dilation must be an int or a pair"):
        conv2d(x, w, dilation=(1, 2, 3))


def test_pointwise_gradients_only_where_needed_and_second_derivatives():
    x, w, b = _inputs((2, 8, 4, 4), (4, 8, 1, 1), True, torch.float64)
    w.requires_grad_(True)
    y = conv2d(x, w, b)  # x and b without gradients
    (gw,) = torch.autograd.grad(y.square().sum(), w)
    (gw_ref,) = torch.autograd.grad(F.conv2d(x, w, b).square().sum(), w)
    torch.testing.assert_close(gw, gw_ref)
    xs, ws, bs = _inputs((2, 3, 2, 3), (4, 3, 1, 1), True, torch.float64, seed=3)
    args = tuple(t.clone().requires_grad_(True) for t in (xs, ws, bs))
    for backend, kw in (("pointwise_gemm", {}), ("depthwise_channels_last", None), ("depthwise_numba", None)):
        if kw is None:
            args = tuple(t.clone().requires_grad_(True) for t in _inputs((2, 3, 4, 4), (3, 1, 3, 3), True,
                                                                          torch.float64, seed=4))
            kw = {"groups": 3, "padding": 1}
        fn = lambda x_, w_, b_: conv2d(x_, w_, b_, backend=backend, **kw)  # noqa: E731
        assert torch.autograd.gradcheck(fn, args)
        assert torch.autograd.gradgradcheck(fn, args)


def test_pointwise_propagates_non_finite_values_like_the_convolution():
    x, w, _ = _inputs((2, 8, 4, 4), (4, 8, 1, 1), False, torch.float32)
    x[1, 3, 2, 1] = float("nan")
    x[0, 0, 0, 0] = float("inf")
    ours, ref = conv2d(x, w), F.conv2d(x, w)
    assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.isinf(), ref.isinf())


def test_autocast_runs_torch_conv2d():
    x, w, _ = _inputs((2, 8, 4, 4), (4, 8, 1, 1), False, torch.float32)
    reset_backend_calls()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv2d(x, w)
        y_ref = F.conv2d(x, w)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    assert backend_calls("conv2d") == {}


def test_layer_is_an_nn_conv2d():
    torch.manual_seed(0)
    ref = nn.Conv2d(8, 16, 1, bias=True)
    ours = Conv2d(8, 16, 1, bias=True)
    assert isinstance(ours, nn.Conv2d) and ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    assert repr(ours) == repr(ref)
    assert "backend='torch'" in repr(Conv2d(8, 16, 1, backend="torch"))
    x = torch.randn(4, 8, 4, 4)
    seen = []
    ours.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    reset_backend_calls()
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert seen == [torch.Size([4, 16, 4, 4])] and backend_calls("conv2d") == {"pointwise_gemm": 1}
    # the graph declaration is nn.Conv2d's
    node, node_ref = declare(ours), declare(ref)
    assert type(node) is type(node_ref) and repr(node) == repr(node_ref)
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        Conv2d(8, 16, 1, backend="fast")


def test_layer_keeps_torch_paths_for_padding_modes_and_unbatched_input():
    torch.manual_seed(0)
    for mode in ("reflect", "replicate", "circular"):
        ref = nn.Conv2d(4, 4, 3, padding=1, groups=4, padding_mode=mode)
        ours = Conv2d(4, 4, 3, padding=1, groups=4, padding_mode=mode)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, 4, 5, 5)
        reset_backend_calls()
        torch.testing.assert_close(ours(x), ref(x))
        assert backend_calls("conv2d") == {}
    ref, ours = nn.Conv2d(4, 6, 1), Conv2d(4, 6, 1)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 3)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.slow
def test_transformer_training_step_equal_with_torch_convolutions():
    """Meta-SpikeFormer: loss and every parameter gradient with the auto paths, and with Winograd's on every 3x3
    convolution it can compute (the tiny model's channels are below ``"auto"``'s threshold), equal those with
    ``backend="torch"`` for every convolution (float64, so that no spike flips on float rounding)."""
    from spikelib.models import get_model

    grads = {}
    for variant in ("auto", "winograd", "torch"):
        torch.manual_seed(0)
        model = get_model("meta_spikeformer_tiny_test", T=2).double()
        convs = [m for m in model.modules() if isinstance(m, Conv2d)]
        assert len(convs) > 10
        for m in convs:
            winograd = (m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1) and m.groups == 1
                        and m.dilation == (1, 1))
            m.backend = "winograd_numba" if variant == "winograd" and winograd else variant.replace("winograd", "auto")
        x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        reset_backend_calls()
        loss = F.cross_entropy(model(x), torch.tensor([1, 3]))
        loss.backward()
        calls = backend_calls("conv2d")
        if variant == "torch":
            assert set(calls) == {"torch"}
        else:
            assert calls.get("pointwise_gemm", 0) > 0 and calls.get("depthwise_channels_last", 0) > 0
            assert (calls.get("winograd_numba", 0) >= 2) == (variant == "winograd"), calls
        grads[variant] = (loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    loss_t, g_t = grads["torch"]
    for variant in ("auto", "winograd"):
        loss_a, g_a = grads[variant]
        torch.testing.assert_close(loss_a, loss_t, rtol=1e-12, atol=1e-12)
        assert g_a.keys() == g_t.keys() and len(g_a) > 20
        # (a convolution's bias before BatchNorm has a zero gradient up to the rounding of the network's largest terms)
        scale = max(g.abs().max().item() for g in g_t.values())
        for name in g_a:
            err = (g_a[name] - g_t[name]).abs().max().item()
            assert err <= 1e-12 * scale, (variant, name, err, scale)
