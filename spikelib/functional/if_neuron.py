"""Integrate-and-fire (IF) neuron: no leak.

Per step, with membrane ``V`` and input ``X``::

    H[t] = V[t-1] + X[t]
    S[t] = Theta(H[t] - v_threshold)                      (Theta(0) = 1)
    V[t] = H[t] (1 - S'[t]) + v_reset S'[t]   (hard)   or   H[t] - v_threshold S'[t]   (soft)

spikingjelly's ``IFNode`` (spikingjelly/activation_based/neuron/integrate_and_fire.py: ``v = v + x``, the same fire
and reset rules) runs the same equations; the membrane starts at ``v_reset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Tuple, Union

import torch

from spikelib.functional.dynamics import (
    BasicOptions,
    NeuronFamily,
    NeuronOutput,
    NeuronSpec,
    check_options,
    reset_membrane,
    run_neuron,
)
from spikelib.surrogate import Surrogate, get_surrogate

__all__ = ["IFState", "IFOptions", "IF_NEURON", "if_neuron", "if_spec"]

Param = Union[float, torch.Tensor]


class IFState(NamedTuple):
    """State of an IF layer: the membrane ``v`` ``[B, ...]``."""

    v: torch.Tensor


@dataclass(frozen=True)
class IFOptions(BasicOptions):
    """Options of the IF neuron (see :class:`~spikelib.functional.dynamics.BasicOptions`)."""


def _step(ops: Any, x: Any, states: Tuple[Any], p: Any, o: IFOptions):
    (v,) = states
    h = v + x
    s = ops.spike(h - p.v_threshold)
    return s, (reset_membrane(ops, h, s, p.v_threshold, p.v_reset, o),)


IF_NEURON = NeuronFamily(
    name="if",
    states=("v",),
    params=("v_threshold",),
    scalars=("v_reset",),
    options_type=IFOptions,
    step=_step,
    state_type=IFState,
    initial=("v_reset",),
)


def if_spec(reset: str = "hard", detach_reset: bool = False, surrogate: Union[str, Surrogate] = "atan") -> NeuronSpec:
    """The checked variant for these options."""
    return NeuronSpec(IF_NEURON, check_options(IFOptions(reset, detach_reset, get_surrogate(surrogate)), IFOptions))


def if_neuron(
    x: torch.Tensor,
    state: Optional[IFState] = None,
    *,
    v_threshold: Param = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    detach_reset: bool = False,
    surrogate: Union[str, Surrogate] = "atan",
    return_states: bool = False,
    backend: str = "auto",
) -> NeuronOutput:
    """Run an IF layer over ``x: [T, B, ...]`` (equations in the module docstring; arguments as in
    :func:`spikelib.functional.cuba.cuba_lif`)."""
    spec = if_spec(reset, detach_reset, surrogate)
    return run_neuron(spec, x, state, {"v_threshold": v_threshold}, {"v_reset": v_reset}, return_states, backend)
