"""The torch reference backend of operation ``"index_add_rows"``: ``out[idx[r]] += src[r]`` for every row ``r``
(``out.index_add_(0, idx, src)``), the scatter step of the sparse convolutions (:mod:`spikelib.sparse.conv`)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from spikelib.kernels.registry import register_backend


def _always(request: Any) -> Optional[str]:
    return None


@register_backend("index_add_rows", "torch", check=_always, priority=0, compile_safe=True,
                  description="torch's index_add_ along dim 0 (reference; any device and dtype)")
def index_add_rows_torch(out: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> None:
    """``out[idx[r]] += src[r]`` in place (rows along dim 0; duplicate indices accumulate)."""
    out.index_add_(0, idx, src)
