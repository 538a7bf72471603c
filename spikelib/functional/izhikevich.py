"""Izhikevich-type two-variable neuron: quadratic membrane with a recovery (adaptation) current.

Per step, with membrane ``V``, recovery ``W`` and input ``X``::

    H[t] = V[t-1] + (X[t] + a0 (V[t-1] - v_rest) (V[t-1] - v_c) - W[t-1]) / tau
    S[t] = Theta(H[t] - v_threshold)                                          (Theta(0) = 1)
    W[t] = W[t-1] + (a (H[t] - v_rest) - W[t-1]) / tau_w + b S[t]
    V[t] = H[t] (1 - S'[t]) + v_reset S'[t]   (hard)   or   H[t] - v_threshold S'[t]   (soft)

These are spikingjelly's ``IzhikevichNode`` equations, in its order of operations (spikingjelly/_ops/izhikevich/
reference.py ``step``; its module defaults ``tau=2``, ``v_c=0.8``, ``a0=1``, ``v_rest=-0.1``, ``tau_w=2``, ``a=b=0``;
here ``v_rest=0``, ``a=0.1``, ``b=0.2``, so that the recovery acts by default). The structure is Izhikevich's (2003)
``v' = 0.04 v^2 + 5 v + 140 - u + I``, ``u' = a (b v - u)``, ``v = c`` and ``u += d`` after a spike: a quadratic
membrane (``a0 (V - v_rest)(V - v_c)``, roots ``v_rest`` and ``v_c``), a linear recovery driven by the membrane and
a recovery jump ``b`` per spike, in Euler steps. The recovery sees the spike's surrogate gradient even with
``detach_reset`` (as in spikingjelly).
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
    ParamRule,
    check_options,
    reset_membrane,
    run_neuron,
)
from spikelib.surrogate import Surrogate, get_surrogate

__all__ = ["IzhikevichState", "IzhikevichOptions", "IZHIKEVICH_NEURON", "izhikevich", "izhikevich_spec"]

Param = Union[float, torch.Tensor]


class IzhikevichState(NamedTuple):
    """State of an Izhikevich layer: membrane ``v`` and recovery ``w``, each ``[B, ...]``."""

    v: torch.Tensor
    w: torch.Tensor


@dataclass(frozen=True)
class IzhikevichOptions(BasicOptions):
    """Options of the Izhikevich neuron (see :class:`~spikelib.functional.dynamics.BasicOptions`)."""


def _step(ops: Any, x: Any, states: Tuple[Any, Any], p: Any, o: IzhikevichOptions):
    v, w = states
    h = v + (x + p.a0 * (v - p.v_rest) * (v - p.v_c) - w) / p.tau
    s = ops.spike(h - p.v_threshold)
    w = w + (p.a * (h - p.v_rest) - w) / p.tau_w + p.b * s
    return s, (reset_membrane(ops, h, s, p.v_threshold, p.v_reset, o), w)


_TAU = ParamRule(positive=True, why=" (a time constant in steps)")
IZHIKEVICH_NEURON = NeuronFamily(
    name="izhikevich",
    states=("v", "w"),
    params=("tau", "v_threshold", "a0", "v_rest", "v_c", "tau_w", "a", "b"),
    scalars=("v_reset",),
    options_type=IzhikevichOptions,
    step=_step,
    state_type=IzhikevichState,
    rules=(("tau", _TAU), ("tau_w", _TAU)),
    initial=("v_reset", ""),
)


def izhikevich_spec(reset: str = "hard", detach_reset: bool = False,
                    surrogate: Union[str, Surrogate] = "atan") -> NeuronSpec:
    """The checked variant for these options."""
    return NeuronSpec(IZHIKEVICH_NEURON, check_options(
        IzhikevichOptions(reset, detach_reset, get_surrogate(surrogate)), IzhikevichOptions))


def izhikevich(
    x: torch.Tensor,
    state: Optional[IzhikevichState] = None,
    *,
    tau: Param = 2.0,
    v_threshold: Param = 1.0,
    a0: Param = 1.0,
    v_rest: Param = 0.0,
    v_c: Param = 0.8,
    tau_w: Param = 2.0,
    a: Param = 0.1,
    b: Param = 0.2,
    v_reset: float = 0.0,
    reset: str = "hard",
    detach_reset: bool = False,
    surrogate: Union[str, Surrogate] = "atan",
    return_states: bool = False,
    backend: str = "auto",
) -> NeuronOutput:
    """Run an Izhikevich layer over ``x: [T, B, ...]`` (equations in the module docstring).

    Every parameter is a number or a per-neuron tensor (may require grad); ``tau``, ``tau_w`` > 0. The state starts
    at ``v = v_reset``, ``w = 0``. Other arguments as in :func:`spikelib.functional.cuba.cuba_lif`.
    """
    spec = izhikevich_spec(reset, detach_reset, surrogate)
    params = {"tau": tau, "v_threshold": v_threshold, "a0": a0, "v_rest": v_rest, "v_c": v_c, "tau_w": tau_w,
              "a": a, "b": b}
    return run_neuron(spec, x, state, params, {"v_reset": v_reset}, return_states, backend)
