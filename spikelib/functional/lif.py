"""Leaky integrate-and-fire (LIF) neuron: the ground-truth equations and the multi-step entry point.

Per time step ``t`` (tensors are time first, ``x: [T, B, ...]``), with membrane ``V``, input ``X`` and time constant
``tau`` (in steps)::

    charge, decay_input=True :  H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau
    charge, decay_input=False:  H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]
    fire                     :  S[t] = Theta(H[t] - v_threshold)          (Theta(0) = 1; surrogate gradient)
    reset, hard              :  V[t] = H[t] (1 - S'[t]) + v_reset S'[t]
    reset, soft (subtractive):  V[t] = H[t] - v_threshold S'[t]

``S'`` is ``S`` with its gradient cut when ``detach_reset=True``. ``V[-1]`` is the initial state (``v_reset`` when not
given). Both charge forms decay by ``1 - 1/tau`` per step, so ``tau >= 1`` is required (``tau = 1`` keeps no memory).
These are spikingjelly's ``LIFNode`` equations (spikingjelly/activation_based/neuron.py); the membrane trace returned
is ``V`` (after reset), the final state is ``V[T-1]``.

:func:`lif_step` is one step in plain torch (used by ``LIFCell`` and by the reference backend). :func:`lif` checks the
arguments and dispatches the whole sequence to a backend from the registry (``backend="auto"``: the CuPy kernels for CUDA
tensors when CuPy imports, the fast CPU kernels for float32/float64 CPU tensors, the torch reference otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple, Union

import torch

from spikelib.functional._checks import (
    check_choice,
    check_scalar_or_neuronwise,
    check_sequence_input,
    check_state,
)
from spikelib.kernels.registry import select_backend
from spikelib.surrogate import Surrogate, get_surrogate, spike

__all__ = ["LIFState", "LIFOutput", "LIFConfig", "LIFRequest", "lif", "lif_step", "resolve_lif_config"]

Param = Union[float, torch.Tensor]


class LIFState(NamedTuple):
    """State of a LIF layer: the membrane potential ``v`` of shape ``[B, ...]``."""

    v: torch.Tensor


class LIFOutput(NamedTuple):
    """Result of :func:`lif`: spikes ``[T, B, ...]``, membrane trace ``[T, B, ...]`` (or None), final state."""

    spikes: torch.Tensor
    membrane: Optional[torch.Tensor]
    state: LIFState


@dataclass(frozen=True)
class LIFConfig:
    """The discrete choices of the LIF equations (everything except tensors and time constants)."""

    reset: str = "hard"
    decay_input: bool = True
    detach_reset: bool = False
    v_reset: float = 0.0
    surrogate: Surrogate = get_surrogate("atan")


@dataclass(frozen=True)
class LIFRequest:
    """What a backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    config: LIFConfig
    requires_grad: bool


def resolve_lif_config(
    reset: str, decay_input: bool, detach_reset: bool, v_reset: float, surrogate: Union[str, Surrogate]
) -> LIFConfig:
    """Check the discrete LIF options and return them as a :class:`LIFConfig`."""
    check_choice(reset, "reset", ("hard", "soft"))
    for name, flag in (("decay_input", decay_input), ("detach_reset", detach_reset)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)):
        raise TypeError(f"v_reset must be a real number, got {type(v_reset).__name__}")
    if not torch.isfinite(torch.tensor(float(v_reset))):
        raise ValueError(f"v_reset must be finite, got {v_reset}")
    return LIFConfig(reset, decay_input, detach_reset, float(v_reset), get_surrogate(surrogate))


def lif_step(
    x_t: torch.Tensor, v: torch.Tensor, tau: Param, v_threshold: Param, config: LIFConfig
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One LIF step in plain torch: returns ``(S[t], V[t])`` from ``X[t]`` and ``V[t-1]`` (no argument checks)."""
    if config.decay_input:
        h = v + (x_t - (v - config.v_reset)) / tau
    else:
        h = v - (v - config.v_reset) / tau + x_t
    s = spike(h - v_threshold, config.surrogate)
    s_r = s.detach() if config.detach_reset else s
    if config.reset == "hard":
        v_next = h * (1.0 - s_r) + config.v_reset * s_r
    else:
        v_next = h - v_threshold * s_r
    return s, v_next


def lif(
    x: torch.Tensor,
    state: Optional[Union[LIFState, torch.Tensor]] = None,
    *,
    tau: Param = 2.0,
    v_threshold: Param = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate: Union[str, Surrogate] = "atan",
    return_membrane: bool = False,
    backend: str = "auto",
) -> LIFOutput:
    """Run a LIF layer over a whole sequence.

    Args:
        x: input current ``[T, B, ...]`` (floating point).
        state: initial membrane ``[B, ...]`` (a :class:`LIFState` or a tensor); ``v_reset`` everywhere if None.
        tau: membrane time constant in steps, ``>= 1``; a number or a per-neuron tensor broadcastable to ``x.shape[2:]``
            (may require grad).
        v_threshold: firing threshold; number or per-neuron tensor (may require grad).
        v_reset: reset potential (also the resting potential of the charge equation).
        reset: ``"hard"`` (to ``v_reset``) or ``"soft"`` (subtract ``v_threshold``).
        decay_input: which charge equation (see the module docstring).
        detach_reset: cut the gradient through the reset.
        surrogate: surrogate-gradient name or instance (see :mod:`spikelib.surrogate`).
        return_membrane: also return the membrane trace ``V`` (after reset), differentiable.
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("lif")``).

    Returns:
        :class:`LIFOutput` ``(spikes, membrane or None, LIFState(v_final))``.
    """
    check_sequence_input(x, "x")
    config = resolve_lif_config(reset, decay_input, detach_reset, v_reset, surrogate)
    feature_shape = tuple(x.shape[2:])
    tau = check_scalar_or_neuronwise(
        tau, "tau", feature_shape, x, minimum=1.0, minimum_text=" (the decay per step is 1 - 1/tau)"
    )
    v_threshold = check_scalar_or_neuronwise(v_threshold, "v_threshold", feature_shape, x)
    if isinstance(state, LIFState):
        state = state.v
    if state is None:
        v0 = torch.full(x.shape[1:], config.v_reset, dtype=x.dtype, device=x.device)
    else:
        v0 = check_state(state, "state", x, x.shape[1:])
    if not isinstance(return_membrane, bool):
        raise TypeError(f"return_membrane must be a bool, got {type(return_membrane).__name__}")

    requires_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, v0, tau, v_threshold)
    )
    request = LIFRequest(x.device, x.dtype, config, requires_grad)
    impl = select_backend("lif", backend, request).impl
    spikes, membrane, v_final = impl(x, v0, tau, v_threshold, config, return_membrane)
    return LIFOutput(spikes, membrane, LIFState(v_final))
