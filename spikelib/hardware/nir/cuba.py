"""NIR's current-based LIF as a runtime module (what :func:`spikelib.hardware.nir.from_nir` builds for a
``CubaLIF`` node)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spikelib.graph import nodes as N

__all__ = ["CubaLIF"]


class CubaLIF(nn.Module):
    """NIR's current-based LIF, Euler steps of size 1 with time constants in steps (``[T, B, N]`` spikes out)::

        I += (w_in X - I) / tau_syn;   V += (v_leak - V + r I) / tau_mem;   S = V > v_th;   V = v_reset where S
    """

    temporal = True

    def __init__(self, tau_syn, tau_mem, r, v_leak, v_threshold, v_reset, w_in) -> None:
        super().__init__()
        for name, value in (("tau_syn", tau_syn), ("tau_mem", tau_mem), ("r", r), ("v_leak", v_leak),
                            ("v_threshold", v_threshold), ("v_reset", v_reset), ("w_in", w_in)):
            self.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float64)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = torch.zeros_like(x[0])
        v = torch.zeros_like(x[0]) + self.v_leak
        out = []
        for x_t in x.unbind(0):
            i = i + (self.w_in * x_t - i) / self.tau_syn
            v = v + (self.v_leak - v + self.r * i) / self.tau_mem
            s = (v > self.v_threshold).to(x.dtype)
            v = torch.where(s > 0, self.v_reset, v)
            out.append(s)
        return torch.stack(out)

    def graph_node(self) -> N.CubaLIF:
        """The discrete form: decays ``1/tau``, gains ``w_in/tau_syn`` and ``r/tau_mem``, bias ``v_leak/tau_mem``."""
        return N.CubaLIF(1.0 / self.tau_syn, 1.0 / self.tau_mem, self.v_threshold, self.v_leak / self.tau_mem,
                         self.v_reset, "hard", self.w_in / self.tau_syn, self.r / self.tau_mem)
