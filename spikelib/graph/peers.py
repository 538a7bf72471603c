"""Declarations of the neuron classes of snnTorch, norse and spikingjelly, so that a model written with them (the
user's existing model) can be counted, traced and exported like a spikelib one.

Nothing here imports a peer library: :func:`register_imported` registers the classes of each peer that is already
imported (``sys.modules``) and is called by :func:`spikelib.graph.declare` whenever a module has no declaration. The
declarations read the peers' own modules (reference read: snnTorch 1.0 ``snntorch/_neurons/leaky.py``; norse 1.1
``norse/torch/functional/lif.py``, ``lif_box.py``, ``norse/torch/module/snn.py``; spikingjelly 2.0
``spikingjelly/activation_based/neuron/{lif,integrate_and_fire,plif}.py``).

==========================================  =========================================================================
peer class                                  declared node (times in steps)
==========================================  =========================================================================
snnTorch ``Leaky``                          ``LIF(tau = 1 / (1 - beta), v_threshold = threshold, v_reset = 0,
                                            decay_input = False)``: ``mem = beta mem + x``; ``reset_mechanism``
                                            "zero" -> hard reset, "subtract" -> soft reset. snnTorch subtracts the
                                            threshold before the decay (``mem = beta mem + x - thr S[t-1]``), spikelib
                                            after it, so a soft reset equals snnTorch's only for ``beta = 1``; spikes,
                                            updates and synaptic counts are those the layer really produced, only the
                                            NeuroBench membrane rule rebuilds the membrane from this node.
norse ``LIFBoxCell``                        ``LIF(tau = 1 / (dt tau_mem_inv), decay_input = True, hard reset)``
                                            (``v += dt tau_mem_inv (v_leak - v + x)``; needs ``v_leak == v_reset``).
norse ``LIFCell``, ``LIF``                  ``CubaLIF(tau_syn = 1 / (dt tau_syn_inv), tau_mem = 1 / (dt tau_mem_inv),
                                            v_threshold, v_reset, v_leak)`` (current-based; ``LIF`` takes the whole
                                            sequence ``[T, B, ...]``; both return ``(spikes, state)``).
spikingjelly ``LIFNode``, ``IFNode``,       ``LIF(tau (IF: inf; PLIF: 1 / sigmoid(w)), v_threshold, v_reset,
``ParametricLIFNode``                       decay_input)``; ``v_reset=None`` is the soft reset. ``step_mode="m"``
                                            nodes take ``[T, B, ...]`` (the declaration marks them ``temporal``).
==========================================  =========================================================================

Configurations a node cannot express (snnTorch ``inhibition``, ``state_quant``, graded spikes, ``reset_mechanism=
"none"``; norse ``LIFBoxCell`` with ``v_leak != v_reset``) raise a ``ValueError`` naming the option rather than
being declared as something else.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import nn

from spikelib.graph import nodes
from spikelib.graph.registry import register_declaration

__all__ = ["register_imported", "PEERS"]

_DONE: Dict[str, bool] = {}
_NORSE_CELLS: Tuple[type, ...] = ()


def _value(v: Any) -> Any:
    """A float for scalars (tensors of one element included), a detached tensor otherwise."""
    if isinstance(v, torch.Tensor):
        return float(v) if v.numel() == 1 else v.detach()
    return float(v)


def _tau_from_decay(decay: Any) -> Any:
    """``1 / (1 - decay)`` (inf for decay 1)."""
    if isinstance(decay, torch.Tensor):
        return torch.where(decay >= 1, torch.full_like(decay, math.inf), 1.0 / (1.0 - decay))
    return math.inf if decay >= 1 else 1.0 / (1.0 - decay)


def _refuse(module: nn.Module, option: str) -> None:
    raise ValueError(f"{type(module).__module__}.{type(module).__qualname__} with {option} has no spikelib node: "
                     "energy counting, Loihi mapping and NIR export cannot describe it")


# ------------------------------------------------------------------------------------------------------ snnTorch
def _snntorch_leaky(m: nn.Module) -> nodes.Node:
    if getattr(m, "inhibition", False):
        _refuse(m, "inhibition=True")
    if getattr(m, "state_quant", False):
        _refuse(m, "state_quant")
    graded = getattr(m, "graded_spikes_factor", 1.0)
    if not bool(torch.all(torch.as_tensor(graded) == 1.0)):
        _refuse(m, "graded_spikes_factor != 1")
    mechanism = getattr(m, "reset_mechanism", "subtract")
    if mechanism not in ("subtract", "zero"):
        _refuse(m, f"reset_mechanism={mechanism!r}")
    beta = m.beta.detach().clamp(0, 1)
    tau = _tau_from_decay(_value(beta))
    return nodes.LIF(tau, _value(m.threshold), 0.0, "hard" if mechanism == "zero" else "soft", False, "difference")


def _register_snntorch() -> List[type]:
    import snntorch

    register_declaration(snntorch.Leaky, _snntorch_leaky)
    return [snntorch.Leaky]


# --------------------------------------------------------------------------------------------------------- norse
def _norse_steps(m: nn.Module, inv: Any) -> Any:
    rate = _value(torch.as_tensor(m.dt) * inv)
    if isinstance(rate, torch.Tensor):
        return 1.0 / rate
    return math.inf if rate == 0 else 1.0 / rate


def _norse_lif(m: nn.Module) -> nodes.Node:
    p = m.p
    if not isinstance(m, _NORSE_CELLS):
        m.temporal = True  # norse's LIF module takes the whole sequence [T, B, ...]
    return nodes.CubaLIF(_norse_steps(m, p.tau_syn_inv), _norse_steps(m, p.tau_mem_inv), _value(p.v_th),
                         _value(p.v_reset), _value(p.v_leak))


def _norse_lif_box(m: nn.Module) -> nodes.Node:
    p = m.p
    if not bool(torch.all(torch.as_tensor(p.v_leak) == torch.as_tensor(p.v_reset))):
        _refuse(m, "v_leak != v_reset")
    reset = getattr(p, "reset_method", None)
    soft = reset is not None and "subtract" in getattr(reset, "__name__", "")
    v_reset = _value(p.v_reset)
    if not isinstance(v_reset, float):
        _refuse(m, "a per-neuron v_reset")
    return nodes.LIF(_norse_steps(m, p.tau_mem_inv), _value(p.v_th), v_reset, "soft" if soft else "hard", True,
                     "difference")


def _register_norse() -> List[type]:
    from norse.torch.module.lif import LIF, LIFCell
    from norse.torch.module.lif_box import LIFBoxCell

    global _NORSE_CELLS
    _NORSE_CELLS = (LIFCell,)
    for cls in (LIF, LIFCell):
        register_declaration(cls, _norse_lif)
    register_declaration(LIFBoxCell, _norse_lif_box)
    return [LIF, LIFCell, LIFBoxCell]


# -------------------------------------------------------------------------------------------------- spikingjelly
def _spikingjelly_node(tau_of: Callable[[nn.Module], Any], decay_input_of: Callable[[nn.Module], bool]
                       ) -> Callable[[nn.Module], nodes.Node]:
    def declare(m: nn.Module) -> nodes.Node:
        m.temporal = getattr(m, "step_mode", "s") == "m"  # multi-step nodes take [T, B, ...]
        v_reset = getattr(m, "v_reset", 0.0)
        soft = v_reset is None
        return nodes.LIF(tau_of(m), _value(m.v_threshold), 0.0 if soft else float(v_reset),
                         "soft" if soft else "hard", decay_input_of(m), "difference")

    return declare


def _register_spikingjelly() -> List[type]:
    from spikingjelly.activation_based.neuron import IFNode, LIFNode, ParametricLIFNode

    register_declaration(LIFNode, _spikingjelly_node(lambda m: _value(m.tau), lambda m: bool(m.decay_input)))
    register_declaration(IFNode, _spikingjelly_node(lambda m: math.inf, lambda m: False))
    register_declaration(ParametricLIFNode, _spikingjelly_node(lambda m: _value(1.0 / m.w.detach().sigmoid()),
                                                               lambda m: bool(m.decay_input)))
    return [LIFNode, IFNode, ParametricLIFNode]


PEERS: Tuple[Tuple[str, Callable[[], List[type]]], ...] = (
    ("snntorch", _register_snntorch), ("norse", _register_norse), ("spikingjelly", _register_spikingjelly))


def register_imported() -> List[str]:
    """Register the declarations of every peer library that is imported now and was not registered yet; returns
    the names of the peers registered by this call. Never imports a peer that the program has not imported."""
    done = []
    for name, register in PEERS:
        if name in sys.modules and not _DONE.get(name):
            _DONE[name] = True
            register()
            done.append(name)
    return done
