"""The backend registry: ``(operation, backend name) -> implementation``, with capability checks.

A backend registers an implementation for an operation together with a ``check(request)`` that returns ``None`` when
it can run the request, or a sentence saying why not. ``backend="auto"`` picks the registered backend of highest
priority whose check passes; an explicit name that cannot run raises :class:`BackendUnavailableError` with the reason
and the fix. Every dispatch is counted, so tests can prove that the intended path really ran
(:func:`backend_calls`). Under ``torch.compile`` the choice is made once while tracing and nothing is counted or logged
(a counter read in a graph would make every call recompile); the compiled graph names the operators that run. Only
backends registered ``compile_safe`` run there: torch operations, or kernels that present themselves to Dynamo as
custom operators. The others (numba kernels called from Python, which Dynamo cannot trace: it breaks the graph, and a
break inside an autograd function's backward has made Inductor fail) are skipped by ``"auto"`` while compiling and
refused when asked for by name.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

__all__ = [
    "BackendUnavailableError",
    "register_backend",
    "select_backend",
    "available_backends",
    "backend_calls",
    "count_call",
    "forget_backend_choices",
    "reset_backend_calls",
]


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run this request."""


@dataclass
class BackendEntry:
    op: str
    name: str
    impl: Callable[..., Any]
    check: Callable[[Any], Optional[str]]
    priority: int
    description: str = ""
    pure_check: bool = False  # the check's answer depends only on the request (and the installed packages)
    compile_safe: bool = False  # torch.compile can trace it (torch operations or custom operators)


#: Remembered choices per operation at most (then forgotten at once): requests differ by shape, so a model with many
#: layer shapes fills a few hundred.
_CHOSEN_MAX = 4096


@dataclass
class _Registry:
    entries: Dict[str, Dict[str, BackendEntry]] = field(default_factory=dict)
    # each operation's entries, highest priority first (kept in step with ``entries`` by ``register_backend``, so a
    # dispatch does not sort on every call)
    ranked: Dict[str, Tuple[BackendEntry, ...]] = field(default_factory=dict)
    # operations whose backends all have pure checks, and the backend chosen per (operation, backend, request) for
    # them (a dispatch of a small layer otherwise spends more time asking each backend than the layer computes)
    pure_ops: set = field(default_factory=set)
    chosen: Dict[Tuple[str, str, Any], BackendEntry] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    fallbacks_logged: set = field(default_factory=set)


_REGISTRY = _Registry()


def register_backend(
    op: str, name: str, *, check: Callable[[Any], Optional[str]], priority: int, description: str = "",
    pure_check: bool = False, compile_safe: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``impl`` as backend ``name`` of operation ``op``.

    Args:
        op: operation name, e.g. ``"lif"``.
        name: backend name, e.g. ``"torch"``; ``"auto"`` is reserved.
        check: returns ``None`` if the backend can run a request, otherwise the reason (and fix) as a sentence.
        priority: higher wins under ``backend="auto"``.
        description: one line shown by :func:`available_backends`.
        pure_check: ``check``'s answer depends only on the request (a hashable, immutable object) and on which
            packages are installed. When every backend of ``op`` says so, :func:`select_backend` remembers its choice
            per request instead of asking the checks again on every call.
        compile_safe: ``torch.compile`` can trace ``impl`` without a graph break: it is made of torch operations, or
            it calls its kernels through custom operators when ``torch.compiler.is_compiling()``. Backends that are
            not are skipped (``"auto"``) or refused (by name) while a model is being compiled.
    """
    if name == "auto":
        raise ValueError("'auto' is reserved for automatic selection")

    def decorate(impl: Callable[..., Any]) -> Callable[..., Any]:
        entries = _REGISTRY.entries.setdefault(op, {})
        entries[name] = BackendEntry(op, name, impl, check, priority, description, pure_check, compile_safe)
        _REGISTRY.ranked[op] = tuple(sorted(entries.values(), key=lambda e: -e.priority))
        if all(e.pure_check for e in entries.values()):
            _REGISTRY.pure_ops.add(op)
        else:
            _REGISTRY.pure_ops.discard(op)
        _REGISTRY.chosen.clear()  # a new backend may win where another did
        return impl

    return decorate


def forget_backend_choices() -> None:
    """Forget the choices :func:`select_backend` remembered (see ``pure_check`` of :func:`register_backend`): call it
    after making a package importable or not within the process (tests do)."""
    _REGISTRY.chosen.clear()


def available_backends(op: str) -> List[str]:
    """Names of the backends registered for ``op``, highest priority first."""
    return [e.name for e in _REGISTRY.ranked.get(op, ())]


def select_backend(op: str, backend: str, request: Any, count: bool = True) -> BackendEntry:
    """Choose the implementation of ``op`` for ``request`` and (unless ``count=False``) count the dispatch.

    Raises:
        ValueError: unknown operation or backend name.
        BackendUnavailableError: an explicit backend whose check fails (the message says why and how to fix it).
    """
    remember = op in _REGISTRY.pure_ops and not _compiling()
    if remember:
        key = (op, backend, request)
        entry = _REGISTRY.chosen.get(key)
        if entry is not None:
            if count:
                _REGISTRY.calls[(op, entry.name)] += 1
            return entry
        entry = _select(op, backend, request, count)
        if len(_REGISTRY.chosen) >= _CHOSEN_MAX:
            _REGISTRY.chosen.clear()
        _REGISTRY.chosen[key] = entry
        return entry
    return _select(op, backend, request, count)


def _select(op: str, backend: str, request: Any, count: bool) -> BackendEntry:
    entries = _REGISTRY.entries.get(op)
    if not entries:
        raise ValueError(f"no backends are registered for operation {op!r}")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend == "auto":
        reasons: List[Tuple[str, str]] = []
        compiling = _compiling()
        for entry in _REGISTRY.ranked[op]:
            reason = _NOT_TRACEABLE if compiling and not entry.compile_safe else entry.check(request)
            if reason is None:
                if reasons and not compiling:  # (logging cannot be traced by torch.compile)
                    key = (op, entry.name, tuple(reasons))
                    if key not in _REGISTRY.fallbacks_logged:
                        _REGISTRY.fallbacks_logged.add(key)
                        logger.info(
                            "%s: using backend %r; skipped %s",
                            op,
                            entry.name,
                            "; ".join(f"{n!r} ({r})" for n, r in reasons),
                        )
                if count and not compiling:
                    _REGISTRY.calls[(op, entry.name)] += 1
                return entry
            reasons.append((entry.name, reason))
        raise BackendUnavailableError(
            f"no backend can run {op} for this input: " + "; ".join(f"{n}: {r}" for n, r in reasons)
        )
    if backend not in entries:
        raise ValueError(f"unknown backend {backend!r} for {op}; choose 'auto' or one of {available_backends(op)}")
    entry = entries[backend]
    reason = _NOT_TRACEABLE if _compiling() and not entry.compile_safe else entry.check(request)
    if reason is not None:
        raise BackendUnavailableError(f"backend {backend!r} cannot run {op}: {reason}")
    if count and not _compiling():
        _REGISTRY.calls[(op, entry.name)] += 1
    return entry


_NOT_TRACEABLE = ("torch.compile cannot trace it (kernels called from Python, not registered as custom operators); "
                  "use backend='auto', which compiles the next backend, or run the model without torch.compile")


def _compiling() -> bool:
    import torch

    return bool(torch.compiler.is_compiling())


def count_call(op: str, name: str) -> None:
    """Count a choice made inside a backend (e.g. between its kernels), reported by :func:`backend_calls` like a
    dispatch: ``count_call("delay_linear_int.numba", "events")`` shows as ``"delay_linear_int.numba/events"``."""
    if not _compiling():
        _REGISTRY.calls[(op, name)] += 1


def backend_calls(op: Optional[str] = None) -> Dict[str, int]:
    """How many times each backend ran (for ``op``, or ``"op/backend"`` keys for all operations)."""
    if op is None:
        return {f"{o}/{n}": c for (o, n), c in _REGISTRY.calls.items()}
    return {n: c for (o, n), c in _REGISTRY.calls.items() if o == op}


def reset_backend_calls() -> None:
    """Zero the dispatch counters."""
    _REGISTRY.calls.clear()
