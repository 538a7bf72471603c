"""Exact operation counters per layer type, run as forward hooks during a real evaluation pass.

A counter sees a layer's real inputs and output and adds exact integer counts (:mod:`.stats`). An input is a spike
input when every entry is 0 or 1, or a non-negative integer (integer spikes / event counts: a value ``v`` is ``v``
spikes, as E-3DSNN runs them over ``v`` virtual steps at inference), checked on the data of each call; its synaptic
operations are then counted per spike, otherwise the layer does dense multiply-accumulates. With ``x`` the input
and ``|x|`` its spike count (nonzero entries; the sum of the counts for integer spikes):

``nn.Linear``               ``sops = |x| C_out``, ``dense = numel(x) C_out``
``nn.Conv1d/2d/3d``         a spike at input position ``p`` reaches ``F[p]`` (output position, kernel tap) pairs in
                            each of the ``C_out / groups`` output channels of its group, where ``F`` is the fan-out
                            map of the geometry (stride, padding, padding mode, dilation): ``F = d/dx sum(conv(x, 1))``,
                            the adjoint of a convolution of the spike map with an all-ones kernel, computed once per
                            input size. ``sops = C_out/groups sum_{n,c,p} x[n,c,p] F[p]``; ``dense`` the same with
                            ``x = 1`` (zero padding taps are not synapses and are not counted).
``DelayedLinear``           a spike of input ``i`` at step ``t`` reaches output ``j`` at ``t + d_ij``, which exists only
                            while ``t + d_ij <= T - 1`` (the output is causal and ``T`` long): ``sops = sum_{t,b,i}
                            x[t,b,i] #{j : d_ij <= T-1-t}`` (mode ``"integer"``); in mode ``"gaussian"`` every tap
                            ``0..max_delay`` of every synapse carries weight, so a spike reaches
                            ``C_out min(max_delay + 1, T - t)`` taps.
``SubMConv3d``,             the kernel map (rulebook) holds one pair ``(i, o)`` per tap connecting input site ``i``
``SparseConv3d``            to output site ``o``; a spike at site ``i`` (any channel, step) reaches ``C_out`` synapses
                            per pair of ``i``: ``sops = C_out sum_{t,i,c} x[t,i,c] P_i`` with ``P_i`` the pairs of
                            ``i``; ``dense = T C_in C_out (pairs)``.
LIF, ParametricLIF, LIFCell one neuron update per input element; output spikes counted (firing rates); also
SparseLIF, IntegerSpike     ``SparseLIF`` and E-3DSNN's ``IntegerSpike`` on sparse features (integer spikes: the count).
ELM / ELMv2                 routed synaptic events (spikes x synapses reading that input), one state update per
                            synaptic/branch trace and memory unit per step, dense MACs of the MLP and the readout.
model readouts              the non-firing integrators that ``SpikingMLP`` (membrane readout) and ``SNNDelays`` compute
                            in their ``forward``: one state update per output and step.
spike-driven attention      v2 ``Q (K^T V)``: a spike of ``K`` adds a row of ``V`` (``d`` accumulates), a spike of ``Q``
                            adds a row of ``K^T V``: ``sops = (|K| + |Q|) d``; v1: the column sum of ``K * V``:
                            ``sops = |K * V|`` (the masks ``*`` are ANDs, not counted).
``BatchNorm1d/2d/3d``       ``norm_macs = numel`` (one ``a x + b`` per element; foldable).
pooling                     ``adds = numel(out) prod(kernel)`` (max: comparisons; avg: additions); adaptive pooling
                            ``numel(x)``.
bias                        ``adds = numel(out)``.

Layers that only move data (Identity, Dropout in eval, Flatten, time-shared/input dropout, SNN-delays' zero time
padding) cost nothing; those registered with ``register_free(cls, keeps_spikes=True)`` (zero padding) also hand the
spike count of their input on to their output. Any other layer is an error (:class:`UnsupportedLayerError`), never a
silent zero; :func:`register_counter` adds one.
Arithmetic written directly in a model's ``forward`` (residual additions, means over tokens, a functional readout)
is outside every layer and is not counted.
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import torch
from torch import nn

from spikelib.hardware.energy.stats import LayerCounts

__all__ = ["UnsupportedLayerError", "register_counter", "register_free", "find_counter", "spike_stats",
           "conv_fanout_map", "delay_reach", "keeps_spikes", "FREE_LAYERS"]


class UnsupportedLayerError(TypeError):
    """A layer has no energy counter (its operations would otherwise be silently missing)."""


logger = logging.getLogger(__name__)

CounterFn = Callable[[nn.Module, Tuple[Any, ...], Any, LayerCounts, Dict[str, Any]], None]
# (kind, counter function, claims the whole subtree, child hooks: names of children whose outputs are captured)
_COUNTERS: Dict[Type[nn.Module], Tuple[str, CounterFn, bool, Tuple[str, ...]]] = {}
FREE_LAYERS: List[Type[nn.Module]] = [nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                      nn.AlphaDropout, nn.Flatten, nn.Unflatten]
# Free layers whose output holds exactly the values of their input plus zeros (zero padding, copies): the spike
# statistics of a neuron output they pass on are handed to the next layer instead of being measured again.
_KEEPS_SPIKES: List[Type[nn.Module]] = []


# Per-module caches of geometry-only results (conv fan-out maps, delay reach tables), kept across counters and passes.
_CACHES: "weakref.WeakKeyDictionary[nn.Module, Dict[Any, Any]]" = weakref.WeakKeyDictionary()


def _cache(module: nn.Module) -> Dict[Any, Any]:
    cache = _CACHES.get(module)
    if cache is None:
        cache = _CACHES[module] = {}
    return cache


def register_counter(cls: Type[nn.Module], kind: str, fn: CounterFn, *, claims_subtree: bool = False,
                     capture: Tuple[str, ...] = ()) -> None:
    """Register ``fn(module, args, output, counts, captured)`` as the counter of ``cls`` (and its subclasses).

    ``claims_subtree``: the layer computes with its children's parameters itself (they are not counted apart).
    ``capture``: names of child modules whose last outputs are handed to ``fn`` in ``captured``.
    """
    _COUNTERS[cls] = (kind, fn, claims_subtree, capture)


def register_free(cls: Type[nn.Module], *, keeps_spikes: bool = False) -> None:
    """Declare a layer type that moves data only (no operations).

    ``keeps_spikes``: its output always holds its input's values plus zeros only (zero padding, a copy), so the
    spike count of its input is the spike count of its output (never true of a training-mode dropout, which scales).
    """
    if cls not in FREE_LAYERS:
        FREE_LAYERS.append(cls)
    if keeps_spikes and cls not in _KEEPS_SPIKES:
        _KEEPS_SPIKES.append(cls)


def keeps_spikes(module: nn.Module) -> bool:
    """Whether ``module`` was registered with ``register_free(..., keeps_spikes=True)``."""
    return isinstance(module, tuple(_KEEPS_SPIKES))


def find_counter(module: nn.Module) -> Optional[Tuple[str, CounterFn, bool, Tuple[str, ...]]]:
    """The counter registered for the most specific class of ``module`` (None when there is none)."""
    for cls in type(module).__mro__:
        if cls in _COUNTERS:
            return _COUNTERS[cls]
    return None


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
    if x.dtype == torch.bool:
        return True, int(torch.count_nonzero(x))
    if x.numel() == 0:
        return True, 0
    count = _binary_spike_count(x)
    if count is not None:  # binary float32 spikes: one read-only pass (numba), else the portable test below
        return True, count
    if not x.is_floating_point():
        return (False, 0) if int(x.min()) < 0 else (True, int(x.sum(dtype=torch.int64)))
    lo, hi = torch.aminmax(x)
    if not float(lo) >= 0:
        return False, 0
    if float(hi) == 0:
        return True, 0  # all zeros (a silent layer)
    if float(x.frac().sum()) != 0:
        return False, 0
    if x.dtype == torch.float32 and x.numel() * float(hi) < 2 ** 24:
        return True, int(round(float(x.sum())))
    return True, int(round(float(x.sum(dtype=torch.float64))))  # integer counts: exact in float64 below 2^53


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


def remember_spikes(captured: Dict[str, Any], x: torch.Tensor, stats: Tuple[bool, int]) -> None:
    """Record the spike statistics of a neuron layer's output for the layers that read it in this forward pass.

    The entry holds a weak reference to ``x``: it is valid while ``x`` is alive (its memory then belongs to ``x`` and
    its views, so no other data can sit at that address) and unchanged (views share its version counter). Holding
    no strong reference lets the model free its activations as it would without counting. The memo is emptied
    when the model's next forward pass starts.
    """
    memo = captured.get("_memo")
    key = _memo_key(x)
    if memo is not None and key is not None:
        memo[key] = (weakref.ref(x), x._version, stats)


def known_spike_stats(x: torch.Tensor, memo: Optional[Dict[Any, Any]]) -> Optional[Tuple[bool, int]]:
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


def cached_spike_stats(x: torch.Tensor, captured: Dict[str, Any]) -> Tuple[bool, int]:
    """:func:`spike_stats`, reusing the statistics of a neuron output that ``x`` is a contiguous view of."""
    stats = known_spike_stats(x, captured.get("_memo"))
    return spike_stats(x) if stats is None else stats


def pass_on_spike_stats(args: Tuple[Any, ...], output: Any, memo: Dict[Any, Any]) -> None:
    """Hand the remembered statistics of a ``keeps_spikes`` layer's input on to its output (nothing is measured)."""
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and isinstance(output, torch.Tensor) and output is not x:
        stats = known_spike_stats(x, memo)
        if stats is not None:
            remember_spikes({"_memo": memo}, output, stats)


def _features(value: Any) -> Any:
    """The feature tensor of a :class:`~spikelib.sparse.SparseSpikeTensor` (other values as they are)."""
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


def _synaptic(counts: LayerCounts, binary: bool, nnz: int, numel: int, reached: int, dense: int) -> None:
    """Add the counts of a synaptic layer: ``nnz`` spikes reached ``reached`` synapses (spike input), or ``dense``
    MACs (real-valued input)."""
    counts.calls += 1
    counts.in_elements += numel
    counts.dense_macs += dense
    if binary:
        counts.binary_calls += 1
        counts.in_spikes += nnz
        counts.sops += reached
        counts.weight_reads += reached
    else:
        counts.macs += dense
        counts.weight_reads += dense


# ------------------------------------------------------------------------------------------------------ dense
def _count_linear(m: nn.Linear, args, out, counts: LayerCounts, captured) -> None:
    x = _first_tensor(args, "input", m)
    binary, nnz = cached_spike_stats(x, captured)
    _synaptic(counts, binary, nnz, x.numel(), nnz * m.out_features if binary else 0, x.numel() * m.out_features)
    if m.bias is not None:
        counts.add(adds=out.numel())


# ------------------------------------------------------------------------------------------------------- conv
def conv_fanout_map(conv: nn.modules.conv._ConvNd, spatial: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``F[p]``: the number of (output position, kernel tap) pairs that read input position ``p`` (float64).

    The gradient of ``sum(conv(ones, ones))`` with respect to the input: exact for any stride, padding (incl.
    ``padding_mode`` and ``"same"``) and dilation; ``groups`` channels of one input channel each.
    """
    g = conv.groups
    x1 = torch.ones((1, g) + tuple(spatial), dtype=torch.float64, device=device, requires_grad=True)
    w1 = torch.ones((g, 1) + tuple(conv.kernel_size), dtype=torch.float64, device=device)
    with torch.enable_grad():
        y = conv._conv_forward(x1, w1, None)
        (grad,) = torch.autograd.grad(y.sum(), x1)
    return grad[0, 0].detach()


def _count_conv(m: nn.modules.conv._ConvNd, args, out, counts: LayerCounts, captured) -> None:
    x = _first_tensor(args, "input", m)
    nd = len(m.kernel_size)
    if x.dim() == nd + 1:  # unbatched [C, *spatial]
        x = x.unsqueeze(0)
    key = ("fanout", tuple(x.shape[2:]), x.device, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
           m.padding_mode)
    cache = _cache(m)
    entry = cache.get(key)
    if entry is None:
        fan_map = conv_fanout_map(m, tuple(x.shape[2:]), x.device)
        lo, hi = (int(v) for v in torch.aminmax(fan_map))
        entry = cache[key] = (fan_map, fan_map.reshape(-1).to(torch.float32), int(round(float(fan_map.sum()))),
                              hi if lo == hi else None, hi)
    fan, fan32, fan_total, fan_uniform, fan_max = entry
    per_out = m.out_channels // m.groups
    binary, nnz = cached_spike_stats(x, captured)
    dense = per_out * x.shape[0] * x.shape[1] * fan_total
    reached = 0
    if binary and nnz:
        if fan_uniform is not None:  # every input position reaches the same number of taps (e.g. a 1x1 conv)
            reached = per_out * nnz * fan_uniform
        elif x.dtype == torch.float32 and nnz * fan_max < 2 ** 24:
            # every partial sum is an integer <= nnz * max(F) < 2^24: exact in float32, one product over positions
            reached = per_out * int(round(float((x.reshape(-1, fan32.numel()) @ fan32).sum())))
        else:
            reached = per_out * int(round(float((spike_sum(x, (0, 1), nnz) * fan).sum())))
    _synaptic(counts, binary, nnz, x.numel(), reached, dense)
    if m.bias is not None:
        counts.add(adds=out.numel())


# ------------------------------------------------------------------------------------------------------ delays
def delay_reach(layer: nn.Module, T: int) -> torch.Tensor:
    """``R[t, i]``: the synapses (taps) a spike of input ``i`` at step ``t`` reaches within ``T`` steps (int64)."""
    t = torch.arange(T, device=layer.weight.device)
    if layer.delays == "none":
        return torch.full((T, layer.in_features), layer.out_features, dtype=torch.int64, device=t.device)
    if layer.mode == "gaussian":
        taps = torch.clamp(T - t, max=layer.max_delay + 1)
        return (taps * layer.out_features).unsqueeze(1).expand(T, layer.in_features).clone()
    d = layer.integer_delays().detach()  # [C_out, C_in]
    ds = torch.sort(d.t().contiguous(), dim=1).values  # [C_in, C_out]
    remaining = (T - 1 - t).to(ds.dtype).unsqueeze(0).expand(ds.shape[0], T).contiguous()
    return torch.searchsorted(ds, remaining, right=True).t()  # [T, C_in]


def _count_delayed_linear(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    x = _first_tensor(args, "input [T, B, C_in]", m)
    T, B = x.shape[0], x.shape[1]
    key = ("reach", T, m.mode, m.delays, m.max_delay, id(m.delay), m.delay._version, x.device)
    cache = _cache(m)
    entry = cache.get(key)
    if entry is None:
        cache.clear()
        reach = delay_reach(m, T)
        # Early spikes reach every synapse (the same r0 for every input); only the last steps, those a delay carries
        # past the end, reach fewer: sum x R = r0 |x| - sum_{t >= t0} x[t] (r0 - R[t]).
        r0 = int(reach[0, 0])
        short = (reach != r0).any(dim=1).nonzero()
        t0 = int(short[0]) if short.numel() else T
        entry = cache[key] = (int(reach.sum()), r0, t0, (r0 - reach[t0:]).to(torch.float64))
    reach_total, r0, t0, deficit = entry
    binary, nnz = cached_spike_stats(x, captured)
    dense = B * reach_total
    reached = 0
    if binary and nnz:
        reached = r0 * nnz
        if t0 < T:
            reached -= int(round(float((spike_sum(x[t0:], (1,), nnz) * deficit).sum())))
    _synaptic(counts, binary, nnz, x.numel(), reached, dense)
    if m.bias is not None:
        counts.add(adds=out.numel())


# ------------------------------------------------------------------------------------------------- sparse conv
def _count_sparse_conv(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    if not args or not hasattr(args[0], "features"):
        raise TypeError(f"energy counter for {type(m).__name__}: expected a SparseSpikeTensor input")
    x = args[0]
    kmap = m.kernel_map(x)  # cached on the tensor: the same map the layer used
    f = x.features
    f3 = f if f.dim() == 3 else f.unsqueeze(0)  # [T, N, C]
    memo = captured.get("_memo")
    key = ("pairs_per_site", id(kmap), x.num_sites)
    entry = memo.get(key) if memo is not None else None
    if entry is None or entry[0]() is not kmap:  # layers sharing a kernel map within a pass count its pairs once
        entry = (weakref.ref(kmap), torch.bincount(kmap.in_idx, minlength=x.num_sites).to(torch.float64))  # P_i
        if memo is not None:
            memo[key] = entry
    pairs = entry[1]
    binary, nnz = cached_spike_stats(f3, captured)
    dense = m.out_channels * m.in_channels * f3.shape[0] * int(kmap.in_idx.numel())
    reached = 0
    if binary and nnz:
        reached = m.out_channels * int(round(float((spike_sum(f3, (0, 2), nnz) * pairs).sum())))
    _synaptic(counts, binary, nnz, f3.numel(), reached, dense)
    if m.bias is not None:
        counts.add(adds=_features(out).numel())


# ------------------------------------------------------------------------------------------------------ neurons
def _record_raster(counts: LayerCounts, spikes: torch.Tensor, captured) -> None:
    limit = captured.get("_raster_neurons", 0)
    if counts.raster is None and limit and spikes.dim() >= 2:
        counts.raster = spikes[:, 0].reshape(spikes.shape[0], -1)[:, :limit].ne(0).cpu()


def _count_lif(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    x = _first_tensor(args, "input current", m)
    spikes = _features(out)
    n = x.numel()
    if counts.kind == "integer_spike":
        stats = spike_stats(spikes)
    else:  # LIF outputs are binary spikes by construction
        stats = (True, _count(spikes))
    remember_spikes(captured, spikes, stats)
    n_spikes = stats[1]
    counts.calls += 1
    counts.neuron_updates += n
    counts.state_reads += n
    counts.state_writes += n
    counts.out_elements += spikes.numel()
    counts.out_spikes += n_spikes
    if spikes.dim() >= 2 and isinstance(m, _sequence_types()):
        _record_raster(counts, spikes, captured)


_SEQUENCE_TYPES: Optional[Tuple[type, ...]] = None


def _sequence_types() -> Tuple[type, ...]:
    """Neuron modules whose output is ``[T, B, ...]`` (a raster of sample 0 is ``out[:, 0]``)."""
    global _SEQUENCE_TYPES
    if _SEQUENCE_TYPES is None:
        from spikelib.neurons.lif import LIF, ParametricLIF

        _SEQUENCE_TYPES = (LIF, ParametricLIF)
    return _SEQUENCE_TYPES


def _count_elm(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    x = _first_tensor(args, "input [T, B, C]", m)
    T, B, C = x.shape
    rows = T * B
    if m.routing_index is None:
        readers = torch.ones(C, dtype=torch.float64, device=x.device)
    else:
        keep = torch.ones_like(m.routing_index, dtype=torch.float64) if m.routing_mask is None \
            else m.routing_mask.detach().ne(0).to(torch.float64)
        readers = torch.zeros(C, dtype=torch.float64, device=x.device).index_add_(0, m.routing_index, keep)
    binary, nnz = cached_spike_stats(x, captured)
    dense_syn = rows * int(readers.sum())
    reached = int(round(float((spike_sum(x, (0, 1), nnz) * readers).sum()))) if binary and nnz else 0
    _synaptic(counts, binary, nnz, x.numel(), reached, dense_syn)
    mlp = sum(layer.in_features * layer.out_features for layer in m.mlp)
    head = m.readout.in_features * m.readout.out_features
    dense = rows * (mlp + head)
    counts.add(macs=dense, dense_macs=dense, weight_reads=dense,
               adds=rows * (sum(layer.out_features for layer in m.mlp) + m.readout.out_features))
    n_syn = m.w_syn_raw.numel()
    if m.config.version == 1:  # branch sums of the synaptic traces
        counts.add(adds=rows * (n_syn - m.num_branch))
    states = rows * (int(m.tau_syn.numel()) + m.num_memory)
    counts.add(neuron_updates=states, state_reads=states, state_writes=states)


# ----------------------------------------------------------------------------------------------------- attention
def _count_attention_v2(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    q, k = captured.get("q_lif"), captured.get("k_lif")
    if q is None or k is None:
        raise RuntimeError(f"energy counter for {type(m).__name__}: Q/K spikes were not captured")
    d = m.dim // m.num_heads
    bq, nq = cached_spike_stats(q, captured)
    bk, nk = cached_spike_stats(k, captured)
    if not (bq and bk):
        raise ValueError(f"{type(m).__name__}: Q and K must be spikes (0/1) for the spike-driven count")
    dense = (q.numel() + k.numel()) * d
    reached = (nq + nk) * d
    counts.add(calls=1, in_elements=q.numel() + k.numel(), in_spikes=nq + nk, binary_calls=1, sops=reached,
               weight_reads=reached, dense_macs=dense)


def _count_attention_v1(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    q, k, v = captured.get("q_lif"), captured.get("k_lif"), captured.get("v_lif")
    if q is None or k is None or v is None:
        raise RuntimeError(f"energy counter for {type(m).__name__}: Q/K/V spikes were not captured")
    kv = _count(k * v)  # binary AND of two spike tensors
    counts.add(calls=1, in_elements=k.numel(), in_spikes=kv, binary_calls=1, sops=kv, weight_reads=kv,
               dense_macs=k.numel() + q.numel())


# ------------------------------------------------------------------------------------------------------ readouts
def _count_mlp_readout(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    """SpikingMLP, ``readout="membrane"``: a non-firing leaky integrator per output and step (in ``forward``)."""
    if m.out_lif is not None:
        return  # the spiking readout is an LIF module, counted by its own counter
    x = _first_tensor(args, "input [T, B, C]", m)
    n = x.shape[0] * x.shape[1] * m.out_features
    counts.add(calls=1, neuron_updates=n, state_reads=n, state_writes=n)


def _count_delays_readout(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    """SNNDelays: the non-firing readout LIF of ``membrane()`` (functional), one update per output and step."""
    x = _first_tensor(args, "input [T, B, C]", m)
    steps = x.shape[0] + (len(m.synapses) + 1) * m.right_padding
    n = steps * x.shape[1] * m.readout.out_features
    counts.add(calls=1, neuron_updates=n, state_reads=n, state_writes=n)


# ------------------------------------------------------------------------------------------------ norm / pooling
def _count_batchnorm(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    x = _first_tensor(args, "input", m)
    counts.calls += 1
    counts.norm_macs += x.numel()


def _count_pool(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    _first_tensor(args, "input", m)  # checks the input
    nd = 1 if "1d" in type(m).__name__ else 2 if "2d" in type(m).__name__ else 3
    ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * nd
    counts.add(calls=1, adds=out.numel() * math.prod(ks))


def _count_adaptive_pool(m: nn.Module, args, out, counts: LayerCounts, captured) -> None:
    x = _first_tensor(args, "input", m)
    counts.add(calls=1, adds=x.numel())


def _register_builtin() -> None:
    from spikelib.layers.delay import DelayedLinear
    from spikelib.layers.spike_attention import SpikeDrivenAttentionV1, SpikeDrivenAttentionV2
    from spikelib.models.elm_net import InputDropout
    from spikelib.models.mlp import SpikingMLP
    from spikelib.models.snn_delays import SNNDelays, TimePad, TimeSharedDropout
    from spikelib.neurons.elm import ELM
    from spikelib.neurons.lif import LIF, LIFCell, ParametricLIF
    from spikelib.sparse.activation import IntegerSpike, SparseLIF
    from spikelib.sparse.conv import SparseConv3d, SubMConv3d

    register_counter(nn.Linear, "linear", _count_linear)
    for cls, kind in ((nn.Conv1d, "conv1d"), (nn.Conv2d, "conv2d"), (nn.Conv3d, "conv3d")):
        register_counter(cls, kind, _count_conv)
    register_counter(DelayedLinear, "delayed_linear", _count_delayed_linear, claims_subtree=True)
    for cls in (LIF, ParametricLIF, LIFCell):
        register_counter(cls, "lif", _count_lif, claims_subtree=True)
    register_counter(ELM, "elm", _count_elm, claims_subtree=True)
    register_counter(SubMConv3d, "sparse_conv3d", _count_sparse_conv)
    register_counter(SparseConv3d, "sparse_conv3d", _count_sparse_conv)
    register_counter(SparseLIF, "lif", _count_lif)
    register_counter(IntegerSpike, "integer_spike", _count_lif)
    register_counter(SpikeDrivenAttentionV2, "attention_v2", _count_attention_v2, capture=("q_lif", "k_lif"))
    register_counter(SpikeDrivenAttentionV1, "attention_v1", _count_attention_v1,
                     capture=("q_lif", "k_lif", "v_lif"))
    register_counter(SpikingMLP, "readout", _count_mlp_readout)
    register_counter(SNNDelays, "readout", _count_delays_readout)
    for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        register_counter(cls, "batchnorm", _count_batchnorm)
    for cls in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d):
        register_counter(cls, "pool", _count_pool)
    for cls in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d):
        register_counter(cls, "pool", _count_adaptive_pool)
    register_free(TimeSharedDropout)
    register_free(TimePad, keeps_spikes=True)
    register_free(InputDropout)


_register_builtin()
