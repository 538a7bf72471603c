"""Recurrent spiking layers: any spikelib neuron with all-to-all feedback of its own spikes.

For a neuron module ``N`` (``LIF``, ``ParametricLIF``, ``IF``, ``CubaLIF``, ``ALIF``, ``Izhikevich``) over ``features``
neurons and input ``x: [T, B, features]``::

    I[t] = x[t] + W S[t-1] (+ b)        S[t], state[t] = N.step(I[t], state[t-1])        S[-1] = 0

``W`` (``recurrent.weight``, ``[features, features]``) is an ``nn.Linear`` with PyTorch's default initialisation.
This is snnTorch's ``RLeaky``/``RSynaptic`` with ``all_to_all=True`` (``mem = beta mem + input + V(spk)``) and norse's
``LIFRecurrent`` (``i += input + W_rec z``) for the matching neuron. Each step runs the neuron's own backend (the fast
kernels one step at a time; autograd carries BPTT across steps and through ``W``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
from torch import nn

from spikelib.graph import declare, nodes
from spikelib.neurons._params import check_flag
from spikelib.neurons.base import StatefulModule

__all__ = ["Recurrent", "RecurrentState"]


class RecurrentState(NamedTuple):
    """State of a recurrent layer: the neuron's state and its last spikes ``[B, features]``."""

    neuron: Any
    spikes: torch.Tensor


class Recurrent(StatefulModule):
    """All-to-all recurrent layer around a sequence neuron module (see the module docstring).

    Args:
        neuron: the neuron module (its parameters are per layer or per neuron over ``features``).
        features: number of neurons (the input's last dimension).
        bias: add a learnable bias to the feedback.
        stateful: keep the final state (and last spikes) between calls.
    """

    def __init__(self, neuron: nn.Module, features: int, bias: bool = False, stateful: bool = False) -> None:
        super().__init__(stateful)
        if not hasattr(neuron, "_run"):
            raise TypeError(f"neuron must be a spikelib sequence neuron module (LIF, ParametricLIF, IF, CubaLIF, ALIF, "
                            f"Izhikevich), got {type(neuron).__name__}")
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an int >= 1, got {features!r}")
        self.neuron = neuron
        self.features = features
        self.recurrent = nn.Linear(features, features, bias=check_flag(bias, "bias"))

    temporal = True

    def graph_node(self) -> nodes.Recurrent:
        """The neuron's own node with the feedback weights (the layer's children are part of it)."""
        r = self.recurrent
        return nodes.Recurrent(declare(self.neuron), r.weight.detach(), None if r.bias is None else r.bias.detach())

    def forward(self, x: torch.Tensor, state: Optional[RecurrentState] = None, return_states: bool = False):
        """Spikes ``[T, B, features]`` (and the neuron's state traces when ``return_states``)."""
        check_flag(return_states, "return_states")
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != self.features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be [T, B, {self.features}] (time first), got {shape}")
        start = self._initial_state(state, x, (x.shape[1], self.features))
        if start is None:
            neuron_state, s = None, x.new_zeros(x.shape[1:])
        else:
            neuron_state, s = start
        spikes, traces = [], []
        for x_t in x.unbind(0):
            out = self.neuron._run((x_t + self.recurrent(s)).unsqueeze(0), neuron_state, return_states)
            s, neuron_state = out.spikes[0], out.state
            spikes.append(s)
            if return_states:
                traces.append(out.states)
        # kept without its graph (a kept state must not chain one batch's graph into the next)
        self.state = RecurrentState(type(neuron_state)(*(t.detach() for t in neuron_state)), s.detach())
        out_spikes = torch.stack(spikes)
        if not return_states:
            return out_spikes
        kind = type(traces[0])
        return out_spikes, kind(*(torch.cat([tr[k] for tr in traces]) for k in range(len(kind._fields))))

    def _initial_state(self, explicit, like, shape):  # the kept state is (neuron state, spikes)
        if explicit is not None:
            if not isinstance(explicit, RecurrentState):
                raise TypeError(f"state must be a RecurrentState, got {type(explicit).__name__}")
            return explicit
        if not self.stateful or self.state is None:
            return None
        kept = self.state.spikes
        if kept.device != like.device or kept.dtype != like.dtype:
            raise RuntimeError(f"Recurrent keeps a state on {kept.device} ({kept.dtype}) but the input is on "
                               f"{like.device} ({like.dtype}); call spikelib.reset(model) first")
        return self.state if tuple(kept.shape) == tuple(shape) else None
