"""Modules of the neuron families of :mod:`spikelib.functional.dynamics`: ``IF``, ``CubaLIF``, ``ALIF``,
``Izhikevich`` over sequences ``[T, B, ...]`` and their one-step cells ``IFCell``, ``CubaLIFCell``, ``ALIFCell``,
``IzhikevichCell``.

The equations are in the functional modules (:mod:`spikelib.functional.if_neuron`, :mod:`~spikelib.functional.cuba`,
:mod:`~spikelib.functional.alif`, :mod:`~spikelib.functional.izhikevich`); a module holds the parameters and,
optionally, the state. Every parameter is a number (fixed), a per-neuron tensor (a buffer) or an ``nn.Parameter``
(registered as given and trained); ``learn=("v_threshold", ...)`` makes learnable parameters of numbers or tensors.
Learnable decays (``CubaLIF``) are projected onto ``[0, 1]`` before each pass. Arguments are checked at construction.
A cell steps through time across calls (``forward(x_t [B, ...])``), keeps the graph of its state for BPTT through a
step loop, runs the same kernels (one step per call) and takes the same options as its sequence module.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, NamedTuple, Optional, Union

import torch
from torch import nn

from spikelib.functional._checks import warn_two_dim_sequence
from spikelib.functional.alif import ALIF_NEURON, alif_spec
from spikelib.functional.cuba import CUBA_LIF, cuba_lif_spec
from spikelib.functional.dynamics import NeuronFamily, NeuronOutput, NeuronSpec, run_neuron
from spikelib.functional.if_neuron import IF_NEURON, if_spec
from spikelib.functional.izhikevich import IZHIKEVICH_NEURON, izhikevich_spec
from spikelib.graph import nodes
from spikelib.neurons._params import Param, bind_param, check_backend, check_flag, check_param, describe, project_
from spikelib.neurons.base import StatefulModule
from spikelib.surrogate import Surrogate

__all__ = ["IF", "CubaLIF", "ALIF", "Izhikevich", "IFCell", "CubaLIFCell", "ALIFCell", "IzhikevichCell",
           "FamilyNeuron"]


class FamilyNeuron(StatefulModule):
    """A sequence layer of one neuron family (subclasses set ``family`` and build their ``spec``)."""

    family: NeuronFamily
    _project: Dict[str, tuple] = {}  # learnable parameters projected onto [lo, hi] before each pass
    temporal = True

    def _value(self, name: str) -> Param:
        value = getattr(self, name)
        return value.detach() if isinstance(value, torch.Tensor) else value

    def graph_node(self) -> nodes.Node:  # each family declares its own node
        raise NotImplementedError

    def _setup(self, spec: NeuronSpec, params: Dict[str, Param], scalars: Dict[str, float],
               learn: Iterable[str], backend: str) -> None:
        self.spec = spec
        learn = set(_learn_names(learn, self.family.params))
        for name in self.family.params:
            r = self.family.rule(name)
            value = check_param(params[name], name, minimum=r.minimum, maximum=r.maximum, positive=r.positive,
                                why=r.why)
            bind_param(self, name, value, name in learn)
        for name, value in scalars.items():
            setattr(self, name, float(check_param(value, name)))
        self.backend = check_backend(backend, "neuron")

    def param_values(self) -> Dict[str, Param]:
        """The parameters of the next pass (learnable ones projected onto their allowed range first)."""
        out = {}
        for name in self.family.params:
            value = getattr(self, name)
            if name in self._project and isinstance(value, nn.Parameter):
                project_(value, *self._project[name])
            out[name] = value
        return out

    def _run(self, x: torch.Tensor, state: Optional[NamedTuple], return_states: bool) -> NeuronOutput:
        scalars = {n: getattr(self, n) for n in self.family.scalars}
        return run_neuron(self.spec, x, state, self.param_values(), scalars, return_states, self.backend)

    def forward(self, x: torch.Tensor, state: Optional[NamedTuple] = None, return_states: bool = False):
        """Spikes ``[T, B, ...]`` for ``x: [T, B, ...]`` (and the state traces, a NamedTuple of ``[T, B, ...]``
        tensors after reset, when ``return_states``); the final state is kept in ``self.state``.

        Args:
            x: input, time first.
            state: initial state (the family's NamedTuple); when None, the kept state if ``stateful`` (and it fits),
                else rest.
            return_states: also return the state traces: ``(spikes, states)``.
        """
        check_flag(return_states, "return_states")
        warn_two_dim_sequence(x, type(self).__name__)
        s0 = self._initial_state(state, x, tuple(x.shape[1:])) if isinstance(x, torch.Tensor) else state
        out = self._run(x, s0, return_states)
        self._keep(out.state)
        return (out.spikes, out.states) if return_states else out.spikes

    def extra_repr(self) -> str:
        o = self.spec.options
        params = ", ".join(f"{n}={describe(getattr(self, n))}" for n in self.family.params)
        scalars = ", ".join(f"{n}={getattr(self, n):g}" for n in self.family.scalars)
        opts = ", ".join(f"{k}={getattr(o, k)!r}" for k in o.__dataclass_fields__)
        return f"{params}, {scalars}, {opts}, backend={self.backend!r}, stateful={self.stateful}"


def _learn_names(learn: Iterable[str], params: tuple) -> list:
    if isinstance(learn, str):
        learn = (learn,)
    try:
        names = list(learn)
    except TypeError:
        raise TypeError(f"learn must be a sequence of parameter names, got {learn!r}") from None
    bad = [n for n in names if n not in params]
    if bad:
        raise ValueError(f"learn names unknown parameters {bad}; choose from {list(params)}")
    return names


class _Cell:
    """One step per call: ``forward(x_t [B, ...]) -> spikes_t`` (the state kept, with its graph, in ``self.state``)."""

    def forward(self, x_t: torch.Tensor, state: Optional[NamedTuple] = None, return_states: bool = False):
        """Spikes ``[B, ...]`` of one step (and the new state when ``return_states``)."""
        if not isinstance(x_t, torch.Tensor) or not x_t.is_floating_point() or x_t.dim() < 1:
            raise TypeError("x_t must be a floating tensor of shape [B, ...] (one time step)")
        check_flag(return_states, "return_states")
        s0 = self._initial_state(state, x_t, tuple(x_t.shape))
        out = self._run(x_t.unsqueeze(0), s0, False)
        self.state = out.state  # the graph is kept across steps (BPTT through a step loop); reset() cuts it
        return (out.spikes[0], out.state) if return_states else out.spikes[0]


class IF(FamilyNeuron):
    """Integrate-and-fire layer ``H = V + X`` (:mod:`spikelib.functional.if_neuron`)."""

    family = IF_NEURON

    def __init__(self, v_threshold: Param = 1.0, v_reset: float = 0.0, reset: str = "hard",
                 detach_reset: bool = False, surrogate: Union[str, Surrogate] = "atan", learn: Iterable[str] = (),
                 backend: str = "auto", stateful: bool = False) -> None:
        super().__init__(stateful)
        self._setup(if_spec(reset, detach_reset, surrogate), {"v_threshold": v_threshold}, {"v_reset": v_reset},
                    learn, backend)

    def graph_node(self) -> nodes.LIF:
        """``H = V + X``: a LIF without leak (``tau = inf``, input not scaled)."""
        return nodes.LIF(float("inf"), self._value("v_threshold"), self.v_reset, self.spec.options.reset, False)


class CubaLIF(FamilyNeuron):
    """Current-based LIF, Loihi's neuron (:mod:`spikelib.functional.cuba`): ``I = I (1 - du) + X``,
    ``V = V (1 - dv) + I + bias``, spike when ``V > v_threshold``, ``V`` reset (``I`` is not).

    Args:
        current_decay, voltage_decay: ``du``, ``dv`` in ``[0, 1]`` (numbers, per-neuron tensors or Parameters);
            or give ``tau_syn`` / ``tau_mem`` (steps, ``>= 1``) for ``du = 1/tau_syn``, ``dv = 1/tau_mem``.
        learn: names of parameters to learn, e.g. ``("current_decay", "voltage_decay")``; learnable decays are
            projected onto ``[0, 1]`` before each pass.
        Other arguments as in :class:`spikelib.neurons.LIF`.
    """

    family = CUBA_LIF
    _project = {"current_decay": (0.0, 1.0), "voltage_decay": (0.0, 1.0)}

    def __init__(self, current_decay: Optional[Param] = None, voltage_decay: Optional[Param] = None,
                 v_threshold: Param = 1.0, bias: Param = 0.0, v_reset: float = 0.0, reset: str = "hard",
                 detach_reset: bool = False, surrogate: Union[str, Surrogate] = "atan", learn: Iterable[str] = (),
                 backend: str = "auto", stateful: bool = False, tau_syn: Optional[Param] = None,
                 tau_mem: Optional[Param] = None) -> None:
        super().__init__(stateful)
        du = _decay(current_decay, tau_syn, "current_decay", "tau_syn")
        dv = _decay(voltage_decay, tau_mem, "voltage_decay", "tau_mem")
        params = {"current_decay": du, "voltage_decay": dv, "v_threshold": v_threshold, "bias": bias}
        self._setup(cuba_lif_spec(reset, detach_reset, surrogate), params, {"v_reset": v_reset}, learn, backend)

    def graph_node(self) -> nodes.CubaLIF:
        return nodes.CubaLIF(self._value("current_decay"), self._value("voltage_decay"), self._value("v_threshold"),
                             self._value("bias"), self.v_reset, self.spec.options.reset)

    @property
    def tau_syn(self) -> Param:
        """The synaptic time constant ``1 / current_decay`` in steps (NIR's ``tau_syn`` with ``dt = 1``)."""
        return _inverse(self.current_decay)

    @property
    def tau_mem(self) -> Param:
        """The membrane time constant ``1 / voltage_decay`` in steps (NIR's ``tau_mem`` with ``dt = 1``)."""
        return _inverse(self.voltage_decay)


def _decay(decay: Optional[Param], tau: Optional[Param], name: str, tau_name: str) -> Param:
    if (decay is None) == (tau is None):
        raise ValueError(f"give exactly one of {name} (a decay per step in [0, 1]) and {tau_name} (steps >= 1)")
    if decay is not None:
        return decay
    tau = check_param(tau, tau_name, minimum=1.0, why=" (the decay per step is 1/tau)")
    if isinstance(tau, nn.Parameter):
        raise TypeError(f"{tau_name} cannot be learned directly; pass {name} as an nn.Parameter (or learn it)")
    return 1.0 / tau


def _inverse(value: Param) -> Param:
    if isinstance(value, torch.Tensor):
        return 1.0 / value.detach()
    return float("inf") if value == 0 else 1.0 / value


class ALIF(FamilyNeuron):
    """Adaptive-threshold LIF (LSNN) layer (:mod:`spikelib.functional.alif`): each spike raises the threshold by
    ``beta``, which relaxes with ``tau_adapt``; the membrane is the LIF's (``tau_mem``, ``decay_input``)."""

    family = ALIF_NEURON

    def __init__(self, tau_mem: Param = 2.0, tau_adapt: Param = 20.0, beta: Param = 0.2, v_threshold: Param = 1.0,
                 v_reset: float = 0.0, reset: str = "hard", decay_input: bool = True, detach_reset: bool = False,
                 surrogate: Union[str, Surrogate] = "atan", learn: Iterable[str] = (), backend: str = "auto",
                 stateful: bool = False) -> None:
        super().__init__(stateful)
        params = {"tau_mem": tau_mem, "v_threshold": v_threshold, "beta": beta, "tau_adapt": tau_adapt}
        self._setup(alif_spec(reset, detach_reset, surrogate, decay_input), params, {"v_reset": v_reset}, learn,
                    backend)

    def graph_node(self) -> nodes.ALIF:
        o = self.spec.options
        return nodes.ALIF(self._value("tau_mem"), self._value("tau_adapt"), self._value("beta"),
                          self._value("v_threshold"), self.v_reset, o.reset, bool(getattr(o, "decay_input", True)))


class Izhikevich(FamilyNeuron):
    """Izhikevich-type two-variable layer (quadratic membrane, recovery current; :mod:`spikelib.functional.izhikevich`,
    spikingjelly's ``IzhikevichNode`` equations)."""

    family = IZHIKEVICH_NEURON

    def __init__(self, tau: Param = 2.0, v_threshold: Param = 1.0, a0: Param = 1.0, v_rest: Param = 0.0,
                 v_c: Param = 0.8, tau_w: Param = 2.0, a: Param = 0.1, b: Param = 0.2, v_reset: float = 0.0,
                 reset: str = "hard", detach_reset: bool = False, surrogate: Union[str, Surrogate] = "atan",
                 learn: Iterable[str] = (), backend: str = "auto", stateful: bool = False) -> None:
        super().__init__(stateful)
        params = {"tau": tau, "v_threshold": v_threshold, "a0": a0, "v_rest": v_rest, "v_c": v_c, "tau_w": tau_w,
                  "a": a, "b": b}
        self._setup(izhikevich_spec(reset, detach_reset, surrogate), params, {"v_reset": v_reset}, learn, backend)

    def graph_node(self) -> nodes.Izhikevich:
        values = tuple((n, self._value(n)) for n in self.family.params) + (("v_reset", self.v_reset),)
        return nodes.Izhikevich(values, self.spec.options.reset)


def _cell(cls: type, doc: str) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if "stateful" in kwargs:
            raise TypeError(f"{name} is stateful by construction (it steps through time across calls)")
        cls.__init__(self, *args, stateful=True, **kwargs)

    name = f"{cls.__name__}Cell"
    return type(name, (_Cell, cls), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


IFCell = _cell(IF, "One :class:`IF` step per call (same arguments, without ``stateful``).")
CubaLIFCell = _cell(CubaLIF, "One :class:`CubaLIF` step per call (same arguments, without ``stateful``).")
ALIFCell = _cell(ALIF, "One :class:`ALIF` step per call (same arguments, without ``stateful``).")
IzhikevichCell = _cell(Izhikevich, "One :class:`Izhikevich` step per call (same arguments, without ``stateful``).")
