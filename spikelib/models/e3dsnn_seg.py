"""E-3DSNN's segmentation network (a sparse spiking U-Net): per-voxel class scores.

Reference: bollossom/E-3DSNN, classify_seg/pointcept/models/E_3DSNN/E_3DSNN_v1m1_base.py (``E_3DSNN_seg``,
``UpBlock``; ``DonwBlock``/``BasicBlock`` as in the classifier) and classify_seg/configs/semantic_kitti/
semseg-3dsnn-v1m1-0-base.py (sizes); read, not copied. With ``spike`` the integer spike (``D = 4``) and the stem,
stages and blocks of :mod:`spikelib.models.e3dsnn`::

    x0 = stem(x);  x_{i+1} = stage_i(x_i)                              (each stage: stride-2 sparse conv + blocks)
    decoder, i = n-1 .. 0:  u = BN(InverseConv_i(spike(y)))             back onto the sites of x_i
                            y = u + BN(W2 spike(BN(W1 spike([u, x_i]))))  (Linear W1: C_u + C_skip -> C_u, W2)
    out = SubM1x1(y)  on the input sites: [N, num_classes]

``InverseConv_i`` (:class:`~spikelib.sparse.inverse_conv.SparseInverseConv3d`) inverts stage ``i``'s stride-2 conv
(spconv's ``SparseInverseConv3d`` with that conv's ``indice_key``). The reference builds a point-grid clustering
in each encoder stage (``voxel_grid``) whose result is never used, and an empty ``blocks`` list per decoder stage; it
builds its sparse tensor with ``spatial_shape = max(coord) + 1`` (the classifier adds 96), which decides whether a
site on the upper border survives a stride-2 conv: :meth:`E3DSNNSeg.voxelize_coords` builds the input that way.
Initialisation as the reference: submanifold convs and Linear layers trunc-normal (std 0.02, bias 0), BatchNorm
(1, 0); strided and inverse convs PyTorch's default.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from spikelib.models.checkpoints import RefEntry, leaf
from spikelib.models.e3dsnn import DownBlock, _bn, _check_sizes, _Seq
from spikelib.models.registry import register_model
from spikelib.sparse import IntegerSpike, SparseBatchNorm, SparseSpikeTensor, SubMConv3d
from spikelib.sparse.inverse_conv import SparseInverseConv3d

__all__ = ["E3DSNNSeg", "UpBlock"]


class UpBlock(nn.Module):
    """The reference's ``UpBlock``: inverse conv onto the skip's sites, then the spiking fuse MLP with a shortcut."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, d: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.spike = IntegerSpike(d)
        self.up = SparseInverseConv3d(c_in, c_out, 2, 2)
        self.up_bn = _bn(c_out, eps, momentum)
        self.fuse = nn.Sequential(IntegerSpike(d), nn.Linear(c_skip + c_out, c_out),
                                  nn.BatchNorm1d(c_out, eps=eps, momentum=momentum), IntegerSpike(d),
                                  nn.Linear(c_out, c_out), nn.BatchNorm1d(c_out, eps=eps, momentum=momentum))

    def forward(self, x: SparseSpikeTensor, skip: SparseSpikeTensor) -> SparseSpikeTensor:
        u = self.up_bn(self.up(self.spike(x), skip))
        return u.replace_features(self.fuse(torch.cat([u.features, skip.features], dim=-1)) + u.features)


class E3DSNNSeg(nn.Module):
    """E-3DSNN segmentation network (module docstring); ``forward(x)`` returns ``[N, num_classes]`` per input site.

    Args:
        in_channels: features per voxel (4 on SemanticKITTI: xyz + strength).
        num_classes: classes (19 on SemanticKITTI).
        embed_channels, enc_channels, enc_depth: stem width, stage widths and blocks per stage.
        dec_channels: decoder width per stage (stage ``i`` upsamples to the resolution of stage ``i - 1``).
        max_spikes, bn_eps, bn_momentum: as :class:`~spikelib.models.e3dsnn.E3DSNN` (4, 1e-3, 0.01).
    """

    reference_wrappers = ("backbone.",)

    def __init__(self, in_channels: int = 4, num_classes: int = 19, embed_channels: int = 64,
                 enc_channels: Sequence[int] = (64, 128, 128, 256), enc_depth: Sequence[int] = (2, 2, 2, 2),
                 dec_channels: Sequence[int] = (256, 256, 256, 256), max_spikes: int = 4, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.01) -> None:
        super().__init__()
        enc_channels = _check_sizes("enc_channels", enc_channels)
        n = len(enc_channels)
        enc_depth = _check_sizes("enc_depth", enc_depth, n, minimum=0)
        dec_channels = _check_sizes("dec_channels", dec_channels, n)
        self.in_channels, self.num_classes = in_channels, num_classes
        d, eps, mom, e = max_spikes, bn_eps, bn_momentum, embed_channels
        self.stem = _Seq(SubMConv3d(in_channels, e, 3), _bn(e, eps, mom), IntegerSpike(d),
                         SubMConv3d(e, e, 3, spike_input=True), _bn(e, eps, mom), IntegerSpike(d),
                         SubMConv3d(e, e, 3, spike_input=True), _bn(e, eps, mom))
        chans = [e] + enc_channels
        self.enc = nn.ModuleList(DownBlock(chans[i], chans[i + 1], enc_depth[i], d, eps, mom) for i in range(n))
        self.dec = nn.ModuleList(
            UpBlock(enc_channels[-1] if i == n - 1 else dec_channels[i + 1], chans[i], dec_channels[i], d, eps, mom)
            for i in range(n))
        self.final = SubMConv3d(dec_channels[0], num_classes, 1, bias=True, spike_input=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (SubMConv3d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (SparseBatchNorm, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @staticmethod
    def voxelize_coords(coords: torch.Tensor, features: torch.Tensor, batch: torch.Tensor) -> SparseSpikeTensor:
        """The reference's input tensor: integer grid ``coords [N, 3]``, ``features [N, C]``, batch index ``[N]``,
        ``spatial_shape = max(coords) + 1``."""
        shape = (coords.max(0).values + 1).tolist()
        return SparseSpikeTensor(features, torch.cat([batch[:, None].long(), coords.long()], 1), shape,
                                 int(batch.max()) + 1)

    def forward(self, x: SparseSpikeTensor) -> torch.Tensor:
        if not isinstance(x, SparseSpikeTensor):
            raise TypeError(f"x must be a SparseSpikeTensor (see voxelize_coords), got {type(x).__name__}")
        if x.multistep or x.num_channels != self.in_channels:
            raise ValueError(f"x must have features [N, {self.in_channels}], got {tuple(x.features.shape)}")
        skips = [self.stem(x)]
        for stage in self.enc:
            skips.append(stage(skips[-1]))
        y = skips.pop()
        for i in reversed(range(len(self.dec))):
            y = self.dec[i](y, skips.pop())
        return self.final(y).features

    def reference_layout(self) -> List[RefEntry]:
        """The reference ``E_3DSNN_seg`` state_dict (``stem``, ``enc``, ``dec``, ``final``)."""
        out = [leaf(f"stem.{i}", self.stem[i], "spconv" if i % 3 == 0 else "same") for i in (0, 1, 3, 4, 6, 7)]
        for i, stage in enumerate(self.enc):
            out += [leaf(f"enc.{i}.down.1", stage.down[1], "spconv"), leaf(f"enc.{i}.down.2", stage.down[2])]
            for j, blk in enumerate(stage.blocks):
                ref = f"enc.{i}.blocks.{j}"
                out += [leaf(f"{ref}.block.1", blk.block[1], "spconv"), leaf(f"{ref}.block.2", blk.block[2])]
                for k, unit in enumerate(blk.voxel_block):
                    out += [leaf(f"{ref}.voxel_block.{3 * k + 1}", unit[1], "spconv"),
                            leaf(f"{ref}.voxel_block.{3 * k + 2}", unit[2])]
        for i, up in enumerate(self.dec):
            out += [leaf(f"dec.{i}.up.1", up.up, "spconv"), leaf(f"dec.{i}.up.2", up.up_bn)]
            out += [leaf(f"dec.{i}.fuse.{k}", up.fuse[k]) for k in (1, 2, 4, 5)]
        return out + [leaf("final", self.final, "spconv_1x1_raw")]


@register_model("e3dsnn_seg_kitti")
def e3dsnn_seg_kitti(**kw) -> E3DSNNSeg:
    """semseg-3dsnn-v1m1-0-base.py (SemanticKITTI): in 4, 19 classes, embed 64, stages 64/128/128/256 (2 blocks
    each), decoder 256 x 4."""
    return E3DSNNSeg(**kw)


@register_model("e3dsnn_seg_tiny")
def e3dsnn_seg_tiny(**kw) -> E3DSNNSeg:
    """A CI-sized segmentation network (not from the reference): embed 8, stages 8/16, decoder 8/16."""
    cfg = dict(in_channels=4, num_classes=5, embed_channels=8, enc_channels=(8, 16), enc_depth=(1, 1),
               dec_channels=(8, 16))
    cfg.update(kw)
    return E3DSNNSeg(**cfg)
