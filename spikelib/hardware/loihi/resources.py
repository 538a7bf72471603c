"""Loihi 2 resource estimate of a :class:`~spikelib.hardware.loihi.network.LoihiNetwork`: neurons, synapses, memory
and neuro cores per layer.

Published limits used (``LOIHI2``), and how far they were verified here:

``cores_per_chip = 128``
    Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2" (technology brief, 2021); restated by
    open-neuromorphic.org (hardware/loihi-2-intel): "128 fully asynchronous neuron cores". Verified (two sources).
``neurons_per_chip = 1,000,000`` and ``synapses_per_chip = 120,000,000``
    Same brief: "up to 1 million neurons and 120 million synapses" per chip. Verified (two sources).
``neurons_per_core = 8192``
    NOT verified from a primary source: 1M neurons / 128 cores, i.e. 2^20 / 2^7; secondary summaries say "up to ~8,000
    per core". Treat it as an estimate.
``memory_per_core_bytes = 128 KiB``
    NOT verified from Intel's own datasheet: reported for the Loihi 2 launch ("128 Kbyte of local SRAM ... for each
    core ... flexibly partitioned") by a secondary news source. Treat it as an estimate.

Memory model per layer (a dense synaptic encoding without compression or index bits, a simplification of the real
flexible partitioning): synapses ``out * in`` (netx dense layers store every entry; zero weights are counted
separately); ``8`` weight bits per synapse plus ``6`` delay bits when the layer has delays (netx delays ``0..62``);
neuron state ``u`` and ``v`` at 24 bits each (lava-nc/lava ``src/lava/proc/lif/models.py``: ``precision=24``); with
delays, a dendritic accumulator ring of ``max_delay + 1`` entries of 16 bits per neuron (lava-nc/lava
``src/lava/proc/dense/models.py``, ``PyDelayDenseModelBitAcc.a_buff``: ``(out, max_delay + 1)``, ``precision=16``).
Cores per layer ``= max(ceil(neurons / neurons_per_core), ceil(memory / memory_per_core))``; layers do not share cores.
A conv layer counts ``out x C_in / groups x kh x kw`` synapses (connections) but stores its kernel once. A recurrent
layer (netx ``dense_rec``) adds its ``out x out`` recurrent synapses. Input neurons (netx's input layer with a neuron
group) count as a layer of neurons without synapses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from spikelib.hardware.loihi.network import LoihiNetwork

__all__ = ["LOIHI2", "ResourceReport", "estimate_resources"]

LOIHI2: Dict[str, Any] = {
    "cores_per_chip": 128,
    "neurons_per_chip": 1_000_000,
    "synapses_per_chip": 120_000_000,
    "neurons_per_core": 8192,
    "memory_per_core_bytes": 128 * 1024,
    "verified": {"cores_per_chip": True, "neurons_per_chip": True, "synapses_per_chip": True,
                 "neurons_per_core": False, "memory_per_core_bytes": False},
    "source": "Intel Labs Loihi 2 technology brief (2021); open-neuromorphic.org hardware/loihi-2-intel",
}

_WEIGHT_BITS, _DELAY_BITS, _STATE_BITS, _ACC_BITS = 8, 6, 2 * 24, 16


@dataclass
class ResourceReport:
    """Per-layer and total resources; ``fits_one_chip`` compares the totals with the chip limits."""

    layers: List[Dict[str, Any]] = field(default_factory=list)
    total: Dict[str, Any] = field(default_factory=dict)
    limits: Dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{r['name']}: {r['neurons']} neurons, {r['synapses']} synapses ({r['nonzero_synapses']} nonzero), "
                 f"{r['memory_bytes'] / 1024:.1f} KiB -> {r['cores']} core(s) (bound by {r['bound_by']})"
                 for r in self.layers]
        t = self.total
        lines.append(f"total: {t['neurons']} neurons, {t['synapses']} synapses, {t['memory_bytes'] / 1024:.1f} KiB, "
                     f"{t['cores']} core(s), {t['chips']} chip(s); fits one chip: {t['fits_one_chip']} "
                     f"(per-core limits are estimates, see spikelib.hardware.loihi.resources)")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {"layers": self.layers, "total": self.total, "limits": self.limits}


def _row(name: str, n: int, syn: int, stored: int, nonzero: int, has_delay: bool, max_delay: int,
         lim: Mapping[str, Any]) -> Dict[str, Any]:
    syn_bits = stored * (_WEIGHT_BITS + (_DELAY_BITS if has_delay else 0))
    bits = syn_bits + n * _STATE_BITS + (n * (max_delay + 1) * _ACC_BITS if has_delay else 0)
    mem = math.ceil(bits / 8)
    by_neurons = math.ceil(n / lim["neurons_per_core"])
    by_memory = math.ceil(mem / lim["memory_per_core_bytes"])
    return {"name": name, "neurons": n, "synapses": syn, "nonzero_synapses": nonzero, "delays": has_delay,
            "max_delay": max_delay, "memory_bytes": mem, "synaptic_memory_bytes": math.ceil(syn_bits / 8),
            "cores": max(by_neurons, by_memory), "bound_by": "memory" if by_memory > by_neurons else "neurons"}


def estimate_resources(net: LoihiNetwork, limits: Optional[Mapping[str, Any]] = None) -> ResourceReport:
    """Estimate Loihi 2 resources of ``net`` (see the module docstring); ``limits`` overrides entries of ``LOIHI2``."""
    if not isinstance(net, LoihiNetwork):
        raise TypeError(f"net must be a LoihiNetwork, got {type(net).__name__}")
    lim = dict(LOIHI2)
    for key, value in (limits or {}).items():
        if key not in LOIHI2 or key in ("verified", "source"):
            raise KeyError(f"unknown limit {key!r}; known: {[k for k in LOIHI2 if k not in ('verified', 'source')]}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"limit {key!r} must be an int >= 1, got {value!r}")
        lim[key] = value
    report = ResourceReport(limits=lim)
    if net.input_neurons is not None:
        n = net.input_neurons.size
        report.layers.append(_row(net.input_neurons.name, n, 0, 0, 0, False, 0, lim))
    for layer in net.layers:
        n = layer.out_features
        # a conv layer stores its shared kernel once; it makes out x (C_in / groups x kh x kw) connections
        syn = n * layer.weight[0].numel() if layer.conv is not None else layer.weight.numel()
        stored = layer.weight.numel() if layer.conv is not None else syn
        nonzero = int((layer.weight != 0).sum()) * (n // layer.weight.shape[0] if layer.conv else 1)
        if layer.weight_rec is not None:
            syn, stored = syn + layer.weight_rec.numel(), stored + layer.weight_rec.numel()
            nonzero += int((layer.weight_rec != 0).sum())
        has_delay = layer.delay is not None
        max_delay = int(layer.delay.max()) if has_delay else 0
        report.layers.append(_row(layer.name, n, syn, stored, nonzero, has_delay, max_delay, lim))
    tot = {k: sum(r[k] for r in report.layers) for k in ("neurons", "synapses", "nonzero_synapses", "memory_bytes",
                                                         "cores")}
    tot["chips"] = math.ceil(tot["cores"] / lim["cores_per_chip"])
    tot["fits_one_chip"] = (tot["cores"] <= lim["cores_per_chip"] and tot["neurons"] <= lim["neurons_per_chip"]
                            and tot["synapses"] <= lim["synapses_per_chip"])
    report.total = tot
    return report
