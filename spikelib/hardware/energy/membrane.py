"""NeuroBench's membrane-update rule for any layer that declares a LIF node.

NeuroBench's ``MembraneUpdates`` (neurobench/metrics/workload/membrane_updates.py, hooks/neuron.py) reads an
snnTorch neuron's ``mem`` before and after every call: the first call of a batch counts every neuron, every later
call counts the neurons whose ``mem`` changed. snnTorch's ``mem`` after a step is the potential compared with the
threshold, before the reset (``reset_delay=True``, the default, applies the reset at the next step). In the equations
of :mod:`spikelib.graph.nodes` that is the charged potential ``H``:

    updates = neurons x batch (first step) + sum_{t >= 1} #{H[t] != H[t-1]}

A layer's ``H`` is rebuilt here from its declared node (``tau``, threshold, reset), its real input current and its
real output spikes (the reset uses the spikes the layer emitted, so the rebuilt trace follows the layer even where a
recomputation would round differently at the threshold). A sequence layer ``[T, B, ...]`` is rebuilt in one call;
a per-step layer (``LIFCell``, snnTorch's ``Leaky``) carries ``(H, V)`` from one call to the next within one forward
pass of the model (``state``). The trace starts from rest (``V = v_reset``).

This costs a loop over the time steps (a few elementwise operations per step), so it runs only when NeuroBench's
neuron metrics are asked for (``measure(..., neurobench=True)``).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from spikelib.graph import nodes as N

__all__ = ["lif_membrane_updates"]

State = Tuple[torch.Tensor, torch.Tensor]  # (H, V) after the last step


def _inv_tau(tau) -> object:
    if isinstance(tau, torch.Tensor):
        return torch.where(torch.isinf(tau), torch.zeros_like(tau), 1.0 / tau)
    return 0.0 if math.isinf(float(tau)) else 1.0 / float(tau)


def _step(node: N.LIF, v: torch.Tensor, x: torch.Tensor, inv_tau) -> torch.Tensor:
    if node.decay_input:
        return v + (x - (v - node.v_reset)) * inv_tau
    return v - (v - node.v_reset) * inv_tau + x


def _reset(node: N.LIF, h: torch.Tensor, s: torch.Tensor, v_th) -> torch.Tensor:
    if node.reset == "hard":
        return h * (1.0 - s) + node.v_reset * s
    return h - v_th * s


def lif_membrane_updates(node: N.LIF, x: torch.Tensor, spikes: torch.Tensor, temporal: bool,
                         state: Optional[State]) -> Tuple[int, State]:
    """NeuroBench's membrane updates of one call (see the module docstring) and the state after it.

    Args:
        node: the layer's declared LIF.
        x: its input current (``[T, B, ...]`` when ``temporal``, else one step ``[B, ...]``).
        spikes: its output spikes, same shape.
        temporal: whether the call holds a whole sequence.
        state: ``(H, V)`` after the previous call of this layer in this forward pass (None: this is the first).
    """
    xs = x.detach().to(torch.float64)
    ss = (spikes.detach() != 0).to(torch.float64)
    if not temporal:
        xs, ss = xs.unsqueeze(0), ss.unsqueeze(0)
    inv_tau = _inv_tau(node.tau.to(torch.float64) if isinstance(node.tau, torch.Tensor) else node.tau)
    v_th = node.v_threshold.to(torch.float64) if isinstance(node.v_threshold, torch.Tensor) else node.v_threshold
    if state is None:
        h_prev = None
        v = torch.full_like(xs[0], float(node.v_reset))
        updates = xs[0].numel()  # NeuroBench counts every neuron at the first step
    else:
        h_prev, v = state
        updates = 0
    for t in range(xs.shape[0]):
        h = _step(node, v, xs[t], inv_tau)
        if h_prev is not None:
            updates += int(torch.count_nonzero(h != h_prev))
        v = _reset(node, h, ss[t], v_th)
        h_prev = h
    return updates, (h_prev, v)
