"""``MaxPool2d``: ``nn.MaxPool2d`` computed through spikelib's backend registry (:mod:`spikelib.functional.pool`).

The same layer as ``torch.nn.MaxPool2d`` (a subclass: same arguments, ``repr``, hooks and graph declaration), with
the pooling dispatched by :func:`spikelib.functional.pool.max_pool2d`: on CPU, ``backend="auto"`` pools an ``NCHW``
input on a channels-last copy, where torch's kernel is several times faster; the results (and the gradient's routing,
ties included) are ``nn.MaxPool2d``'s bit for bit. ``backend="torch"`` forces the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from spikelib.functional.pool import max_pool2d
from spikelib.neurons._params import check_backend

__all__ = ["MaxPool2d"]


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` with its pooling dispatched to the ``"max_pool2d"`` backends.

    Args:
        kernel_size, stride, padding, dilation, return_indices, ceil_mode: as for ``nn.MaxPool2d``.
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("max_pool2d")``).
    """

    def __init__(self, *args, backend: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backend = check_backend(backend, "max_pool2d")

    def forward(self, input: torch.Tensor):  # noqa: A002 (nn.MaxPool2d's signature)
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices, backend=self.backend)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.backend == "auto" else f"{text}, backend={self.backend!r}"
