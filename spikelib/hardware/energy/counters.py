"""Exact operation counters per declared node type (:mod:`spikelib.graph.nodes`), run as forward hooks during a real
evaluation pass.

Each layer says what it computes through its declaration (:func:`spikelib.graph.declare`); the counter of that node
type counts it. Nothing here knows a model class: a new layer kind that declares an existing node type is counted
without any registration, and a new node type needs one :func:`register_counter` line.

A counter sees a layer's real inputs and output and adds exact integer counts (:mod:`.stats`). An input is a spike
input when every entry is 0 or 1, or a non-negative integer (integer spikes / event counts: a value ``v`` is ``v``
spikes, as E-3DSNN runs them over ``v`` virtual steps at inference), checked on the data of each call; its synaptic
operations are then counted per spike, otherwise the layer does dense multiply-accumulates. With ``x`` the input
and ``|x|`` its spike count (nonzero entries; the sum of the counts for integer spikes):

``Affine`` (``nn.Linear``)  ``sops = |x| C_out``, ``dense = numel(x) C_out``
``Conv`` (``nn.Conv1d/2d/3d``) a spike at input position ``p`` reaches ``F[p]`` (output position, kernel tap) pairs in
                            each of the ``C_out / groups`` output channels of its group, where ``F`` is the fan-out
                            map of the geometry (stride, padding, padding mode, dilation): ``F = d/dx sum(conv(x, 1))``,
                            the adjoint of a convolution of the spike map with an all-ones kernel, computed once per
                            input size. ``sops = C_out/groups sum_{n,c,p} x[n,c,p] F[p]``; ``dense`` the same with
                            ``x = 1`` (zero padding taps are not synapses and are not counted).
``DelayedAffine``           a spike of input ``i`` at step ``t`` reaches output ``j`` at ``t + d_ij``, which exists only
                            while ``t + d_ij <= T - 1`` (the output is causal and ``T`` long): ``sops = sum_{t,b,i}
                            x[t,b,i] #{j : d_ij <= T-1-t}`` (mode ``"integer"``); in mode ``"gaussian"`` every tap
                            ``0..max_delay`` of every synapse carries weight, so a spike reaches
                            ``C_out min(max_delay + 1, T - t)`` taps.
``SparseConv``              the kernel map (rulebook) holds one pair ``(i, o)`` per tap connecting input site ``i``
(``SubMConv3d``, ...)       to output site ``o`` (an inverse conv reads the pairs the other way round); a spike at site ``i`` (any channel, step) reaches ``C_out`` synapses
                            per pair of ``i``: ``sops = C_out sum_{t,i,c} x[t,i,c] P_i`` with ``P_i`` the pairs of
                            ``i``; ``dense = T C_in C_out (pairs)``.
``LIF``, ``CubaLIF``,       one neuron update per input element (two-state neurons: two, e.g. current and voltage,
``ALIF``, ``Izhikevich``    membrane and adaptation); output
``IntegerSpike``            spikes counted (firing rates); E-3DSNN's integer spikes count as their value.
``Recurrent``               the neuron's updates, plus the feedback: a spike at step ``t`` reaches ``N`` synapses at
                            ``t + 1`` (``sops = N |S[0..T-2]|``, ``dense = T B N^2``).
``LI``                      a non-firing integrator (readouts): one state update per element and step.
``ELM``                     routed synaptic events (spikes x synapses reading that input), one state update per
                            synaptic/branch trace and memory unit per step, dense MACs of the MLP and the readout.
``AttentionProduct``        v2 ``Q (K^T V)``: a spike of ``K`` adds a row of ``V`` (``d`` accumulates), a spike of ``Q``
                            adds a row of ``K^T V``: ``sops = (|K| + |Q|) d``;
``SpikeColumnSum``          v1: the column sum of ``K * V``: ``sops = |K * V|`` (the masks ``*`` are ANDs, not counted).
``BatchNorm``               ``norm_macs = numel`` (one ``a x + b`` per element; foldable).
``Pool``, ``AdaptivePool``  ``adds = numel(out) prod(kernel)`` (max: comparisons; avg: additions); adaptive pooling
                            ``numel(x)``.
``Add``                     ``adds = numel(out) (inputs - 1)``.
bias                        ``adds = numel(out)``.

``Free`` (identity, dropout, flatten), ``TimePad`` (zero time padding) and ``Reduce`` (a readout over time) cost
nothing; ``TimePad`` and ``Free(keeps_spikes=True)`` also hand the spike count of their input on to their output. A
layer that declares a node without a counter (e.g. arithmetic the tracer records) is an error
(:class:`UnsupportedLayerError`), never a silent zero; :func:`register_counter` adds one.
The neuron counters (``LIF``, ``CubaLIF``, ``IntegerSpike``, ``LI``, ``ELM``) live in :mod:`.neuron_counters`.
Arithmetic written directly in a model's ``forward`` (residual additions, means over tokens) is outside every layer
and is not counted: make it a layer (``spikelib.layers.Add``, ``TimeReduce``) to count it.
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple, Type

import torch
from torch import nn

from spikelib.graph import UndeclaredLayerError
from spikelib.graph import nodes as N
from spikelib.hardware.energy.stats import LayerCounts
from spikelib.hardware.energy.weighted import conv_reach_map, weight_info, weighted_total

__all__ = ["UnsupportedLayerError", "Counter", "register_counter", "find_counter", "spike_stats", "conv_fanout_map",
           "delay_reach", "FREE_NODES", "keeps_spikes"]


class UnsupportedLayerError(UndeclaredLayerError):
    """A layer has no energy counter (its operations would otherwise be silently missing)."""


logger = logging.getLogger(__name__)

CounterFn = Callable[[nn.Module, N.Node, Tuple[Any, ...], Any, LayerCounts, Dict[str, Any]], None]


class Counter(NamedTuple):
    """``fn(module, node, args, output, counts, context)`` counts one call; ``kind`` labels the layer in reports;
    ``fresh``: the node is declared again whenever the layer's state changed since its last call (its values can
    change between passes, e.g. delays updated by an optimiser step or switched between the Gaussian and the rounded
    form; the counter compares the layer's tensors' identity, storage and in-place version and its plain
    attributes)."""

    kind: Callable[[N.Node], str]
    fn: CounterFn
    fresh: bool = False


_COUNTERS: Dict[Type[N.Node], Counter] = {}
FREE_NODES: Tuple[Type[N.Node], ...] = (N.Free, N.TimePad, N.Reduce, N.Flatten)


# Per-module caches of geometry-only results (conv fan-out maps, delay reach tables), kept across counters and passes.
_CACHES: "weakref.WeakKeyDictionary[nn.Module, Dict[Any, Any]]" = weakref.WeakKeyDictionary()


def _cache(module: nn.Module) -> Dict[Any, Any]:
    cache = _CACHES.get(module)
    if cache is None:
        cache = _CACHES[module] = {}
    return cache


def register_counter(node_type: Type[N.Node], kind: Any, fn: CounterFn, *, fresh: bool = False) -> None:
    """Count every layer declaring a ``node_type`` node (or a subclass) with ``fn``.

    ``kind``: the label of such layers in reports (a string, or ``node -> string``).
    """
    if not (isinstance(node_type, type) and issubclass(node_type, N.Node)):
        raise TypeError(f"node_type must be a spikelib.graph.nodes.Node subclass, got {node_type!r}")
    label = kind if callable(kind) else (lambda node, _k=str(kind): _k)
    _COUNTERS[node_type] = Counter(label, fn, bool(fresh))


def find_counter(node: N.Node) -> Optional[Counter]:
    """The counter registered for the most specific class of ``node`` (None when there is none)."""
    for cls in type(node).__mro__:
        if cls in _COUNTERS:
            return _COUNTERS[cls]
    return None


def keeps_spikes(node: N.Node) -> bool:
    """Whether a layer declaring ``node`` outputs its input's values plus zeros only (zero padding, a copy)."""
    return isinstance(node, N.TimePad) or (isinstance(node, N.Free) and node.keeps_spikes)

def _count(x: torch.Tensor) -> int:
    """Sum of a tensor of non-negative integers (float32 sums are exact below 2^24 and much faster than
    ``count_nonzero``)."""
    if x.dtype == torch.float32 and x.numel() < 2 ** 24:
        return int(round(float(x.sum())))
    return int(round(float(x.sum(dtype=torch.float64))))


def spike_sum(x: torch.Tensor, dims: Tuple[int, ...], total: int) -> torch.Tensor:
    """``x.sum(dims)`` in float64 for a spike-count tensor with ``total`` spikes (exact; float32 partial sums are
    exact while the total stays below 2^24, and several times faster)."""
    if x.dtype == torch.float32 and total < 2 ** 24:
        return x.sum(dim=dims).to(torch.float64)
    return x.sum(dim=dims, dtype=torch.float64)


def spike_stats(x: torch.Tensor) -> Tuple[bool, int]:
    """``(spiking, spikes)``: whether ``x`` holds spike counts (every entry a non-negative integer: binary spikes, or
    the integer spikes of E-3DSNN / binned event counts, each unit one spike) and their total; ``(False, 0)`` for a
    real-valued input.

    The test is exact: ``min(x) >= 0`` and ``sum(frac(x)) == 0`` (``frac(x) = x - trunc(x)`` is computed without
    rounding and is > 0 for every non-integer value, so the sum of these non-negative terms is 0 only when every
    entry is an integer; NaN and inf give NaN). Binary float32 tensors are first tried with the one-pass numba scan
    of :mod:`._binary_scan` (same answer, one read instead of three reductions; anything else falls through).
    """
    stats = input_stats(x)
    return stats[0], stats[1]


def input_stats(x: torch.Tensor) -> Tuple[bool, int, bool]:
    """``(spiking, spikes, binary)``: :func:`spike_stats` and whether every entry is 0 or 1 (then ``spikes`` is also
    the number of nonzero entries)."""
    if x.dtype == torch.bool:
        return True, int(torch.count_nonzero(x)), True
    if x.numel() == 0:
        return True, 0, True
    count = _binary_spike_count(x)
    if count is not None:  # binary float32 spikes: one read-only pass (numba), else the portable test below
        return True, count, True
    if not x.is_floating_point():
        lo, hi = (int(v) for v in torch.aminmax(x))
        return (False, 0, False) if lo < 0 else (True, int(x.sum(dtype=torch.int64)), hi <= 1)
    lo, hi = torch.aminmax(x)
    if not float(lo) >= 0:
        return False, 0, False
    if float(hi) == 0:
        return True, 0, True  # all zeros (a silent layer)
    if float(x.frac().sum()) != 0:
        return False, 0, False
    ones = float(hi) <= 1
    if x.dtype == torch.float32 and x.numel() * float(hi) < 2 ** 24:
        return True, int(round(float(x.sum()))), ones
    return True, int(round(float(x.sum(dtype=torch.float64)))), ones  # exact in float64 below 2^53


def _binary_spike_count(x: torch.Tensor) -> Optional[int]:
    """:func:`~spikelib.hardware.energy._binary_scan.binary_spike_count` when numba is installed, else None."""
    global _BINARY_SCAN
    if _BINARY_SCAN is None:
        try:
            from spikelib.kernels.cpu.cache import import_kernel_module  # numba's cache in the verified store

            binary_spike_count = import_kernel_module("spikelib.hardware.energy._binary_scan").binary_spike_count
        except ImportError:  # numba is optional (the "fast" extra): the portable test alone
            logger.debug("numba is not installed: energy counting tests spike inputs with torch reductions")
            binary_spike_count = (lambda t: None)
        _BINARY_SCAN = binary_spike_count
    return _BINARY_SCAN(x)


_BINARY_SCAN: Optional[Callable[[torch.Tensor], Optional[int]]] = None


def _memo_key(x: torch.Tensor) -> Optional[Tuple[int, int, torch.dtype, torch.device]]:
    """Identifies the memory a contiguous tensor covers (its first element's address, length, dtype, device): a
    contiguous view of the same elements gets the same key."""
    if not x.is_contiguous():
        return None
    return (x.data_ptr(), x.numel(), x.dtype, x.device)


def remember_spikes(ctx: Dict[str, Any], x: torch.Tensor, stats: Tuple[bool, int, bool]) -> None:
    """Record the spike statistics of a neuron layer's output for the layers that read it in this forward pass.

    The entry holds a weak reference to ``x``: it is valid while ``x`` is alive (its memory then belongs to ``x`` and
    its views, so no other data can sit at that address) and unchanged (views share its version counter). Holding
    no strong reference lets the model free its activations as it would without counting. The memo is emptied
    when the model's next forward pass starts.
    """
    memo = ctx.get("_memo")
    key = _memo_key(x)
    if memo is not None and key is not None:
        memo[key] = (weakref.ref(x), x._version, stats)


def known_spike_stats(x: torch.Tensor, memo: Optional[Dict[Any, Any]]) -> Optional[Tuple[bool, int, bool]]:
    """The remembered statistics of ``x`` (a contiguous view of a recorded, unchanged tensor), else None."""
    key = _memo_key(x) if memo else None
    entry = memo.get(key) if key is not None else None
    if entry is not None:
        ref, version, stats = entry
        kept = ref()
        if kept is not None and kept._version == version and x._version == version:
            return stats
        del memo[key]  # freed or changed in place
    return None


def cached_stats(x: torch.Tensor, ctx: Dict[str, Any]) -> Tuple[bool, int, bool]:
    """:func:`input_stats`, reusing the statistics of a neuron output that ``x`` is a contiguous view of."""
    stats = known_spike_stats(x, ctx.get("_memo"))
    return input_stats(x) if stats is None else stats


def cached_spike_stats(x: torch.Tensor, ctx: Dict[str, Any]) -> Tuple[bool, int]:
    """:func:`spike_stats`, reusing the statistics of a neuron output that ``x`` is a contiguous view of."""
    stats = cached_stats(x, ctx)
    return stats[0], stats[1]


def pass_on_spike_stats(args: Tuple[Any, ...], output: Any, memo: Dict[Any, Any]) -> None:
    """Hand the remembered statistics of a ``keeps_spikes`` layer's input on to its output (nothing is measured)."""
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and isinstance(output, torch.Tensor) and output is not x:
        stats = known_spike_stats(x, memo)
        if stats is not None:
            remember_spikes({"_memo": memo}, output, stats)


def _features(value: Any) -> Any:
    """The feature tensor of a :class:`~spikelib.sparse.SparseSpikeTensor`, the first element of a tuple output (a
    neuron returning ``(spikes, state)``, snnTorch's ``output=True``, norse), other values as they are."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    feats = getattr(value, "features", None)
    return feats if isinstance(feats, torch.Tensor) and not isinstance(value, torch.Tensor) else value


def _first_tensor(args: Tuple[Any, ...], what: str, module: nn.Module) -> torch.Tensor:
    """The first argument of a layer call (the features of a sparse tensor); hooks run under ``no_grad``, so it is
    only read, never detached (a hot path: one call per counted layer and call)."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor):
        x = _features(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"energy counter for {type(module).__name__}: expected a tensor {what} as the first "
                            "argument")
    return x


def _synaptic(counts: LayerCounts, binary: bool, nnz: int, numel: int, reached: int, dense: int,
              macs: Optional[int] = None) -> None:
    """Add the counts of a synaptic layer: ``nnz`` spikes reached ``reached`` synapses (spike input), or ``macs``
    multiply-accumulates (real-valued input; default ``dense``)."""
    counts.calls += 1
    counts.in_elements += numel
    counts.dense_macs += dense
    if binary:
        counts.binary_calls += 1
        counts.in_spikes += nnz
        counts.sops += reached
        counts.weight_reads += reached
    else:
        macs = dense if macs is None else macs
        counts.macs += macs
        counts.weight_reads += macs


def _nb_spiking(x: torch.Tensor, stats: Tuple[bool, int, bool]) -> bool:
    """NeuroBench's test of a spiking input: every entry in {-1, 0, 1} (neurobench/metrics/utils/layers/input.py)."""
    if stats[2]:
        return True
    if stats[0]:
        return False  # non-negative integers, some > 1
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


def _neurobench_synops(counts: LayerCounts, x: torch.Tensor, stats: Tuple[bool, int, bool], effective: int,
                       dense: int) -> None:
    """Add one call to NeuroBench's ``SynapticOperations``: ``effective`` (nonzero input, nonzero weight) pairs as
    ACs when every input is in {-1, 0, 1}, else as MACs; ``dense`` every pair."""
    counts.nb_dense += dense
    if _nb_spiking(x, stats):
        counts.nb_acs += effective
    else:
        counts.nb_macs += effective


# ------------------------------------------------------------------------------------------------------ dense
def _count_affine(m: nn.Module, node: N.Affine, args, out, counts: LayerCounts, ctx) -> None:
    x = _first_tensor(args, "input", m)
    c_out, c_in = int(node.weight.shape[0]), int(node.weight.shape[1])
    stats = cached_stats(x, ctx)
    binary, nnz, ones = stats
    rows = x.numel() // c_in if c_in else 0
    w = weight_info(node.weight, _cache(m))
    pruned = w.zeros and ctx.get("_nonzero_weights", False)
    # NeuroBench: (nonzero input, nonzero weight) pairs
    if ones and not w.zeros:
        effective = nnz * c_out
    elif w.zeros:
        effective = weighted_total(x if ones else (x != 0), w.reach)
    else:
        effective = int(torch.count_nonzero(x)) * c_out
    _neurobench_synops(counts, x, stats, effective, x.numel() * c_out)
    # spikelib's own counts (pruned weights and zero inputs skipped on request)
    dense = rows * w.nonzero if pruned else x.numel() * c_out
    reached = macs = 0
    if binary:
        reached = (effective if ones else weighted_total(x, w.reach)) if pruned else nnz * c_out
    elif ctx.get("_skip_zero_inputs", False):
        macs = effective if pruned or not w.zeros else int(torch.count_nonzero(x)) * c_out
    else:
        macs = dense
    _synaptic(counts, binary, nnz, x.numel(), reached, dense, macs)
    if node.bias is not None:
        counts.add(adds=out.numel())


# ------------------------------------------------------------------------------------------------------- conv
def conv_fanout_map(node: N.Conv, spatial: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``F[p]``: the number of (output position, kernel tap) pairs that read input position ``p`` (float64).

    The gradient of ``sum(conv(ones, ones))`` with respect to the input: exact for any stride, padding (incl.
    ``padding_mode`` and ``"same"``) and dilation; ``groups`` channels of one input channel each.
    """
    g = node.groups
    nd = node.ndim
    x1 = torch.ones((1, g) + tuple(spatial), dtype=torch.float64, device=device, requires_grad=True)
    w1 = torch.ones((g, 1) + node.kernel_size, dtype=torch.float64, device=device)
    conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[nd - 1]
    with torch.enable_grad():
        if node.padding_mode != "zeros":
            if isinstance(node.padding, str):
                raise ValueError("padding_mode other than 'zeros' needs numeric padding")
            pad = [p for p in reversed(node.padding) for _ in range(2)]
            y = conv(torch.nn.functional.pad(x1, pad, mode=node.padding_mode), w1, None, node.stride, 0,
                     node.dilation, g)
        else:
            y = conv(x1, w1, None, node.stride, node.padding, node.dilation, g)
        (grad,) = torch.autograd.grad(y.sum(), x1)
    return grad[0, 0].detach()


def _count_conv(m: nn.Module, node: N.Conv, args, out, counts: LayerCounts, ctx) -> None:
    x = _first_tensor(args, "input", m)
    nd = node.ndim
    if x.dim() == nd + 1:  # unbatched [C, *spatial]
        x = x.unsqueeze(0)
    key = ("fanout", tuple(x.shape[2:]), x.device, node.kernel_size, node.stride, node.padding, node.dilation,
           node.groups, node.padding_mode)
    cache = _cache(m)
    entry = cache.get(key)
    if entry is None:
        fan_map = conv_fanout_map(node, tuple(x.shape[2:]), x.device)
        lo, hi = (int(v) for v in torch.aminmax(fan_map))
        entry = cache[key] = (fan_map, fan_map.reshape(-1).to(torch.float32), int(round(float(fan_map.sum()))),
                              hi if lo == hi else None, hi)
    fan, fan32, fan_total, fan_uniform, fan_max = entry
    per_out = int(node.weight.shape[0]) // node.groups
    stats = cached_stats(x, ctx)
    binary, nnz, ones = stats
    dense = per_out * x.shape[0] * x.shape[1] * fan_total
    plain = 0  # sum_p a[p] F[p] with a the spike counts (spikelib) or the nonzero indicator (NeuroBench)
    if binary and nnz:
        if fan_uniform is not None:  # every input position reaches the same number of taps (e.g. a 1x1 conv)
            plain = per_out * nnz * fan_uniform
        elif x.dtype == torch.float32 and nnz * fan_max < 2 ** 24:
            # every partial sum is an integer <= nnz * max(F) < 2^24: exact in float32, one product over positions
            plain = per_out * int(round(float((x.reshape(-1, fan32.numel()) @ fan32).sum())))
        else:
            plain = per_out * int(round(float((spike_sum(x, (0, 1), nnz) * fan).sum())))
    w = weight_info(node.weight, cache)
    pruned = w.zeros and ctx.get("_nonzero_weights", False)
    reach = None
    if w.zeros:
        reach = conv_reach_map(node.weight, node.stride, node.padding, node.dilation, node.groups,
                               node.padding_mode, tuple(x.shape[2:]), cache)
    # NeuroBench: (nonzero input, nonzero weight) pairs
    if ones and reach is None:
        effective = plain
    elif reach is not None:
        effective = weighted_total(x if ones else (x != 0), reach)
    else:
        effective = per_out * weighted_total(x != 0, fan)
    _neurobench_synops(counts, x, stats, effective, dense)
    if pruned:
        dense = int(x.shape[0]) * int(round(float(reach.sum())))
    reached = macs = 0
    if binary:
        reached = (effective if ones else weighted_total(x, reach)) if pruned else plain
    elif ctx.get("_skip_zero_inputs", False):
        macs = effective if (pruned or reach is None) else per_out * weighted_total(x != 0, fan)
    else:
        macs = dense
    _synaptic(counts, binary, nnz, x.numel(), reached, dense, macs)
    if node.bias is not None:
        counts.add(adds=out.numel())


# ------------------------------------------------------------------------------------------------------ delays
def delay_reach(node: N.DelayedAffine, T: int) -> torch.Tensor:
    """``R[t, i]``: the synapses (taps) a spike of input ``i`` at step ``t`` reaches within ``T`` steps (int64)."""
    c_out, c_in = (int(s) for s in node.weight.shape)
    t = torch.arange(T, device=node.weight.device)
    if node.mode == "none":
        return torch.full((T, c_in), c_out, dtype=torch.int64, device=t.device)
    if node.mode == "gaussian":
        taps = torch.clamp(T - t, max=node.max_delay + 1)
        return (taps * c_out).unsqueeze(1).expand(T, c_in).clone()
    d = node.delay.to(torch.int64)  # [C_out, C_in]
    ds = torch.sort(d.t().contiguous(), dim=1).values  # [C_in, C_out]
    remaining = (T - 1 - t).to(ds.dtype).unsqueeze(0).expand(ds.shape[0], T).contiguous()
    return torch.searchsorted(ds, remaining, right=True).t()  # [T, C_in]


def _count_delayed(m: nn.Module, node: N.DelayedAffine, args, out, counts: LayerCounts, ctx) -> None:
    x = _first_tensor(args, "input [T, B, C_in]", m)
    T, B = x.shape[0], x.shape[1]
    cache = _cache(m)
    entry = cache.get(("reach", T, node.mode))
    if entry is None or (entry[5] is not node.delay and not torch.equal(entry[0], node.delay)):
        cache.clear()
        reach = delay_reach(node, T)
        # Early spikes reach every synapse (the same r0 for every input); only the last steps, those a delay carries
        # past the end, reach fewer: sum x R = r0 |x| - sum_{t >= t0} x[t] (r0 - R[t]).
        r0 = int(reach[0, 0])
        short = (reach != r0).any(dim=1).nonzero()
        t0 = int(short[0]) if short.numel() else T
        entry = cache[("reach", T, node.mode)] = (node.delay.clone(), int(reach.sum()), r0, t0,
                                                  (r0 - reach[t0:]).to(torch.float64), node.delay)
    _, reach_total, r0, t0, deficit, _ = entry
    binary, nnz = cached_spike_stats(x, ctx)
    dense = B * reach_total
    reached = 0
    if binary and nnz:
        reached = r0 * nnz
        if t0 < T:
            reached -= int(round(float((spike_sum(x[t0:], (1,), nnz) * deficit).sum())))
    _synaptic(counts, binary, nnz, x.numel(), reached, dense)
    if node.bias is not None:
        counts.add(adds=out.numel())


# ------------------------------------------------------------------------------------------------- sparse conv
def _count_sparse_conv(m: nn.Module, node: N.SparseConv, args, out, counts: LayerCounts, ctx) -> None:
    kernel_map = getattr(m, "kernel_map", None)
    if not args or not hasattr(args[0], "features") or not callable(kernel_map):
        raise TypeError(f"energy counter for {type(m).__name__}: expected a SparseSpikeTensor input and a "
                        f"kernel_map(x) method")
    x = args[0]
    if node.inverse:  # reads the coarse sites (the map's outputs) of the strided conv on its second argument
        if len(args) < 2 or not hasattr(args[1], "features"):
            raise TypeError(f"energy counter for {type(m).__name__}: expected (x, target) sparse tensors")
        kmap = kernel_map(args[1])
        reads = kmap.out_idx
    else:
        kmap = kernel_map(x)  # cached on the tensor: the same map the layer used
        reads = kmap.in_idx
    f = x.features
    f3 = f if f.dim() == 3 else f.unsqueeze(0)  # [T, N, C]
    memo = ctx.get("_memo")
    key = ("pairs_per_site", id(kmap), x.num_sites, node.inverse)
    entry = memo.get(key) if memo is not None else None
    if entry is None or entry[0]() is not kmap:  # layers sharing a kernel map within a pass count its pairs once
        entry = (weakref.ref(kmap), torch.bincount(reads, minlength=x.num_sites).to(torch.float64))  # P_i
        if memo is not None:
            memo[key] = entry
    pairs = entry[1]
    binary, nnz = cached_spike_stats(f3, ctx)
    dense = node.out_channels * node.in_channels * f3.shape[0] * int(kmap.in_idx.numel())
    reached = 0
    if binary and nnz:
        reached = node.out_channels * int(round(float((spike_sum(f3, (0, 2), nnz) * pairs).sum())))
    _synaptic(counts, binary, nnz, f3.numel(), reached, dense)
    if node.bias is not None:
        counts.add(adds=_features(out).numel())


# ----------------------------------------------------------------------------------------------------- attention
def _count_attention_product(m: nn.Module, node: N.AttentionProduct, args, out, counts: LayerCounts, ctx) -> None:
    if len(args) < 3 or not all(isinstance(a, torch.Tensor) for a in args[:3]):
        raise TypeError(f"energy counter for {type(m).__name__}: expected (q, k, v) tensors")
    q, k = args[0], args[1]
    d = int(q.shape[-1])
    bq, nq = cached_spike_stats(q, ctx)
    bk, nk = cached_spike_stats(k, ctx)
    if not (bq and bk):
        raise ValueError(f"{type(m).__name__}: Q and K must be spikes (0/1) for the spike-driven count")
    dense = (q.numel() + k.numel()) * d
    reached = (nq + nk) * d
    counts.add(calls=1, in_elements=q.numel() + k.numel(), in_spikes=nq + nk, binary_calls=1, sops=reached,
               weight_reads=reached, dense_macs=dense)


def _count_column_sum(m: nn.Module, node: N.SpikeColumnSum, args, out, counts: LayerCounts, ctx) -> None:
    if len(args) < 2 or not all(isinstance(a, torch.Tensor) for a in args[:2]):
        raise TypeError(f"energy counter for {type(m).__name__}: expected (k, v) tensors")
    k, v = args[0], args[1]
    summand = m.summand(k, v) if callable(getattr(m, "summand", None)) else k * v  # the spikes that are summed
    kv = _count(summand)  # binary AND of two spike tensors (max-pooled in the event-camera variant: still 0/1)
    # dense: one accumulate per element of K * V (the column sum) and one per element of the Q mask (same shape)
    counts.add(calls=1, in_elements=k.numel(), in_spikes=kv, binary_calls=1, sops=kv, weight_reads=kv,
               dense_macs=2 * k.numel())


# ------------------------------------------------------------------------------------------------ norm / pooling
def _count_batchnorm(m: nn.Module, node: N.BatchNorm, args, out, counts: LayerCounts, ctx) -> None:
    x = _first_tensor(args, "input", m)
    counts.calls += 1
    counts.norm_macs += x.numel()


def _count_pool(m: nn.Module, node: N.Pool, args, out, counts: LayerCounts, ctx) -> None:
    _first_tensor(args, "input", m)  # checks the input
    counts.add(calls=1, adds=_features(out).numel() * math.prod(node.kernel_size))


def _count_adaptive_pool(m: nn.Module, node: N.AdaptivePool, args, out, counts: LayerCounts, ctx) -> None:
    x = _first_tensor(args, "input", m)
    counts.add(calls=1, adds=x.numel())


def _count_add(m: nn.Module, node: N.Add, args, out, counts: LayerCounts, ctx) -> None:
    n_in = sum(1 for a in args if isinstance(a, torch.Tensor))
    counts.add(calls=1, adds=_features(out).numel() * max(n_in - 1, 0))


def _register_builtin() -> None:
    register_counter(N.Affine, "linear", _count_affine)
    register_counter(N.Conv, lambda node: f"conv{node.ndim}d", _count_conv)
    register_counter(N.DelayedAffine, "delayed_linear", _count_delayed, fresh=True)
    register_counter(N.SparseConv, "sparse_conv3d", _count_sparse_conv)
    register_counter(N.AttentionProduct, "attention_v2", _count_attention_product)
    register_counter(N.SpikeColumnSum, "attention_v1", _count_column_sum)
    register_counter(N.BatchNorm, "batchnorm", _count_batchnorm)
    register_counter(N.Pool, "pool", _count_pool)
    register_counter(N.AdaptivePool, "pool", _count_adaptive_pool)
    register_counter(N.Add, "add", _count_add)


_register_builtin()
