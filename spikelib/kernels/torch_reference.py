"""The torch reference backend: a plain per-step loop over :func:`spikelib.functional.lif.lif_step`.

This is the ground truth every other backend is tested against. It runs on any device and dtype and lets autograd
do BPTT. The loop iterates ``x.unbind(0)`` rather than indexing ``x[t]``: indexing inside an autograd loop makes every
step's backward allocate a zero tensor of the whole sequence (backward cost grows with T^2).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from spikelib.functional.lif import LIFConfig, LIFRequest, Param, lif_step
from spikelib.kernels.registry import register_backend


def _always(request: LIFRequest) -> Optional[str]:
    return None


@register_backend("lif", "torch", check=_always, priority=0, description="plain per-step torch loop (reference)")
def lif_torch(
    x: torch.Tensor, v0: torch.Tensor, tau: Param, v_threshold: Param, config: LIFConfig, return_membrane: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Multi-step LIF by the reference loop. Returns ``(spikes, membrane or None, v_final)``."""
    v = v0
    spikes = []
    membrane = []
    for x_t in x.unbind(0):
        s, v = lif_step(x_t, v, tau, v_threshold, config)
        spikes.append(s)
        if return_membrane:
            membrane.append(v)
    return torch.stack(spikes), (torch.stack(membrane) if return_membrane else None), v
