"""The backends of operation ``"conv2d"`` (:mod:`spikelib.functional.conv`, equations and measurements there).

``"torch"`` is ``torch.nn.functional.conv2d``. ``"pointwise_gemm"`` computes a 1x1 convolution as one matrix product
over the pixels of all images (torch operations; autograd differentiates them).
``"depthwise_channels_last"`` runs a depth-wise convolution on channels-last copies, where oneDNN's kernels are fast.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from spikelib.functional.conv import POINTWISE_GEMM_MAX_PIXELS, Conv2dRequest
from spikelib.kernels.registry import register_backend

__all__ = ["pointwise_gemm"]


@register_backend("conv2d", "torch", check=lambda request: None, priority=0, compile_safe=True, pure_check=True,
                  description="torch.nn.functional.conv2d (reference, any device)")
def conv2d_torch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 request: Conv2dRequest) -> torch.Tensor:
    """``F.conv2d`` with the request's geometry."""
    return F.conv2d(x, weight, bias, request.stride, request.padding, request.dilation, request.groups)


def pointwise_gemm(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A 1x1 convolution as ``Y = W X (+ b)`` with ``X = x`` pixels first, ``[C_in, N H W]`` (a copy).

    Plain differentiable torch operations: autograd's own nodes for the product and the two layout changes run the
    backward in C++ (an ``autograd.Function`` with the same products, saving ``x`` and recomputing ``X`` in its Python
    backward, made Meta-SpikeFormer 8-384's training step 3.0% slower: median of 15 paired rounds in one process,
    quartiles 1.2% and 3.8%, 2026-12-06), and second derivatives are those of the convolution. The saved operand is
    ``X`` (the pixels-first copy), not ``x``.
    """
    n, c_in, h, w = x.shape
    x2 = x.transpose(0, 1).reshape(c_in, n * h * w)
    w2 = weight.view(weight.shape[0], c_in)
    y2 = torch.mm(w2, x2) if bias is None else torch.addmm(bias.unsqueeze(1), w2, x2)
    return y2.view(weight.shape[0], n, h, w).transpose(0, 1).contiguous()


def _check_cpu(request: Conv2dRequest) -> Optional[str]:
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only (measured there), the input is on {request.device}"
    return None


def _check_pointwise(request: Conv2dRequest) -> Optional[str]:
    reason = _check_cpu(request)
    if reason is not None:
        return reason
    if request.kernel_size != (1, 1) or request.stride != (1, 1) or request.groups != 1 or not request.zero_padding:
        return ("it computes 1x1 convolutions with stride 1, no padding and one group, got kernel "
                f"{request.kernel_size}, stride {request.stride}, padding {request.padding}, groups {request.groups}")
    if request.auto and request.pixels > POINTWISE_GEMM_MAX_PIXELS:
        return (f"the image has {request.pixels} pixels, more than POINTWISE_GEMM_MAX_PIXELS="
                f"{POINTWISE_GEMM_MAX_PIXELS}, where the convolution is as fast")
    return None


@register_backend("conv2d", "pointwise_gemm", check=_check_pointwise, priority=20, compile_safe=True,
                  pure_check=True,
                  description="1x1 convolution as one matrix product over all pixels (CPU)")
def conv2d_pointwise_gemm(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                          request: Conv2dRequest) -> torch.Tensor:
    """A 1x1 convolution as :func:`pointwise_gemm`."""
    return pointwise_gemm(x, weight, bias)


def _check_depthwise(request: Conv2dRequest) -> Optional[str]:
    reason = _check_cpu(request)
    if reason is not None:
        return reason
    if request.in_channels < 2 or request.groups != request.in_channels:
        return (f"it computes depth-wise convolutions (groups = C_in >= 2), got groups {request.groups} for "
                f"{request.in_channels} input channels")
    return None


@register_backend("conv2d", "depthwise_channels_last", check=_check_depthwise, priority=20, compile_safe=True,
                  pure_check=True,
                  description="depth-wise convolution on channels-last copies (CPU)")
def conv2d_depthwise_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                                   request: Conv2dRequest) -> torch.Tensor:
    """``F.conv2d`` on channels-last copies of ``x`` and ``weight``; the result in ``x``'s memory format."""
    layout = torch.channels_last
    y = F.conv2d(x.contiguous(memory_format=layout), weight.contiguous(memory_format=layout), bias, request.stride,
                 request.padding, request.dilation, request.groups)
    return y.contiguous(memory_format=torch.channels_last if x.is_contiguous(memory_format=layout)
                        and not x.is_contiguous() else torch.contiguous_format)
