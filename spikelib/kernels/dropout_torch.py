"""The torch reference backend of operation ``"input_dropout"`` (:mod:`spikelib.functional.dropout`):
``x * (torch.rand_like(x) >= p)``, scaled by ``1 / (1 - p)`` when asked."""

from __future__ import annotations

from typing import Any, Optional

import torch

from spikelib.kernels.registry import register_backend


def _always(request: Any) -> Optional[str]:
    return None


@register_backend("input_dropout", "torch", check=_always, priority=0, compile_safe=True,
                  description="torch.rand_like(x) >= p (reference; any device and dtype, differentiable)")
def input_dropout_torch(x: torch.Tensor, p: float, rescale: bool) -> torch.Tensor:
    """``x * keep * s`` with ``keep = rand_like(x) >= p`` and ``s = 1 / (1 - p)`` if ``rescale`` else 1."""
    keep = torch.rand_like(x).ge_(p)  # 1 where kept, 0 where dropped, in the random numbers' memory
    if rescale:
        keep.div_(1.0 - p)
    return x * keep if x.requires_grad else keep.mul_(x)
