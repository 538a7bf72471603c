"""Plain-torch references of the template's neuron models beyond LIF (whose reference is
:func:`spikelib.functional.lif.lif` with ``backend="torch"``): the ground truth the kernels are tested against.

QIF (spikingjelly ``QIFNode``, fangwei123456/spikingjelly spikingjelly/activation_based/neuron.py)::

    H[t] = V[t-1] + (X[t] + a0 (V[t-1] - v_rest)(V[t-1] - v_c)) / tau,   then fire and reset as in the LIF.
"""

from __future__ import annotations

from typing import Tuple

import torch

from spikelib.functional.lif import LIFConfig, Param
from spikelib.surrogate import spike

__all__ = ["qif_reference"]


def qif_reference(
    x: torch.Tensor, v0: torch.Tensor, tau: Param, v_threshold: Param, config: LIFConfig,
    a0: float = 1.0, v_c: float = 0.8, v_rest: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-step QIF by a per-step loop with autograd. Returns ``(spikes, membrane, v_final)``."""
    v, spikes, trace = v0, [], []
    for x_t in x.unbind(0):
        h = v + (x_t + a0 * (v - v_rest) * (v - v_c)) / tau
        s = spike(h - v_threshold, config.surrogate)
        s_r = s.detach() if config.detach_reset else s
        if config.reset == "hard":
            v = h * (1.0 - s_r) + config.v_reset * s_r
        else:
            v = h - v_threshold * s_r
        spikes.append(s)
        trace.append(v)
    return torch.stack(spikes), torch.stack(trace), v
