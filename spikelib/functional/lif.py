"""Leaky integrate-and-fire (LIF) neuron: the ground-truth equations and the multi-step entry point.

Per time step ``t`` (tensors are time first, ``x: [T, B, ...]``), with membrane ``V``, input ``X``, time constant
``tau`` (in steps) or per-step leak factor ``leak``::

    charge, tau, decay_input=True :  H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau
    charge, tau, decay_input=False:  H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]
    charge, leak                  :  H[t] = leak (V[t-1] - v_reset) + v_reset + X[t]
    fire, "difference" (default)  :  Z[t] = H[t] - v_threshold,        S[t] = Theta(Z[t])   (Theta(0) = 1)
    fire, "ratio"                 :  Z[t] = H[t] / v_threshold - 1,    S[t] = Theta(Z[t])   (Theta(0) = 0)
    reset, hard                   :  V[t] = H[t] (1 - S'[t]) + v_reset S'[t]
    reset, soft (subtractive)     :  V[t] = H[t] - v_threshold S'[t]

The surrogate gradient replaces ``dS/dZ``; with ``fire="ratio"`` it is therefore defined relative to the threshold and
reaches ``H`` through ``1 / v_threshold`` and ``v_threshold`` through ``-H / v_threshold^2``. ``S'`` is ``S`` with its
gradient cut when ``detach_reset=True``. ``V[-1]`` is the initial state (``v_reset`` when not given). The ``tau`` forms
decay by ``1 - 1/tau`` per step, so ``tau >= 1`` (``tau = 1`` keeps no memory); the ``leak`` form decays by ``leak``
per step (``leak <= 1``; ``leak = 1 - 1/tau`` is the ``tau`` form without input scaling, ``leak = 1`` integrates
without loss). ``fire="ratio"`` needs ``v_threshold > 0``. The ``tau`` forms are spikingjelly's ``LIFNode``
(spikingjelly/activation_based/neuron.py); the membrane trace returned is ``V`` (after reset), the final state
``V[T-1]``.

IIR-SNN (Chowdhury, Rathi, Roy, "One Timestep is All You Need"; SayeedChowdhury/IIR-SNN,
vgg_spiking_bnfused_biasyes.py ``VGG_SNN_STDB.forward`` and ``LinearSpike``) is ``leak`` with ``v_reset = 0``,
``fire="ratio"``, ``reset="soft"``, ``detach_reset=True`` (its reset ``threshold * (mem_thr > 0).float()`` carries no
gradient through the spike) and the ``piecewise_linear`` surrogate (0.3): ``u <- leak u + W x``,
``s = (u / V - 1 > 0)``, ``u <- u - V s``, the gradient ``0.3 max(0, 1 - |u / V - 1|)`` taken on ``u / V - 1``. The reference trains ``leak``
and ``V`` (one per layer, or one per neuron) and clamps ``leak`` to at most 1 after each optimiser step
(snncifar_bnfused.py); ``spikelib.neurons.LIF`` does that projection before each pass.

Non-finite values follow IEEE arithmetic of these equations in every backend (the torch reference is the ground
truth): an infinite input charges ``H = inf``, which fires; a hard reset then gives ``inf * 0 + v_reset = NaN``, and a
NaN membrane never fires again (``Theta(NaN) = 0``): spikes ``[1, 0, 0]``, membrane ``[nan, nan, nan]``.

:func:`lif_step` is one step in plain torch (used by ``LIFCell`` and by the reference backend). :func:`lif` checks the
arguments and dispatches the whole sequence to a backend from the registry (``backend="auto"``: the CuPy kernels for CUDA
tensors when CuPy imports, the fast CPU kernels for float32/float64 CPU tensors, the torch reference otherwise).
"""

from __future__ import annotations

import math
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
from spikelib.surrogate import Surrogate, get_surrogate, spike, warn_torch_loop

__all__ = ["LIFState", "LIFOutput", "LIFConfig", "LIFRequest", "lif", "lif_with_config", "lif_step",
           "resolve_lif_config", "DECAYS", "FIRES"]

Param = Union[float, torch.Tensor]


class LIFState(NamedTuple):
    """State of a LIF layer: the membrane potential ``v`` of shape ``[B, ...]``."""

    v: torch.Tensor


class LIFOutput(NamedTuple):
    """Result of :func:`lif`: spikes ``[T, B, ...]``, membrane trace ``[T, B, ...]`` (or None), final state."""

    spikes: torch.Tensor
    membrane: Optional[torch.Tensor]
    state: LIFState


DECAYS = ("tau", "leak")
FIRES = ("difference", "ratio")


@dataclass(frozen=True)
class LIFConfig:
    """The discrete choices of the LIF equations (everything except tensors and time constants).

    ``decay`` says what the decay parameter handed to the backends is (``"tau"`` or ``"leak"``); ``fire`` is the
    firing rule (``"difference"`` or ``"ratio"``), see the module docstring.
    """

    reset: str = "hard"
    decay_input: bool = True
    detach_reset: bool = False
    v_reset: float = 0.0
    surrogate: Surrogate = get_surrogate("atan")
    decay: str = "tau"
    fire: str = "difference"

    def __post_init__(self) -> None:
        # Every backend reads these as given (the modules check their configuration once, at construction), so a
        # configuration that is not one of the equations' is refused here, wherever it was made.
        check_choice(self.reset, "reset", ("hard", "soft"))
        check_choice(self.decay, "decay", DECAYS)
        check_choice(self.fire, "fire", FIRES)
        for name, flag in (("decay_input", self.decay_input), ("detach_reset", self.detach_reset)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if isinstance(self.v_reset, bool) or not isinstance(self.v_reset, (int, float)) or not math.isfinite(
                self.v_reset):
            raise ValueError(f"v_reset must be a finite real number, got {self.v_reset!r}")
        if not isinstance(self.surrogate, Surrogate):
            raise TypeError(f"surrogate must be a Surrogate, got {type(self.surrogate).__name__}")


@dataclass(frozen=True)
class LIFRequest:
    """What a backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    config: LIFConfig
    requires_grad: bool


def resolve_lif_config(
    reset: str,
    decay_input: Optional[bool],
    detach_reset: bool,
    v_reset: float,
    surrogate: Union[str, Surrogate],
    decay: str = "tau",
    fire: str = "difference",
) -> LIFConfig:
    """Check the discrete LIF options and return them as a :class:`LIFConfig`.

    ``decay_input=None`` means True for ``decay="tau"`` and False for ``decay="leak"`` (which has no input scaling).
    """
    check_choice(reset, "reset", ("hard", "soft"))
    check_choice(decay, "decay", DECAYS)
    check_choice(fire, "fire", FIRES)
    if decay_input is None:
        decay_input = decay == "tau"
    if decay == "leak" and decay_input is True:
        raise ValueError("decay_input=True has no meaning with a leak (H = leak (V - v_reset) + v_reset + X); "
                         "leave decay_input unset or pass False")
    for name, flag in (("decay_input", decay_input), ("detach_reset", detach_reset)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)):
        raise TypeError(f"v_reset must be a real number, got {type(v_reset).__name__}")
    if not math.isfinite(float(v_reset)):
        raise ValueError(f"v_reset must be finite, got {v_reset}")
    return LIFConfig(reset, decay_input, detach_reset, float(v_reset), get_surrogate(surrogate), decay, fire)


def note_slow_surrogate(surrogate: Surrogate, x: torch.Tensor) -> None:
    """After ``backend="auto"`` chose the torch loop: say once if the surrogate (no kernel source) is why."""
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not surrogate.has_kernel_source()
            and not torch.compiler.is_compiling()):
        warn_torch_loop(surrogate)


def lif_step(
    x_t: torch.Tensor, v: torch.Tensor, tau: Param, v_threshold: Param, config: LIFConfig
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One LIF step in plain torch: returns ``(S[t], V[t])`` from ``X[t]`` and ``V[t-1]`` (no argument checks).

    ``tau`` is the decay parameter of ``config.decay``: the time constant, or the leak factor.
    """
    if config.decay == "leak":
        h = tau * (v - config.v_reset) + config.v_reset + x_t
    elif config.decay_input:
        h = v + (x_t - (v - config.v_reset)) / tau
    else:
        h = v - (v - config.v_reset) / tau + x_t
    if config.fire == "ratio":
        s = spike(h / v_threshold - 1.0, config.surrogate, strict=True)
    else:
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
    tau: Optional[Param] = None,
    v_threshold: Param = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    decay_input: Optional[bool] = None,
    detach_reset: bool = False,
    surrogate: Union[str, Surrogate] = "atan",
    return_membrane: bool = False,
    backend: str = "auto",
    leak: Optional[Param] = None,
    fire: str = "difference",
) -> LIFOutput:
    """Run a LIF layer over a whole sequence.

    Args:
        x: input current ``[T, B, ...]`` (floating point).
        state: initial membrane ``[B, ...]`` (a :class:`LIFState` or a tensor); ``v_reset`` everywhere if None.
        tau: membrane time constant in steps, ``>= 1``; a number or a per-neuron tensor broadcastable to ``x.shape[2:]``
            (may require grad). 2 when neither ``tau`` nor ``leak`` is given.
        v_threshold: firing threshold; number or per-neuron tensor (may require grad); ``> 0`` with ``fire="ratio"``.
        v_reset: reset potential (also the resting potential of the charge equation).
        reset: ``"hard"`` (to ``v_reset``) or ``"soft"`` (subtract ``v_threshold``).
        decay_input: which ``tau`` charge equation (see the module docstring); None: True, or False with ``leak``.
        detach_reset: cut the gradient through the reset.
        surrogate: surrogate-gradient name or instance (see :mod:`spikelib.surrogate`).
        return_membrane: also return the membrane trace ``V`` (after reset), differentiable.
        backend: ``"auto"`` or a registered backend name (``spikelib.kernels.available_backends("lif")``).
        leak: per-step leak factor ``<= 1`` instead of ``tau`` (number or per-neuron tensor, may require grad).
        fire: ``"difference"`` (``H - v_threshold >= 0``) or ``"ratio"`` (``H / v_threshold - 1 > 0``).

    Returns:
        :class:`LIFOutput` ``(spikes, membrane or None, LIFState(v_final))``.
    """
    if tau is not None and leak is not None:
        raise ValueError("give either tau (a time constant) or leak (a per-step factor), not both")
    config = resolve_lif_config(reset, decay_input, detach_reset, v_reset, surrogate,
                                "tau" if leak is None else "leak", fire)
    return lif_with_config(x, state, tau if leak is None else leak, v_threshold, config, return_membrane, backend)


def lif_with_config(
    x: torch.Tensor,
    state: Optional[Union[LIFState, torch.Tensor]],
    decay: Optional[Param],
    v_threshold: Param,
    config: LIFConfig,
    return_membrane: bool = False,
    backend: str = "auto",
) -> LIFOutput:
    """:func:`lif` with the discrete options given as a checked :class:`LIFConfig` (from :func:`resolve_lif_config`).

    The neuron modules call this: their configuration is checked once, at construction, so each call checks only the
    input, the parameters and the state.

    Args:
        x, state, v_threshold, return_membrane, backend: as for :func:`lif`.
        decay: ``tau`` (None means 2) when ``config.decay == "tau"``, else the leak factor.
        config: the equations' options.

    Returns:
        :class:`LIFOutput` ``(spikes, membrane or None, LIFState(v_final))``.
    """
    check_sequence_input(x, "x")
    if not isinstance(config, LIFConfig):
        raise TypeError(f"config must be a LIFConfig (see resolve_lif_config), got {type(config).__name__}")
    feature_shape = tuple(x.shape[2:])
    if config.decay == "tau":
        decay = check_scalar_or_neuronwise(
            2.0 if decay is None else decay, "tau", feature_shape, x, minimum=1.0,
            minimum_text=" (the decay per step is 1 - 1/tau)",
        )
    else:
        decay = check_scalar_or_neuronwise(decay, "leak", feature_shape, x, maximum=1.0)
    v_threshold = check_scalar_or_neuronwise(v_threshold, "v_threshold", feature_shape, x,
                                             positive=config.fire == "ratio")
    if isinstance(state, LIFState):
        state = state.v
    if state is None:
        v0 = torch.full(x.shape[1:], config.v_reset, dtype=x.dtype, device=x.device)
    else:
        v0 = check_state(state, "state", x, x.shape[1:])
    if not isinstance(return_membrane, bool):
        raise TypeError(f"return_membrane must be a bool, got {type(return_membrane).__name__}")

    requires_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, v0, decay, v_threshold)
    )
    request = LIFRequest(x.device, x.dtype, config, requires_grad)
    entry = select_backend("lif", backend, request)
    if backend == "auto" and entry.name == "torch":
        note_slow_surrogate(config.surrogate, x)
    spikes, membrane, v_final = entry.impl(x, v0, decay, v_threshold, config, return_membrane)
    return LIFOutput(spikes, membrane, LIFState(v_final))
