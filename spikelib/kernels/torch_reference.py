"""The torch reference backends: a plain per-step loop over :func:`spikelib.functional.lif.lif_step` (operation
``"lif"``) and over a neuron family's step function (operation ``"neuron"``, :mod:`spikelib.functional.dynamics`).

This is the ground truth every other backend is tested against. It runs on any device and dtype and lets autograd
do BPTT. The loop iterates ``x.unbind(0)`` rather than indexing ``x[t]``: indexing inside an autograd loop makes every
step's backward allocate a zero tensor of the whole sequence (backward cost grows with T^2).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from spikelib.functional.dynamics import NeuronSpec, step_torch
from spikelib.functional.lif import LIFConfig, LIFRequest, Param, lif_step
from spikelib.kernels.registry import register_backend


def _always(request: LIFRequest) -> Optional[str]:
    return None


@register_backend("lif", "torch", check=_always, priority=0, compile_safe=True, pure_check=True,
                  description="plain per-step torch loop (reference)")
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


@register_backend("neuron", "torch", check=_always, priority=0, compile_safe=True,
                  description="the family's step function in a torch loop (reference)")
def neuron_torch(
    spec: NeuronSpec, x: torch.Tensor, states: Tuple[torch.Tensor, ...], params: Tuple[torch.Tensor, ...],
    scalars: Tuple[float, ...], return_states: bool,
) -> Tuple[torch.Tensor, Optional[Tuple[torch.Tensor, ...]], Tuple[torch.Tensor, ...]]:
    """A neuron family by the reference loop over its step function. Returns ``(spikes, traces or None, final)``."""
    sc = tuple(torch.tensor(c, dtype=x.dtype, device=x.device) for c in scalars)
    spikes = []
    traces: list = [[] for _ in states]
    for x_t in x.unbind(0):
        s, states = step_torch(spec, x_t, states, params, sc)
        spikes.append(s)
        if return_states:
            for k, v in enumerate(states):
                traces[k].append(v)
    return torch.stack(spikes), (tuple(torch.stack(t) for t in traces) if return_states else None), tuple(states)
