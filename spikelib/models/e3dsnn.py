"""E-3DSNN: spike sparse convolution network for point-cloud classification (Qiu et al., "Efficient 3D Recognition
with Event-driven Spike Sparse Convolution").

Reference: bollossom/E-3DSNN, classify_seg/pointcept/models/sparse_unet/E_3DSNN.py (``SNN_3dv``, ``DonwBlock``,
``BasicBlock``, ``multispike``) and classify_seg/configs/modelnet40/cls-E3DSNN-v1m1-0-{T,S}.py (sizes, recipe). With
``spike`` the integer spike of :mod:`spikelib.sparse.activation` (``D = 4``), ``subm`` a submanifold 3x3x3 conv without
bias and ``BN`` batch norm (eps 1e-3, momentum 0.01) over the active sites::

    stem   : x -> subm -> BN -> spike -> subm -> BN -> spike -> subm -> BN        (the first conv sees real features)
    stage i: x -> spike -> SparseConv(k 2, s 2) -> BN -> depth_i x block
    block  : u = x + BN(subm(spike(x)));  y = u + BN(subm(spike(BN(subm(spike(u))))))    (membrane shortcuts)
    head   : y -> 1x1x1 subm with bias (num_classes) -> mean over each item's active sites -> logits

The head is the reference's ``SubMConv3d(kernel_size=1, bias=True)`` followed by the per-item mean (its
``DefaultClassifier`` adds no further head in this configuration). Weights of the submanifold convs are initialised
trunc-normal (std 0.02, bias 0) and the BN affine to (1, 0), as the reference's ``_init_weights``; the strided convs
keep the default initialisation.

Input: a :class:`~spikelib.sparse.SparseSpikeTensor` with ``in_channels`` features per voxel (6: normalised xyz +
normal); or point clouds, voxelised by the model's spike voxel coding (random point per voxel and augmentation in
training mode, deterministic in eval): a list of ``[P_b, 3 or 6]`` clouds (:meth:`E3DSNN.forward_points`), or a
float tensor ``[P, B, 3 or 6]`` -- points first, which is what spikelib's trainer hands a model after turning a
loader batch ``[B, P, C]`` "time first" (:func:`spikelib.training.loop.to_time_first`).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from torch import nn

from spikelib.models.checkpoints import RefEntry, leaf
from spikelib.models.registry import register_model
from spikelib.sparse import (IntegerSpike, SparseBatchNorm, SparseConv3d, SparseSpikeTensor, SpikeVoxelCoding,
                             SubMConv3d, collate_voxels, global_avg_pool)

__all__ = ["E3DSNN", "e3dsnn_tiny", "e3dsnn_t", "e3dsnn_s", "e3dsnn_base"]


class _Seq(nn.Sequential):
    """``nn.Sequential`` over sparse tensors."""


def _bn(c: int, eps: float, momentum: float) -> SparseBatchNorm:
    return SparseBatchNorm(c, eps=eps, momentum=momentum)


class _SpikeConvBN(_Seq):
    """spike -> subm 3x3x3 -> BN."""

    def __init__(self, c: int, d: int, eps: float, momentum: float) -> None:
        super().__init__(IntegerSpike(d), SubMConv3d(c, c, 3, spike_input=True), _bn(c, eps, momentum))


class BasicBlock(nn.Module):
    """The reference's ``BasicBlock``: two membrane shortcuts around one and two spike-conv-BN units."""

    def __init__(self, c: int, d: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.block = _SpikeConvBN(c, d, eps, momentum)
        self.voxel_block = _Seq(_SpikeConvBN(c, d, eps, momentum), _SpikeConvBN(c, d, eps, momentum))

    def forward(self, x: SparseSpikeTensor) -> SparseSpikeTensor:
        u = x.replace_features(self.block(x).features + x.features)
        return u.replace_features(self.voxel_block(u).features + u.features)


class DownBlock(nn.Module):
    """spike -> SparseConv3d(k 2, s 2) -> BN, then ``depth`` basic blocks (the reference's ``DonwBlock``)."""

    def __init__(self, c_in: int, c_out: int, depth: int, d: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.down = _Seq(IntegerSpike(d), SparseConv3d(c_in, c_out, 2, 2, spike_input=True), _bn(c_out, eps, momentum))
        self.blocks = nn.ModuleList(BasicBlock(c_out, d, eps, momentum) for _ in range(depth))

    def forward(self, x: SparseSpikeTensor) -> SparseSpikeTensor:
        x = self.down(x)
        for block in self.blocks:
            x = block(x)
        return x


def _check_sizes(name: str, values: Sequence[int], n: Optional[int] = None, minimum: int = 1) -> List[int]:
    out = list(values)
    if not out or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in out):
        raise ValueError(f"{name} must be a non-empty list of ints >= {minimum}, got {values!r}")
    if n is not None and len(out) != n:
        raise ValueError(f"{name} must have {n} entries (one per stage), got {len(out)}")
    return out


class E3DSNN(nn.Module):
    """E-3DSNN classifier (module docstring).

    Args:
        in_channels: features per voxel (6 = xyz + normal in the reference).
        num_classes: number of classes (40 for ModelNet40).
        embed_channels: stem width.
        enc_channels: width of every stage (each starts with a stride-2 sparse conv).
        enc_depth: basic blocks per stage.
        max_spikes: ``D`` of the integer spike (4).
        bn_eps, bn_momentum: batch-norm settings of the reference (1e-3, 0.01).
        grid_size, use_normals, margin: spike voxel coding used by :meth:`forward_points` (0.01, True, 96).
        points_first: a point-cloud tensor is ``[P, B, C]`` (True: what spikelib's trainer hands over) or
            ``[B, P, C]`` (False: a plain loader batch); the two cannot be told apart from the shape.
    """

    def __init__(self, in_channels: int = 6, num_classes: int = 40, embed_channels: int = 16,
                 enc_channels: Sequence[int] = (16, 32, 64, 128), enc_depth: Sequence[int] = (1, 1, 1, 1),
                 max_spikes: int = 4, bn_eps: float = 1e-3, bn_momentum: float = 0.01, grid_size: float = 0.01,
                 use_normals: bool = True, margin: int = 96, points_first: bool = True) -> None:
        super().__init__()
        in_channels, num_classes, embed_channels = (_check_sizes(n, [v])[0] for n, v in (
            ("in_channels", in_channels), ("num_classes", num_classes), ("embed_channels", embed_channels)))
        enc_channels = _check_sizes("enc_channels", enc_channels)
        enc_depth = _check_sizes("enc_depth", enc_depth, len(enc_channels), minimum=0)
        self.coding = SpikeVoxelCoding(grid_size, use_normals=use_normals)
        if self.coding.in_channels != in_channels:
            raise ValueError(f"in_channels={in_channels} but the voxel coding gives {self.coding.in_channels} "
                             f"features (use_normals={use_normals})")
        if not isinstance(points_first, bool):
            raise TypeError(f"points_first must be a bool, got {points_first!r}")
        self.in_channels, self.num_classes, self.margin = in_channels, num_classes, margin
        self.points_first = points_first
        d, eps, mom = max_spikes, bn_eps, bn_momentum
        e = embed_channels
        self.stem = _Seq(SubMConv3d(in_channels, e, 3), _bn(e, eps, mom), IntegerSpike(d),
                         SubMConv3d(e, e, 3, spike_input=True), _bn(e, eps, mom), IntegerSpike(d),
                         SubMConv3d(e, e, 3, spike_input=True), _bn(e, eps, mom))
        chans = [e] + enc_channels
        self.enc = nn.ModuleList(DownBlock(chans[i], chans[i + 1], enc_depth[i], d, eps, mom)
                                 for i in range(len(enc_channels)))
        self.final = SubMConv3d(enc_channels[-1], num_classes, 1, bias=True)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, SubMConv3d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, SparseBatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: Union[SparseSpikeTensor, torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of a sparse tensor, a points-first tensor ``[P, B, C]`` or a list of clouds."""
        if isinstance(x, torch.Tensor):
            if x.dim() != 3:
                layout = "points first [P, B, 3 or 6]" if self.points_first else "batch first [B, P, 3 or 6]"
                raise ValueError(f"a point-cloud tensor must be {layout} (points_first={self.points_first}), got "
                                 f"shape {tuple(x.shape)}")
            x = self.voxelize(list(x.transpose(0, 1) if self.points_first else x))
        elif isinstance(x, (list, tuple)):
            x = self.voxelize(x)
        if not isinstance(x, SparseSpikeTensor):
            raise TypeError(f"x must be a SparseSpikeTensor, a tensor [P, B, C] or a list of point clouds, got "
                            f"{type(x).__name__}")
        if x.multistep or x.num_channels != self.in_channels:
            raise ValueError(f"x must have features [N, {self.in_channels}], got {tuple(x.features.shape)}")
        x = self.stem(x)
        for stage in self.enc:
            x = stage(x)
        return global_avg_pool(self.final(x))

    reference_wrappers = ("backbone.",)

    def reference_layout(self) -> List[RefEntry]:
        """The reference ``SNN_3dv`` state_dict (Pointcept wraps it as ``backbone.``, DDP as ``module.``): spconv
        weights ``[C_out, kx, ky, kz, C_in]``; the final 1x1x1 layer is read as spconv computes with it (raw view)."""
        out = [leaf(f"stem.{i}", self.stem[i], "spconv" if i % 3 == 0 else "same") for i in (0, 1, 3, 4, 6, 7)]
        for i, stage in enumerate(self.enc):
            out += [leaf(f"enc.{i}.down.1", stage.down[1], "spconv"), leaf(f"enc.{i}.down.2", stage.down[2])]
            for j, blk in enumerate(stage.blocks):
                ref = f"enc.{i}.blocks.{j}"
                out += [leaf(f"{ref}.block.1", blk.block[1], "spconv"), leaf(f"{ref}.block.2", blk.block[2])]
                for k, unit in enumerate(blk.voxel_block):
                    out += [leaf(f"{ref}.voxel_block.{3 * k + 1}", unit[1], "spconv"),
                            leaf(f"{ref}.voxel_block.{3 * k + 2}", unit[2])]
        return out + [leaf("final", self.final, "spconv_1x1_raw")]

    def voxelize(self, clouds: Sequence[torch.Tensor], generator: Optional[torch.Generator] = None
                 ) -> SparseSpikeTensor:
        """Spike voxel coding of point clouds ``[P, 3 or 6]`` (random point per voxel + augmentation in training)."""
        if len(clouds) == 0:
            raise ValueError("clouds is empty: at least one point cloud is needed")
        param = next(self.parameters())
        items = []
        for b, p in enumerate(clouds):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"cloud {b} must be a tensor [P, 3 or 6], got {type(p).__name__}")
            if p.is_floating_point():  # voxelised where the model lives, in its dtype (random draws on the CPU)
                p = p.to(device=param.device, dtype=param.dtype)
            items.append(self.coding(p, training=self.training, generator=generator))
        return collate_voxels(items, self.margin)

    def forward_points(self, clouds: Sequence[torch.Tensor], generator: Optional[torch.Generator] = None
                       ) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of a list of point clouds."""
        return self(self.voxelize(clouds, generator))


@register_model("e3dsnn_tiny")
def e3dsnn_tiny(**kw) -> E3DSNN:
    """A CI-sized E-3DSNN: two stages of width 8/16 (one block each), voxels of 0.1, BN momentum 0.1 (the reference's
    0.01 leaves the running statistics far from the data after the few hundred steps of a CI run)."""
    cfg = dict(embed_channels=8, enc_channels=(8, 16), enc_depth=(1, 1), grid_size=0.1, bn_momentum=0.1)
    cfg.update(kw)
    return E3DSNN(**cfg)


@register_model("e3dsnn_t")
def e3dsnn_t(**kw) -> E3DSNN:
    """E-3DSNN-T (cls-E3DSNN-v1m1-0-T.py: embed 16, stages 16/32/64/128, depth 1 each)."""
    cfg = dict(embed_channels=16, enc_channels=(16, 32, 64, 128), enc_depth=(1, 1, 1, 1))
    cfg.update(kw)
    return E3DSNN(**cfg)


@register_model("e3dsnn_s")
def e3dsnn_s(**kw) -> E3DSNN:
    """E-3DSNN-S (cls-E3DSNN-v1m1-0-S.py: embed 24, stages 24/48/96/160, depth 1 each)."""
    cfg = dict(embed_channels=24, enc_channels=(24, 48, 96, 160), enc_depth=(1, 1, 1, 1))
    cfg.update(kw)
    return E3DSNN(**cfg)


@register_model("e3dsnn_base")
def e3dsnn_base(**kw) -> E3DSNN:
    """The defaults of the reference class ``SNN_3dv`` (embed 64, stages 64/64/128/256, depth 2/3/6/4)."""
    cfg = dict(embed_channels=64, enc_channels=(64, 64, 128, 256), enc_depth=(2, 3, 6, 4))
    cfg.update(kw)
    return E3DSNN(**cfg)
