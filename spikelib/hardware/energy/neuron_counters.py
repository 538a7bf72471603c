"""Exact counters of the neuron node types (``LIF``, ``CubaLIF``, ``ALIF``, ``Izhikevich``, ``Recurrent``,
``IntegerSpike``, ``LI``, ``ELM``; the rules are in
the docstring of :mod:`.counters`), registered when this module is imported (by :mod:`.counting`)."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from spikelib.graph import is_temporal
from spikelib.graph import nodes as N
from spikelib.hardware.energy.counters import (UnsupportedLayerError, _count, _features, _first_tensor, _synaptic,
                                               cached_spike_stats, find_counter, input_stats, register_counter,
                                               remember_spikes, spike_sum)
from spikelib.hardware.energy.membrane import lif_membrane_updates
from spikelib.hardware.energy.stats import LayerCounts

__all__: list = []


# ------------------------------------------------------------------------------------------------------ neurons
def _record_raster(counts: LayerCounts, spikes: torch.Tensor, ctx) -> None:
    limit = ctx.get("_raster_neurons", 0)
    if counts.raster is None and limit and spikes.dim() >= 2:
        counts.raster = spikes[:, 0].reshape(spikes.shape[0], -1)[:, :limit].ne(0).cpu()


def _neuron(m: nn.Module, args, out, counts: LayerCounts, ctx, stats: Tuple[bool, int, bool],
            states: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    x = _first_tensor(args, "input current", m)
    spikes = _features(out)
    if not isinstance(spikes, torch.Tensor):
        raise TypeError(f"energy counter for {type(m).__name__}: expected spikes (a tensor, or a tuple whose first "
                        f"element is one) as the output, got {type(spikes).__name__}")
    remember_spikes(ctx, spikes, stats)
    n = x.numel() * states
    counts.calls += 1
    counts.neuron_updates += n
    counts.state_reads += n
    counts.state_writes += n
    counts.out_elements += spikes.numel()
    counts.out_spikes += stats[1]
    counts.out_nonzero += stats[1] if stats[2] else int(torch.count_nonzero(spikes))
    if spikes.dim() >= 2 and is_temporal(m):
        _record_raster(counts, spikes, ctx)
    return x, spikes


def _count_lif(m: nn.Module, node: N.LIF, args, out, counts: LayerCounts, ctx) -> None:
    spikes = _features(out)
    n = _count(spikes) if isinstance(spikes, torch.Tensor) else 0
    x, spikes = _neuron(m, args, out, counts, ctx, (True, n, True))  # binary spikes by construction
    counts.neuron = f"lif/{node.reset}"
    if ctx.get("_neurobench", False):
        states = ctx["_membranes"]
        updates, states[counts.name] = lif_membrane_updates(node, x, spikes, is_temporal(m), states.get(counts.name))
        counts.nb_membrane_updates += updates


def _count_two_state(m: nn.Module, node: N.Node, args, out, counts: LayerCounts, ctx) -> None:
    """Neurons with two state variables per neuron (CUBA-LIF: current and voltage; ALIF: membrane and adaptation;
    Izhikevich: membrane and recovery): two updates per neuron and step."""
    spikes = _features(out)
    n = _count(spikes) if isinstance(spikes, torch.Tensor) else 0
    _neuron(m, args, out, counts, ctx, (True, n, True), states=2)
    counts.neuron = node.kind


def _count_recurrent(m: nn.Module, node: N.Recurrent, args, out, counts: LayerCounts, ctx) -> None:
    """The neuron's updates plus the feedback synapses: every spike of step t reaches N synapses at t + 1 (spikes of
    the last step reach none within the pass); dense: the N x N matrix at every step."""
    x = _first_tensor(args, "input [T, B, N]", m)
    spikes = _features(out)
    inner = find_counter(node.neuron)
    if inner is None:
        raise UnsupportedLayerError(f"no energy counter for the neuron of recurrent layer {type(m).__name__} "
                                    f"({node.neuron.kind})")
    inner.fn(m, node.neuron, args, out, counts, ctx)
    n = int(node.weight.shape[0])
    T, B = x.shape[0], x.shape[1]
    fed = _count(spikes[:-1]) if T > 1 else 0
    dense = T * B * n * n
    counts.add(dense_macs=dense, sops=fed * n, weight_reads=fed * n, in_elements=T * B * n, in_spikes=fed)
    if node.bias is not None:
        counts.add(adds=T * B * n)


def _count_integer_spike(m: nn.Module, node: N.Node, args, out, counts: LayerCounts, ctx) -> None:
    spikes = _features(out)
    _neuron(m, args, out, counts, ctx, input_stats(spikes) if isinstance(spikes, torch.Tensor) else (True, 0, True))
    counts.neuron = "integer_spike"


def _count_li(m: nn.Module, node: N.LI, args, out, counts: LayerCounts, ctx) -> None:
    x = _first_tensor(args, "input [T, B, ...]", m)
    n = x.numel()
    counts.add(calls=1, neuron_updates=n, state_reads=n, state_writes=n)


def _count_elm(m: nn.Module, node: N.ELM, args, out, counts: LayerCounts, ctx) -> None:
    x = _first_tensor(args, "input [T, B, C]", m)
    T, B, C = x.shape
    rows = T * B
    readers = node.readers.to(device=x.device, dtype=torch.float64)
    binary, nnz = cached_spike_stats(x, ctx)
    dense_syn = rows * int(readers.sum())
    reached = int(round(float((spike_sum(x, (0, 1), nnz) * readers).sum()))) if binary and nnz else 0
    _synaptic(counts, binary, nnz, x.numel(), reached, dense_syn)
    mlp = sum(a * b for a, b in node.mlp)
    head = node.num_memory * node.out_features
    dense = rows * (mlp + head)
    counts.add(macs=dense, dense_macs=dense, weight_reads=dense,
               adds=rows * (sum(b for _, b in node.mlp) + node.out_features))
    if node.version == 1:  # branch sums of the synaptic traces
        counts.add(adds=rows * (node.num_synapses - node.num_branch))
    states = rows * (node.num_traces + node.num_memory)
    counts.add(neuron_updates=states, state_reads=states, state_writes=states)


register_counter(N.LIF, "lif", _count_lif)
register_counter(N.CubaLIF, "cuba_lif", _count_two_state)
register_counter(N.ALIF, "alif", _count_two_state)
register_counter(N.Izhikevich, "izhikevich", _count_two_state)
register_counter(N.Recurrent, lambda node: f"recurrent_{find_counter(node.neuron).kind(node.neuron)}"
                 if find_counter(node.neuron) else "recurrent", _count_recurrent)
register_counter(N.IntegerSpike, "integer_spike", _count_integer_spike)
register_counter(N.LI, "li", _count_li)
register_counter(N.ELM, "elm", _count_elm)
