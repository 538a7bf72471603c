"""``LeakyIntegrator``: a non-firing LIF membrane (readouts), ``[T, B, ...] -> [T, B, ...]`` membrane trace.

The charge equation of :mod:`spikelib.functional.lif` without threshold or reset (NIR's ``LI`` node discretised with
one step of ``dt``)::

    decay_input=True :  V[t] = V[t-1] + (r X[t] - (V[t-1] - v_leak)) / tau
    decay_input=False:  V[t] = V[t-1] - (V[t-1] - v_leak) / tau + r X[t]

with ``V[-1] = v_leak`` and an input gain ``r`` (NIR's resistance; 1 by default, then the input is not scaled). It runs on the LIF backends (the same kernels, with a threshold no finite membrane reaches),
so it is as fast as a LIF layer and bitwise equal to the LIF charge; the spikes are discarded and carry no gradient.
SNN-delays' readout (a LIF with threshold 1e9, Thvnvtos/SNN-delays ``best_config_SHD.py``) and ``SpikingMLP``'s
membrane readout are this module.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch

from spikelib.functional.lif import lif
from spikelib.graph import nodes
from spikelib.neurons.base import StatefulModule

__all__ = ["LeakyIntegrator"]


class LeakyIntegrator(StatefulModule):
    """Non-firing leaky integrator (see the module docstring); ``forward(x)`` returns the membrane trace.

    Args:
        tau: time constant in steps (``>= 1``).
        decay_input: which charge equation.
        v_leak: resting potential (and initial state).
        r: input gain (NIR's resistance).
        backend: LIF backend (``"auto"`` picks the fastest exact one).
        stateful: keep the final membrane between calls (see :class:`~spikelib.neurons.base.StatefulModule`).
    """

    temporal = True

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_leak: float = 0.0, r: float = 1.0,
                 backend: str = "auto", stateful: bool = False) -> None:
        super().__init__(stateful)
        if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not (1.0 <= float(tau) < math.inf):
            raise ValueError(f"tau must be a finite number >= 1 (steps), got {tau!r}")
        if not isinstance(decay_input, bool):
            raise TypeError(f"decay_input must be a bool, got {type(decay_input).__name__}")
        if isinstance(v_leak, bool) or not isinstance(v_leak, numbers.Real) or not math.isfinite(float(v_leak)):
            raise ValueError(f"v_leak must be a finite number, got {v_leak!r}")
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(float(r)):
            raise ValueError(f"r must be a finite number, got {r!r}")
        self.tau, self.decay_input, self.v_leak, self.backend = float(tau), decay_input, float(v_leak), backend
        self.r = float(r)

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Membrane ``[T, B, ...]`` for input ``x: [T, B, ...]``; ``state``: initial membrane ``[B, ...]``."""
        v0 = self._initial_state(state, x, tuple(x.shape[1:])) if isinstance(x, torch.Tensor) else state
        never = torch.finfo(x.dtype).max if isinstance(x, torch.Tensor) and x.is_floating_point() else math.inf
        if self.r != 1.0:
            x = x * self.r
        out = lif(x, v0, tau=self.tau, v_threshold=float(never), v_reset=self.v_leak, reset="hard",
                  decay_input=self.decay_input, detach_reset=True, return_membrane=True, backend=self.backend)
        self._keep(out.state.v)
        return out.membrane

    def graph_node(self) -> nodes.LI:
        return nodes.LI(self.tau, self.decay_input, self.v_leak, self.r)

    def extra_repr(self) -> str:
        return (f"tau={self.tau:g}, decay_input={self.decay_input}, v_leak={self.v_leak:g}, r={self.r:g}, "
                f"backend={self.backend!r}, stateful={self.stateful}")
