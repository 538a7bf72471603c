"""How a module says what it computes: :func:`declare`.

A module declares itself with a method ``graph_node(self) -> Node`` (every spikelib layer and neuron does; a user's
own layer kind can do the same), or through :func:`register_declaration` for classes one cannot edit (torch's layers
are registered in :mod:`spikelib.graph.torch_layers`).
Containers (``nn.Sequential``, a model whose ``forward`` calls its children) declare nothing: tools walk into their
children. :func:`declared_layers` is that walk; a module that declares nothing and is not a plain container (it has
no children, or tensors of its own that its ``forward`` uses directly) is an :class:`UndeclaredLayerError` naming it.

Modules also say how they take time (:func:`is_temporal`): sequence modules (neurons, delays, spikelib's containers)
take ``[T, B, ...]`` and set the class attribute ``temporal = True``; every other module works per step, on the time
steps folded into the batch (``[T * B, ...]``).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from torch import nn

from spikelib.graph.nodes import Node
from spikelib.graph.registry import Declaration, lookup, register_declaration

__all__ = ["UndeclaredLayerError", "declare", "declared_layers", "is_declared", "is_temporal", "register_declaration"]

_BUILTINS_LOADED = False


class UndeclaredLayerError(TypeError):
    """A module neither declares a node nor is a plain container (the message names it)."""


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from spikelib.graph import torch_layers  # noqa: F401  (registers torch's layers)


def _registered(module: nn.Module) -> Optional[Declaration]:
    fn = lookup(type(module))
    if fn is None:
        from spikelib.graph import peers  # declarations of snnTorch/norse/spikingjelly neurons, once imported

        if peers.register_imported():
            fn = lookup(type(module))
    return fn


def declare(module: nn.Module) -> Optional[Node]:
    """The node ``module`` declares, or None for a container (or an undeclared module)."""
    method = getattr(module, "graph_node", None)
    if callable(method):
        node = method()
        if node is not None and not isinstance(node, Node):
            raise TypeError(f"{type(module).__qualname__}.graph_node() must return a spikelib.graph Node or None, "
                            f"got {type(node).__name__}")
        return node
    _load_builtins()
    fn = _registered(module)
    return fn(module) if fn is not None else None


def is_declared(module: nn.Module) -> bool:
    """Whether ``module`` declares a node (without building it)."""
    if callable(getattr(module, "graph_node", None)):
        return True
    _load_builtins()
    return _registered(module) is not None


def is_temporal(module: nn.Module) -> bool:
    """Whether ``module`` takes a whole sequence ``[T, B, ...]`` (else one step at a time, time folded into B)."""
    return bool(getattr(module, "temporal", False))


def _own_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        b is not None for b in module.buffers(recurse=False))


def _label(name: str, module: nn.Module) -> str:
    return f"'{name or '<model>'}' ({type(module).__module__}.{type(module).__qualname__})"


def declared_layers(model: nn.Module) -> List[Tuple[str, nn.Module, Node]]:
    """``(qualified name, module, node)`` for every declared module of ``model``, in registration order.

    Declared modules are leaves of the walk (their children are part of what they declare). A module without a
    declaration is walked into when it is a container (children, no tensors of its own); otherwise it is an
    :class:`UndeclaredLayerError` that names every such module.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    found: List[Tuple[str, nn.Module, Node]] = []
    undeclared: List[str] = []

    def visit(name: str, module: nn.Module) -> None:
        if is_declared(module):
            node = declare(module)
            if node is not None:
                found.append((name, module, node))
                return
        children = list(module.named_children())
        if not children or _own_tensors(module):
            undeclared.append(_label(name, module))
            return
        for child_name, child in children:
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    if undeclared:
        raise UndeclaredLayerError(
            "undeclared layer(s) " + ", ".join(undeclared) + ": spikelib cannot tell what they compute. Give the "
            "class a graph_node() method returning a spikelib.graph node, or register one with "
            "spikelib.graph.register_declaration (a container without tensors of its own needs neither).")
    return found
