"""The backends of operation ``"max_pool2d"`` (:mod:`spikelib.functional.pool`, equations and measurements there).

``"torch"`` is ``torch.nn.functional.max_pool2d``; ``"channels_last"`` runs its forward on a channels-last copy of an
``NCHW`` CPU input, where torch's kernel is vectorised over the channels, copies the result back, and leaves the
backward (a scatter by the saved indices, fast in either layout) to torch's own kernel on the row-major input.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from spikelib.functional.pool import MaxPool2dRequest
from spikelib.kernels.registry import register_backend

Pair = Tuple[int, int]


@register_backend("max_pool2d", "torch", check=lambda request: None, priority=0, compile_safe=True, pure_check=True,
                  description="torch.nn.functional.max_pool2d (reference, any device)")
def max_pool2d_torch(x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool,
                     return_indices: bool):
    """``F.max_pool2d`` with the given geometry."""
    return F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=return_indices)


def _check_channels_last(request: MaxPool2dRequest) -> Optional[str]:
    if request.device.type != "cpu":
        return f"it runs on CPU tensors only (measured there), the input is on {request.device}"
    if request.dim != 4:
        return f"it pools batched [N, C, H, W] inputs, got a {request.dim}-d input"
    if request.auto and not request.contiguous:
        return "the input is not a row-major NCHW tensor (a channels-last input is fast in torch already)"
    return None


class MaxPool2dChannelsLast(torch.autograd.Function):
    """Forward (with indices) on a channels-last copy, results row-major; the backward is torch's own
    ``max_pool2d_with_indices_backward`` on the row-major input, as the reference's, so the input gradient arrives in
    the input's layout, bit for bit the reference's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair,  # type: ignore[override]
                dilation: Pair, ceil_mode: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        y, indices = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation,
                                  ceil_mode=ceil_mode, return_indices=True)
        y, indices = y.contiguous(), indices.contiguous()
        ctx.save_for_backward(x, indices)
        ctx.geometry = (kernel, stride, padding, dilation, ceil_mode)
        ctx.mark_non_differentiable(indices)
        return y, indices

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, grad_indices: Optional[torch.Tensor]):  # type: ignore[override]
        x, indices = ctx.saved_tensors
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad_y, x, *ctx.geometry, indices)
        return grad_x, None, None, None, None, None


@register_backend("max_pool2d", "channels_last", check=_check_channels_last, priority=20, compile_safe=True,
                  pure_check=True,
                  description="max pooling forward on a channels-last copy of an NCHW input (CPU)")
def max_pool2d_channels_last(x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
                             ceil_mode: bool, return_indices: bool):
    """The pooling on a channels-last copy of ``x``; results (and indices) row-major."""
    if torch.is_grad_enabled() and x.requires_grad:
        y, indices = MaxPool2dChannelsLast.apply(x, kernel, stride, padding, dilation, ceil_mode)
        return (y, indices) if return_indices else y
    out = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation,
                       ceil_mode=ceil_mode, return_indices=return_indices)
    if return_indices:
        return out[0].contiguous(), out[1].contiguous()
    return out.contiguous()
