"""Backend ``"winograd_numba"`` of operation ``"conv2d"``: a dense 3x3 convolution (stride 1, padding 1, one group)
by Winograd's minimal filtering ``F(2x2, 3x3)`` (Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016), forward and backward.

Each output tile of 2x2 pixels comes from the 4x4 input tile ``d`` around it (the image zero-padded by one pixel)::

    Y = A^T [ (G W G^T) (.) (B^T d B) ] A          (.) element-wise, summed over the input channels

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

so with ``U[k] = (G W G^T)[k]: [C_out, C_in]`` and ``V[k] = (B^T d B)[k]: [C_in, tiles]`` for the 16 positions ``k``
of a tile, the convolution is 16 matrix products ``M[k] = U[k] V[k]`` followed by the output transform: 16 products
of ``C_out x C_in x (N H W / 4)`` where the direct convolution does the work of 36 (2.25x fewer multiplications). The
backward is the adjoint of each step::

    dM[k] = (A dY A^T)[k],   dV[k] = U[k]^T dM[k],   dU[k] = dM[k] V[k]^T,
    dx = sum over tiles of B dV B^T (placed where the tile was read),   dW = G^T dU G

(two more products of the forward's size). The transforms and their adjoints are numba kernels
(:mod:`._winograd_kernels`); the products are ``torch.bmm`` on views of their buffers. ``V`` and ``U`` are recomputed
from the saved input and weight in the backward (four times the input's size is not kept between the passes); the
tile buffers of a pass share one block of the thread's scratch arena (:func:`spikelib.kernels.cpu.workspace.scratch`),
so the memory kept between calls is that of the largest pass, not of every size of buffer. The
values are those of the convolution up to float rounding: the transforms add and subtract (and halve, exactly), so
the result differs from a direct sum in the last bits, as another summation order would; float64 results agree to
~1e-15.

Why: on the 2 AVX2 cores this was measured on, oneDNN's float32 3x3 convolutions run at 70-130 GFLOP/s and their
backward at less than their forward (its Winograd kernels are for AVX-512 only). Forward + backward, ``N = 8`` images
with 40% spikes, medians of 20 interleaved calls, ms, oneDNN / here (2026-12-07, two runs on a machine whose speed
drifted by up to 20% between them):

==================  ==========  =======================================
C_in -> C_out       H x W       forward + backward
==================  ==========  =======================================
192 -> 768          8 x 8       40.8 / 27.9 (1.46x), 49.4 / 31.0 (1.59x)
768 -> 192          8 x 8       34.3 / 27.5 (1.25x)
384 -> 384          8 x 8       49.7 / 32.1 (1.55x)
256 -> 256          8 x 8       22.2 / 15.6 (1.42x)
192 -> 384          8 x 8       23.7 / 17.4 (1.36x)
192 -> 192          8 x 8       9.2 / 10.1 (0.91x), 9.4 / 8.0 (1.18x)
128 -> 512          8 x 8       14.4 / 12.3 (1.16x)
64 -> 64            8 x 8       1.7 / 3.6 (0.48x)
96 -> 384           16 x 16     29.3 / 23.3 (1.26x)
384 -> 96           16 x 16     38.3 / 30.8 (1.24x)
192 -> 192          16 x 16     39.4 / 29.1 (1.35x)
128 -> 128          16 x 16     16.8 / 15.7 (1.07x)
64 -> 256           16 x 16     18.5 / 17.4 (1.06x)
96 -> 96            16 x 16     10.9 / 10.4 (1.05x), 11.5 / 12.3 (0.94x)
48 -> 192           32 x 32     43.1 / 37.2 (1.16x)
192 -> 48           32 x 32     33.1 / 33.0 (1.00x)
384 -> 480          4 x 4       20.6 / 20.0 (1.03x)
==================  ==========  =======================================

The 16 products gain most where they are large (``C_in C_out`` per pixel); the transforms, which move 4 times the
input and output through memory, and the weight transforms (``16 C_in C_out`` values, three times per step) cost most
where images are large or few pixels share a filter. ``"auto"`` takes this backend for ``MIN_PIXELS`` to
``MAX_PIXELS`` pixels per image and ``C_in C_out >= MIN_CHANNEL_PRODUCT``; Meta-SpikeFormer's six convolutions of
this kind at 64 x 64 input (192 <-> 768 at 8 x 8, 96 <-> 384 at 16 x 16) are among them.

A non-finite input, weight or bias takes oneDNN's path in both passes, a non-finite output gradient in the backward:
Winograd's transforms would subtract an infinity from itself and spread a NaN over a whole tile where the direct sum
gives an infinity. With
``create_graph=True`` the backward runs ``aten.convolution_backward`` (differentiable), so second derivatives are the
convolution's.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F

from spikelib.functional.conv import Conv2dRequest
from spikelib.kernels.cpu import workspace
from spikelib.kernels.cpu.cache import import_kernel_module
from spikelib.kernels.cpu.threads import kernel_threads, run_chunked
from spikelib.kernels.registry import register_backend

__all__ = ["MAX_PIXELS", "MIN_CHANNEL_PRODUCT", "MIN_PIXELS", "TileScratch", "WinogradConv2d", "tile_buffer",
           "tile_bytes", "transform_input", "transform_weight", "winograd_conv2d"]

#: ``"auto"`` takes this backend for images of ``MIN_PIXELS`` to ``MAX_PIXELS`` pixels (``H W``; in the module
#: docstring's table it was even with oneDNN at 4 x 4 and 32 x 32).
MIN_PIXELS = 64
MAX_PIXELS = 256

#: ``"auto"`` takes this backend where ``C_in C_out`` is at least this: smaller products did not repay the transforms.
MIN_CHANNEL_PRODUCT = 128 * 128

_SUPPORTED = (torch.float32, torch.float64)

#: Values between the 16 rows of a tile buffer: rows ``C P`` values long, often a multiple of 4 KiB, would map the 16
#: streams a transform reads or writes at once to the same sets of the first-level cache (the input transform of
#: ``[8, 768, 8, 8]`` took 2.8 ms on one thread without the padding, 1.0-1.7 ms with it).
ROW_PAD = 16


@functools.lru_cache(maxsize=None)
def _kernels() -> Any:
    try:
        return import_kernel_module("spikelib.kernels.cpu._winograd_kernels")
    except ImportError as exc:
        raise ImportError(
            "the 'winograd_numba' conv2d backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc


def _tiles(h: int, w: int) -> Tuple[int, int]:
    return (h + 1) // 2, (w + 1) // 2


def _run(kernel: Any, args: tuple, channels: int, work: int) -> None:
    """``kernel`` over ``channels`` units (``work`` values in all) on as many threads as the work is worth."""
    threads = max(1, min(kernel_threads(work), channels))
    run_chunked(kernel, args, channels, -(-channels // threads), threads)


def tile_bytes(channels: int, columns: int, dtype: torch.dtype) -> int:
    """Bytes of a :func:`tile_buffer` (rounded up to 64, so that the next one carved after it stays aligned)."""
    nbytes = 16 * (channels * columns + ROW_PAD) * (torch.finfo(dtype).bits // 8)
    return -(-nbytes // 64) * 64


class TileScratch:
    """Tile buffers carved one after another from one :func:`spikelib.kernels.cpu.workspace.scratch` block (the
    buffers of one pass live together; ``offset`` can be set back to reuse the memory of the ones no longer needed).
    Without a block, each buffer is a :func:`spikelib.kernels.cpu.workspace.empty` tensor of its own."""

    def __init__(self, raw: Optional[torch.Tensor] = None) -> None:
        self.raw = raw
        self.offset = 0

    def tiles(self, channels: int, columns: int, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """A ``[16, channels columns + ROW_PAD]`` buffer (what the kernels index) and its ``[16, channels,
        columns]`` view (what the matrix products take)."""
        row = channels * columns + ROW_PAD
        if self.raw is None:
            buffer = workspace.empty((16, row), dtype)
        else:
            nbytes = tile_bytes(channels, columns, dtype)
            if self.offset + nbytes > self.raw.numel():
                raise ValueError(f"the scratch block has {self.raw.numel()} bytes, too few for a tile buffer of "
                                 f"{nbytes} bytes at offset {self.offset}")
            size = 16 * row * (torch.finfo(dtype).bits // 8)
            buffer = self.raw[self.offset:self.offset + size].view(dtype).view(16, row)
            self.offset += nbytes
        return buffer, buffer.as_strided((16, channels, columns), (row, columns, 1))


def tile_buffer(channels: int, columns: int, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """A :meth:`TileScratch.tiles` buffer of its own (a workspace tensor)."""
    return TileScratch().tiles(channels, columns, dtype)


def transform_input(x: torch.Tensor, scratch: Optional[TileScratch] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``V`` of a contiguous ``x: [N, C, H, W]`` as :meth:`TileScratch.tiles` (see :mod:`._winograd_kernels`)."""
    n, c, h, w = x.shape
    ty, tx = _tiles(h, w)
    buffer, v = (scratch or TileScratch()).tiles(c, n * ty * tx, x.dtype)
    _run(_kernels().input_transform, (x.numpy(), buffer.numpy(), tx), c, v.numel())
    return buffer, v


def transform_weight(weight: torch.Tensor, scratch: Optional[TileScratch] = None) -> torch.Tensor:
    """``U: [16, C_out, C_in]``, ``U[k] = (G W G^T)[k]`` (a view of a :meth:`TileScratch.tiles` buffer)."""
    c_out, c_in = weight.shape[:2]
    buffer, u = (scratch or TileScratch()).tiles(c_out, c_in, weight.dtype)
    _run(_kernels().weight_transform, (weight.detach().contiguous().view(c_out * c_in, 3, 3).numpy(),
                                       buffer.numpy()), c_out * c_in, u.numel())
    return u


def winograd_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """The forward pass (no autograd): ``F.conv2d(x, weight, bias, padding=1)`` for a contiguous ``x`` and a 3x3
    ``weight`` (finite values). ``V``, ``U`` and ``M`` share one scratch block."""
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    columns = n * _tiles(h, w)[0] * _tiles(h, w)[1]
    nbytes = sum(tile_bytes(c, p, x.dtype) for c, p in ((c_in, columns), (c_out, c_in), (c_out, columns)))
    y = x.new_empty((n, c_out, h, w))
    b = bias.detach().contiguous() if bias is not None else x.new_zeros(c_out)
    with workspace.scratch(nbytes) as raw:
        scratch = TileScratch(raw)
        v = transform_input(x, scratch)[1]
        u = transform_weight(weight, scratch)
        m_buffer, m = scratch.tiles(c_out, columns, x.dtype)
        torch.bmm(u, v, out=m)
        _run(_kernels().output_transform, (m_buffer.numpy(), b.numpy(), y.numpy(), _tiles(h, w)[1]), c_out,
             m.numel())
    return y


def _finite(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether every value is finite (one sum per tensor; an overflow of the sum only takes oneDNN's path)."""
    return all(t is None or bool(torch.isfinite(t.sum())) for t in tensors)


class WinogradConv2d(torch.autograd.Function):
    """3x3 convolution, stride 1, padding 1, one group, by ``F(2x2, 3x3)`` in both passes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        winograd = _finite(x, weight, bias)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.winograd, ctx.has_bias = winograd, bias is not None
        y = winograd_conv2d(x, weight, bias) if winograd else F.conv2d(x, weight, bias, 1, 1)
        return y.contiguous(memory_format=torch.channels_last) if channels_last else y  # (the input's layout)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.has_bias
        if torch.is_grad_enabled() or not ctx.winograd or not _finite(grad_y):
            # create_graph=True (the differentiable operator), a non-finite value, or a gradient Winograd would mix
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad_y, x, weight, [weight.shape[0]] if need_b else None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1,
                (need_x, need_w, need_b))
            return gx, gw, gb
        kernels = _kernels()
        grad_y = grad_y.contiguous()
        n, c_in, h, w = x.shape
        c_out = weight.shape[0]
        tiles_x = _tiles(h, w)[1]
        columns = n * _tiles(h, w)[0] * tiles_x
        # dM lives through both gradients; then U and dV (input gradient), or V and dU (weight gradient), which
        # have the same sizes and take the same place in turn
        nbytes = sum(tile_bytes(c, p, x.dtype) for c, p in ((c_out, columns), (c_out, c_in), (c_in, columns)))
        gx = gw = gb = None
        with workspace.scratch(nbytes) as raw:
            scratch = TileScratch(raw)
            dm_buffer, dm = scratch.tiles(c_out, columns, x.dtype)
            _run(kernels.output_adjoint, (grad_y.numpy(), dm_buffer.numpy(), tiles_x), c_out, dm.numel())
            after_dm = scratch.offset
            if need_x:
                u = transform_weight(weight, scratch)
                dv_buffer, dv = scratch.tiles(c_in, columns, x.dtype)
                torch.bmm(u.transpose(1, 2), dm, out=dv)
                gx = x.new_empty(x.shape)
                _run(kernels.input_adjoint, (dv_buffer.numpy(), gx.numpy(), tiles_x), c_in, dv.numel())
            if need_w:
                scratch.offset = after_dm
                v = transform_input(x, scratch)[1]
                du_buffer, du = scratch.tiles(c_out, c_in, x.dtype)
                torch.bmm(dm, v.transpose(1, 2), out=du)
                gw = weight.new_empty(weight.shape)
                _run(kernels.weight_adjoint, (du_buffer.numpy(), gw.view(c_out * c_in, 3, 3).numpy()),
                     c_out * c_in, du.numel())
        if need_b:
            gb = grad_y.sum((0, 2, 3))
        return gx, gw, gb


def _check(request: Conv2dRequest) -> Optional[str]:
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    padding = (1, 1) if request.padding == "same" else request.padding
    if (request.kernel_size != (3, 3) or request.stride != (1, 1) or padding != (1, 1)
            or request.dilation != (1, 1) or request.groups != 1):
        return ("it computes 3x3 convolutions with stride 1, padding 1, dilation 1 and one group, got kernel "
                f"{request.kernel_size}, stride {request.stride}, padding {request.padding}, dilation "
                f"{request.dilation}, groups {request.groups}")
    if request.auto and not MIN_PIXELS <= request.pixels <= MAX_PIXELS:
        return (f"the image has {request.pixels} pixels, outside MIN_PIXELS={MIN_PIXELS} to MAX_PIXELS={MAX_PIXELS}, "
                "where oneDNN is as fast or faster")
    if request.auto and request.in_channels * request.out_channels < MIN_CHANNEL_PRODUCT:
        return (f"it has {request.in_channels} input and {request.out_channels} output channels, a product below "
                f"MIN_CHANNEL_PRODUCT={MIN_CHANNEL_PRODUCT}, where the transforms cost more than they save")
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'spikelib[fast]')"
    return None


@register_backend("conv2d", "winograd_numba", check=_check, priority=30, pure_check=True,
                  description="3x3 convolution (stride 1, padding 1) by Winograd F(2x2, 3x3): 16 matrix products and "
                              "numba transforms, forward and backward (CPU)")
def conv2d_winograd_numba(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                          request: Conv2dRequest) -> torch.Tensor:
    """:class:`WinogradConv2d`."""
    return WinogradConv2d.apply(x, weight, bias)
