"""Backend ``"depthwise_numba"`` of operation ``"conv2d"``: a depth-wise convolution (one filter per channel,
stride 1) whose weight gradient is computed by a numba kernel (:mod:`._depthwise_kernels`, the equation there).

The forward pass and the input gradient are oneDNN's (``F.conv2d`` and ``aten.convolution_backward``, in the input's
layout): both run near the speed of a matrix product of the same work. Its depth-wise *weight* gradient does not:
measured on 2 cores, float32, ``N = 8``, ms (forward / input gradient / weight gradient by oneDNN; the weight
gradient here with its padded copies):

==========================  ======================  ======================  ===========
shape (C, H x W, kernel)     oneDNN ``NCHW``         oneDNN channels-last    here
==========================  ======================  ======================  ===========
96, 32 x 32, 7 x 7           1.14 / 1.34 / 39.7      0.89 / 1.04 / 6.80      3.3
192, 16 x 16, 7 x 7          0.69 / 0.96 / 15.3      0.57 / 0.79 / 4.47      2.2
384, 8 x 8, 7 x 7            0.35 / 0.52 / 8.82      0.33 / 0.53 / 3.25      2.0
384, 6 x 6, 3 x 3 (valid)    0.17 / 0.23 / 0.19      0.09 / 0.11 / 0.11      0.44
==========================  ======================  ======================  ===========

Forward+backward (bias included) against the channels-last path, which also copies every tensor to and from that
layout (two runs, medians of 20 calls): 1.2-1.7x less time at
``C = 96, 32 x 32``, 1.8x at ``192, 16 x 16``, 1.4x at ``384, 8 x 8``, 1.3-1.4x at ``96, 16 x 16``, 1.1x at 5x5 on
``192, 8 x 8``; 1.7-1.9x *more* at 3x3 on ``6 x 6`` (its weight gradient is 0.44 ms here, 0.11-0.19 ms in oneDNN),
hence :data:`MIN_PIXELS`. With ``create_graph=True`` the backward runs ``aten.convolution_backward``
(differentiable), so second derivatives are the convolution's. An input with a non-finite value takes oneDNN's weight
gradient: the kernel multiplies padding zeros with neighbouring pixels, which is exact only for finite values
(``0 * inf`` is NaN).
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from spikelib.functional.conv import Conv2dRequest
from spikelib.kernels.cpu import workspace
from spikelib.kernels.cpu.cache import import_kernel_module
from spikelib.kernels.cpu.threads import kernel_threads, run_chunked
from spikelib.kernels.registry import register_backend

__all__ = ["DepthwiseConv2d", "MIN_PIXELS", "depthwise_weight_grad"]

#: ``"auto"`` takes this backend for images of at least this many pixels (``H W``). On smaller ones a dot product
#: over a channel's images is too short for the kernel to beat oneDNN's channels-last path: at ``N = 8``, 3x3 on
#: ``6 x 6`` (``C = 384`` and ``480``) forward+backward took 1.55-1.86 ms here against 0.83-1.12 ms channels-last.
MIN_PIXELS = 64

_SUPPORTED = (torch.float32, torch.float64)
_ZERO = {torch.float32: np.float32(0.0), torch.float64: np.float64(0.0)}


@functools.lru_cache(maxsize=None)
def _kernels() -> Any:
    try:
        return import_kernel_module("spikelib.kernels.cpu._depthwise_kernels")
    except ImportError as exc:
        raise ImportError(
            "the 'depthwise_numba' conv2d backend needs numba: pip install 'spikelib[fast]' (or pip install numba)"
        ) from exc


def explicit_padding(request: Conv2dRequest) -> Optional[Tuple[int, int]]:
    """The request's zero padding as a symmetric pair (``"same"`` at stride 1 when it is symmetric), else None."""
    if request.padding == "valid":
        return (0, 0)
    if request.padding == "same":
        totals = [d * (k - 1) for d, k in zip(request.dilation, request.kernel_size)]
        return None if any(t % 2 for t in totals) else (totals[0] // 2, totals[1] // 2)
    return request.padding  # type: ignore[return-value]


def _check(request: Conv2dRequest) -> Optional[str]:
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only, the input is on {request.device}"
    if request.dtype not in _SUPPORTED:
        return f"it supports float32 and float64, the input is {request.dtype}"
    if request.in_channels < 2 or request.groups != request.in_channels or request.out_channels != request.in_channels:
        return (f"it computes depth-wise convolutions with one filter per channel (groups = C_in = C_out >= 2), got "
                f"groups {request.groups}, {request.in_channels} input and {request.out_channels} output channels")
    if request.stride != (1, 1):
        return f"it computes convolutions of stride 1, got stride {request.stride}"
    if explicit_padding(request) is None:
        return f"it needs symmetric zero padding, padding='same' with kernel {request.kernel_size} is not"
    if request.auto and request.pixels < MIN_PIXELS:
        return (f"the image has {request.pixels} pixels, fewer than MIN_PIXELS={MIN_PIXELS}, where the channels-last "
                "path is faster")
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'spikelib[fast]')"
    return None


def depthwise_weight_grad(x: torch.Tensor, grad_y: torch.Tensor, kernel_size: Tuple[int, int],
                          padding: Tuple[int, int], dilation: Tuple[int, int]) -> torch.Tensor:
    """The weight gradient ``[C, 1, kh, kw]`` of a stride-1 depth-wise convolution of ``x: [N, C, H, W]`` with output
    gradient ``grad_y: [N, C, Ho, Wo]`` (finite values; see the module docstring)."""
    n, c, h, w = x.shape
    ho, wo = grad_y.shape[2:]
    (kh, kw), (ph, pw), (dh, dw) = kernel_size, padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    block = hp * wp + (kw - 1) * dw  # an image's padded plane and the tail its last row's reads run into
    xp = workspace.empty((c, n, block), x.dtype).zero_()  # reused memory: no page faults for large copies
    xp[:, :, :hp * wp].view(c, n, hp, wp)[:, :, ph:ph + h, pw:pw + w] = x.transpose(0, 1)
    gp = workspace.empty((c, n, block), x.dtype).zero_()
    gp[:, :, :ho * wp].view(c, n, ho, wp)[:, :, :, :wo] = grad_y.transpose(0, 1)
    gw = x.new_empty((c, kh, kw))
    length = (n - 1) * block + ho * wp
    threads = max(1, min(kernel_threads(c * kh * kw * length // 8), c))
    run_chunked(_kernels().weight_grad, (xp.view(c, -1).numpy(), gp.view(c, -1).numpy(), gw.numpy(), length, wp,
                                         dh, dw, _ZERO[x.dtype]), c, -(-c // threads), threads)
    return gw.view(c, 1, kh, kw)


class DepthwiseConv2d(torch.autograd.Function):
    """Stride-1 depth-wise convolution: oneDNN forward and input gradient, the weight gradient by the kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],  # type: ignore[override]
                padding: Tuple[int, int], dilation: Tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation, ctx.has_bias = padding, dilation, bias is not None
        return F.conv2d(x, weight, bias, 1, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        c = x.shape[1]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.has_bias
        geometry = ((1, 1), ctx.padding, ctx.dilation, False, (0, 0), c)
        if torch.is_grad_enabled():  # create_graph=True: the differentiable operator
            gx, gw, gb = torch.ops.aten.convolution_backward(grad_y, x, weight, [c] if need_b else None, *geometry,
                                                             (need_x, need_w, need_b))
            return gx, gw, gb, None, None
        gx = gw = gb = None
        if need_x:
            gx = torch.ops.aten.convolution_backward(grad_y, x, weight, None, *geometry, (True, False, False))[0]
        if need_w:
            if bool(torch.isfinite(x.sum())):  # one pass; a false alarm (overflow) only takes oneDNN's path
                gw = depthwise_weight_grad(x, grad_y, tuple(weight.shape[2:]), ctx.padding, ctx.dilation)
            else:
                gw = torch.ops.aten.convolution_backward(grad_y, x, weight, None, *geometry, (False, True, False))[1]
        if need_b:
            gb = grad_y.sum((0, 2, 3))
        return gx, gw, gb, None, None


@register_backend("conv2d", "depthwise_numba", check=_check, priority=30, pure_check=True,
                  description="depth-wise convolution, stride 1: oneDNN forward and input gradient, weight gradient "
                              "by a numba kernel (CPU)")
def conv2d_depthwise_numba(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                           request: Conv2dRequest) -> torch.Tensor:
    """:class:`DepthwiseConv2d` with the request's padding and dilation."""
    padding = explicit_padding(request)
    assert padding is not None  # the check refused other requests
    return DepthwiseConv2d.apply(x, weight, bias, padding, request.dilation)
