"""Declarations registered for classes one cannot edit (a leaf: :mod:`spikelib.graph.declare` reads it,
:mod:`spikelib.graph.torch_layers` fills it for torch's layers)."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Type

from torch import nn

from spikelib.graph.nodes import Node

__all__ = ["Declaration", "register_declaration", "lookup"]

Declaration = Callable[[nn.Module], Node]
_DECLARATIONS: Dict[Type[nn.Module], Declaration] = {}


def register_declaration(cls: Type[nn.Module], fn: Declaration) -> None:
    """Declare every module of class ``cls`` (and its subclasses) with ``fn(module) -> Node``."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _DECLARATIONS[cls] = fn


def lookup(cls: type) -> Optional[Declaration]:
    """The declaration registered for the most specific class in ``cls``'s MRO, else None."""
    for base in cls.__mro__:
        fn = _DECLARATIONS.get(base)
        if fn is not None:
            return fn
    return None
