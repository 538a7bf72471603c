"""A small registry of named model constructors: ``get_model(name, **kw)`` and ``list_models()``.

Constructors register themselves with :func:`register_model` when their module is imported;
``spikelib.models`` imports every model module, so all names are known after ``import spikelib``.
"""

from __future__ import annotations

import inspect
import typing
from typing import Callable, Dict, List, Optional

from torch import nn

__all__ = ["get_model", "list_models", "register_model", "model_parameters", "model_accepts_any"]

_MODELS: Dict[str, Callable[..., nn.Module]] = {}
_PARAMS_FROM: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, *, params: Optional[Callable[..., nn.Module]] = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a constructor under ``name`` (a name may be registered once).

    ``params``: for a constructor that takes ``**kwargs`` and passes them on, the callable (usually the model class)
    whose keyword parameters it accepts (default: the class named in its return annotation); see
    :func:`model_parameters`.
    """

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = fn
        if params is not None:
            _PARAMS_FROM[name] = params
        return fn

    return deco


def _keyword_parameters(fn: Callable) -> Dict[str, inspect.Parameter]:
    try:
        sig = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError, AttributeError):
        sig = inspect.signature(fn)
    return {n: p for n, p in sig.parameters.items() if n not in ("self", "cls")}


def _forwarded_to(name: str) -> Optional[Callable]:
    """What a ``**kwargs`` constructor passes its keywords to: ``params`` given at registration, else the
    ``nn.Module`` subclass of its return annotation."""
    if name in _PARAMS_FROM:
        return _PARAMS_FROM[name]
    try:
        ret = typing.get_type_hints(_MODELS[name]).get("return")
    except (NameError, TypeError):
        return None
    if isinstance(ret, type) and issubclass(ret, nn.Module) and ret is not nn.Module:
        return ret
    return None


def _resolve(name: str) -> tuple:
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    own = _keyword_parameters(_MODELS[name])
    var = [n for n, p in own.items() if p.kind is inspect.Parameter.VAR_KEYWORD]
    accepted = {n: p for n, p in own.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not var:
        return accepted, False
    target = _forwarded_to(name)
    if target is None:
        return accepted, True
    inner = _keyword_parameters(target)
    merged = {n: p for n, p in inner.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    merged.update(accepted)
    return merged, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inner.values())


def model_parameters(name: str) -> Dict[str, inspect.Parameter]:
    """The keyword arguments the constructor registered as ``name`` accepts, with their defaults and (resolved) type
    annotations; for a constructor taking ``**kwargs`` those of the callable it forwards them to."""
    return _resolve(name)[0]


def model_accepts_any(name: str) -> bool:
    """Whether the constructor registered as ``name`` also accepts keywords beyond :func:`model_parameters`."""
    return _resolve(name)[1]


def list_models() -> List[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kw) -> nn.Module:
    """Build the model registered as ``name``; keyword arguments override the constructor's defaults."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _MODELS[name](**kw)
