"""Inverse (transposed) sparse 3D convolution: back from a strided conv's output sites to its input sites.

spconv's ``SparseInverseConv3d(indice_key=...)`` reuses the kernel map of the strided ``SparseConv3d`` that made the
coarse tensor and runs it backwards; bollossom/E-3DSNN's segmentation network
(classify_seg/pointcept/models/E_3DSNN/E_3DSNN_v1m1_base.py, ``UpBlock``) upsamples this way. With the strided map's
pairs ``(i, o)`` per tap ``k`` (fine input site ``i`` feeds coarse output site ``o``) and ``W [K, C_in, C_out]``::

    y[i] = b + sum_k sum_{(i, o) in map_k} x[o] W[k]        (y on the fine sites, in their order)

so the output sites are exactly those of the fine tensor the strided conv read (``target``), and each tap uses the
weight of the same tap of the forward map. Gather, GEMM and scatter-add run under torch autograd (any device and
floating dtype, multi-step features ``[T, N, C]``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spikelib.sparse.rulebook import IntOr3, as_triple, get_kernel_map
from spikelib.sparse.tensor import SparseSpikeTensor

__all__ = ["SparseInverseConv3d"]


class SparseInverseConv3d(nn.Module):
    """Inverse of a strided sparse conv of the same geometry (module docstring).

    Args:
        in_channels, out_channels: channel counts (``in_channels`` on the coarse sites).
        kernel_size, stride, padding, dilation: the geometry of the strided conv being inverted (E-3DSNN: 2, 2, 0, 1).
        bias: add a learnable bias.
        spike_input: the input features are spikes (for operation counting tools).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3 = 2, stride: IntOr3 = 2,
                 padding: IntOr3 = 0, dilation: IntOr3 = 1, bias: bool = False, spike_input: bool = True) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels, self.spike_input = in_channels, out_channels, bool(spike_input)
        self.kernel_size = as_triple(kernel_size, "kernel_size")
        self.stride = as_triple(stride, "stride")
        self.padding = as_triple(padding, "padding", minimum=0)
        self.dilation = as_triple(dilation, "dilation")
        volume = math.prod(self.kernel_size)
        self.weight = nn.Parameter(torch.empty(volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        bound = 1.0 / math.sqrt(in_channels * volume)  # nn.Conv3d's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseSpikeTensor, target: SparseSpikeTensor) -> SparseSpikeTensor:
        """Features on the sites of ``target`` (the fine tensor that the strided conv producing ``x`` read)."""
        if not isinstance(x, SparseSpikeTensor) or not isinstance(target, SparseSpikeTensor):
            raise TypeError("x and target must be SparseSpikeTensors")
        if x.num_channels != self.in_channels:
            raise ValueError(f"x has {x.num_channels} channels, the inverse conv expects {self.in_channels}")
        kmap = get_kernel_map(target, self.kernel_size, self.stride, self.padding, self.dilation, False)
        if kmap.num_out != x.num_sites or not torch.equal(kmap.out_coords, x.coords):
            raise ValueError("x is not the output of a strided conv of this geometry on target (its sites differ)")
        feats = x.features
        if feats.dtype != self.weight.dtype:
            raise TypeError(f"x.features is {feats.dtype} but the weight is {self.weight.dtype}")
        x3 = feats.unsqueeze(1) if feats.dim() == 2 else feats.transpose(0, 1)  # [N, M, C]
        y = x3.new_zeros(kmap.num_in, x3.shape[1], self.out_channels)
        ptr = kmap.offset_ptr.tolist()
        for k in range(kmap.volume):
            a, b = ptr[k], ptr[k + 1]
            if a == b:
                continue
            fine, coarse = kmap.in_idx[a:b], kmap.out_idx[a:b]
            y = y.index_add(0, fine, torch.matmul(x3.index_select(0, coarse), self.weight[k]))
        if self.bias is not None:
            y = y + self.bias
        y = y.squeeze(1) if feats.dim() == 2 else y.transpose(0, 1)
        return target.replace_features(y)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"bias={self.bias is not None}")
