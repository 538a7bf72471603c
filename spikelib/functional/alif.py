"""Adaptive-threshold LIF (ALIF; the neuron of LSNNs, Bellec et al., NeurIPS 2018): each spike raises the threshold.

Per step, with membrane ``V``, threshold adaptation ``A`` and input ``X``::

    H[t]     = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau_mem     (decay_input=True; the LIF charge of
             = V[t-1] - (V[t-1] - v_reset) / tau_mem + X[t]        decay_input=False;  spikelib.functional.lif)
    A'[t]    = A[t-1] - A[t-1] / tau_adapt                          (the adaptation decays)
    Th[t]    = v_threshold + beta A'[t]
    S[t]     = Theta(H[t] - Th[t])                                  (Theta(0) = 1)
    V[t]     = H[t] (1 - S'[t]) + v_reset S'[t]   (hard)   or   H[t] - Th[t] S'[t]   (soft)
    A[t]     = A'[t] + S[t]                                         (each spike raises the threshold by beta)

The threshold ``v_threshold + beta A`` relaxes to ``v_threshold`` with time constant ``tau_adapt``. This is norse's
``LSNN`` threshold (norse/torch/functional/lsnn.py: ``b <- b + dt/tau_adapt (v_th - b)``, ``z = Theta(v - b)``,
``b <- b + beta z``, i.e. ``b = v_th + beta A``) on spikelib's LIF membrane; Bellec et al.'s form ``A = b0 + beta' a``,
``a <- rho a + (1 - rho) z`` is the same with ``beta' (1 - rho) = beta rho``, ``rho = 1 - 1/tau_adapt``.
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

__all__ = ["ALIFState", "ALIFOptions", "ALIF_NEURON", "alif", "alif_spec"]

Param = Union[float, torch.Tensor]


class ALIFState(NamedTuple):
    """State of an ALIF layer: membrane ``v`` and threshold adaptation ``a``, each ``[B, ...]``."""

    v: torch.Tensor
    a: torch.Tensor


@dataclass(frozen=True)
class ALIFOptions(BasicOptions):
    """Options of the ALIF: the common ones and ``decay_input`` (which LIF charge)."""

    decay_input: bool = True


def _step(ops: Any, x: Any, states: Tuple[Any, Any], p: Any, o: ALIFOptions):
    v, a = states
    if o.decay_input:
        h = v + (x - (v - p.v_reset)) / p.tau_mem
    else:
        h = v - (v - p.v_reset) / p.tau_mem + x
    a = a - a / p.tau_adapt
    th = p.v_threshold + p.beta * a
    s = ops.spike(h - th)
    return s, (reset_membrane(ops, h, s, th, p.v_reset, o), a + s)


_TAU = ParamRule(minimum=1.0, why=" (the decay per step is 1 - 1/tau)")
ALIF_NEURON = NeuronFamily(
    name="alif",
    states=("v", "a"),
    params=("tau_mem", "v_threshold", "beta", "tau_adapt"),
    scalars=("v_reset",),
    options_type=ALIFOptions,
    step=_step,
    state_type=ALIFState,
    rules=(("tau_mem", _TAU), ("tau_adapt", _TAU)),
    initial=("v_reset", ""),
)


def alif_spec(reset: str = "hard", detach_reset: bool = False, surrogate: Union[str, Surrogate] = "atan",
              decay_input: bool = True) -> NeuronSpec:
    """The checked variant for these options."""
    return NeuronSpec(ALIF_NEURON, check_options(
        ALIFOptions(reset, detach_reset, get_surrogate(surrogate), decay_input), ALIFOptions))


def alif(
    x: torch.Tensor,
    state: Optional[ALIFState] = None,
    *,
    tau_mem: Param = 2.0,
    tau_adapt: Param = 20.0,
    beta: Param = 0.2,
    v_threshold: Param = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate: Union[str, Surrogate] = "atan",
    return_states: bool = False,
    backend: str = "auto",
) -> NeuronOutput:
    """Run an ALIF layer over ``x: [T, B, ...]`` (equations in the module docstring).

    ``tau_mem``, ``tau_adapt`` (steps, ``>= 1``), ``beta`` and ``v_threshold`` are numbers or per-neuron tensors
    (may require grad); the state starts at ``v = v_reset``, ``a = 0``. Other arguments as in
    :func:`spikelib.functional.cuba.cuba_lif`.
    """
    spec = alif_spec(reset, detach_reset, surrogate, decay_input)
    params = {"tau_mem": tau_mem, "v_threshold": v_threshold, "beta": beta, "tau_adapt": tau_adapt}
    return run_neuron(spec, x, state, params, {"v_reset": v_reset}, return_states, backend)
