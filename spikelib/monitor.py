"""Recording what chosen layers of a model compute during forward passes: :class:`Monitor`.

::

    from spikelib.monitor import Monitor

    with Monitor(model) as rec:                  # every neuron layer (declared LIF, LI, ELM, ... nodes)
        model(x)
    rec.trace("1")                               # what layer "1" returned: spikes [T, B, N]
    rec.firing_rates()                           # {"1": 0.12, ...} spikes per neuron and step

    with Monitor(model, ["1", spikelib.LIF], states=True) as rec:   # by name and by type, with state traces
        model(x)
    rec.trace("1").states.v                      # the membrane trace [T, B, N] (states: a NamedTuple of state
                                                 # traces, LIFState(v) for a LIF)

Layers are chosen by qualified name (``model.named_modules()``, glob patterns such as ``"blocks.*.lif"`` allowed), by
class (every module that is an instance), or as module objects; by default, every declared neuron layer
(:data:`spikelib.graph.nodes.NEURON_NODES`: LIF, LI, CUBA-LIF, integer spike, ELM). A monitor records whatever each
chosen module returns, once per call: a sequence module's ``[T, B, ...]`` per pass, a cell's ``[B, ...]`` per step.
With ``states=True`` it asks each chosen layer for its state traces as well (its ``forward`` argument ``return_states``
or, failing that, ``return_membrane``, whose trace is recorded as ``LIFState(v)``), records ``Recorded(output,
states)`` with ``states`` a NamedTuple of traces ``[T, B, ...]``, and hands the model the plain output, so the model
computes exactly what it computes without the monitor.

Hooks are attached only while the monitor is active (``with``, or :meth:`Monitor.start` / :meth:`Monitor.stop`), so
a model that is not being recorded runs without any hook. Recorded tensors are detached (``detach=False`` keeps the
graph, e.g. for a firing-rate regulariser of hidden layers, :func:`spikelib.losses.rate_bounds`) and stay on their
device unless ``device`` says otherwise.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
from torch import nn

from spikelib.functional.lif import LIFState
from spikelib.graph import declare, is_declared, is_temporal
from spikelib.graph.nodes import NEURON_NODES

__all__ = ["Monitor", "Recorded", "record"]

Selection = Union[None, str, Type[nn.Module], nn.Module, Sequence[Union[str, Type[nn.Module], nn.Module]]]
_STATE_FLAGS = ("return_states", "return_membrane")


class Recorded(NamedTuple):
    """One call of a layer recorded with ``states=True``: its usual output and its state traces."""

    output: Any
    states: Any


def _map(fn: Callable[[torch.Tensor], torch.Tensor], obj: Any) -> Any:
    """Apply ``fn`` to every tensor of a (possibly nested) tuple / NamedTuple / list / dict output."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_map(fn, o) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(fn, o) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(fn, v) for k, v in obj.items()}
    return obj


def _combine(calls: List[Any], join: Callable[[List[torch.Tensor]], torch.Tensor]) -> Any:
    """Join the tensors at the same place of every recorded call (same structure in each call)."""
    first = calls[0]
    if isinstance(first, torch.Tensor):
        return join(calls)
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(_combine([c[i] for c in calls], join) for i in range(len(first))))
    if isinstance(first, (tuple, list)):
        return type(first)(_combine([c[i] for c in calls], join) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _combine([c[k] for c in calls], join) for k in first}
    return calls


def _first_tensor(obj: Any) -> Optional[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj:
        return _first_tensor(obj[0])
    return None


def _neuron_layers(model: nn.Module) -> List[str]:
    """Qualified names of the declared neuron layers (leaves of the declared walk; undeclared leaves are skipped)."""
    found: List[str] = []

    def visit(name: str, module: nn.Module) -> None:
        if is_declared(module):
            node = declare(module)
            if node is not None:
                if isinstance(node, NEURON_NODES):
                    found.append(name)
                return
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return found


def _label(name: str) -> str:
    return f"'{name}'" if name else "the model itself ('')"


def _select(model: nn.Module, layers: Selection) -> List[str]:
    named = dict(model.named_modules())
    if layers is None:
        chosen = _neuron_layers(model)
        if not chosen:
            raise ValueError(f"{type(model).__name__} has no declared neuron layer to record by default; name the "
                             f"layers (names from model.named_modules(), classes or modules)")
        return chosen
    items = [layers] if isinstance(layers, (str, type, nn.Module)) else list(layers)
    if not items:
        raise ValueError("layers is empty: give names, classes or modules to record (or None for every neuron layer)")
    wanted = set()
    for item in items:
        if isinstance(item, str):
            if any(c in item for c in "*?["):
                hits = [n for n in named if n and fnmatch.fnmatchcase(n, item)]
                if not hits:
                    raise KeyError(f"no layer name matches the pattern {item!r}")
            elif item in named:
                hits = [item]
            else:
                close = difflib.get_close_matches(item, [n for n in named if n], n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise KeyError(f"{type(model).__name__} has no layer named {item!r} (names are those of "
                               f"model.named_modules()){hint}")
        elif isinstance(item, type) and issubclass(item, nn.Module):
            hits = [n for n, m in named.items() if isinstance(m, item)]
            if not hits:
                raise ValueError(f"{type(model).__name__} has no layer of type {item.__qualname__}")
        elif isinstance(item, nn.Module):
            hits = [n for n, m in named.items() if m is item]
            if not hits:
                raise ValueError(f"the module {type(item).__name__} given in layers is not part of the model")
        else:
            raise TypeError(f"layers must hold layer names, nn.Module classes or modules, got {item!r}")
        wanted.update(hits)
    return [n for n in named if n in wanted]


def _state_flag(module: nn.Module, name: str) -> Tuple[str, int]:
    """The forward argument that asks ``module`` for its state traces, and its position (after ``self``)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    for flag in _STATE_FLAGS:
        for i, p in enumerate(params):
            if p.name == flag:
                positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                return flag, i if positional else -1
    raise ValueError(f"layer {_label(name)} ({type(module).__name__}) cannot return its states: its forward has no "
                     f"return_states or return_membrane argument; record its output (states=False) or leave it out")


class Monitor:
    """Records the outputs (and optionally the state traces) of chosen layers while active (module docstring).

    Args:
        model: the network.
        layers: names, classes or modules to record (see the module docstring); ``None``: every declared neuron layer.
        states: also record each layer's state traces (``Recorded(output, states)`` per call).
        detach: record tensors without their autograd graph (``False`` to regularise with them).
        device: move recorded tensors there (e.g. ``"cpu"``); ``None`` keeps them where they are.
    """

    def __init__(self, model: nn.Module, layers: Selection = None, *, states: bool = False, detach: bool = True,
                 device: Union[None, str, torch.device] = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        for flag, flag_name in ((states, "states"), (detach, "detach")):
            if not isinstance(flag, bool):
                raise TypeError(f"{flag_name} must be a bool, got {type(flag).__name__}")
        self.model = model
        self.names: List[str] = _select(model, layers)
        self.states = states
        self.detach = detach
        self.device = None if device is None else torch.device(device)
        modules = dict(model.named_modules())
        self._modules: Dict[str, nn.Module] = {n: modules[n] for n in self.names}
        self._flags: Dict[str, Tuple[str, int]] = (
            {n: _state_flag(m, n) for n, m in self._modules.items()} if states else {})
        self._strip: Dict[str, List[bool]] = {n: [] for n in self.names}
        self._handles: List[Any] = []
        self.records: Dict[str, List[Any]] = {n: [] for n in self.names}

    # ------------------------------------------------------------------ hooks
    @property
    def active(self) -> bool:
        """Whether hooks are attached (recording)."""
        return bool(self._handles)

    def start(self) -> "Monitor":
        """Attach the hooks (records accumulate until :meth:`clear`)."""
        if self.active:
            raise RuntimeError("this Monitor is already recording")
        for name, module in self._modules.items():
            self._strip[name].clear()
            if self.states:
                self._handles.append(module.register_forward_pre_hook(self._pre_hook(name), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post_hook(name)))
        return self

    def stop(self) -> None:
        """Remove the hooks; the model runs as without a monitor."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "Monitor":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _pre_hook(self, name: str) -> Callable:
        flag, position = self._flags[name]

        def hook(module: nn.Module, args: tuple, kwargs: dict):
            if flag in kwargs:
                given = kwargs[flag]
            elif 0 <= position < len(args):
                given = args[position]
            else:
                given = False
            if given is True:  # the caller asked for the states itself: record and hand on what it gets
                self._strip[name].append(False)
                return None
            self._strip[name].append(True)
            if 0 <= position < len(args):
                return args[:position] + (True,) + args[position + 1:], kwargs
            return args, {**kwargs, flag: True}

        return hook

    def _post_hook(self, name: str) -> Callable:
        membrane_only = self.states and self._flags[name][0] == "return_membrane"

        def hook(module: nn.Module, args: tuple, output: Any):
            strip = self._strip[name].pop() if self.states and self._strip[name] else False
            if self.states:
                kept = output
                if isinstance(output, tuple) and len(output) == 2:
                    states = output[1]
                    if membrane_only and isinstance(states, torch.Tensor):
                        states = LIFState(states)  # one form for every neuron: a NamedTuple of state traces
                    kept = Recorded(output[0], states)
                self.records[name].append(_map(self._keep, kept))
                return output[0] if strip else None
            self.records[name].append(_map(self._keep, output))
            return None

        return hook

    def _keep(self, t: torch.Tensor) -> torch.Tensor:
        if self.detach:
            t = t.detach()
        if self.device is not None:
            t = t.to(self.device)
        return t

    # ------------------------------------------------------------------ results
    def __getitem__(self, name: str) -> List[Any]:
        """Every recorded call of layer ``name``, in call order."""
        if name not in self.records:
            raise KeyError(f"layer {name!r} is not recorded by this monitor (recorded: {self.names})")
        return self.records[name]

    def __contains__(self, name: object) -> bool:
        return name in self.records

    def __iter__(self) -> Iterable[str]:
        return iter(self.names)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        for calls in self.records.values():
            calls.clear()

    def trace(self, name: str) -> Any:
        """The recording of layer ``name`` as one value.

        One call: what it returned. Several calls: a sequence module's calls joined along time (``dim 0``: chunks of
        one stream, e.g. a ``stateful`` layer fed piece by piece), a per-step module's (cells) stacked into a new time
        dimension (``[T, B, ...]``). For independent batches through a sequence module read ``monitor[name]``.
        """
        calls = self[name]
        if not calls:
            raise ValueError(f"nothing was recorded for layer {name!r}: run the model while the monitor is active "
                             f"(inside `with monitor:`)")
        if len(calls) == 1:
            return calls[0]
        temporal = is_temporal(self._modules[name])
        return _combine(calls, (lambda ts: torch.cat(ts, 0)) if temporal else (lambda ts: torch.stack(ts, 0)))

    def firing_rates(self) -> Dict[str, float]:
        """The mean of each recorded layer's output over all recorded calls and elements (for spiking layers: spikes
        per neuron and step)."""
        rates: Dict[str, float] = {}
        for name, calls in self.records.items():
            total, count = 0.0, 0
            for call in calls:
                out = _first_tensor(call.output if isinstance(call, Recorded) else call)
                if out is not None and out.numel():
                    total += float(out.detach().double().sum())
                    count += out.numel()
            if count:
                rates[name] = total / count
        return rates

    def __repr__(self) -> str:
        counts = ", ".join(f"{n or '<model>'}: {len(c)}" for n, c in self.records.items())
        return f"Monitor({type(self.model).__name__}, states={self.states}, active={self.active}, calls={{{counts}}})"


def record(model: nn.Module, *inputs: Any, layers: Selection = None, states: bool = False,
           **kwargs: Any) -> Tuple[Any, Monitor]:
    """Run ``model(*inputs, **kwargs)`` once under a :class:`Monitor`; returns ``(output, monitor)``.

    Args:
        model: the network.
        inputs: its positional inputs.
        layers: what to record (see :class:`Monitor`).
        states: also record state traces.
        kwargs: keyword arguments of the model's forward.
    """
    monitor = Monitor(model, layers, states=states)
    with monitor:
        output = model(*inputs, **kwargs)
    return output, monitor
