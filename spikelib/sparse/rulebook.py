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

Sites are looked up by an int64 key ``((b X + x) Y + y) Z + z`` (:func:`spikelib.sparse.tensor.coordinate_keys`) in
the sorted keys of the input (``torch.sort`` + ``torch.searchsorted``): ``O(K N log N)``, vectorised over sites (the
only Python loop is over the ``K`` kernel offsets).

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


def _lookup(sorted_keys: torch.Tensor, perm: torch.Tensor, query: torch.Tensor, valid: torch.Tensor):
    """Positions (in the unsorted input) of ``query`` keys, and the mask of queries found (and ``valid``)."""
    if sorted_keys.numel() == 0:
        return query.new_zeros(0), torch.zeros_like(valid)
    pos = torch.searchsorted(sorted_keys, query).clamp_(max=sorted_keys.numel() - 1)
    hit = valid & (sorted_keys[pos] == query)
    return perm[pos[hit]], hit


def build_kernel_map(x: SparseSpikeTensor, kernel_size: IntOr3, stride: IntOr3 = 1, padding: IntOr3 = 0,
                     dilation: IntOr3 = 1, subm: bool = False) -> KernelMap:
    """Build (without caching) the kernel map of a sparse conv on the sites of ``x``; see :func:`get_kernel_map`."""
    ks = as_triple(kernel_size, "kernel_size")
    st = as_triple(stride, "stride")
    pd = as_triple(padding, "padding", minimum=0)
    dl = as_triple(dilation, "dilation")
    coords, shape, dev = x.coords, x.spatial_shape, x.coords.device
    offsets = _kernel_offsets(ks, dev)
    n = coords.shape[0]
    keys = coordinate_keys(coords, shape)
    sorted_keys, perm = torch.sort(keys)
    shape_t = torch.tensor(shape, dtype=torch.int64, device=dev)
    ins, outs, counts = [], [], []
    if subm:
        if any(k % 2 == 0 for k in ks):
            raise ValueError(f"a submanifold conv needs an odd kernel_size, got {ks}")
        if st != (1, 1, 1):
            raise ValueError(f"a submanifold conv has stride 1, got {st}")
        X, Y, Z = shape
        stride_key = torch.tensor([Y * Z, Z, 1], dtype=torch.int64, device=dev)
        centre = torch.tensor([(k - 1) // 2 for k in ks], dtype=torch.int64, device=dev)
        dl_t = torch.tensor(dl, dtype=torch.int64, device=dev)
        deltas = (offsets - centre) * dl_t                                       # [K, 3]
        arange = torch.arange(n, device=dev)
        # queries in sorted-key order (sorted_keys + const is sorted): searchsorted is ~2x faster on sorted queries
        sorted_xyz = coords[perm, 1:]
        for delta in deltas:
            if not bool(delta.any()):                                            # centre tap: (i, i) for all i
                ins.append(arange)
                outs.append(arange)
                counts.append(n)
                continue
            nb = sorted_xyz + delta
            valid = ((nb >= 0) & (nb < shape_t)).all(1)
            q = sorted_keys + (delta * stride_key).sum()
            in_i, hit = _lookup(sorted_keys, perm, q, valid)
            ins.append(in_i)
            outs.append(perm[hit])
            counts.append(in_i.numel())
        out_coords, out_shape, num_out = coords, tuple(shape), n
    else:
        out_shape = conv_output_shape(shape, ks, st, pd, dl)
        st_t = torch.tensor(st, dtype=torch.int64, device=dev)
        pd_t = torch.tensor(pd, dtype=torch.int64, device=dev)
        dl_t = torch.tensor(dl, dtype=torch.int64, device=dev)
        oshape_t = torch.tensor(out_shape, dtype=torch.int64, device=dev)
        arange = torch.arange(n, device=dev)
        cand_in, cand_key, cand_k = [], [], []
        for k, off in enumerate(offsets):
            num = coords[:, 1:] + pd_t - off * dl_t
            o = torch.div(num, st_t, rounding_mode="floor")
            valid = ((num - o * st_t) == 0).all(1) & (o >= 0).all(1) & (o < oshape_t).all(1)
            oc = torch.cat([coords[valid, :1], o[valid]], 1)
            cand_in.append(arange[valid])
            cand_key.append(coordinate_keys(oc, out_shape))
            cand_k.append(torch.full((int(valid.sum()),), k, dtype=torch.int64, device=dev))
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
