"""LIF neuron modules: ``LIF`` and ``ParametricLIF`` over sequences ``[T, B, ...]``, ``LIFCell`` for one step.

The equations are in :mod:`spikelib.functional.lif`; these modules only hold parameters and (optionally) state.
``ParametricLIF`` learns ``tau = 1 / sigmoid(w)`` as spikingjelly's ``ParametricLIFNode`` does (Fang et al., ICCV 2021;
spikingjelly/activation_based/neuron.py), so ``tau > 1`` always holds; ``w`` starts at ``-log(init_tau - 1)``.

Parameters (``tau``, ``leak``, ``v_threshold``) are numbers, per-neuron tensors (buffers) or ``nn.Parameter`` objects
(registered as given, so they are trained); ``learn_threshold`` / ``learn_leak`` make new parameters from numbers or
tensors. Every argument is checked at construction. A learnable ``leak`` is projected onto ``leak <= 1`` before each
pass (IIR-SNN clamps it after each optimiser step, SayeedChowdhury/IIR-SNN snncifar_bnfused.py); :func:`iir_lif`
builds that neuron with the reference's settings.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from spikelib.functional._checks import check_state, warn_two_dim_sequence
from spikelib.functional.dynamics import NeuronOutput
from spikelib.functional.lif import LIFState, lif_step, lif_with_config, resolve_lif_config
from spikelib.graph import nodes
from spikelib.neurons._params import Param, bind_param, check_backend, check_flag, check_param, describe, project_
from spikelib.neurons.base import StatefulModule
from spikelib.surrogate import PiecewiseLinear, Surrogate

__all__ = ["LIF", "ParametricLIF", "LIFCell", "ParametricLIFCell", "iir_lif"]

_TAU_WHY = " (the decay per step is 1 - 1/tau)"


def _detached(value: Param) -> Param:
    return value.detach() if isinstance(value, torch.Tensor) else value


class _LIFParams(StatefulModule):
    """Options and parameters shared by the LIF sequence modules and cells."""

    def _setup(self, tau: Optional[Param], leak: Optional[Param], v_threshold: Param, v_reset: float, reset: str,
               decay_input: Optional[bool], detach_reset: bool, surrogate: Union[str, Surrogate], fire: str,
               learn_threshold: bool, learn_leak: bool) -> None:
        if tau is not None and leak is not None:
            raise ValueError("give either tau (a time constant) or leak (a per-step factor), not both")
        if check_flag(learn_leak, "learn_leak") and leak is None:
            raise ValueError("learn_leak=True needs a leak (the tau form learns tau through ParametricLIF or an "
                             "nn.Parameter tau)")
        self.config = resolve_lif_config(reset, decay_input, detach_reset, v_reset, surrogate,
                                         "tau" if leak is None else "leak", fire)
        if leak is None:
            if tau is not None:
                bind_param(self, "_tau", check_param(tau, "tau", minimum=1.0, why=_TAU_WHY))
        else:
            bind_param(self, "leak", check_param(leak, "leak", maximum=1.0), learn_leak)
        ratio = self.config.fire == "ratio"
        vth = check_param(v_threshold, "v_threshold", positive=ratio,
                          why=" (fire='ratio' divides by it)" if ratio else "")
        bind_param(self, "v_threshold", vth, learn_threshold)

    def tau_value(self) -> Param:
        """The membrane time constant used in the next pass (with a leak: the equivalent ``1 / (1 - leak)``)."""
        if self.config.decay == "leak":
            leak = self.leak
            if isinstance(leak, torch.Tensor):
                return 1.0 / (1.0 - leak)
            return math.inf if leak == 1.0 else 1.0 / (1.0 - leak)
        return self._tau

    def decay_value(self) -> Param:
        """The decay parameter handed to the functional core: ``tau``, or the leak (projected onto ``<= 1``)."""
        if self.config.decay != "leak":
            return self.tau_value()
        leak = self.leak
        if isinstance(leak, nn.Parameter):
            project_(leak, hi=1.0)
        return leak

    def graph_node(self) -> nodes.LIF:
        """The LIF this layer runs now (``tau`` in steps, ``inf`` for a leak of 1; tensors detached)."""
        c = self.config
        return nodes.LIF(_detached(self.tau_value()), _detached(self.v_threshold), c.v_reset, c.reset,
                         bool(c.decay_input), c.fire)

    def _options_repr(self) -> str:
        c = self.config
        decay = f"leak={describe(self.leak)}" if c.decay == "leak" else f"tau={describe(self.tau_value())}"
        fire = f", fire={c.fire!r}" if c.fire != "difference" else ""
        return (f"{decay}, v_threshold={describe(self.v_threshold)}, v_reset={c.v_reset:g}, reset={c.reset!r}, "
                f"decay_input={c.decay_input}, detach_reset={c.detach_reset}, surrogate={c.surrogate!r}{fire}")


class _LIFBase(_LIFParams):
    temporal = True

    def __init__(
        self,
        tau: Optional[Param],
        v_threshold: Param,
        v_reset: float,
        reset: str,
        decay_input: Optional[bool],
        detach_reset: bool,
        surrogate: Union[str, Surrogate],
        backend: str,
        stateful: bool,
        leak: Optional[Param] = None,
        fire: str = "difference",
        learn_threshold: bool = False,
        learn_leak: bool = False,
    ) -> None:
        super().__init__(stateful)
        self._setup(tau, leak, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, fire,
                    learn_threshold, learn_leak)
        self.backend = check_backend(backend, "lif")

    def _run(self, x: torch.Tensor, state: Optional[Union[LIFState, torch.Tensor]],
             return_states: bool) -> NeuronOutput:
        out = lif_with_config(x, state, self.decay_value(), self.v_threshold, self.config, return_states, self.backend)
        return NeuronOutput(out.spikes, LIFState(out.membrane) if return_states else None, out.state)

    def forward(self, x: torch.Tensor, state: Optional[Union[LIFState, torch.Tensor]] = None,
                return_membrane: bool = False, return_states: bool = False):
        """Spikes ``[T, B, ...]`` for input ``x: [T, B, ...]``; the final membrane is kept in ``self.state``.

        Args:
            x: input current, time first.
            state: initial membrane ``[B, ...]``; when None, the kept state if ``stateful`` (and it fits), else rest.
            return_membrane: also return the membrane trace ``V`` ``[T, B, ...]`` (after reset): ``(spikes, V)``.
            return_states: also return the state traces as a NamedTuple, ``(spikes, LIFState(v=V))`` (the form every
                neuron family returns).
        """
        check_flag(return_membrane, "return_membrane")
        check_flag(return_states, "return_states")
        warn_two_dim_sequence(x, type(self).__name__)
        if isinstance(state, LIFState):
            state = state.v
        v0 = self._initial_state(state, x, tuple(x.shape[1:])) if isinstance(x, torch.Tensor) else state
        out = self._run(x, v0, return_membrane or return_states)
        self._keep(out.state.v)
        if return_membrane:
            return out.spikes, out.states.v
        return (out.spikes, out.states) if return_states else out.spikes

    def extra_repr(self) -> str:
        return f"{self._options_repr()}, backend={self.backend!r}, stateful={self.stateful}"


class LIF(_LIFBase):
    """Multi-step leaky integrate-and-fire layer (see :func:`spikelib.functional.lif.lif` for the arguments).

    ``tau`` (or ``leak``) and ``v_threshold`` may be numbers, per-neuron tensors (buffers) or ``nn.Parameter``
    objects (trained); ``learn_threshold=True`` / ``learn_leak=True`` make learnable parameters of numbers or
    tensors. ``tau`` is 2 when neither ``tau`` nor ``leak`` is given.
    """

    def __init__(
        self,
        tau: Optional[Param] = None,
        v_threshold: Param = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        decay_input: Optional[bool] = None,
        detach_reset: bool = False,
        surrogate: Union[str, Surrogate] = "atan",
        backend: str = "auto",
        stateful: bool = False,
        learn_threshold: bool = False,
        leak: Optional[Param] = None,
        fire: str = "difference",
        learn_leak: bool = False,
    ) -> None:
        if tau is None and leak is None:
            tau = 2.0
        super().__init__(tau, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, backend, stateful,
                         leak, fire, learn_threshold, learn_leak)


def iir_lif(
    v_threshold: Param = 1.0,
    leak: Param = 1.0,
    shape: Optional[Sequence[int]] = None,
    learn: bool = True,
    backend: str = "auto",
    stateful: bool = False,
) -> LIF:
    """The IIR-SNN neuron (Chowdhury et al.; SayeedChowdhury/IIR-SNN vgg_spiking_bnfused_biasyes.py) as a :class:`LIF`.

    ``u <- leak u + x``, ``s = (u / V - 1 > 0)``, ``u <- u - V s`` (soft reset without gradient through the spike),
    surrogate ``0.3 max(0, 1 - |u / V - 1|)`` on ``u / V - 1``; ``leak`` (<= 1, projected) and ``V`` learnable.

    Args:
        v_threshold: threshold ``V`` (> 0), e.g. from threshold balancing.
        leak: initial leak (the reference starts at 1).
        shape: ``None`` for one leak and threshold per layer, or the neuron shape for one per neuron.
        learn: train leak and threshold (as the reference does).
    """
    if shape is not None:
        shape = tuple(int(n) for n in shape)
        v_threshold = torch.full(shape, float(check_param(v_threshold, "v_threshold", positive=True)))
        leak = torch.full(shape, float(check_param(leak, "leak", maximum=1.0)))
    return LIF(leak=leak, v_threshold=v_threshold, v_reset=0.0, reset="soft", detach_reset=True,
               surrogate=PiecewiseLinear(0.3), fire="ratio", learn_leak=learn, learn_threshold=learn,
               backend=backend, stateful=stateful)


class ParametricLIF(_LIFBase):
    """LIF with a learnable time constant ``tau = 1 / sigmoid(w)`` (spikingjelly ``ParametricLIFNode``).

    Args:
        init_tau: initial ``tau`` (a finite number > 1).
        shape: ``None`` for one ``tau`` shared by the layer, or the neuron shape (e.g. ``(256,)``) for one per neuron.
        Other arguments as in :class:`LIF`.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        shape: Optional[Sequence[int]] = None,
        v_threshold: Param = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: Union[str, Surrogate] = "atan",
        backend: str = "auto",
        stateful: bool = False,
        learn_threshold: bool = False,
    ) -> None:
        w0 = _parametric_w0(init_tau)
        super().__init__(None, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, backend, stateful,
                         learn_threshold=learn_threshold)
        self.w = nn.Parameter(torch.full(_shape(shape), w0))

    def tau_value(self) -> torch.Tensor:
        return 1.0 / torch.sigmoid(self.w)


def _parametric_w0(init_tau: object) -> float:
    if isinstance(init_tau, bool) or not isinstance(init_tau, (int, float)) or not (1 < init_tau < math.inf):
        raise ValueError(f"init_tau must be a number > 1 and finite (tau = 1/sigmoid(w)), got {init_tau!r}")
    return -math.log(float(init_tau) - 1.0)


def _shape(shape: Optional[Sequence[int]]) -> tuple:
    if shape is None:
        return ()
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be None or a sequence of ints, got {shape!r}") from None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in out):
        raise ValueError(f"shape must be a sequence of ints >= 1, got {shape!r}")
    return out


class LIFCell(_LIFParams):
    """One LIF step: ``forward(x_t) -> spikes_t`` for ``x_t: [B, ...]``; the membrane is kept in ``self.state``.

    Takes the same options as :class:`LIF` (numbers, per-neuron tensors or ``nn.Parameter`` objects for ``tau``,
    ``leak`` and ``v_threshold``; ``fire``), and steps with the equations of the sequence functions. A cell is
    stateful by construction (it steps through time across calls); :func:`spikelib.reset` or :meth:`reset_state`
    starts it from rest again, and an explicit ``state`` overrides the kept one.
    """

    def __init__(
        self,
        tau: Optional[Param] = None,
        v_threshold: Param = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        decay_input: Optional[bool] = None,
        detach_reset: bool = False,
        surrogate: Union[str, Surrogate] = "atan",
        learn_threshold: bool = False,
        leak: Optional[Param] = None,
        fire: str = "difference",
        learn_leak: bool = False,
    ) -> None:
        super().__init__(stateful=True)
        if tau is None and leak is None:
            tau = 2.0
        self._setup(tau, leak, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, fire,
                    learn_threshold, learn_leak)

    @property
    def tau(self) -> Param:
        """The time constant (kept for compatibility; see :meth:`tau_value`)."""
        return self.tau_value()

    def forward(self, x_t: torch.Tensor, state: Optional[Union[LIFState, torch.Tensor]] = None,
                return_membrane: bool = False):
        """Spikes ``[B, ...]`` of one step (and the membrane ``V[t]`` when ``return_membrane``)."""
        if not isinstance(x_t, torch.Tensor) or not x_t.is_floating_point() or x_t.dim() < 1:
            raise TypeError("x_t must be a floating tensor of shape [B, ...] (one time step)")
        if isinstance(state, LIFState):
            state = state.v
        if state is not None:
            check_state(state, "state", x_t, x_t.shape)
        v = self._initial_state(state, x_t, tuple(x_t.shape))
        if v is None:
            v = torch.full_like(x_t, self.config.v_reset)
        s, v_next = lif_step(x_t, v, self.decay_value(), self.v_threshold, self.config)
        # The cell keeps the graph of its state across steps (BPTT through a step loop); reset() cuts it.
        self.state = v_next
        return (s, v_next) if return_membrane else s

    def extra_repr(self) -> str:
        return self._options_repr()


class ParametricLIFCell(LIFCell):
    """One :class:`ParametricLIF` step (learnable ``tau = 1 / sigmoid(w)``, per layer or per neuron)."""

    def __init__(
        self,
        init_tau: float = 2.0,
        shape: Optional[Sequence[int]] = None,
        v_threshold: Param = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: Union[str, Surrogate] = "atan",
        learn_threshold: bool = False,
    ) -> None:
        w0 = _parametric_w0(init_tau)
        super().__init__(2.0, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, learn_threshold)
        del self._tau
        self.w = nn.Parameter(torch.full(_shape(shape), w0))

    def tau_value(self) -> torch.Tensor:
        return 1.0 / torch.sigmoid(self.w)
