"""LIF neuron modules: ``LIF`` and ``ParametricLIF`` over sequences ``[T, B, ...]``, ``LIFCell`` for one step.

The equations are in :mod:`spikelib.functional.lif`; these modules only hold parameters and (optionally) state.
``ParametricLIF`` learns ``tau = 1 / sigmoid(w)`` as spikingjelly's ``ParametricLIFNode`` does (Fang et al., ICCV 2021;
spikingjelly/activation_based/neuron.py), so ``tau > 1`` always holds; ``w`` starts at ``-log(init_tau - 1)``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from spikelib.functional._checks import check_state
from spikelib.functional.lif import LIFState, Param, lif, lif_step, resolve_lif_config
from spikelib.graph import nodes
from spikelib.neurons.base import StatefulModule
from spikelib.surrogate import Surrogate

__all__ = ["LIF", "ParametricLIF", "LIFCell"]


def _detached(value: Param) -> Param:
    return value.detach() if isinstance(value, torch.Tensor) else value


class _LIFBase(StatefulModule):
    temporal = True

    def __init__(
        self,
        tau: Param,
        v_threshold: Param,
        v_reset: float,
        reset: str,
        decay_input: bool,
        detach_reset: bool,
        surrogate: Union[str, Surrogate],
        backend: str,
        stateful: bool,
    ) -> None:
        super().__init__(stateful)
        self.config = resolve_lif_config(reset, decay_input, detach_reset, v_reset, surrogate)
        self.backend = backend
        self._tau = tau
        self.v_threshold = v_threshold

    def tau_value(self) -> Param:
        """The membrane time constant used in the next forward pass."""
        return self._tau

    def graph_node(self) -> nodes.LIF:
        """The LIF this layer runs now (``tau`` in steps; tensors detached)."""
        c = self.config
        return nodes.LIF(_detached(self.tau_value()), _detached(self.v_threshold), c.v_reset, c.reset, c.decay_input)

    def forward(self, x: torch.Tensor, state: Optional[Union[LIFState, torch.Tensor]] = None) -> torch.Tensor:
        """Spikes ``[T, B, ...]`` for input ``x: [T, B, ...]``; the final membrane is kept in ``self.state``.

        Args:
            x: input current, time first.
            state: initial membrane ``[B, ...]``; when None, the kept state if ``stateful`` (and it fits), else rest.
        """
        if isinstance(state, LIFState):
            state = state.v
        v0 = self._initial_state(state, x, tuple(x.shape[1:])) if isinstance(x, torch.Tensor) else state
        c = self.config
        out = lif(
            x, v0, tau=self.tau_value(), v_threshold=self.v_threshold, v_reset=c.v_reset, reset=c.reset,
            decay_input=c.decay_input, detach_reset=c.detach_reset, surrogate=c.surrogate, backend=self.backend,
        )
        self._keep(out.state.v)
        return out.spikes

    def extra_repr(self) -> str:
        c = self.config
        tau = self.tau_value()
        tau_s = f"{tau:g}" if isinstance(tau, float) else f"tensor{tuple(tau.shape)}"
        vth = self.v_threshold
        vth_s = f"{vth:g}" if isinstance(vth, float) else f"tensor{tuple(vth.shape)}"
        return (f"tau={tau_s}, v_threshold={vth_s}, v_reset={c.v_reset:g}, reset={c.reset!r}, "
                f"decay_input={c.decay_input}, detach_reset={c.detach_reset}, surrogate={c.surrogate!r}, "
                f"backend={self.backend!r}, stateful={self.stateful}")


class LIF(_LIFBase):
    """Multi-step leaky integrate-and-fire layer (see :func:`spikelib.functional.lif.lif` for the arguments).

    ``tau`` and ``v_threshold`` may be numbers or per-neuron tensors (registered as buffers, or as parameters when
    ``learn_threshold=True``).
    """

    def __init__(
        self,
        tau: Param = 2.0,
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
        super().__init__(tau, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, backend, stateful)
        if isinstance(tau, torch.Tensor):
            del self._tau
            self.register_buffer("_tau", tau.detach().clone())
        if learn_threshold:
            vth = torch.as_tensor(v_threshold, dtype=torch.get_default_dtype()).clone()
            del self.v_threshold
            self.v_threshold = nn.Parameter(vth)
        elif isinstance(v_threshold, torch.Tensor):
            del self.v_threshold
            self.register_buffer("v_threshold", v_threshold.detach().clone())


class ParametricLIF(_LIFBase):
    """LIF with a learnable time constant ``tau = 1 / sigmoid(w)`` (spikingjelly ``ParametricLIFNode``).

    Args:
        init_tau: initial ``tau`` (> 1).
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
    ) -> None:
        if isinstance(init_tau, bool) or not isinstance(init_tau, (int, float)) or not init_tau > 1:
            raise ValueError(f"init_tau must be a number > 1 (tau = 1/sigmoid(w)), got {init_tau!r}")
        super().__init__(init_tau, v_threshold, v_reset, reset, decay_input, detach_reset, surrogate, backend,
                         stateful)
        w0 = -math.log(float(init_tau) - 1.0)
        self.w = nn.Parameter(torch.full(tuple(shape) if shape is not None else (), w0))
        if isinstance(v_threshold, torch.Tensor):
            del self.v_threshold
            self.register_buffer("v_threshold", v_threshold.detach().clone())

    def tau_value(self) -> torch.Tensor:
        return 1.0 / torch.sigmoid(self.w)


class LIFCell(StatefulModule):
    """One LIF step: ``forward(x_t) -> spikes_t`` for ``x_t: [B, ...]``; the membrane is kept in ``self.state``.

    A cell is stateful by construction (it steps through time across calls); :func:`spikelib.reset` or
    :meth:`reset_state` starts it from rest again, and an explicit ``state`` overrides the kept one.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: Union[str, Surrogate] = "atan",
    ) -> None:
        super().__init__(stateful=True)
        self.config = resolve_lif_config(reset, decay_input, detach_reset, v_reset, surrogate)
        for name, value in (("tau", tau), ("v_threshold", v_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if tau < 1:
            raise ValueError(f"tau must be >= 1 (the decay per step is 1 - 1/tau), got {tau:g}")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)

    def forward(self, x_t: torch.Tensor, state: Optional[Union[LIFState, torch.Tensor]] = None) -> torch.Tensor:
        if not isinstance(x_t, torch.Tensor) or not x_t.is_floating_point() or x_t.dim() < 1:
            raise TypeError("x_t must be a floating tensor of shape [B, ...] (one time step)")
        if isinstance(state, LIFState):
            state = state.v
        if state is not None:
            check_state(state, "state", x_t, x_t.shape)
        v = self._initial_state(state, x_t, tuple(x_t.shape))
        if v is None:
            v = torch.full_like(x_t, self.config.v_reset)
        s, v_next = lif_step(x_t, v, self.tau, self.v_threshold, self.config)
        # The cell keeps the graph of its state across steps (BPTT through a step loop); reset() cuts it.
        self.state = v_next
        return s

    def graph_node(self) -> nodes.LIF:
        """One step of the LIF (a cell is called once per step: its input has no time axis)."""
        c = self.config
        return nodes.LIF(self.tau, self.v_threshold, c.v_reset, c.reset, c.decay_input)

    def extra_repr(self) -> str:
        c = self.config
        return (f"tau={self.tau:g}, v_threshold={self.v_threshold:g}, v_reset={c.v_reset:g}, reset={c.reset!r}, "
                f"decay_input={c.decay_input}, detach_reset={c.detach_reset}, surrogate={c.surrogate!r}")
