"""Threshold balancing of a converted SNN: one threshold per neuron layer from the layer's input currents on one
training batch, layer by layer (IIR-SNN ``find_threshold``, SayeedChowdhury/IIR-SNN ``snncifar_bnfused.py`` with
``VGG_SNN_STDB.forward(find_max_mem=True)`` in ``vgg_spiking_bnfused_biasyes.py``).

For the neuron layers in the order the network runs them, ``l = 1, 2, ...``: the SNN runs ``steps`` time steps on
the batch ``x`` presented at every step (direct input), with the thresholds of layers ``< l`` already set and the
layers after ``l`` not run; at every step ``t`` the input current ``I_l[t]`` of layer ``l`` (its synapse's output,
bias included: ``W s[t] + b``; for a residual block's output neuron the sum with the shortcut) gives the percentile
``p_t = kthvalue(I_l[t].flatten(), 1 + round(q (n - 1) / 100))`` over the whole batch tensor (``n`` elements; Python
rounding, as the reference), and

    V_l = max(0, max_t p_t),   0 -> 0.1,

the reference's ``max_mem`` / ``max_act`` rule (``q = 90`` by default, ``--th_percentile``; ``method="max"`` is
``q = 100``, the largest current). After every layer is set, all thresholds are multiplied by ``scale`` (the
reference's ``scaling_factor``, 1 by default). The reference calibrates over 500 steps for VGG (2,000 for ResNet,
``snn_resnet.py``) with batch 512 drawn from the augmented training set. Its ResNet code balances only the three
pre-processing convolutions and leaves the residual blocks at ``default_threshold``; here every neuron layer is
balanced by the same rule.

``normalize_bias=True`` (not in the reference; chains only, no residual additions) also divides the bias of every
synapse by ``lambda`` of the neuron layer it reads, ``lambda_l = lambda_{l-1} V_l`` (``lambda = 1`` for the input):
with spike rates ``r_l = relu(a_l) / lambda_l`` the current of the next layer is then ``(W a_l + b) / lambda_l``,
proportional to the ANN's pre-activation, so the converted network approaches the ANN as ``T`` grows (the
reference's rule leaves the biases as they are, which the retraining corrects; Rueckauer et al., Front. Neurosci.
2017, normalise the same way). The output logits come out divided by ``lambda`` of the last neuron layer.

The steps run in chunks of ``chunk`` steps with the neurons' states carried over (memory stays bounded for any
``steps``); the result does not depend on the chunk size. Dropout is off (eval mode), as in the reference.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from spikelib.graph import declared_layers
from spikelib.graph import nodes as N
from spikelib.neurons import reset
from spikelib.neurons.base import StatefulModule

__all__ = ["balance_thresholds", "reference_percentile", "neuron_layers", "neuron_thresholds", "set_threshold"]


class _Stop(Exception):
    """Raised by the measuring hook: the layers after the measured one need not run."""


def reference_percentile(t: torch.Tensor, q: float) -> float:
    """The reference's ``percentile(t, q)``: the ``k``-th smallest element, ``k = 1 + round(0.01 q (n - 1))``
    (``torch.kthvalue``; on the CPU the same value by ``numpy.partition``, which is much faster)."""
    flat = t.detach().reshape(-1)
    k = 1 + round(0.01 * float(q) * (flat.numel() - 1))
    if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64):
        return float(np.partition(flat.numpy(), k - 1)[k - 1])
    return float(flat.kthvalue(k).values)


def neuron_layers(snn: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of every spiking neuron layer (declaring a LIF node) in registration order."""
    return [(name, m) for name, m, node in declared_layers(snn) if isinstance(node, N.LIF)]


def set_threshold(module: nn.Module, value: float) -> None:
    """Set every threshold of a neuron layer to ``value`` (a parameter or buffer is filled in place)."""
    vth = getattr(module, "v_threshold", None)
    if isinstance(vth, torch.Tensor):
        with torch.no_grad():
            vth.fill_(float(value))
    elif isinstance(vth, numbers.Real):
        module.v_threshold = float(value)
    else:
        raise TypeError(f"{type(module).__name__} has no v_threshold to set")


def neuron_thresholds(snn: nn.Module) -> "OrderedDict[str, float]":
    """Threshold of every neuron layer (the mean for per-neuron thresholds)."""
    out: "OrderedDict[str, float]" = OrderedDict()
    for name, m in neuron_layers(snn):
        v = m.v_threshold
        out[name] = float(v.detach().double().mean()) if isinstance(v, torch.Tensor) else float(v)
    return out


def _chain_links(snn: nn.Module) -> Tuple[Dict[nn.Module, Tuple[nn.Module, Optional[nn.Module]]], list]:
    """For a chain: ``{neuron: (its synapse, the neuron that synapse reads or None)}`` and ``[(synapse, source)]``
    of the synapses after the last neuron (the output)."""
    links: Dict[nn.Module, Tuple[nn.Module, Optional[nn.Module]]] = {}
    pending: list = []
    source: Optional[nn.Module] = None
    for name, m, node in declared_layers(snn):
        if isinstance(node, N.Add):
            raise ValueError(f"normalize_bias handles chains of layers; {name!r} is a residual addition")
        if isinstance(node, N.SYNAPSE_NODES):
            pending.append((m, source))
        elif isinstance(node, N.LIF):
            if len(pending) != 1:
                raise ValueError(f"normalize_bias: neuron layer {name!r} must read exactly one synapse, found "
                                 f"{len(pending)}")
            links[m] = pending[0]
            pending, source = [], m
    return links, pending


def _set_biases(links, outputs, lam: Dict[nn.Module, float], original: Dict[nn.Module, torch.Tensor]) -> None:
    for syn, src in list(links.values()) + list(outputs):
        if syn in original:
            with torch.no_grad():
                syn.bias.copy_(original[syn] / (1.0 if src is None else lam[src]))


def _run_order(snn: nn.Module, x: torch.Tensor) -> Tuple[List[Tuple[str, nn.Module]], int]:
    """Neuron layers in the order of one 1-step pass, and the bytes of their inputs per step."""
    layers = neuron_layers(snn)
    if not layers:
        raise ValueError("the network has no spiking neuron layer (LIF) to balance")
    order: List[Tuple[str, nn.Module]] = []
    sizes: List[int] = []
    hooks = []
    for name, m in layers:
        def hook(mod, args, name=name):
            if all(mod is not o for _, o in order):
                order.append((name, mod))
                sizes.append(args[0][0].numel() * args[0].element_size())
        hooks.append(m.register_forward_pre_hook(hook))
    try:
        reset(snn)
        snn(x.unsqueeze(0))
    finally:
        for h in hooks:
            h.remove()
        reset(snn)
    missing = [name for name, m in layers if all(m is not o for _, o in order)]
    if missing:
        raise ValueError(f"neuron layer(s) {missing} did not run on the calibration batch")
    return order, sum(sizes)


@torch.no_grad()
def balance_thresholds(snn: nn.Module, x: torch.Tensor, *, percentile: float = 90.0, method: str = "percentile",
                       steps: int = 500, scale: float = 1.0, chunk: Optional[int] = None,
                       max_bytes: int = 1 << 29, normalize_bias: bool = False) -> "OrderedDict[str, float]":
    """Set the threshold of every neuron layer of ``snn`` by the rule of the module docstring; returns them by name.

    Args:
        snn: a spiking network taking time-first input ``[T, B, ...]`` (e.g. from :func:`convert_structure`).
        x: the calibration batch ``[B, ...]`` (one training batch; the reference uses 512 samples), presented at
            every step.
        percentile: ``q`` in ``(0, 100]``.
        method: ``"percentile"`` or ``"max"`` (``q = 100``).
        steps: time steps simulated per layer (the reference: 500 for VGG).
        scale: factor applied to every threshold at the end.
        chunk: steps per forward pass (None: as many as fit in ``max_bytes`` of neuron inputs, at most ``steps``).
        normalize_bias: divide every bias by the scale of the spikes it is added to (module docstring; chains only).
    """
    if method not in ("percentile", "max"):
        raise ValueError(f"method must be 'percentile' or 'max', got {method!r}")
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0 < percentile <= 100:
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile!r}")
    for name, v in (("steps", steps), ("max_bytes", max_bytes)) + ((("chunk", chunk),) if chunk is not None else ()):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a floating-point batch [B, ...], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(normalize_bias, bool):
        raise TypeError(f"normalize_bias must be a bool, got {type(normalize_bias).__name__}")
    q = 100.0 if method == "max" else float(percentile)
    links, outputs = _chain_links(snn) if normalize_bias else ({}, [])
    original = {syn: syn.bias.detach().clone() for syn, _ in list(links.values()) + outputs
                if getattr(syn, "bias", None) is not None}
    lam: Dict[nn.Module, float] = {}
    was_training = snn.training
    stateful = {m: m.stateful for m in snn.modules() if isinstance(m, StatefulModule)}
    snn.eval()
    try:
        order, per_step = _run_order(snn, x)
        if chunk is None:
            chunk = max(1, min(int(steps), int(max_bytes) // max(4 * per_step, 1)))
        for m in stateful:
            m.stateful = True
        found: "OrderedDict[str, float]" = OrderedDict()
        for name, module in order:
            best = [0.0]

            def measure(mod, args, best=best):
                current = args[0]
                for t in range(current.shape[0]):
                    p = reference_percentile(current[t], q)
                    if p > best[0]:
                        best[0] = p
                raise _Stop

            if normalize_bias:
                _set_biases({module: links[module]}, [], lam, original)
            handle = module.register_forward_pre_hook(measure)
            try:
                reset(snn)
                done = 0
                while done < steps:
                    n = min(int(chunk), int(steps) - done)
                    try:
                        snn(x.unsqueeze(0).expand((n,) + tuple(x.shape)))
                    except _Stop:
                        pass
                    done += n
            finally:
                handle.remove()
            found[name] = best[0] if best[0] != 0.0 else 0.1
            set_threshold(module, found[name])
            if normalize_bias:
                src = links[module][1]
                lam[module] = (1.0 if src is None else lam[src]) * found[name]
        if scale != 1.0:
            for name, module in order:
                found[name] *= float(scale)
                set_threshold(module, found[name])
                if normalize_bias:
                    src = links[module][1]
                    lam[module] = (1.0 if src is None else lam[src]) * found[name]
        if normalize_bias:
            _set_biases(links, outputs, lam, original)
        return found
    finally:
        for m, flag in stateful.items():
            m.stateful = flag
        reset(snn)
        snn.train(was_training)
