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
from spikelib.hardware.energy import neuron_counters  # noqa: F401  (registers the neuron counters)
from spikelib.hardware.energy.layout import batch_input, loader_item_layout, loader_time_first, sample_rank
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


_SIMPLE = (str, int, float, bool, type(None))


def _state_key(module: nn.Module) -> Tuple[Any, ...]:
    """What a layer's declaration depends on: its own tensors (identity, storage and in-place version: any update
    changes the key) and its plain attributes (e.g. a delay layer's mode)."""
    tensors = tuple((id(t), t.data_ptr(), t._version) for t in
                    (*module.parameters(recurse=False), *module.buffers(recurse=False)))
    return tensors, tuple((k, v) for k, v in vars(module).items() if isinstance(v, _SIMPLE))


class EnergyCounter:
    """Forward hooks that count operations per layer while the model runs (see the module docstring).

    Args:
        model: the network (evaluated as it is; call ``model.eval()`` first for an evaluation pass).
        raster_neurons: keep the spikes of the first sample of the first call of each neuron layer, for at most this
            many neurons (0: no raster).
        neurobench: also count NeuroBench's membrane updates of LIF layers (:mod:`.membrane`; a loop over the time
            steps of every LIF call, so off by default). NeuroBench's synaptic operations and activation sparsity are
            always counted (they cost nothing extra for spike inputs and unpruned weights).
        nonzero_weights: spikelib's own counts (SOPs, MACs, weight reads, the ANN baseline's dense MACs) skip
            synapses whose weight is zero (pruned networks), for ``Linear`` and ``Conv`` layers.
        skip_zero_inputs: spikelib's MACs of real-valued inputs skip zero inputs (``Linear`` and ``Conv`` layers).
    """

    def __init__(self, model: nn.Module, *, raster_neurons: int = 256, neurobench: bool = False,
                 nonzero_weights: bool = False, skip_zero_inputs: bool = False) -> None:
        if isinstance(raster_neurons, bool) or not isinstance(raster_neurons, int) or raster_neurons < 0:
            raise ValueError(f"raster_neurons must be an int >= 0, got {raster_neurons!r}")
        for key, value in (("neurobench", neurobench), ("nonzero_weights", nonzero_weights),
                           ("skip_zero_inputs", skip_zero_inputs)):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be True or False, got {value!r}")
        self.model = model
        self.raster_neurons = raster_neurons
        self.options = {"neurobench": neurobench, "nonzero_weights": nonzero_weights,
                        "skip_zero_inputs": skip_zero_inputs}
        self._plan = plan_layers(model)
        self._handles: List[Any] = []
        self._layers: Dict[str, LayerCounts] = {}
        self._order: List[str] = []
        self._samples = 0
        self._batches: List[Tuple[int, int, int]] = []
        self._seen = (0, 0)  # (nonzero, elements) of neuron outputs when the last batch was recorded
        self._memo: Dict[Any, Any] = {}  # spike statistics of neuron outputs within one forward pass
        self._membranes: Dict[str, Any] = {}  # per-step LIF layers' membranes within one forward pass

    # ------------------------------------------------------------------------------------------------ hooks
    def _hook(self, name: str, node: N.Node, counter: Counter, ctx: Dict[str, Any]) -> Callable:
        # Kept lean: it runs once per counted layer and call, so its fixed cost is the overhead of tiny layers.
        layers = self._layers
        kind, fn, fresh = counter.kind(node), counter.fn, counter.fresh
        declared: Dict[str, Any] = {"key": None, "node": node}

        def current(module: nn.Module) -> N.Node:
            """A ``fresh`` node is declared again only when the module's state changed since the last call."""
            key = _state_key(module)
            if key != declared["key"]:
                declared["key"], declared["node"] = key, declare(module)
            return declared["node"]

        def hook(module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
            counts = layers.get(name)
            if counts is None:
                counts = layers[name] = LayerCounts(name=name, kind=kind)
                self._order.append(name)
            if torch.is_grad_enabled():
                with torch.no_grad():
                    fn(module, current(module) if fresh else node, args, output, counts, ctx)
            else:
                fn(module, current(module) if fresh else node, args, output, counts, ctx)

        return hook

    def __enter__(self) -> "EnergyCounter":
        if self._handles:
            raise RuntimeError("this EnergyCounter is already active")
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._new_pass))
            ctx: Dict[str, Any] = {"_raster_neurons": self.raster_neurons, "_memo": self._memo,
                                   "_membranes": self._membranes, "_neurobench": self.options["neurobench"],
                                   "_nonzero_weights": self.options["nonzero_weights"],
                                   "_skip_zero_inputs": self.options["skip_zero_inputs"]}
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

    def _new_pass(self, module: nn.Module, args: Any) -> None:
        self._memo.clear()
        self._membranes.clear()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._memo.clear()
        self._membranes.clear()

    def __exit__(self, *exc: Any) -> None:
        self._remove()

    # ----------------------------------------------------------------------------------------------- results
    def add_samples(self, n: int) -> None:
        """Record that the batch evaluated since the last call held ``n`` samples (used for every per-sample figure
        and for NeuroBench's batch-weighted activation sparsity)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        self._samples += n
        nonzero = sum(c.out_nonzero for c in self._layers.values())
        elements = sum(c.out_elements for c in self._layers.values())
        self._batches.append((nonzero - self._seen[0], elements - self._seen[1], n))
        self._seen = (nonzero, elements)

    def counts(self, samples: Optional[int] = None, static_input: bool = False) -> NetworkCounts:
        """The counts so far, layers in the order they first ran; ``samples`` overrides :meth:`add_samples`."""
        n = self._samples if samples is None else samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"samples must be an int >= 0, got {samples!r}")
        return NetworkCounts([self._layers[k] for k in self._order], n, static_input, list(self._batches),
                             dict(self.options))


def measure(model: nn.Module, batches: Iterable[Any], *, time_first: Optional[bool] = None,
            max_batches: Optional[int] = None, prepare: Optional[Callable[[Any], Tuple[Any, int]]] = None,
            raster_neurons: int = 256, neurobench: bool = False, nonzero_weights: bool = False,
            skip_zero_inputs: bool = False) -> NetworkCounts:
    """Run an evaluation pass (``model.eval()``, no gradients) over ``batches`` and return the counts.

    The layout contract (:mod:`.layout`): model inputs are time first ``[T, B, ...]`` and the samples of a batch are
    its batch dimension. A static batch ``[B, *sample]`` (one dimension fewer, judged from the model's first
    synaptic layer) is passed as it is; batch-first sequences ``[B, T, ...]`` are declared (``time_first=False``, or
    by the loader: a ``DataLoader`` with torch's default collate, or a collate/dataset that states its layout) and
    transposed for the model; where nothing settles it a ``ValueError`` says how to declare it.

    State is not reset between batches: a model whose neurons keep state across calls (spikingjelly nodes, snnTorch
    ``init_hidden``, stateful spikelib modules) should start from rest in its ``forward`` as it does when evaluated.

    Args:
        model: the network.
        batches: an iterable of inputs, or of ``(input, label, ...)`` tuples.
        time_first: True: inputs are ``[T, B, ...]``; False: batch first ``[B, ...]``; None: the loader's
            declaration, else the contract above.
        max_batches: stop after this many batches (None: all).
        prepare: ``batch -> (model input, number of samples)``, replacing the layout contract.
        raster_neurons, neurobench, nonzero_weights, skip_zero_inputs: see :class:`EnergyCounter`.
    """
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be an int >= 1 or None, got {max_batches!r}")
    if time_first is not None and not isinstance(time_first, bool):
        raise ValueError(f"time_first must be True, False or None, got {time_first!r}")
    static = [True]
    if prepare is None:
        declared = loader_time_first(batches) if time_first is None else time_first
        item_layout = loader_item_layout(batches) if declared is False else None
        rank = sample_rank(model)

        def prep(batch: Any) -> Tuple[Any, int]:
            x, n, is_static = batch_input(batch, declared, rank, item_layout)
            static[0] = static[0] and is_static
            return x, n
    else:
        static[0] = False
        prep = prepare
    was_training = model.training
    model.eval()
    try:
        with EnergyCounter(model, raster_neurons=raster_neurons, neurobench=neurobench,
                           nonzero_weights=nonzero_weights, skip_zero_inputs=skip_zero_inputs) as counter, \
                torch.no_grad():
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x, n = prep(batch)
                model(x)
                counter.add_samples(n)
    finally:
        model.train(was_training)
    counts = counter.counts(static_input=static[0])
    if counts.samples == 0:
        raise ValueError("no batch was evaluated: batches is empty")
    return counts
