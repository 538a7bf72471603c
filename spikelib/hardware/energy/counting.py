"""Count operations during a real evaluation pass: :class:`EnergyCounter` (a context manager) and :func:`measure`.

::

    with EnergyCounter(model) as counter:
        model(x)                      # any number of forward passes
    counts = counter.counts(samples=x.shape[1])

On entry the model is checked: every layer must declare what it computes (:func:`spikelib.graph.declared_layers`;
containers without tensors of their own are walked into) and its node type must have a counter (:mod:`.counters`) or
move data only; otherwise :class:`~spikelib.graph.UndeclaredLayerError` or
:class:`~spikelib.hardware.energy.counters.UnsupportedLayerError` names it before anything runs. Forward hooks then
add exact counts per layer (:mod:`.stats`); they are removed on exit, also on errors.

Cost: a layer fed by a neuron layer (directly, through a view, or through a layer that hands spikes on unchanged,
such as SNN-delays' zero time padding, :class:`~spikelib.graph.nodes.TimePad`) reuses that neuron layer's spike count, remembered
for the pass under a weak reference; other inputs are tested once (one to three reductions). A neuron layer's
output is summed once; a convolution whose every input position reaches the same number of taps (1x1, stride =
kernel) needs no further pass, other convolutions one product with the fan-out map. On top comes a fixed cost per
counted layer and call (the hook, a few microseconds), so the relative overhead is largest for networks of many
tiny layers (see benchmarks/bench_energy.py and benchmarks/RESULTS.md).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from spikelib.graph import UndeclaredLayerError, declare, declared_layers
from spikelib.graph import nodes as N
from spikelib.hardware.energy.counters import (FREE_NODES, Counter, UnsupportedLayerError, find_counter,
                                               keeps_spikes, pass_on_spike_stats)
from spikelib.hardware.energy.stats import LayerCounts, NetworkCounts

logger = logging.getLogger(__name__)

__all__ = ["EnergyCounter", "measure", "plan_layers"]


def plan_layers(model: nn.Module) -> List[Tuple[str, nn.Module, N.Node, Optional[Counter]]]:
    """``(name, module, node, counter)`` for every declared layer of ``model`` (``counter`` None for layers that only
    move data); raises for an undeclared layer or a node type without a counter, naming every such layer."""
    plan = []
    unsupported = []
    try:
        layers = declared_layers(model)
    except UndeclaredLayerError as exc:
        raise UnsupportedLayerError(f"{exc} Energy counting needs every layer declared.") from exc
    for name, module, node in layers:
        counter = find_counter(node)
        if counter is None and not isinstance(node, FREE_NODES):
            unsupported.append(f"'{name or '<model>'}' ({type(module).__qualname__}: {node.kind})")
        plan.append((name, module, node, counter))
    if unsupported:
        raise UnsupportedLayerError(
            "no energy counter for layer(s) " + ", ".join(unsupported) + ": their operations would be missing from "
            "the estimate. Register one for the node type with spikelib.hardware.energy.register_counter.")
    return plan


class EnergyCounter:
    """Forward hooks that count operations per layer while the model runs (see the module docstring).

    Args:
        model: the network (evaluated as it is; call ``model.eval()`` first for an evaluation pass).
        raster_neurons: keep the spikes of the first sample of the first call of each neuron layer, for at most this
            many neurons (0: no raster).
    """

    def __init__(self, model: nn.Module, *, raster_neurons: int = 256) -> None:
        if isinstance(raster_neurons, bool) or not isinstance(raster_neurons, int) or raster_neurons < 0:
            raise ValueError(f"raster_neurons must be an int >= 0, got {raster_neurons!r}")
        self.model = model
        self.raster_neurons = raster_neurons
        self._plan = plan_layers(model)
        self._handles: List[Any] = []
        self._layers: Dict[str, LayerCounts] = {}
        self._order: List[str] = []
        self._samples = 0
        self._memo: Dict[Any, Any] = {}  # spike statistics of neuron outputs within one forward pass

    # ------------------------------------------------------------------------------------------------ hooks
    def _hook(self, name: str, node: N.Node, counter: Counter, ctx: Dict[str, Any]) -> Callable:
        # Kept lean: it runs once per counted layer and call, so its fixed cost is the overhead of tiny layers.
        layers = self._layers
        kind, fn, fresh = counter.kind(node), counter.fn, counter.fresh

        def hook(module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
            counts = layers.get(name)
            if counts is None:
                counts = layers[name] = LayerCounts(name=name, kind=kind)
                self._order.append(name)
            if torch.is_grad_enabled():
                with torch.no_grad():
                    fn(module, declare(module) if fresh else node, args, output, counts, ctx)
            else:
                fn(module, declare(module) if fresh else node, args, output, counts, ctx)

        return hook

    def __enter__(self) -> "EnergyCounter":
        if self._handles:
            raise RuntimeError("this EnergyCounter is already active")
        try:
            self._handles.append(self.model.register_forward_pre_hook(lambda module, args: self._memo.clear()))
            ctx: Dict[str, Any] = {"_raster_neurons": self.raster_neurons, "_memo": self._memo}
            memo = self._memo
            for name, module, node, counter in self._plan:
                if counter is not None:
                    self._handles.append(module.register_forward_hook(self._hook(name, node, counter, ctx)))
                elif keeps_spikes(node):
                    self._handles.append(module.register_forward_hook(
                        lambda module, args, output: pass_on_spike_stats(args, output, memo)))
        except Exception:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._memo.clear()

    def __exit__(self, *exc: Any) -> None:
        self._remove()

    # ----------------------------------------------------------------------------------------------- results
    def add_samples(self, n: int) -> None:
        """Record that ``n`` more samples were evaluated (used for the energy per sample)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        self._samples += n

    def counts(self, samples: Optional[int] = None) -> NetworkCounts:
        """The counts so far, layers in the order they first ran; ``samples`` overrides :meth:`add_samples`."""
        n = self._samples if samples is None else samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"samples must be an int >= 0, got {samples!r}")
        return NetworkCounts([self._layers[k] for k in self._order], n)


def measure(model: nn.Module, batches: Iterable[Any], *, max_batches: Optional[int] = None,
            prepare: Optional[Callable[[Any], Tuple[torch.Tensor, int]]] = None,
            raster_neurons: int = 256) -> NetworkCounts:
    """Run an evaluation pass (``model.eval()``, no gradients) over ``batches`` and return the counts.

    Args:
        model: the network.
        batches: an iterable of inputs, or of ``(input, label)`` pairs; inputs go to the model as they are.
        max_batches: stop after this many batches (None: all).
        prepare: ``batch -> (model input, number of samples)`` (default: the first element of a tuple/list batch,
            or the batch itself; samples = its dim 1 for 3-d ``[T, B, C]`` inputs, else dim 0).
        raster_neurons: see :class:`EnergyCounter`.
    """
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be an int >= 1 or None, got {max_batches!r}")

    def default_prepare(batch: Any) -> Tuple[torch.Tensor, int]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"a batch must be a tensor or a (tensor, label) pair, got {type(x).__name__}")
        return x, int(x.shape[1] if x.dim() == 3 else x.shape[0])

    prep = prepare or default_prepare
    was_training = model.training
    model.eval()
    try:
        with EnergyCounter(model, raster_neurons=raster_neurons) as counter, torch.no_grad():
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x, n = prep(batch)
                model(x)
                counter.add_samples(n)
    finally:
        model.train(was_training)
    counts = counter.counts()
    if counts.samples == 0:
        raise ValueError("no batch was evaluated: batches is empty")
    return counts
