"""Kernel maps (rulebooks) of sparse 3D convolutions, built with torch sorting and searching.

A kernel map lists, for every kernel offset ``k`` (the ``K = kx * ky * kz`` taps, enumerated row-major over
``(kx, ky, kz)`` like the weight of ``nn.Conv3d``), the pairs ``(i, o)`` of an active input site ``i`` that feeds an
output site ``o`` through that tap. A sparse convolution is then, per offset, gather ``x[i]`` -> GEMM with ``W[k]``
-> scatter-add into ``y[o]`` (:mod:`spikelib.sparse.conv`).

With dense convolution written as cross-correlation, ``y[o] = sum_k W[k] x[o s - p + k d]`` (stride ``s``, padding
``p``, dilation ``d``, per axis), the two kinds of map are:

* submanifold (``subm``, odd kernels): output sites = input sites, and ``(i, o)`` is a pair for tap ``k`` when
  ``c_i = c_o + (k - (K_axis - 1) / 2) d``. This is dense ``Conv3d`` with ``padding = d (K_axis - 1) / 2`` on the
  zero-filled grid, evaluated only at the active sites (SubMConv3d of spconv, Graham et al., CVPR 2018).
* strided (regular sparse conv): ``(i, o)`` is a pair for tap ``k`` when ``o s = c_i + p - k d`` has an integer
  solution with ``0 <= o < out_shape = floor((S + 2p - d (K_axis - 1) - 1) / s) + 1``; the output sites are every such
  ``o`` (spconv's SparseConv3d rule, which bollossom/E-3DSNN classify_seg/pointcept/models/sparse_unet/E_3DSNN.py uses
  with kernel 2, stride 2 for downsampling).

Sites are looked up by an int64 key ``((b X + x) Y + y) Z + z`` (:func:`spikelib.sparse.tensor.coordinate_keys`),
vectorised over sites (the only Python loop is over the ``K`` kernel offsets), in one of two ways that give the same
map: ``"sort"`` searches the sorted keys of the input (``torch.sort`` + ``torch.searchsorted``, ``O(K N log N)``, any
grid size); ``"table"`` scatters the site indices into a direct-address table of int32 entries and reads it
(``O(K N)`` plus the table fill). For submanifold maps the keys are those of the grid padded by the kernel radius
``r = d (K_axis - 1) / 2`` on every side (``B (X + 2r) (Y + 2r) (Z + 2r)`` cells): a neighbour of an active site then
stays inside its batch item's block, so no range checks are needed and padding cells never hold a site.
``lookup="auto"`` takes the table when it has at most ``2^23`` entries and at most ``64 K N`` (so that filling it does
not cost more than the lookups), else the sorted search.

For operation counting (synaptic operations of a spiking sparse conv), :class:`KernelMap` exposes the pairs:
``kernel_map.pairs(k)`` gives ``(in_idx, out_idx)`` of tap ``k``; ``in_idx``/``out_idx`` hold all pairs grouped by tap
with ``offset_ptr`` as boundaries; ``pair_counts()`` is the number of pairs per tap. A conv with ``C_out`` output
channels performs ``C_out`` accumulates per pair and per nonzero input channel.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch

from spikelib.sparse.tensor import SparseSpikeTensor, coordinate_keys

__all__ = ["KernelMap", "build_kernel_map", "get_kernel_map", "as_triple", "conv_output_shape"]

IntOr3 = Union[int, Sequence[int]]


def as_triple(value: IntOr3, name: str, minimum: int = 1) -> Tuple[int, int, int]:
    """``value`` as a 3-tuple of ints ``>= minimum`` (an int is repeated); clear errors otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or 3 ints, got {value!r}")
    if isinstance(value, int):
        value = (value, value, value)
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or 3 ints, got {value!r}") from None
    if len(out) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
        raise ValueError(f"{name} must be an int or 3 ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out  # type: ignore[return-value]


def conv_output_shape(spatial_shape: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
                      padding: Sequence[int], dilation: Sequence[int]) -> Tuple[int, int, int]:
    """Dense ``Conv3d`` output shape ``floor((S + 2p - d (K - 1) - 1) / s) + 1`` per axis."""
    out = tuple((S + 2 * p - d * (K - 1) - 1) // s + 1
                for S, K, s, p, d in zip(spatial_shape, kernel_size, stride, padding, dilation))
    if min(out) < 1:
        raise ValueError(f"spatial_shape {tuple(spatial_shape)} is too small for kernel {tuple(kernel_size)}, "
                         f"stride {tuple(stride)}, padding {tuple(padding)}, dilation {tuple(dilation)}")
    return out  # type: ignore[return-value]


@dataclass
class KernelMap:
    """Input/output index pairs per kernel offset (see the module docstring).

    Attributes:
        kernel_size, stride, padding, dilation: the convolution geometry.
        subm: True for a submanifold map (output sites = input sites).
        offsets: ``[K, 3]`` kernel index ``(kx, ky, kz)`` of every tap, in weight order.
        in_idx, out_idx: ``[P]`` int64, all pairs, grouped by tap.
        offset_ptr: ``[K + 1]`` int64; tap ``k`` owns pairs ``offset_ptr[k]:offset_ptr[k+1]``.
        num_in, num_out: number of input / output sites.
        out_coords: ``[num_out, 4]`` output coordinates (the input's for a submanifold map).
        out_spatial_shape: spatial shape of the output grid.
    """

    kernel_size: Tuple[int, int, int]
    stride: Tuple[int, int, int]
    padding: Tuple[int, int, int]
    dilation: Tuple[int, int, int]
    subm: bool
    offsets: torch.Tensor
    in_idx: torch.Tensor
    out_idx: torch.Tensor
    offset_ptr: torch.Tensor
    num_in: int
    num_out: int
    out_coords: torch.Tensor
    out_spatial_shape: Tuple[int, int, int]

    @property
    def volume(self) -> int:
        """Number of kernel taps ``K``."""
        return int(self.offsets.shape[0])

    @property
    def num_pairs(self) -> int:
        """Total number of (input, output) pairs ``P``."""
        return int(self.in_idx.numel())

    @property
    def centre_tap(self) -> int:
        """Index of the centre tap (for a submanifold map its pairs are ``(i, i)`` for every site, in site order)."""
        kx, ky, kz = self.kernel_size
        return ((kx // 2) * ky + ky // 2) * kz + kz // 2

    def pair_counts(self) -> torch.Tensor:
        """``[K]`` number of pairs of every tap."""
        return self.offset_ptr[1:] - self.offset_ptr[:-1]

    def pairs(self, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(in_idx, out_idx)`` of tap ``k``."""
        a, b = int(self.offset_ptr[k]), int(self.offset_ptr[k + 1])
        return self.in_idx[a:b], self.out_idx[a:b]

    def to(self, device: torch.device) -> "KernelMap":
        """This map with its index tensors on ``device``."""
        t = lambda v: v.to(device)  # noqa: E731
        return KernelMap(self.kernel_size, self.stride, self.padding, self.dilation, self.subm, t(self.offsets),
                         t(self.in_idx), t(self.out_idx), t(self.offset_ptr), self.num_in, self.num_out,
                         t(self.out_coords), self.out_spatial_shape)


def _kernel_offsets(kernel_size: Tuple[int, int, int], device: torch.device) -> torch.Tensor:
    grid = list(itertools.product(*(range(k) for k in kernel_size)))
    return torch.tensor(grid, dtype=torch.int64, device=device).reshape(-1, 3)


TABLE_MAX_ENTRIES = 1 << 23
QUERY_CHUNK = 1 << 21
TABLE_MAX_PER_QUERY = 64


class _SiteIndex:
    """Finds the input site of a key: by sorted search or by a direct-address table (module docstring)."""

    def __init__(self, keys: torch.Tensor, sorted_keys: torch.Tensor, perm: torch.Tensor, table_size: int,
                 use_table: bool) -> None:
        self.sorted_keys, self.perm, self.table = sorted_keys, perm, None
        if use_table:
            self.table = torch.full((table_size,), -1, dtype=torch.int32, device=keys.device)
            self.table[keys] = torch.arange(keys.numel(), dtype=torch.int32, device=keys.device)

    def find(self, query: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(positions of the queries that exist, their input indices)``; every query must lie in the key space."""
        if self.table is not None:
            idx = self.table[query]
            flat = (idx >= 0).nonzero().squeeze(1)
            return flat, idx[flat].long()
        pos = torch.searchsorted(self.sorted_keys, query).clamp_(max=self.sorted_keys.numel() - 1)
        flat = (self.sorted_keys[pos] == query).nonzero().squeeze(1)
        return flat, self.perm[pos[flat]]


def build_kernel_map(x: SparseSpikeTensor, kernel_size: IntOr3, stride: IntOr3 = 1, padding: IntOr3 = 0,
                     dilation: IntOr3 = 1, subm: bool = False, lookup: str = "auto") -> KernelMap:
    """Build (without caching) the kernel map of a sparse conv on the sites of ``x``; see :func:`get_kernel_map`.

    ``lookup``: ``"auto"``, ``"sort"`` or ``"table"`` (submanifold maps; see the module docstring).
    """
    if lookup not in ("auto", "sort", "table"):
        raise ValueError(f"lookup must be 'auto', 'sort' or 'table', got {lookup!r}")
    ks = as_triple(kernel_size, "kernel_size")
    st = as_triple(stride, "stride")
    pd = as_triple(padding, "padding", minimum=0)
    dl = as_triple(dilation, "dilation")
    coords, shape, dev = x.coords, x.spatial_shape, x.coords.device
    offsets = _kernel_offsets(ks, dev)
    n = coords.shape[0]
    ins, outs, counts = [], [], []
    if subm:
        if any(k % 2 == 0 for k in ks):
            raise ValueError(f"a submanifold conv needs an odd kernel_size, got {ks}")
        if st != (1, 1, 1):
            raise ValueError(f"a submanifold conv has stride 1, got {st}")
        # Keys in a grid padded by the kernel radius r on every side: a neighbour of an active site then never
        # leaves its batch item's block (no range checks), and padding cells hold no site.
        radius = [d * (k - 1) // 2 for k, d in zip(ks, dl)]
        padded = tuple(S + 2 * r for S, r in zip(shape, radius))
        table_size = max(x.batch_size, 1) * padded[0] * padded[1] * padded[2]
        if table_size >= 2**62:
            raise ValueError(f"batch_size x padded spatial_shape = {x.batch_size} x {padded} is too large for "
                             "int64 keys")
        shift = torch.tensor([0] + radius, dtype=torch.int64, device=dev)
        keys = coordinate_keys(coords + shift, padded)
        sorted_keys, perm = torch.sort(keys)
        use_table = lookup == "table" or (lookup == "auto" and table_size <= min(
            TABLE_MAX_ENTRIES, TABLE_MAX_PER_QUERY * max(n, 1) * offsets.shape[0]))
        index = _SiteIndex(keys, sorted_keys, perm, table_size, use_table)
        centre = torch.tensor([(k - 1) // 2 for k in ks], dtype=torch.int64, device=dev)
        deltas = (offsets - centre) * torch.tensor(dl, dtype=torch.int64, device=dev)      # [K, 3]
        stride_key = torch.tensor([padded[1] * padded[2], padded[2], 1], dtype=torch.int64, device=dev)
        dkey = (deltas * stride_key).sum(1)
        arange = torch.arange(n, device=dev)
        # Queries in sorted-key order (sorted_keys + const is sorted: ~2x faster searches, better table locality),
        # many taps per batch of tensor ops (at most QUERY_CHUNK queries at once); the centre tap is (i, i).
        # Only the taps before the centre are searched: the mirror tap K - 1 - k (offset -delta_k) has the same
        # pairs with input and output swapped, and in the same order (a tap's pairs are in the sorted-key order of
        # their outputs, and key(in) = key(out) + dkey[k] orders them alike), so it is the searched map exactly.
        K = offsets.shape[0]
        centre_k = int(((centre[0] * ks[1]) + centre[1]) * ks[2] + centre[2])
        searched = list(range(centre_k))
        per_tap: dict = {centre_k: (arange, arange)}
        chunk = max(1, QUERY_CHUNK // max(n, 1))
        for c0 in range(0, len(searched), chunk):
            taps = searched[c0:c0 + chunk]
            q = (sorted_keys.unsqueeze(0) + dkey[taps].unsqueeze(1)).reshape(-1)
            flat, in_i = index.find(q) if n else (q.new_zeros(0), q.new_zeros(0))
            out_i = perm[flat % max(n, 1)]
            sizes = torch.bincount(flat // max(n, 1), minlength=len(taps)).tolist()
            for k, a, b in zip(taps, in_i.split(sizes), out_i.split(sizes)):
                per_tap[k] = (a, b)
                per_tap[K - 1 - k] = (b, a)
        for k in range(offsets.shape[0]):
            a, b = per_tap[k]
            ins.append(a)
            outs.append(b)
            counts.append(a.numel())
        out_coords, out_shape, num_out = coords, tuple(shape), n
    elif ks == st and pd == (0, 0, 0) and dl == (1, 1, 1):
        out_shape = conv_output_shape(shape, ks, st, pd, dl)
        ins, outs, counts, out_coords, num_out = _tiled_pairs(coords, ks, out_shape)
    else:
        out_shape = conv_output_shape(shape, ks, st, pd, dl)
        st_t = torch.tensor(st, dtype=torch.int64, device=dev)
        pd_t = torch.tensor(pd, dtype=torch.int64, device=dev)
        dl_t = torch.tensor(dl, dtype=torch.int64, device=dev)
        oshape_t = torch.tensor(out_shape, dtype=torch.int64, device=dev)
        arange = torch.arange(n, device=dev)
        cand_in, cand_key = [], []
        for k, off in enumerate(offsets):
            num = coords[:, 1:] + pd_t - off * dl_t
            o = torch.div(num, st_t, rounding_mode="floor")
            valid = ((num - o * st_t) == 0).all(1) & (o >= 0).all(1) & (o < oshape_t).all(1)
            oc = torch.cat([coords[valid, :1], o[valid]], 1)
            cand_in.append(arange[valid])
            cand_key.append(coordinate_keys(oc, out_shape))
        all_key = torch.cat(cand_key)
        uniq, inverse = torch.unique(all_key, return_inverse=True)
        num_out = int(uniq.numel())
        X, Y, Z = out_shape
        z = uniq % Z
        y = (uniq // Z) % Y
        xx = (uniq // (Z * Y)) % X
        b = uniq // (Z * Y * X)
        out_coords = torch.stack([b, xx, y, z], 1)
        start = 0
        for k in range(offsets.shape[0]):
            m = cand_in[k].numel()
            ins.append(cand_in[k])
            outs.append(inverse[start:start + m])
            counts.append(m)
            start += m
    ptr = torch.zeros(len(counts) + 1, dtype=torch.int64, device=dev)
    ptr[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64, device=dev), 0)
    empty = torch.zeros(0, dtype=torch.int64, device=dev)
    in_idx = torch.cat(ins) if ins else empty
    out_idx = torch.cat(outs) if outs else empty
    return KernelMap(ks, st, pd, dl, subm, offsets, in_idx, out_idx, ptr, n, num_out, out_coords,
                     tuple(out_shape))


def _tiled_pairs(coords: torch.Tensor, ks: Tuple[int, int, int], out_shape: Tuple[int, int, int]):
    """The strided map when the kernel tiles the grid (kernel = stride, no padding, no dilation; E-3DSNN's
    downsampling): site ``c`` feeds only output ``c // s`` through tap ``c % s`` (per axis), unless that output lies
    beyond ``out_shape`` (the last plane of an odd-sized axis). The same map as the general rule, in its order: a tap's
    pairs in input order, outputs numbered by sorted key. Returns ``(ins, outs, counts, out_coords, num_out)``."""
    dev = coords.device
    st_t = torch.tensor(ks, dtype=torch.int64, device=dev)
    o = torch.div(coords[:, 1:], st_t, rounding_mode="floor")
    valid = (o < torch.tensor(out_shape, dtype=torch.int64, device=dev)).all(1)
    if not bool(valid.all()):
        kept = valid.nonzero().squeeze(1)
        coords, o = coords[kept], o[kept]
    else:
        kept = torch.arange(coords.shape[0], device=dev)
    r = coords[:, 1:] - o * st_t
    tap = (r[:, 0] * ks[1] + r[:, 1]) * ks[2] + r[:, 2]
    uniq, inverse = torch.unique(coordinate_keys(torch.cat([coords[:, :1], o], 1), out_shape), return_inverse=True)
    X, Y, Z = out_shape
    out_coords = torch.stack([uniq // (Z * Y * X), (uniq // (Z * Y)) % X, (uniq // Z) % Y, uniq % Z], 1)
    order = torch.sort(tap, stable=True).indices
    K = ks[0] * ks[1] * ks[2]
    counts = torch.bincount(tap, minlength=K).tolist()
    return (list(kept[order].split(counts)), list(inverse[order].split(counts)), counts, out_coords,
            int(uniq.numel()))


def get_kernel_map(x: SparseSpikeTensor, kernel_size: IntOr3, stride: IntOr3 = 1, padding: IntOr3 = 0,
                   dilation: IntOr3 = 1, subm: bool = False) -> KernelMap:
    """The kernel map of a sparse conv on the sites of ``x``, cached on ``x`` (shared by tensors with its coords).

    Args:
        x: the input sparse tensor.
        kernel_size, stride, padding, dilation: an int or 3 ints each (padding is ignored for ``subm``).
        subm: submanifold (output sites = input sites; odd kernel, stride 1) or regular strided sparse conv.
    """
    ks = as_triple(kernel_size, "kernel_size")
    st = as_triple(stride, "stride")
    pd = (0, 0, 0) if subm else as_triple(padding, "padding", minimum=0)
    dl = as_triple(dilation, "dilation")
    key = ("subm" if subm else "conv", ks, st, pd, dl)
    cached: Optional[KernelMap] = x.kernel_maps.get(key)  # type: ignore[assignment]
    if cached is None:
        cached = build_kernel_map(x, ks, st, pd, dl, subm)
        x.kernel_maps[key] = cached
    return cached
