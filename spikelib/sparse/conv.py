"""Submanifold and strided sparse 3D convolution by gather-GEMM-scatter, with a hand-written backward.

With a kernel map (:mod:`spikelib.sparse.rulebook`) of pairs ``(i, o)`` per tap ``k`` and weight
``W [K, C_in, C_out]``::

    forward : y[o] = b + sum_k sum_{(i, o) in map_k} x[i] W[k]
    backward: dx[i] = sum_k sum_{(i, o) in map_k} dy[o] W[k]^T,   dW[k] = sum_{(i, o) in map_k} x[i]^T dy[o],
              db = sum_o dy[o]

Each tap is one ``index_select`` (gather), one matmul (GEMM) and one scatter-add of rows (operation
``"index_add_rows"`` of the backend registry: torch's ``index_add_``, or on CPU in float32/float64 a numba kernel
adding whole rows, bitwise the same and 1.4-2.9x faster at these sizes; ``backend_calls("index_add_rows")``); the autograd
function saves only the input features and the weight (not the gathered copies), so memory stays ``O(N C)`` plus the
map. It runs on any device torch supports (CPU and CUDA), in every floating dtype, and with multi-step features
``[T, N, C]`` (the same weights at every step). The reference model (bollossom/E-3DSNN,
classify_seg/pointcept/models/sparse_unet/E_3DSNN.py) uses spconv's ``SubMConv3d`` and ``SparseConv3d``, whose CPU
build has no backward; these layers replace them (same geometry, weight layout ``[K, C_in, C_out]`` with taps in
``nn.Conv3d`` order; :func:`weight_from_dense` converts an ``nn.Conv3d`` weight).

Energy counting reads the layer's declaration (:class:`spikelib.graph.nodes.SparseConv`) and its kernel map
(:meth:`kernel_map`); ``spike_input`` documents (and lets tests check) that a layer's input is spikes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import nn

from spikelib.graph import nodes
from spikelib.kernels.registry import select_backend
from spikelib.sparse.rulebook import IntOr3, KernelMap, as_triple, get_kernel_map
from spikelib.sparse.tensor import SparseSpikeTensor

__all__ = ["SubMConv3d", "SparseConv3d", "sparse_conv3d", "weight_from_dense", "weight_to_dense"]


@dataclass(frozen=True)
class RowsRequest:
    """What an ``index_add_rows`` backend's capability check sees."""

    device: torch.device
    dtype: torch.dtype
    contiguous: bool
    recorded: bool = False  # autograd records the add (a backward under create_graph=True)


def _row_adder(t: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]:
    """The ``index_add_rows`` implementation for tensors like ``t`` (chosen and counted once per call)."""
    request = RowsRequest(t.device, t.dtype, t.is_contiguous(), torch.is_grad_enabled())
    return select_backend("index_add_rows", "auto", request).impl


class _GatherGemmScatter(torch.autograd.Function):
    """``y [N_out, M, C_out]`` from ``x [N_in, M, C_in]``, ``W [K, C_in, C_out]`` and a kernel map."""

    @staticmethod
    def forward(ctx, x, weight, in_idx, out_idx, ptr: List[int], num_out: int, centre: int
                ):  # type: ignore[override]
        # ``centre``: the tap whose pairs are (i, i) for every site (a submanifold map's centre), done without
        # gather/scatter; -1 when there is none.
        if centre >= 0:
            out = torch.matmul(x, weight[centre])
        else:
            out = x.new_zeros(num_out, x.shape[1], weight.shape[2])
        add_rows = _row_adder(out)
        for k in range(weight.shape[0]):
            a, b = ptr[k], ptr[k + 1]
            if a == b or k == centre:
                continue
            ii, oi = in_idx[a:b], out_idx[a:b]
            add_rows(out, oi, torch.matmul(x.index_select(0, ii), weight[k]))
        ctx.save_for_backward(x, weight, in_idx, out_idx)
        ctx.ptr, ctx.centre = ptr, centre
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, in_idx, out_idx = ctx.saved_tensors
        ptr, centre = ctx.ptr, ctx.centre
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_out = grad_out.contiguous()
        c_in, c_out = weight.shape[1], weight.shape[2]
        grad_w = torch.zeros_like(weight) if need_w else None
        if centre >= 0:
            grad_x = torch.matmul(grad_out, weight[centre].t()) if need_x else None
            if need_w:
                grad_w[centre] = x.reshape(-1, c_in).t() @ grad_out.reshape(-1, c_out)
        else:
            grad_x = torch.zeros_like(x) if need_x else None
        add_rows = _row_adder(grad_x) if need_x else None
        for k in range(weight.shape[0]):
            a, b = ptr[k], ptr[k + 1]
            if a == b or k == centre:
                continue
            ii, oi = in_idx[a:b], out_idx[a:b]
            g = grad_out.index_select(0, oi)
            if need_x:
                add_rows(grad_x, ii, torch.matmul(g, weight[k].t()))
            if need_w:
                grad_w[k] = x.index_select(0, ii).reshape(-1, c_in).t() @ g.reshape(-1, c_out)
        return grad_x, grad_w, None, None, None, None, None


def sparse_conv3d(x: SparseSpikeTensor, weight: torch.Tensor, bias: Optional[torch.Tensor], kmap: KernelMap
                  ) -> SparseSpikeTensor:
    """Apply a sparse conv with ``weight [K, C_in, C_out]`` (and optional ``bias [C_out]``) along ``kmap``."""
    if not isinstance(x, SparseSpikeTensor):
        raise TypeError(f"x must be a SparseSpikeTensor, got {type(x).__name__}")
    if weight.dim() != 3 or weight.shape[0] != kmap.volume:
        raise ValueError(f"weight must be [K={kmap.volume}, C_in, C_out], got {tuple(weight.shape)}")
    if x.num_channels != weight.shape[1]:
        raise ValueError(f"x has {x.num_channels} channels but the conv expects C_in = {weight.shape[1]}")
    if kmap.num_in != x.num_sites:
        raise ValueError(f"the kernel map was built for {kmap.num_in} sites, x has {x.num_sites}")
    feats = x.features
    x3 = feats.unsqueeze(1) if feats.dim() == 2 else feats.transpose(0, 1)
    ptr = kmap.offset_ptr.tolist()
    centre = kmap.centre_tap if kmap.subm else -1
    device_type = feats.device.type
    if torch.is_autocast_enabled(device_type):
        # mixed precision: run the GEMMs in the autocast dtype (inputs cast here, so autograd casts the gradients back)
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            y = _GatherGemmScatter.apply(x3.to(dtype).contiguous(), weight.to(dtype), kmap.in_idx, kmap.out_idx,
                                         ptr, kmap.num_out, centre)
    else:
        if feats.dtype != weight.dtype:
            raise TypeError(f"x.features is {feats.dtype} but the weight is {weight.dtype}; convert one of them")
        y = _GatherGemmScatter.apply(x3.contiguous(), weight, kmap.in_idx, kmap.out_idx, ptr, kmap.num_out, centre)
    if bias is not None:
        y = y + bias
    y = y.squeeze(1) if feats.dim() == 2 else y.transpose(0, 1)
    if kmap.subm:
        return x.replace_features(y)
    return SparseSpikeTensor(y, kmap.out_coords, kmap.out_spatial_shape, x.batch_size, check=False)


def weight_from_dense(w: torch.Tensor) -> torch.Tensor:
    """``nn.Conv3d`` weight ``[C_out, C_in, kx, ky, kz]`` -> sparse layout ``[K, C_in, C_out]``."""
    if w.dim() != 5:
        raise ValueError(f"expected a Conv3d weight [C_out, C_in, kx, ky, kz], got {tuple(w.shape)}")
    c_out, c_in = w.shape[:2]
    return w.permute(2, 3, 4, 1, 0).reshape(-1, c_in, c_out)


def weight_to_dense(w: torch.Tensor, kernel_size: IntOr3) -> torch.Tensor:
    """Sparse layout ``[K, C_in, C_out]`` -> ``nn.Conv3d`` weight ``[C_out, C_in, kx, ky, kz]``."""
    ks = as_triple(kernel_size, "kernel_size")
    return w.reshape(*ks, w.shape[1], w.shape[2]).permute(4, 3, 0, 1, 2)


class _SparseConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3, stride: IntOr3, padding: IntOr3,
                 dilation: IntOr3, bias: bool, subm: bool, spike_input: bool) -> None:
        super().__init__()
        self.spike_input = bool(spike_input)
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = as_triple(kernel_size, "kernel_size")
        self.stride = as_triple(stride, "stride")
        self.padding = as_triple(padding, "padding", minimum=0)
        self.dilation = as_triple(dilation, "dilation")
        self.subm = subm
        volume = math.prod(self.kernel_size)
        self.weight = nn.Parameter(torch.empty(volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv3d``'s default initialisation (Kaiming-uniform, a = sqrt(5); fan_in = C_in K)."""
        fan_in = self.in_channels * self.weight.shape[0]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def kernel_map(self, x: SparseSpikeTensor) -> KernelMap:
        """The (cached) kernel map this layer uses on ``x``: its input/output pairs per tap (for op counting)."""
        if not isinstance(x, SparseSpikeTensor):
            raise TypeError(f"x must be a SparseSpikeTensor, got {type(x).__name__}")
        return get_kernel_map(x, self.kernel_size, self.stride, self.padding, self.dilation, self.subm)

    def forward(self, x: SparseSpikeTensor) -> SparseSpikeTensor:
        """Convolve the active sites of ``x``."""
        return sparse_conv3d(x, self.weight, self.bias, self.kernel_map(x))

    def graph_node(self) -> nodes.SparseConv:
        return nodes.SparseConv(self.weight.detach(), None if self.bias is None else self.bias.detach(),
                                self.in_channels, self.out_channels, self.kernel_size, self.stride, self.subm)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if not self.subm:
            s += f", stride={self.stride}, padding={self.padding}"
        return s + f", dilation={self.dilation}, bias={self.bias is not None}, spike_input={self.spike_input}"


class SubMConv3d(_SparseConvBase):
    """Submanifold sparse conv: outputs only at the input's active sites; equals a dense ``Conv3d`` with
    ``padding = dilation (kernel_size - 1) / 2`` on the zero-filled grid, read at the active sites.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: odd int or 3 odd ints.
        dilation: int or 3 ints.
        bias: add a learnable bias.
        spike_input: the input is spikes (documentation, checked by tests).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3 = 3, dilation: IntOr3 = 1,
                 bias: bool = False, spike_input: bool = False) -> None:
        ks = as_triple(kernel_size, "kernel_size")
        if any(k % 2 == 0 for k in ks):
            raise ValueError(f"SubMConv3d needs an odd kernel_size, got {kernel_size!r}")
        super().__init__(in_channels, out_channels, ks, 1, 0, dilation, bias, subm=True, spike_input=spike_input)


class SparseConv3d(_SparseConvBase):
    """Regular (strided) sparse conv: output sites are every grid position a tap connects to an active input; equals
    ``nn.Conv3d(kernel_size, stride, padding, dilation)`` on the zero-filled grid, read at those sites.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding, dilation: an int or 3 ints each.
        bias: add a learnable bias.
        spike_input: the input is spikes (documentation, checked by tests).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3 = 2, stride: IntOr3 = 2,
                 padding: IntOr3 = 0, dilation: IntOr3 = 1, bias: bool = False, spike_input: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias, subm=False,
                         spike_input=spike_input)
