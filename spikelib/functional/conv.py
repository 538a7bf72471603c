"""2-d convolution (``torch.nn.functional.conv2d``'s map), dispatched to a backend chosen by the layer's shape.

For ``x: [N, C_in, H, W]``, ``W: [C_out, C_in / groups, kh, kw]``, ``b: [C_out]`` (zero padding)::

    y[n, o, h, w] = b[o] + sum_{i in group(o)} sum_{p, q} W[o, i, p, q] x[n, i, h s + p d - pad, w s + q d - pad]
    dL/dx = the transposed convolution of dL/dy with W,   dL/dW = the correlation of dL/dy with x,
    dL/db = dL/dy summed over n, h, w

Backends (operation ``"conv2d"`` of the registry), all the same map up to float summation order:

- ``"torch"``: ``torch.nn.functional.conv2d`` (the reference; any device, dtype, padding and groups).
- ``"pointwise_gemm"`` (CPU): a 1x1 convolution (stride 1, no padding, one group) as one matrix product over the
  ``N H W`` pixels, ``Y = W X`` with ``X: [C_in, N H W]``; the input gradient ``W^T G`` and the weight gradient
  ``G X^T`` are one product each. oneDNN runs a 1x1 convolution on ``NCHW`` tensors with few pixels per image well
  below its matrix-product speed: forward+backward at ``N = 8``, ``C = 384``, ``4 x 4`` pixels 1.00 ms as a
  convolution, 0.65 ms here, ``1536 -> 384`` 5.8 against 3.9 ms; at ``16 x 16`` pixels and more the two are even.
  ``"auto"`` takes it up to :data:`POINTWISE_GEMM_MAX_PIXELS` pixels per image.
- ``"depthwise_channels_last"`` (CPU): a depth-wise convolution (``groups = C_in``, one input channel per group) on
  channels-last copies of ``x`` and ``W``, the result returned in the input's layout. oneDNN's depth-wise backward on
  ``NCHW`` is its slow path: forward+backward of a 7x7 depth-wise convolution at ``N = 8``, ``C = 96``, ``32 x 32``
  took 24.8 ms, channels-last 6.2 ms (``C = 192``, ``16 x 16``: 11.6 against 3.4 ms).

Inside ``torch.autocast`` every call is ``torch.nn.functional.conv2d``, so mixed precision applies as it does to
``nn.Conv2d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from spikelib.functional._checks import check_bias
from spikelib.kernels.registry import select_backend

__all__ = ["Conv2dRequest", "POINTWISE_GEMM_MAX_PIXELS", "conv2d", "pair"]

#: ``"auto"`` runs a 1x1 convolution as a matrix product up to this many pixels per image (``H W``): measured faster
#: up to 8 x 8 on every shape of the spiking transformers, even or slower at 32 x 32 (2 cores, float32).
POINTWISE_GEMM_MAX_PIXELS = 64

IntPair = Union[int, Tuple[int, int]]


def pair(value: object, name: str, minimum: int) -> Tuple[int, int]:
    """``value`` (an int or a pair of ints, each ``>= minimum``) as a pair; a clear error otherwise."""
    items = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(items, (tuple, list)) or len(items) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items)):
        raise ValueError(f"{name} must be an int or a pair of ints, each >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


@dataclass(frozen=True)
class Conv2dRequest:
    """What a ``conv2d`` backend's capability check sees (``padding`` as a pair, or ``"same"``/``"valid"``)."""

    device: torch.device
    dtype: torch.dtype
    in_channels: int
    out_channels: int
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Union[Tuple[int, int], str]
    dilation: Tuple[int, int]
    groups: int
    pixels: int
    auto: bool

    @property
    def zero_padding(self) -> bool:
        """Whether the convolution reads no padded pixel (``padding`` 0 or ``"valid"``, or a 1x1 ``"same"``)."""
        if isinstance(self.padding, str):
            return self.padding == "valid" or self.kernel_size == (1, 1)
        return self.padding == (0, 0)


def _check_args(x: object, weight: object, bias: object, groups: object) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a 4-d tensor [N, C_in, H, W], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(f"weight must be a 4-d tensor [C_out, C_in / groups, kh, kw], got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"x has {x.shape[1]} channels (dim 1 of [N, C_in, H, W]); weight {tuple(weight.shape)} with "
                         f"groups={groups} expects {weight.shape[1] * groups}")
    if weight.shape[0] % groups:
        raise ValueError(f"weight has {weight.shape[0]} output channels, not divisible by groups={groups}")
    if weight.dtype != x.dtype or weight.device != x.device:
        raise TypeError(f"weight must have x's dtype and device ({x.dtype}, {x.device}), got {weight.dtype}, "
                        f"{weight.device}")
    check_bias(bias, weight.shape[0], x)


def _padding(padding: object) -> Union[Tuple[int, int], str]:
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
        return padding
    return pair(padding, "padding", 0)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride: IntPair = 1,
           padding: Union[IntPair, str] = 0, dilation: IntPair = 1, groups: int = 1,
           backend: str = "auto") -> torch.Tensor:
    """``torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)`` through a backend.

    Args:
        x: input ``[N, C_in, H, W]`` (floating point).
        weight: ``[C_out, C_in / groups, kh, kw]``.
        bias: ``[C_out]`` or None.
        stride, padding, dilation, groups: as for ``torch.nn.functional.conv2d`` (zero padding).
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("conv2d")``).

    Returns:
        ``[N, C_out, H_out, W_out]``.
    """
    if isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type):
        return torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)
    _check_args(x, weight, bias, groups)
    request = Conv2dRequest(
        device=x.device, dtype=x.dtype, in_channels=int(x.shape[1]), out_channels=int(weight.shape[0]),
        kernel_size=(int(weight.shape[2]), int(weight.shape[3])), stride=pair(stride, "stride", 1),
        padding=_padding(padding), dilation=pair(dilation, "dilation", 1), groups=groups,
        pixels=int(x.shape[2]) * int(x.shape[3]), auto=backend == "auto")
    impl = select_backend("conv2d", backend, request).impl
    return impl(x, weight, bias, request)
