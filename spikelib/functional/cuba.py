"""Current-based LIF (CUBA-LIF): the neuron Loihi runs, with trainable current and voltage decays.

Per step, with synaptic current ``I``, membrane ``V``, input ``X`` and decays ``du`` (``current_decay``) and ``dv``
(``voltage_decay``) in ``[0, 1]``::

    I[t] = I[t-1] (1 - du) + X[t]
    H[t] = V[t-1] (1 - dv) + I[t] + bias
    S[t] = Theta(H[t] - v_threshold)                        (strict: H == v_threshold does not spike)
    V[t] = H[t] (1 - S'[t]) + v_reset S'[t]   (hard)   or   H[t] - v_threshold S'[t]   (soft)

``I`` is not reset. These are the float equations of Lava's CUBA LIF (lava-nc/lava ``src/lava/proc/lif/models.py``,
``PyLifModelFloat``: ``u = u (1 - du) + a_in``, ``v = v (1 - dv) + u + bias``, ``s = v > vth``, ``v[s] = 0``), in its
order of operations; with ``v_reset = 0``, the hard reset and the decays quantised to ``du = D_u / 4096`` the
bit-accurate model (``PyLifModelBitAcc``, REFERENCES: ``u = u (4096 - D_u) >> 12 + a_in``, ``v = v (4096 - D_v) >> 12
+ u + bias``) is this one in fixed point. ``du = 1/tau_syn`` and ``dv = 1/tau_mem`` (steps) give NIR's ``CubaLIF``
with ``r = tau_mem``. Peers: spikingjelly's ``CUBALIFNode`` (``c_decay = 1 - du``, ``v_decay = 1 - dv``, ties spike)
runs the same equations; norse's ``LIF`` is current-based with another discretisation (see tests/test_peers_families.py).
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

__all__ = ["CubaLIFState", "CubaLIFOptions", "CUBA_LIF", "cuba_lif", "cuba_lif_spec"]

Param = Union[float, torch.Tensor]


class CubaLIFState(NamedTuple):
    """State of a CUBA-LIF layer: synaptic current ``i`` and membrane ``v``, each ``[B, ...]``."""

    i: torch.Tensor
    v: torch.Tensor


@dataclass(frozen=True)
class CubaLIFOptions(BasicOptions):
    """Options of the CUBA-LIF (see :class:`~spikelib.functional.dynamics.BasicOptions`)."""


def _step(ops: Any, x: Any, states: Tuple[Any, Any], p: Any, o: CubaLIFOptions):
    i, v = states
    i = i * (1.0 - p.current_decay) + x
    h = v * (1.0 - p.voltage_decay) + i + p.bias
    s = ops.spike(h - p.v_threshold, strict=True)
    return s, (i, reset_membrane(ops, h, s, p.v_threshold, p.v_reset, o))


_DECAY = ParamRule(minimum=0.0, maximum=1.0, why=" (a decay per step, in [0, 1])")
CUBA_LIF = NeuronFamily(
    name="cuba_lif",
    states=("i", "v"),
    params=("current_decay", "voltage_decay", "v_threshold", "bias"),
    scalars=("v_reset",),
    options_type=CubaLIFOptions,
    step=_step,
    state_type=CubaLIFState,
    rules=(("current_decay", _DECAY), ("voltage_decay", _DECAY)),
    initial=("", "v_reset"),
)


def cuba_lif_spec(reset: str = "hard", detach_reset: bool = False,
                  surrogate: Union[str, Surrogate] = "atan") -> NeuronSpec:
    """The checked variant for these options."""
    return NeuronSpec(CUBA_LIF, check_options(CubaLIFOptions(reset, detach_reset, get_surrogate(surrogate)),
                                              CubaLIFOptions))


def cuba_lif(
    x: torch.Tensor,
    state: Optional[CubaLIFState] = None,
    *,
    current_decay: Param,
    voltage_decay: Param,
    v_threshold: Param = 1.0,
    bias: Param = 0.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    detach_reset: bool = False,
    surrogate: Union[str, Surrogate] = "atan",
    return_states: bool = False,
    backend: str = "auto",
) -> NeuronOutput:
    """Run a CUBA-LIF layer over ``x: [T, B, ...]`` (equations in the module docstring).

    Args:
        x: input current ``[T, B, ...]``.
        state: initial :class:`CubaLIFState` (``i = 0``, ``v = v_reset`` if None).
        current_decay, voltage_decay: ``du``, ``dv`` in ``[0, 1]``: numbers or per-neuron tensors (may require grad).
        v_threshold, bias: numbers or per-neuron tensors (may require grad).
        v_reset, reset, detach_reset, surrogate: as in :func:`spikelib.functional.lif.lif`.
        return_states: also return the traces ``CubaLIFState(i [T, B, ...], v [T, B, ...])``.
        backend: ``"auto"`` or a name from ``spikelib.kernels.available_backends("neuron")``.

    Returns:
        :class:`~spikelib.functional.dynamics.NeuronOutput` ``(spikes, traces or None, final CubaLIFState)``.
    """
    spec = cuba_lif_spec(reset, detach_reset, surrogate)
    params = {"current_decay": current_decay, "voltage_decay": voltage_decay, "v_threshold": v_threshold,
              "bias": bias}
    return run_neuron(spec, x, state, params, {"v_reset": v_reset}, return_states, backend)
