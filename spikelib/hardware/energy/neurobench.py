"""NeuroBench's metrics under their own names and definitions, computed from spikelib's counts.

NeuroBench (Yik et al., "The neurobench framework for benchmarking neuromorphic computing algorithms and systems",
Nature Communications 16, 1545 (2025); package ``neurobench`` 2.3.0, files under ``neurobench/metrics/``) defines:

Static (read from the model):

``Footprint``           bytes of every parameter and buffer (``numel * element_size``), buffers as they are now.
``ParameterCount``      number of parameter elements.
``ConnectionSparsity``  zero weights / weights of the ``Linear`` and ``Conv`` layers (NeuroBench rounds it to 4
                        decimals; the exact fraction is given here).

Workload (from an evaluation pass; "per sample" divides by the batch sizes of the batches evaluated):

``ActivationSparsity``         per batch ``1 - nonzero / elements`` of every activation layer's outputs (the neuron
                               layers), averaged over batches weighted by their sizes.
``ActivationSparsityByLayer``  the same per layer, over the whole pass.
``SynapticOperations``         per ``Linear``/``Conv`` call, (nonzero input, nonzero weight) pairs, bias excluded,
                               as ``Effective_ACs`` when every input is in {-1, 0, 1} else ``Effective_MACs``;
                               ``Dense``: every (input, weight) pair; per sample.
``MembraneUpdates``            neurons whose membrane changed at each step (every neuron at the first step), per
                               sample (:mod:`.membrane`); counted with ``neurobench=True``.
``NeuronOperations``           membrane updates times a per-neuron cost: NeuroBench's table (an snnTorch ``Leaky``:
                               4 operations for either reset; a LIF layer is charged as one), ``Effective Neuron
                               Ops`` and ``Neuron Dense Ops`` (every neuron at every step), per sample.

Layers outside these definitions (delayed synapses, attention products, sparse convolutions, ELM neurons, integer
spikes' values, CUBA neurons for the membrane rule) are not in NeuroBench's figures; :func:`neurobench_metrics`
names them in ``not_covered`` and spikelib's own counts (:mod:`.stats`) include them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from torch import nn

from spikelib.graph import declared_layers
from spikelib.graph import nodes as N
from spikelib.hardware.energy.stats import NetworkCounts

__all__ = ["NEURON_OPERATIONS", "static_metrics", "workload_metrics", "neurobench_metrics", "RULES"]

# NeuroBench's per-update costs (neurobench/metrics/workload/neuron_operations.py, neuron_ops_reset_operations):
# snnTorch Leaky: subtract 4, zero 4. spikelib's LIF layers ("lif/soft", "lif/hard") are charged as a Leaky.
NEURON_OPERATIONS = {"lif/soft": 4, "lif/hard": 4}
_NB_SYNAPSES = ("linear", "conv1d", "conv2d", "conv3d")
_SYNAPTIC_KINDS = _NB_SYNAPSES + ("delayed_linear", "sparse_conv3d", "elm", "attention_v1", "attention_v2")

RULES = {
    "Footprint": "bytes of parameters + buffers (numel x element_size)",
    "ParameterCount": "parameter elements",
    "ConnectionSparsity": "zero weights / weights of Linear and Conv layers (NeuroBench rounds to 4 decimals)",
    "ActivationSparsity": "1 - nonzero / outputs of neuron layers, per batch, weighted by batch size",
    "ActivationSparsityByLayer": "1 - nonzero / outputs per neuron layer over the pass",
    "SynapticOperations": "Linear/Conv: (nonzero input, nonzero weight) pairs per sample, bias excluded; ACs when "
                          "every input is in {-1, 0, 1}, else MACs; Dense: every (input, weight) pair",
    "MembraneUpdates": "per sample: every neuron at the first step, then neurons whose membrane changed",
    "NeuronOperations": "membrane updates x NeuroBench's cost per update (LIF as snnTorch Leaky: 4)",
}


def static_metrics(model: nn.Module) -> Dict[str, Any]:
    """``Footprint``, ``ParameterCount`` and ``ConnectionSparsity`` of ``model`` (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    footprint = sum(p.numel() * p.element_size() for p in model.parameters())
    footprint += sum(b.numel() * b.element_size() for b in model.buffers())
    zeros = weights = 0
    for _, _, node in declared_layers(model):
        if isinstance(node, (N.Affine, N.Conv)):
            zeros += int((node.weight == 0).sum())
            weights += node.weight.numel()
    return {"Footprint": int(footprint), "ParameterCount": int(sum(p.numel() for p in model.parameters())),
            "ConnectionSparsity": (zeros / weights) if weights else None}


def workload_metrics(counts: NetworkCounts) -> Dict[str, Any]:
    """The workload metrics of one measured pass (see the module docstring); ``MembraneUpdates`` and
    ``NeuronOperations`` are None unless the pass counted membranes (``neurobench=True``)."""
    if not isinstance(counts, NetworkCounts):
        raise TypeError(f"counts must be a NetworkCounts, got {type(counts).__name__}")
    n = counts.samples
    weighted = 0.0
    for nonzero, elements, size in counts.batches:
        weighted += (1.0 - nonzero / elements if elements else 0.0) * size
    by_layer = {c.name: 1.0 - c.out_nonzero / c.out_elements for c in counts.layers if c.out_elements}
    per = (lambda v: v / n if n else None)
    synops = {"Effective_MACs": per(counts.total("nb_macs")), "Effective_ACs": per(counts.total("nb_acs")),
              "Dense": per(counts.total("nb_dense"))}
    membrane = neuron_ops = None
    if counts.options.get("neurobench"):
        lif = [c for c in counts.layers if c.neuron in NEURON_OPERATIONS]
        membrane = per(sum(c.nb_membrane_updates for c in lif))
        neuron_ops = {"Effective Neuron Ops": per(sum(c.nb_membrane_updates * NEURON_OPERATIONS[c.neuron]
                                                      for c in lif)),
                      "Neuron Dense Ops": per(sum(c.neuron_updates * NEURON_OPERATIONS[c.neuron] for c in lif))}
    return {"ActivationSparsity": (weighted / n) if n else None, "ActivationSparsityByLayer": by_layer,
            "SynapticOperations": synops, "MembraneUpdates": membrane, "NeuronOperations": neuron_ops}


def not_covered(counts: NetworkCounts) -> List[str]:
    """Counted layers whose operations NeuroBench's definitions leave out (with what spikelib counts instead)."""
    out = []
    for c in counts.layers:
        if c.kind in _SYNAPTIC_KINDS and c.kind not in _NB_SYNAPSES:
            out.append(f"{c.name or '<model>'} ({c.kind}): not a Linear/Conv layer, outside SynapticOperations; "
                       f"spikelib counts {c.sops:,} SOPs and {c.macs:,} MACs")
        elif c.out_elements and c.neuron not in NEURON_OPERATIONS and counts.options.get("neurobench"):
            out.append(f"{c.name or '<model>'} ({c.kind}): no NeuroBench membrane rule; spikelib counts "
                       f"{c.neuron_updates:,} state updates")
        elif c.kind == "elm":
            out.append(f"{c.name or '<model>'} (elm): no NeuroBench rule; spikelib counts {c.neuron_updates:,} "
                       "state updates")
    return out


def neurobench_metrics(counts: NetworkCounts, model: Optional[nn.Module] = None) -> Dict[str, Any]:
    """NeuroBench's workload metrics of ``counts`` and (with ``model``) its static metrics, with the rule each
    follows and the layers NeuroBench's definitions do not cover."""
    out: Dict[str, Any] = {}
    if model is not None:
        out.update(static_metrics(model))
    out.update(workload_metrics(counts))
    out["rules"] = dict(RULES)
    out["not_covered"] = not_covered(counts)
    return out
