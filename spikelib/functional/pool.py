"""2-d max pooling (``torch.nn.functional.max_pool2d``'s map), dispatched to a backend chosen by the input's layout.

For ``x: [N, C, H, W]``, window ``k``, stride ``s``, padding ``p`` (``-inf``), dilation ``d``::

    y[n, c, i, j] = max_{a < kh, b < kw} x[n, c, i s - p + a d, j s - p + b d]
    dL/dx: dL/dy[n, c, i, j] added at the window's first maximum (row-major order within the window)

Backends (operation ``"max_pool2d"`` of the registry), all the same map, bit for bit: the same maximum and the same
index, ties included (a maximum is a selection, not a sum):

- ``"torch"``: ``torch.nn.functional.max_pool2d`` (the reference; any device, dtype and layout).
- ``"channels_last"`` (CPU): the forward on a channels-last copy of an ``NCHW`` input, the result copied back; the
  backward is torch's own scatter by the saved indices on the row-major input (the reference's call, so the input
  gradient is the reference's bit for bit, in the input's layout). torch's CPU max pooling is several times faster on
  channels-last tensors, where its kernel runs along the channels. A 3x3, stride 2 pooling (Max-Former's, the
  SPS's) measured in two runs (2 cores, float32, medians of 50), torch against this backend: ``[8, 192, 16, 16]``
  forward+backward 3.27-3.42 against 1.26-1.27 ms, forward without gradients 2.87-2.89 against 0.70-0.72 ms;
  ``[8, 384, 8, 8]`` 1.80-1.86 / 0.80-0.81 ms and 1.56-1.58 / 0.36 ms; ``[8, 96, 32, 32]`` 6.26-6.42 / 2.04-2.20 ms
  and 5.17-5.69 / 1.13-1.36 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from spikelib.functional.conv import pair
from spikelib.kernels.registry import select_backend

__all__ = ["MaxPool2dRequest", "max_pool2d"]

IntPair = Union[int, Tuple[int, int]]


@dataclass(frozen=True)
class MaxPool2dRequest:
    """What a ``max_pool2d`` backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    dim: int
    contiguous: bool  # row-major NCHW (channels-last and other strides are not)
    auto: bool


def max_pool2d(x: torch.Tensor, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0,
               dilation: IntPair = 1, ceil_mode: bool = False, return_indices: bool = False,
               backend: str = "auto") -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """``torch.nn.functional.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)``
    through a backend.

    Args:
        x: input ``[N, C, H, W]`` or ``[C, H, W]``.
        kernel_size, stride, padding, dilation: an int or a pair; ``stride`` None means ``kernel_size``.
        ceil_mode, return_indices: as for ``torch.nn.functional.max_pool2d``.
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("max_pool2d")``).

    Returns:
        The pooled tensor, and the flat indices of the maxima within each ``H x W`` plane if ``return_indices``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        raise ValueError(f"x must be a 3-d [C, H, W] or 4-d [N, C, H, W] tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    kernel = pair(kernel_size, "kernel_size", 1)
    strides = kernel if stride is None else pair(stride, "stride", 1)
    pads = pair(padding, "padding", 0)
    dilations = pair(dilation, "dilation", 1)
    for name, flag in (("ceil_mode", ceil_mode), ("return_indices", return_indices)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    request = MaxPool2dRequest(device=x.device, dtype=x.dtype, dim=x.dim(), contiguous=x.is_contiguous(),
                               auto=backend == "auto")
    impl = select_backend("max_pool2d", backend, request).impl
    return impl(x, kernel, strides, pads, dilations, ceil_mode, return_indices)
