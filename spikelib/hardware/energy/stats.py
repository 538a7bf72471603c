"""Per-layer operation counts of one or more evaluation passes (:class:`LayerCounts`, :class:`NetworkCounts`).

Every field is an exact integer count summed over all calls of the layer (all time steps and samples):

``in_elements`` / ``in_spikes``
    input values seen and, for a spike input, its spikes (nonzero entries; the sum for integer spike counts).
``sops``
    synaptic operations: one accumulate per (input spike, synapse it reaches) pair.
``macs``
    multiply-accumulates of inputs that are not binary (real-valued: an encoding layer, a layer after a
    real-valued convolution, an MLP inside a neuron), one per (input value, synapse) pair.
``dense_macs``
    the multiply-accumulates of the same layer with real-valued activations (the ANN baseline), i.e. one per
    (input value, synapse) pair whatever the input: ``sops`` at firing rate 1 equals ``dense_macs``.
``norm_macs``
    BatchNorm ``a x + b`` per element (foldable into the preceding synapses at inference).
``adds``
    other additions/comparisons: bias additions, pooling windows, branch sums.
``neuron_updates``
    state updates (one per neuron or trace per time step: decay, charge, threshold).
``out_elements`` / ``out_spikes``
    outputs of neuron layers and their nonzero entries (firing rate ``out_spikes / out_elements``, i.e. spikes
    divided by neurons x T x B).
``weight_reads`` / ``state_reads`` / ``state_writes``
    memory accesses without reuse: one weight read per ``sop``/``mac``, one read and one write of the state per
    neuron update.
``out_nonzero``
    nonzero outputs of neuron layers (NeuroBench's activation count; ``out_spikes`` counts an integer spike ``v``
    as ``v`` spikes).
``nb_acs`` / ``nb_macs`` / ``nb_dense``
    NeuroBench's ``SynapticOperations`` of ``Linear``/``Conv`` layers (:mod:`.weighted`): (nonzero input, nonzero
    weight) pairs of calls whose inputs are all in {-1, 0, 1} (ACs) or not (MACs), and every pair (``Dense``).
``nb_membrane_updates``
    NeuroBench's ``MembraneUpdates`` rule for LIF layers (:mod:`.membrane`), counted when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["LayerCounts", "NetworkCounts", "COUNT_FIELDS"]

COUNT_FIELDS = ("calls", "in_elements", "in_spikes", "sops", "macs", "dense_macs", "norm_macs", "adds",
                "neuron_updates", "out_elements", "out_spikes", "weight_reads", "state_reads", "state_writes",
                "out_nonzero", "nb_acs", "nb_macs", "nb_dense", "nb_membrane_updates")


@dataclass
class LayerCounts:
    """Exact counts of one layer (see the module docstring for the fields)."""

    name: str
    kind: str
    calls: int = 0
    in_elements: int = 0
    in_spikes: int = 0
    binary_calls: int = 0
    sops: int = 0
    macs: int = 0
    dense_macs: int = 0
    norm_macs: int = 0
    adds: int = 0
    neuron_updates: int = 0
    out_elements: int = 0
    out_spikes: int = 0
    weight_reads: int = 0
    state_reads: int = 0
    state_writes: int = 0
    out_nonzero: int = 0
    nb_acs: int = 0
    nb_macs: int = 0
    nb_dense: int = 0
    nb_membrane_updates: int = 0
    neuron: str = ""  # the declared neuron (node kind and reset) of a neuron layer, for NeuroBench's cost table
    raster: Optional[Any] = field(default=None, repr=False)  # bool tensor [T, neurons] of one sample

    @property
    def input_rate(self) -> Optional[float]:
        """Fraction of nonzero inputs (the input firing rate), None when no input was seen."""
        return self.in_spikes / self.in_elements if self.in_elements else None

    @property
    def firing_rate(self) -> Optional[float]:
        """Output spikes / (neurons x T x B) of a neuron layer, None for other layers."""
        return self.out_spikes / self.out_elements if self.out_elements else None

    @property
    def spike_input(self) -> bool:
        """Whether every call saw a binary (spike) input."""
        return self.calls > 0 and self.binary_calls == self.calls

    def add(self, **counts: int) -> None:
        """Add integer counts to the named fields."""
        for key, value in counts.items():
            setattr(self, key, getattr(self, key) + int(value))

    def to_dict(self) -> Dict[str, Any]:
        d = {k: getattr(self, k) for k in ("name", "kind") + COUNT_FIELDS}
        d["binary_calls"] = self.binary_calls
        d["neuron"] = self.neuron
        d["input_rate"] = self.input_rate
        d["firing_rate"] = self.firing_rate
        return d


@dataclass
class NetworkCounts:
    """The counts of every counted layer, in the order the layers first ran, and the number of samples."""

    layers: List[LayerCounts]
    samples: int = 0
    static_input: bool = False  # the batches had no time dimension (static images repeated by the model)
    batches: List[Tuple[int, int, int]] = field(default_factory=list)  # per batch: (nonzero, neuron outputs, samples)
    options: Dict[str, bool] = field(default_factory=dict)  # counting options (nonzero_weights, ...)

    def total(self, name: str) -> int:
        """Sum of one count field over all layers."""
        if name not in COUNT_FIELDS:
            raise KeyError(f"unknown count field {name!r}; known: {', '.join(COUNT_FIELDS)}")
        return sum(getattr(layer, name) for layer in self.layers)

    def layer(self, name: str) -> LayerCounts:
        """The counts of the layer registered under ``name`` (its qualified module name)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no counted layer named {name!r}; counted: {', '.join(x.name for x in self.layers)}")

    def per_sample(self, name: str) -> Optional[float]:
        """One count field summed over all layers, divided by the number of samples (None without samples)."""
        return self.total(name) / self.samples if self.samples else None

    def silent_layers(self) -> List[str]:
        """Neuron layers that emitted no spike in the whole pass."""
        return [c.name for c in self.layers if c.out_elements and c.out_spikes == 0]

    def to_dict(self) -> Dict[str, Any]:
        return {"samples": self.samples, "static_input": self.static_input, "options": dict(self.options),
                "layers": [layer.to_dict() for layer in self.layers],
                "totals": {k: self.total(k) for k in COUNT_FIELDS}}
