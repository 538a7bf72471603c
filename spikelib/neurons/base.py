"""State handling shared by neuron modules, and :func:`reset` that clears every state of a model in one call."""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["StatefulModule", "reset"]


class StatefulModule(nn.Module):
    """A module that may keep its last state (``self.state``) between calls.

    Subclasses call :meth:`_initial_state` to get the state to start from: the explicit one if given, the kept one if
    the module is ``stateful`` and the kept state fits the input, else ``None`` (rest). A kept state whose batch shape
    differs from the input is dropped (logged at debug level); one on another device or of another dtype is an error,
    because continuing from it would silently convert it. A state is a tensor or a NamedTuple of tensors (neurons
    with several state variables).
    """

    def __init__(self, stateful: bool = False) -> None:
        super().__init__()
        if not isinstance(stateful, bool):
            raise TypeError(f"stateful must be a bool, got {type(stateful).__name__}")
        self.stateful = stateful
        self.state: Optional[Any] = None

    def reset_state(self) -> None:
        """Forget the kept state."""
        self.state = None

    def _initial_state(self, explicit: Optional[Any], like: torch.Tensor, shape: tuple) -> Optional[Any]:
        if explicit is not None:
            return explicit
        if not self.stateful or self.state is None:
            return None
        kept = self.state[0] if isinstance(self.state, tuple) else self.state
        if kept.device != like.device or kept.dtype != like.dtype:
            raise RuntimeError(
                f"{type(self).__name__} keeps a state on {kept.device} ({kept.dtype}) but the input is on "
                f"{like.device} ({like.dtype}); call spikelib.reset(model) before changing device or dtype"
            )
        if tuple(kept.shape) != tuple(shape):
            logger.debug("%s: state shape %s does not fit input %s; starting from rest", type(self).__name__,
                         tuple(kept.shape), tuple(shape))
            return None
        return self.state

    def _keep(self, v: Any) -> None:
        # Keep the state without its graph: a kept state must not chain one batch's graph into the next.
        kept = type(v)(*(t.detach() for t in v)) if isinstance(v, tuple) else v.detach()
        if "state" in self.__dict__:  # a plain attribute (set in __init__): skip nn.Module.__setattr__'s lookups
            self.__dict__["state"] = kept
        else:
            self.state = kept


def reset(model: nn.Module) -> nn.Module:
    """Clear the kept state of every spikelib stateful module in ``model`` (including ``model`` itself)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"reset expects an nn.Module, got {type(model).__name__}")
    for m in model.modules():
        if isinstance(m, StatefulModule):
            m.reset_state()
    return model
