"""Neuron families written once: a family is a branch-free step function; every backend runs that same function.

A :class:`NeuronFamily` names its state variables, its parameters (numbers or per-neuron tensors, which may require
grad) and its fixed scalars (e.g. ``v_reset``), and gives ``step(ops, x, states, p, options) -> (spike, new_states)``
written with ``+ - * /`` on its arguments, Python numbers, ``ops.spike(z, strict)`` (the Heaviside step with the
surrogate gradient of ``options.surrogate``) and ``ops.detach(e)`` (no gradient). The same function is

* the torch reference (backend ``"torch"``): called once per step on tensors, autograd does BPTT; and
* traced once per variant (:func:`trace`): called on symbolic values, it records a straight-line program of binary
  operations, in Python's evaluation order. The generated CPU kernels (:mod:`spikelib.kernels.cpu.neuron_numba`) and
  the CUDA template (:mod:`spikelib.kernels.cupy.multistate`) compute that program with the same floating-point
  operations in the same order (so their forward pass equals the reference bitwise in float32 and float64), and
  their BPTT is the program differentiated in reverse mode at generation time (:mod:`spikelib.kernels.program`), with
  ``dS/dz`` replaced by the surrogate gradient as in :func:`spikelib.surrogate.spike`.

A family is therefore its charge/fire/reset equations; their partial derivatives are derived, not written by hand, and
the tests check them against autograd of the reference. Parameters and scalars reach the step as tensors of the
input's dtype (so ``1 - p.decay`` rounds as the kernels round it); number literals in the step are Python floats,
which torch and the kernels both round to the input's dtype.

:func:`run_neuron` checks the arguments of a sequence ``x: [T, B, ...]`` and dispatches it through the registry
(operation ``"neuron"``). Non-finite values follow IEEE arithmetic of the step in every backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch

from spikelib.functional._checks import check_choice, check_scalar_or_neuronwise, check_sequence_input, check_state
from spikelib.functional.lif import note_slow_surrogate
from spikelib.kernels.registry import select_backend
from spikelib.surrogate import Surrogate, get_surrogate, spike

__all__ = [
    "NeuronFamily",
    "NeuronSpec",
    "NeuronRequest",
    "NeuronOutput",
    "ParamRule",
    "BasicOptions",
    "check_options",
    "reset_membrane",
    "TorchOps",
    "Program",
    "trace",
    "run_neuron",
    "step_torch",
    "family_by_name",
]

Param = Union[float, torch.Tensor]


@dataclass(frozen=True)
class ParamRule:
    """Allowed values of a parameter: ``>= minimum``, ``<= maximum``, ``> 0`` (``positive``); ``why`` explains."""

    minimum: Optional[float] = None
    maximum: Optional[float] = None
    positive: bool = False
    why: str = ""


_FAMILIES: Dict[str, "NeuronFamily"] = {}


def family_by_name(name: str) -> "NeuronFamily":
    """The family registered under ``name`` (every :class:`NeuronFamily` registers itself when created)."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise KeyError(f"no neuron family named {name!r}; known: {sorted(_FAMILIES)}") from None


@dataclass(frozen=True, eq=False)
class NeuronFamily:
    """A neuron model: its state, parameters, scalars, options type and step function (see the module docstring)."""

    name: str
    states: Tuple[str, ...]
    params: Tuple[str, ...]
    scalars: Tuple[str, ...]
    options_type: type
    step: Callable[..., Tuple[Any, Tuple[Any, ...]]]
    state_type: Type[NamedTuple]
    rules: Tuple[Tuple[str, ParamRule], ...] = ()
    initial: Tuple[str, ...] = ()  # per state: "" (zeros) or the name of the scalar it rests at

    def rule(self, name: str) -> ParamRule:
        return dict(self.rules).get(name, ParamRule())

    def __post_init__(self) -> None:
        _FAMILIES[self.name] = self  # by name, for kernels that receive a variant as text (the latest wins)

    def __repr__(self) -> str:
        return f"NeuronFamily({self.name!r})"


@dataclass(frozen=True)
class NeuronSpec:
    """One variant: a family and its options (a frozen dataclass of the family's ``options_type``)."""

    family: NeuronFamily
    options: Any

    @property
    def surrogate(self) -> Surrogate:
        return self.options.surrogate

    @property
    def key(self) -> str:
        """A stable text naming the variant (family and options) for kernel caches."""
        opts = ", ".join(f"{f.name}={getattr(self.options, f.name)!r}" for f in fields(self.options))
        return f"{self.family.name}({opts})"


@dataclass(frozen=True)
class NeuronRequest:
    """What a ``"neuron"`` backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    spec: NeuronSpec
    requires_grad: bool


class NeuronOutput(NamedTuple):
    """Result of a family's sequence function: spikes ``[T, B, ...]``, state traces (or None), final state."""

    spikes: torch.Tensor
    states: Optional[NamedTuple]
    state: NamedTuple


class TorchOps:
    """The step's operations on tensors (the reference)."""

    def __init__(self, surrogate: Surrogate) -> None:
        self.surrogate = surrogate

    def spike(self, z: torch.Tensor, strict: bool = False) -> torch.Tensor:
        return spike(z, self.surrogate, strict)

    @staticmethod
    def detach(e: Any) -> Any:
        return e.detach() if isinstance(e, torch.Tensor) else e


class _Names:
    """Attribute access to parameters and scalars by name (``p.v_threshold``)."""

    def __init__(self, values: Dict[str, Any]) -> None:
        self.__dict__.update(values)


def step_torch(spec: NeuronSpec, x_t: torch.Tensor, states: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
               scalars: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """One step of the family in plain torch (parameters and scalars as tensors of ``x_t``'s dtype)."""
    fam = spec.family
    p = _Names({**dict(zip(fam.params, params)), **dict(zip(fam.scalars, scalars))})
    s, new = fam.step(TorchOps(spec.surrogate), x_t, tuple(states), p, spec.options)
    return s, tuple(new)


@dataclass(frozen=True)
class BasicOptions:
    """Options every family has: ``reset`` (``"hard"``: to ``v_reset``; ``"soft"``: subtract the threshold),
    ``detach_reset`` (no gradient through the spike in the reset) and the ``surrogate``."""

    reset: str = "hard"
    detach_reset: bool = False
    surrogate: Surrogate = get_surrogate("atan")


def check_options(options: Any, options_type: type) -> Any:
    """Check the options of a family (the common ones, and every bool field)."""
    if not isinstance(options, options_type):
        raise TypeError(f"options must be a {options_type.__name__}, got {type(options).__name__}")
    check_choice(options.reset, "reset", ("hard", "soft"))
    for f in fields(options):
        if f.type in ("bool", bool) and not isinstance(getattr(options, f.name), bool):
            raise TypeError(f"{f.name} must be a bool, got {type(getattr(options, f.name)).__name__}")
    if not isinstance(options.surrogate, Surrogate):
        raise TypeError(f"surrogate must be a Surrogate (use spikelib.surrogate.get_surrogate), got "
                        f"{type(options.surrogate).__name__}")
    return options


def reset_membrane(ops: Any, h: Any, s: Any, threshold: Any, v_reset: Any, options: Any) -> Any:
    """``h (1 - s) + v_reset s`` (hard) or ``h - threshold s`` (soft), ``s`` detached with ``detach_reset``."""
    s_r = ops.detach(s) if options.detach_reset else s
    if options.reset == "hard":
        return h * (1.0 - s_r) + v_reset * s_r
    return h - threshold * s_r


# ------------------------------------------------------------------------------------------------ tracing
@dataclass(frozen=True)
class Node:
    """One operation of a traced program: ``op`` over argument node ids (``const``: ``value``; ``spike``: strict)."""

    id: int
    op: str  # input, const, add, sub, mul, div, neg, spike, detach
    args: Tuple[int, ...] = ()
    value: float = 0.0
    name: str = ""
    strict: bool = False


@dataclass
class Program:
    """A traced step: nodes in evaluation order; the ids of the inputs and of the outputs."""

    nodes: List[Node]
    x: int
    states: Tuple[int, ...]
    params: Tuple[int, ...]
    scalars: Tuple[int, ...]
    spike: int
    outputs: Tuple[int, ...]


class _Sym:
    __slots__ = ("tape", "id")
    __array_priority__ = 1000

    def __init__(self, tape: "_Tape", id_: int) -> None:
        self.tape = tape
        self.id = id_

    def _bin(self, op: str, a: Any, b: Any) -> "_Sym":
        return self.tape.op(op, self.tape.arg(a), self.tape.arg(b))

    def __add__(self, o):
        return self._bin("add", self, o)

    def __radd__(self, o):
        return self._bin("add", o, self)

    def __sub__(self, o):
        return self._bin("sub", self, o)

    def __rsub__(self, o):
        return self._bin("sub", o, self)

    def __mul__(self, o):
        return self._bin("mul", self, o)

    def __rmul__(self, o):
        return self._bin("mul", o, self)

    def __truediv__(self, o):
        return self._bin("div", self, o)

    def __rtruediv__(self, o):
        return self._bin("div", o, self)

    def __neg__(self):
        return self.tape.op("neg", self.id)

    def __bool__(self):
        raise TypeError(_BRANCH_FREE)

    def _compare(self, other):
        raise TypeError(_BRANCH_FREE)

    __lt__ = __le__ = __gt__ = __ge__ = _compare


_BRANCH_FREE = ("a neuron step function must be branch-free: express conditions with ops.spike (e.g. "
                "v * (1 - s) + v_reset * s), not with if/and/or/comparisons")


class _Tape:
    def __init__(self) -> None:
        self.nodes: List[Node] = []
        self.consts: Dict[Tuple[float, float], int] = {}

    def add(self, **kw: Any) -> int:
        node = Node(id=len(self.nodes), **kw)
        self.nodes.append(node)
        return node.id

    def arg(self, v: Any) -> int:
        if isinstance(v, _Sym):
            if v.tape is not self:
                raise ValueError("symbols of two traces mixed")
            return v.id
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"a neuron step may combine only its arguments and real numbers, got {type(v).__name__}")
        value = float(v)
        if not math.isfinite(value):
            raise ValueError(f"a neuron step may not contain the literal {value}")
        key = (value, math.copysign(1.0, value))
        if key not in self.consts:
            self.consts[key] = self.add(op="const", value=value)
        return self.consts[key]

    def op(self, op: str, *args: int) -> _Sym:
        return _Sym(self, self.add(op=op, args=tuple(args)))


class _SymOps:
    def __init__(self, tape: _Tape) -> None:
        self.tape = tape

    def spike(self, z: Any, strict: bool = False) -> _Sym:
        if not isinstance(strict, bool):
            raise TypeError("strict must be a bool")
        return _Sym(self.tape, self.tape.add(op="spike", args=(self.tape.arg(z),), strict=strict))

    def detach(self, e: Any) -> Any:
        return _Sym(self.tape, self.tape.add(op="detach", args=(self.tape.arg(e),)))


_TRACES: Dict[Any, Program] = {}


def trace(spec: NeuronSpec) -> Program:
    """The straight-line program of one step of ``spec`` (cached per variant)."""
    key = (id(spec.family), spec.family.name, spec.options)
    prog = _TRACES.get(key)
    if prog is not None:
        return prog
    fam = spec.family
    tape = _Tape()
    x = tape.add(op="input", name="x")
    states = tuple(tape.add(op="input", name=f"s_{n}") for n in fam.states)
    params = tuple(tape.add(op="input", name=f"p_{n}") for n in fam.params)
    scalars = tuple(tape.add(op="input", name=f"c_{n}") for n in fam.scalars)
    names = {**{n: _Sym(tape, i) for n, i in zip(fam.params, params)},
             **{n: _Sym(tape, i) for n, i in zip(fam.scalars, scalars)}}
    s, new = fam.step(_SymOps(tape), _Sym(tape, x), tuple(_Sym(tape, i) for i in states), _Names(names),
                      spec.options)
    if len(new) != len(fam.states):
        raise ValueError(f"{fam.name}: the step returned {len(new)} states, expected {len(fam.states)}")
    spike_id = tape.arg(s)
    if tape.nodes[spike_id].op != "spike":
        raise ValueError(f"{fam.name}: the step's first output must be ops.spike(...)")
    prog = Program(tape.nodes, x, states, params, scalars, spike_id, tuple(tape.arg(v) for v in new))
    _TRACES[key] = prog
    return prog


# ------------------------------------------------------------------------------------------------ entry point
def run_neuron(
    spec: NeuronSpec,
    x: torch.Tensor,
    state: Optional[Union[NamedTuple, Sequence[torch.Tensor]]],
    params: Dict[str, Param],
    scalars: Dict[str, float],
    return_states: bool = False,
    backend: str = "auto",
) -> NeuronOutput:
    """Check the arguments and run a family over ``x: [T, B, ...]`` through the registry.

    Args:
        spec: family and options.
        x: input ``[T, B, ...]`` (floating point).
        state: initial state (the family's NamedTuple or a sequence of ``[B, ...]`` tensors); its rest if None.
        params: a number or a per-neuron tensor (broadcastable to ``x.shape[2:]``, may require grad) per parameter.
        scalars: a real number per scalar.
        return_states: also return the trace of every state variable ``[T, B, ...]`` (after reset).
        backend: ``"auto"`` or a name from ``spikelib.kernels.available_backends("neuron")``.
    """
    fam = spec.family
    check_sequence_input(x, "x")
    if not isinstance(return_states, bool):
        raise TypeError(f"return_states must be a bool, got {type(return_states).__name__}")
    feature_shape = tuple(x.shape[2:])
    sc: List[float] = []
    for name in fam.scalars:
        v = scalars[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
        sc.append(float(v))
    ps: List[torch.Tensor] = []
    for name in fam.params:
        r = fam.rule(name)
        v = check_scalar_or_neuronwise(params[name], name, feature_shape, x, minimum=r.minimum, minimum_text=r.why,
                                       maximum=r.maximum, positive=r.positive)
        ps.append(v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=x.dtype, device=x.device))
    batch_shape = tuple(x.shape[1:])
    if state is None:
        rest = dict(zip(fam.scalars, sc))
        st = [torch.full(batch_shape, rest[init] if init else 0.0, dtype=x.dtype, device=x.device)
              for init in (fam.initial or ("",) * len(fam.states))]
    else:
        if len(state) != len(fam.states):
            raise ValueError(f"state must hold {len(fam.states)} tensors {fam.states}, got {len(state)}")
        st = [check_state(v, f"state.{n}", x, batch_shape) for n, v in zip(fam.states, state)]
    requires_grad = torch.is_grad_enabled() and any(t.requires_grad for t in [x, *st, *ps])
    entry = select_backend("neuron", backend, NeuronRequest(x.device, x.dtype, spec, requires_grad))
    if backend == "auto" and entry.name == "torch":
        note_slow_surrogate(spec.surrogate, x)
    impl = entry.impl
    spikes, traces, final = impl(spec, x, tuple(st), tuple(ps), tuple(sc), return_states)
    return NeuronOutput(spikes, fam.state_type(*traces) if return_states else None, fam.state_type(*final))
