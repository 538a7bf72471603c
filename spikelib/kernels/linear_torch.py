"""The torch reference backend of operation ``"linear"`` (:mod:`spikelib.functional.linear`): ``F.linear``."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from spikelib.kernels.registry import register_backend


def _always(request: Any) -> Optional[str]:
    return None


@register_backend("linear", "torch", check=_always, priority=0, compile_safe=True,
                  description="torch.nn.functional.linear (reference)")
def linear_torch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``x W^T + b`` by torch, on any device and dtype."""
    return F.linear(x, weight, bias)
