"""``Conv2d``: ``nn.Conv2d`` computed through spikelib's backend registry (shape-specialised CPU paths).

The same layer as ``torch.nn.Conv2d`` (a subclass: same parameters, initialisation, ``state_dict`` keys, hooks and
graph declaration), with zero-padded convolutions computed by :func:`spikelib.functional.conv.conv2d`: on CPU,
``backend="auto"`` runs small-image 1x1 convolutions as one matrix product and depth-wise convolutions in the
channels-last layout, where oneDNN is fast; results equal ``nn.Conv2d``'s up to float summation order. Other padding
modes (``reflect``, ``replicate``, ``circular``) and unbatched ``[C, H, W]`` inputs run ``nn.Conv2d``'s own path;
``backend="torch"`` forces the reference.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from spikelib.functional.conv import conv2d
from spikelib.neurons._params import check_backend

__all__ = ["Conv2d"]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with its convolution dispatched to the ``"conv2d"`` backends.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype:
            as for ``nn.Conv2d``.
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("conv2d")``).
    """

    def __init__(self, *args, backend: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = check_backend(backend, "conv2d")

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,  # noqa: A002 (nn.Conv2d's signature)
                      bias: Optional[torch.Tensor]) -> torch.Tensor:
        if self.padding_mode != "zeros" or input.dim() != 4:  # (an unbatched [C, H, W] input: nn.Conv2d's path)
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                      backend=self.backend)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.backend == "auto" else f"{text}, backend={self.backend!r}"
