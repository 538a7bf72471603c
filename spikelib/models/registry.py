"""A small registry of named model constructors: ``get_model(name, **kw)`` and ``list_models()``.

Constructors register themselves with :func:`register_model` when their module is imported;
``spikelib.models`` imports every model module, so all names are known after ``import spikelib``.
"""

from __future__ import annotations

from typing import Callable, Dict, List

from torch import nn

__all__ = ["get_model", "list_models", "register_model"]

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a constructor under ``name`` (a name may be registered once)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> List[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kw) -> nn.Module:
    """Build the model registered as ``name``; keyword arguments override the constructor's defaults."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _MODELS[name](**kw)
