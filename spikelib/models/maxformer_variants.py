"""Max-Former's CIFAR and event-camera models (Fang et al., "Spiking Transformers Need High Frequency Information").

Follows bic-L/MaxFormer ``cifar10-100/max_former.py`` and ``event/max_former.py`` (``Max_Former``), their
``embedding_hub.py`` (``Embed``, ``Max_Embed``, ``Embed_Orig``, ``Embed_Max``, ``Embed_Max_plus``) and
``mixer_hub.py`` (``Block_identity``, ``Block_DWC3``, ``Block_SSA``, ``S_MLP``); read, not copied. Shared pieces
(``Embed_Max``, the depth-wise mixer, the SSA block) are those of :mod:`spikelib.models.maxformer`. For width ``D``::

    CIFAR (cifar10-100, 32 x 32, T = 4, D = 384):
      stem  (Embed_Orig, stride 1):  a = BN(conv3x3(x))                        real-valued image: MACs
                                     y = BN(conv3x3(SN(a))) + BN(conv1x1(SN'(a)))   -> D/4   (two neurons on a)
      stage 1: x -> MLP(x)                       at D/4   (Block_identity: no token mixer)
      Embed_Max (/2) -> D/2;  stage 2: x = x + BN(dwconv3x3(SN(x))); MLP     (Block_DWC3)
      Embed_Max (/2) -> D;    stage 3: 2 x SSA blocks (8 heads)
    event (DVS128 Gesture / CIFAR10-DVS, 128 x 128, T = 16, D = 256, mlp_ratio 1):
      stem  (Embed_Max_plus, /8):    a = BN(conv3x3(x))                        event counts: MACs
                                     b = MaxPool(BN(conv3x3(SN(a))))            D/8 -> D/4, /2
                                     s = SN(b);  c = MaxPool(BN(conv3x3(s)))    -> D/2, /4
                                     y = MaxPool(BN(conv3x3(SN(c)))) + BN(conv1x1/4(s))      -> D, /8
      (with D here the stem width D/2 of the model) stage 1: DWC3 block at D/2;  Embed_Max (/2) -> D;
      stage 2: 1 SSA block (16 heads)
    head: mean over H, W -> SN -> Linear -> mean over T      (the reference averages over T before the Linear;
                                                              the two are equal, the Linear being affine)

``MLP`` is ``S_MLP`` (:class:`~spikelib.layers.residual_mlp.ResidualSpikingMLP`), which adds an inner residual when
``mlp_ratio = 1`` (the event models). The references initialise only their Linear layers (trunc normal, std 0.02);
convolutions keep PyTorch's defaults. The CIFAR reference ignores its configs' ``layer`` and ``num_heads`` (blocks and
8 heads are fixed in the code) and takes static images only; the event reference transposes a 5-D batch
``[B, T, ...]`` itself: here a 5-D input's layout is the explicit ``time_first`` (:mod:`spikelib.models._images`).
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from spikelib.layers.multistep import SeqConvBN, reference_lif
from spikelib.layers.residual_mlp import ResidualSpikingMLP
from spikelib.models._images import check_image_size, check_time_steps, image_sequence
from spikelib.models.checkpoints import RefEntry, leaf
from spikelib.models.maxformer import DWConvMixer, PatchEmbedMax, SSABlock, _Unit, mlp_layout, unit_layout
from spikelib.models.registry import register_model

__all__ = ["MaxFormerCIFAR", "MaxFormerEvent", "CifarStem", "EventStem"]


class CifarStem(nn.Module):
    """``Embed_Orig``: real-valued image -> ``dim`` channels at full resolution."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = SeqConvBN(in_channels, dim // 2, 3, 1, 1, spike_input=False)
        self.embed1 = _Unit(dim // 2, dim, 3, 1)
        self.embed2 = _Unit(dim // 2, dim, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.proj(x)
        y = self.embed1.from_spikes(self.embed1.spikes(a))
        return y + self.embed2.from_spikes(self.embed2.spikes(a))

    def reference_layout(self, ref: str) -> List[RefEntry]:
        return [leaf(f"{ref}.proj_conv", self.proj.conv), leaf(f"{ref}.proj_bn", self.proj.bn)] + unit_layout(
            f"{ref}.embed1", self.embed1) + unit_layout(f"{ref}.embed2", self.embed2)


class EventStem(nn.Module):
    """``Embed_Max_plus``: event frames -> ``dim`` channels at 1/8 resolution."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        if dim % 8:
            raise ValueError(f"the event stem width must be divisible by 8, got {dim}")
        self.proj = SeqConvBN(in_channels, dim // 8, 3, 1, 1, spike_input=False)
        self.max_embed1 = _Unit(dim // 8, dim // 4, 3, 1, pool=True)
        self.max_embed2 = _Unit(dim // 4, dim // 2, 3, 1, pool=True)
        self.max_embed3 = _Unit(dim // 2, dim, 3, 1, pool=True)
        self.embed1 = _Unit(dim // 4, dim, 1, 4, neuron=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.max_embed1.from_spikes(self.max_embed1.spikes(self.proj(x)))
        s = self.max_embed2.spikes(b)
        c = self.max_embed2.from_spikes(s)
        return self.max_embed3.from_spikes(self.max_embed3.spikes(c)) + self.embed1.from_spikes(s)

    def reference_layout(self, ref: str) -> List[RefEntry]:
        out = [leaf(f"{ref}.proj_conv", self.proj.conv), leaf(f"{ref}.proj_bn", self.proj.bn)]
        for n in ("max_embed1", "max_embed2", "max_embed3", "embed1"):
            out += unit_layout(f"{ref}.{n}", getattr(self, n))
        return out


class _MaxFormerBase(nn.Module):
    """Input handling, head and weight initialisation shared by the CIFAR and event models."""

    stride = 1
    reference_wrappers = ()

    def _setup(self, in_channels: int, num_classes: int, T: int, time_first: bool) -> None:
        if not isinstance(time_first, bool):
            raise TypeError(f"time_first must be a bool, got {time_first!r}")
        self.T, self.in_channels, self.num_classes = check_time_steps(T), in_channels, num_classes
        self.time_first = time_first

    def _head(self, dim: int) -> None:
        self.head_lif = reference_lif()
        self.head = nn.Linear(dim, self.num_classes) if self.num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):  # the references' _init_weights (Linear only)
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = image_sequence(x, self.T, self.in_channels, self.time_first)
        check_image_size(self.stride, x)
        x = self.features(x).flatten(3).mean(3)
        return self.head(self.head_lif(x)).mean(0)

    def _layout(self, embeds: List[nn.Module], stages: List[List[nn.Module]]) -> List[RefEntry]:
        out: List[RefEntry] = []
        for i, e in enumerate(embeds):
            out += e.reference_layout(f"patch_embed{i + 1}")
        for i, blocks in enumerate(stages):
            for j, blk in enumerate(blocks):
                out += (mlp_layout(f"stage{i + 1}.{j}.mlp", blk) if isinstance(blk, ResidualSpikingMLP)
                        else blk.reference_layout(f"stage{i + 1}.{j}"))
        if isinstance(self.head, nn.Linear):
            out.append(leaf("head", self.head))
        return out


class MaxFormerCIFAR(_MaxFormerBase):
    """Max-Former for CIFAR (module docstring); ``forward`` takes ``[B, C, H, W]`` or a 5-D sequence.

    Args:
        embed_dim: width ``D`` (stages at ``D/4``, ``D/2``, ``D``; divisible by 8).
        num_heads: heads of the SSA blocks (8 in the reference).
        depths: blocks per stage (the reference: 1, 1, 2).
        mlp_ratio, in_channels, num_classes, T, time_first: as usual.
    """

    stride = 4

    def __init__(self, embed_dim: int = 384, num_heads: int = 8, depths=(1, 1, 2), mlp_ratio: float = 4.0,
                 in_channels: int = 3, num_classes: int = 10, T: int = 4, time_first: bool = True) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ValueError(f"embed_dim must be divisible by 8, got {embed_dim}")
        if len(depths) != 3:
            raise ValueError(f"depths needs 3 entries, got {tuple(depths)}")
        self._setup(in_channels, num_classes, T, time_first)
        D, r = int(embed_dim), mlp_ratio
        self.depths = tuple(int(d) for d in depths)
        self.features = nn.Sequential(
            CifarStem(in_channels, D // 4),
            *(ResidualSpikingMLP(D // 4, int(D // 4 * r)) for _ in range(self.depths[0])),
            PatchEmbedMax(D // 4, D // 2),
            *(DWConvMixer(D // 2, 3, r) for _ in range(self.depths[1])),
            PatchEmbedMax(D // 2, D),
            *(SSABlock(D, num_heads, r) for _ in range(self.depths[2])),
        )
        self._head(D)

    def reference_layout(self) -> List[RefEntry]:
        """The reference ``cifar10-100/max_former.py`` ``Max_Former`` state_dict (embeddings before stages)."""
        f, (d0, d1, _) = list(self.features), self.depths
        return self._layout([f[0], f[1 + d0], f[2 + d0 + d1]],
                            [f[1:1 + d0], f[2 + d0:2 + d0 + d1], f[3 + d0 + d1:]])


class MaxFormerEvent(_MaxFormerBase):
    """Max-Former for event cameras (module docstring); ``forward`` takes a 5-D sequence (or a static frame).

    Args:
        embed_dim: width ``D`` of the SSA stage (the stem and DWC stage have ``D/2``; divisible by 16).
        num_heads: heads of the SSA blocks (16 in the reference).
        depths: blocks of the two stages (the reference: 1, 1).
        mlp_ratio: 1 in the reference (``event/train.py``): the MLPs then have the inner residual.
        in_channels: 2 (event polarities); num_classes, T, time_first: as usual.
    """

    stride = 16

    def __init__(self, embed_dim: int = 256, num_heads: int = 16, depths=(1, 1), mlp_ratio: float = 1.0,
                 in_channels: int = 2, num_classes: int = 11, T: int = 16, time_first: bool = True) -> None:
        super().__init__()
        if embed_dim % 16:
            raise ValueError(f"embed_dim must be divisible by 16 (the stem has embed_dim // 16), got {embed_dim}")
        if len(depths) != 2:
            raise ValueError(f"depths needs 2 entries, got {tuple(depths)}")
        self._setup(in_channels, num_classes, T, time_first)
        D, r = int(embed_dim), mlp_ratio
        self.depths = tuple(int(d) for d in depths)
        self.features = nn.Sequential(
            EventStem(in_channels, D // 2),
            *(DWConvMixer(D // 2, 3, r) for _ in range(self.depths[0])),
            PatchEmbedMax(D // 2, D),
            *(SSABlock(D, num_heads, r) for _ in range(self.depths[1])),
        )
        self._head(D)

    def reference_layout(self) -> List[RefEntry]:
        """The reference ``event/max_former.py`` ``Max_Former`` state_dict (embeddings before stages)."""
        f, (d0, _) = list(self.features), self.depths
        return self._layout([f[0], f[1 + d0]], [f[1:1 + d0], f[2 + d0:]])


@register_model("maxformer_cifar")
def maxformer_cifar(**kw) -> MaxFormerCIFAR:
    """The CIFAR-10/100 Max-Former of ``cifar10-100/cifar10.yaml`` (D 384, mlp 4, T 4, 32 x 32; 10 classes)."""
    return MaxFormerCIFAR(**kw)


@register_model("maxformer_event")
def maxformer_event(**kw) -> MaxFormerEvent:
    """The event-camera Max-Former of ``event/dvsgesture.yaml`` (D 256, mlp 1, T 16, 128 x 128, 11 classes)."""
    return MaxFormerEvent(**kw)


@register_model("maxformer_cifar_tiny_test")
def maxformer_cifar_tiny_test(**kw) -> MaxFormerCIFAR:
    """A tiny CIFAR Max-Former for CI (not from the reference): D 32, 2 heads, T 2."""
    kw.setdefault("embed_dim", 32)
    kw.setdefault("num_heads", 2)
    kw.setdefault("T", 2)
    return MaxFormerCIFAR(**kw)


@register_model("maxformer_event_tiny_test")
def maxformer_event_tiny_test(**kw) -> MaxFormerEvent:
    """A tiny event Max-Former for CI (not from the reference): D 32, 2 heads, T 3, 32 x 32 frames."""
    kw.setdefault("embed_dim", 32)
    kw.setdefault("num_heads", 2)
    kw.setdefault("T", 3)
    kw.setdefault("num_classes", 4)
    return MaxFormerEvent(**kw)
