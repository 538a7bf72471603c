"""Energy from counted operations: two accounting methods and the equivalent-ANN baseline.

With the counts of :mod:`.stats` summed per layer and the energies ``E_role`` of a model profile (:mod:`.models`):

``method="common"`` (the spiking-transformer papers: Spikformer, Spike-driven Transformer v1/v2; REFERENCES.md)::

    E = E_ac * SOP + E_mac * MAC    (+ E_mac * BN when ``fold_batchnorm=False``)

  where ``MAC`` are the counted multiply-accumulates of real-valued inputs (the encoding layer, and any other layer
  whose input was not binary). Neuron updates and memory traffic are ignored, which is its known flaw.

``method="memory"`` (in the spirit of Lemaire et al., "An analytical estimation of spiking neural networks energy
efficiency", ICONIP 2022: charge memory accesses and neuron updates as well)::

    E = E_ac SOP + E_mac MAC + E_ac ADD + E_neuron_update U + E_spike S
        + E_weight_read W + E_state_read R + E_state_write Wr + E_state_read X_real   [unless includes_memory]

  ``U`` neuron updates, ``S`` output spikes, ``W`` weight reads (one per SOP/MAC, no reuse), ``R``/``Wr`` state reads
  and writes (one each per neuron update), ``X_real`` the real-valued input values read by MAC layers (a spike is an
  address, not a value read). A profile with ``includes_memory`` (Loihi: its per-operation figures include their
  memory accesses) adds no separate memory terms.

Equivalent ANN (:func:`ann_baseline`): the same layers with real-valued activations, every synapse a MAC::

    common: E = E_mac * DENSE_MAC              memory: + E_weight_read DENSE_MAC + E_state_read X + E_ac A
                                                         + E_state_write A   (A: activations, one per neuron output)

  ``DENSE_MAC`` counts every (input value, synapse) pair of every call, so a network that repeats a static input
  over ``T`` steps would be charged ``T`` ANN passes: pass ``repeats=T`` to charge one (the ANN sees the image once).
  The baseline uses the digital arithmetic of a model with a ``mac`` energy (``horowitz45``, profiles ``fp32`` and
  ``int8``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from spikelib.hardware.energy.models import EnergyModel, EnergyModelError, load_energy_model
from spikelib.hardware.energy.stats import LayerCounts, NetworkCounts

__all__ = ["LayerEnergy", "EnergyEstimate", "estimate_energy", "ann_baseline", "METHODS"]

METHODS = ("common", "memory")
_SYNAPTIC_KINDS = ("linear", "conv1d", "conv2d", "conv3d", "delayed_linear", "elm", "sparse_conv3d")


@dataclass
class LayerEnergy:
    """Energy of one layer in pJ, split by term."""

    name: str
    kind: str
    parts: Dict[str, float]

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "total_pJ": self.total, "parts_pJ": dict(self.parts)}


@dataclass
class EnergyEstimate:
    """A whole-network estimate: per-layer energies (pJ), the method, model and profile, and the sample count."""

    label: str
    method: str
    model: str
    profile: str
    layers: List[LayerEnergy]
    samples: int
    notes: List[str] = field(default_factory=list)

    @property
    def total_pj(self) -> float:
        return float(sum(layer.total for layer in self.layers))

    @property
    def per_sample_pj(self) -> Optional[float]:
        return self.total_pj / self.samples if self.samples else None

    def part(self, name: str) -> float:
        """Sum of one term (e.g. ``"sop"``) over all layers, pJ."""
        return float(sum(layer.parts.get(name, 0.0) for layer in self.layers))

    def to_dict(self) -> Dict[str, Any]:
        parts = sorted({k for layer in self.layers for k in layer.parts})
        return {"label": self.label, "method": self.method, "model": self.model, "profile": self.profile,
                "samples": self.samples, "total_pJ": self.total_pj, "per_sample_pJ": self.per_sample_pj,
                "parts_pJ": {k: self.part(k) for k in parts}, "notes": list(self.notes),
                "layers": [layer.to_dict() for layer in self.layers]}


def _check(counts: NetworkCounts, method: str) -> None:
    if not isinstance(counts, NetworkCounts):
        raise TypeError(f"counts must be a NetworkCounts (from EnergyCounter.counts or measure), got "
                        f"{type(counts).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")


def _nonzero(parts: Dict[str, float]) -> Dict[str, float]:
    return {k: v for k, v in parts.items() if v}


def _snn_layer(c: LayerCounts, p, model: str, method: str, fold_batchnorm: bool) -> Dict[str, float]:
    macs = c.macs + (0 if fold_batchnorm else c.norm_macs)
    parts = {"sop": c.sops * p.cost("ac", model)}
    if macs:
        if not p.has("mac"):
            raise EnergyModelError(
                f"energy model {model!r} has no MAC energy, but layer '{c.name}' ({c.kind}) counted {macs} "
                "multiply-accumulates of real-valued inputs; encode the input as spikes, fold BatchNorm, or use a "
                "model with a 'mac' energy (e.g. horowitz45)")
        parts["mac"] = macs * p.cost("mac", model)
    if method == "memory":
        parts["add"] = c.adds * p.cost("ac", model)
        parts["neuron"] = c.neuron_updates * p.cost("neuron_update", model)
        if p.has("spike"):
            parts["spike"] = c.out_spikes * p.cost("spike", model)
        if not p.includes_memory:
            real_inputs = c.in_elements if (c.kind in _SYNAPTIC_KINDS and not c.spike_input) else 0
            parts["weight_read"] = c.weight_reads * p.cost("weight_read", model)
            parts["state_read"] = (c.state_reads + real_inputs) * p.cost("state_read", model)
            parts["state_write"] = c.state_writes * p.cost("state_write", model)
    return _nonzero(parts)


def estimate_energy(counts: NetworkCounts, model: Union[str, EnergyModel] = "horowitz45", *,
                    method: str = "common", profile: Optional[str] = None,
                    fold_batchnorm: bool = True) -> EnergyEstimate:
    """Energy of the measured SNN activity (see the module docstring for the two methods).

    Args:
        counts: from :class:`~spikelib.hardware.energy.counting.EnergyCounter` or :func:`measure`.
        model: a built-in model name, a model file path or a loaded :class:`EnergyModel`.
        method: ``"common"`` or ``"memory"``.
        profile: the model's profile (default: its ``default_profile``).
        fold_batchnorm: BatchNorm folded into the preceding synapses (free) or charged as MACs.
    """
    _check(counts, method)
    m = load_energy_model(model)
    p = m.profile(profile)
    layers = [LayerEnergy(c.name, c.kind, _snn_layer(c, p, m.name, method, fold_batchnorm)) for c in counts.layers]
    notes = [] if fold_batchnorm else ["BatchNorm charged as MACs (not folded)"]
    if method == "common":
        notes.append("common method: neuron updates and memory traffic are not charged")
    return EnergyEstimate(f"SNN ({m.name}/{p.name}, {method})", method, m.name, p.name, layers, counts.samples,
                          notes)


def ann_baseline(counts: NetworkCounts, model: Union[str, EnergyModel] = "horowitz45", *, profile: str = "fp32",
                 method: str = "common", fold_batchnorm: bool = True, repeats: int = 1) -> EnergyEstimate:
    """Energy of the equivalent ANN (same layers, real-valued activations) on digital arithmetic.

    Args:
        counts, model, method, fold_batchnorm: as in :func:`estimate_energy`.
        profile: ``"fp32"`` or ``"int8"`` for ``horowitz45``.
        repeats: the SNN repeated a static input this many times (its ``T``); the ANN evaluates it once, so every
            count is divided by ``repeats``.
    """
    _check(counts, method)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    m = load_energy_model(model)
    p = m.profile(profile)
    if not p.has("mac"):
        raise EnergyModelError(f"the ANN baseline needs a MAC energy; energy model {m.name!r} profile {p.name!r} "
                               "has none (use horowitz45 with profile fp32 or int8)")
    e_mac = p.cost("mac", m.name)
    layers = []
    for c in counts.layers:
        parts = {"mac": (c.dense_macs + (0 if fold_batchnorm else c.norm_macs)) * e_mac / repeats}
        if method == "memory":
            activations = c.out_elements  # one ReLU (comparison) and one activation write per neuron output
            inputs = c.in_elements if c.kind in _SYNAPTIC_KINDS else 0
            parts["add"] = (c.adds + activations) * p.cost("ac", m.name) / repeats
            if not p.includes_memory:
                parts["weight_read"] = c.dense_macs * p.cost("weight_read", m.name) / repeats
                parts["state_read"] = inputs * p.cost("state_read", m.name) / repeats
                parts["state_write"] = activations * p.cost("state_write", m.name) / repeats
        layers.append(LayerEnergy(c.name, c.kind, _nonzero(parts)))
    notes = [f"equivalent ANN, {p.name} arithmetic" + (f", static input counted once (repeats={repeats})"
                                                       if repeats > 1 else "")]
    return EnergyEstimate(f"ANN ({m.name}/{p.name}, {method})", method, m.name, p.name, layers, counts.samples,
                          notes)
