"""Max-Former (Fang et al., "Max-Former"), multi-step over ``[T, B, C, H, W]``.

Follows bic-L/MaxFormer ``imagenet/max_former.py`` (``Max_Former``, ``maxformer_10_384/512/768``),
``imagenet/embedding_hub.py`` (``Embed``, ``Max_Embed``, ``Embed_Orig_ImageNet``, ``Embed_Max``; the strided
variant ``Embed_Orig_later`` is in ``cifar10-100/embedding_hub.py``) and ``imagenet/mixer_hub.py`` (``Mixer_DWC3/5/7``,
``S_MLP``, ``SSA``, ``Block_SSA``); read, not copied. For width ``D`` and an ``H x W`` image::

    stem (Embed_Orig_ImageNet, /4):  a = BN(conv3x3/2(x))                  real-valued image: MACs
                                     s = SN(a); b = BN(conv3x3/2(s))         -> D/4 ... (widths D/8 -> D/4)
                                     y = BN(conv3x3(SN(b))) + BN(conv1x1/2(s))
    stage 1: depths[0] x [x = x + BN(dwconv_k0(SN(x))); x = x + MLP(x)]    at D/4, k0 = 7
    embed (/2) -> D/2;  stage 2: depths[1] x the same with k1 = 5
    embed (/2) -> D;    stage 3: depths[2] x spike-driven attention blocks (SDSA-3 with 1x1 Q/K/V, D/64 heads)
    mean over H, W -> SN -> Linear -> mean over T

Patch embedding of stages 2 and 3 (``embedding``): ``"max"`` (``Embed_Max``, the paper's: the extra max-pool)::

    y = MaxPool(BN(conv3x3(SN(x)))) -> BN(conv3x3(SN(.)))   +   MaxPool(BN(conv1x1(SN(x))))

or ``"conv"`` (``Embed_Orig_later``, QKFormer's strided embedding, the baseline)::

    y = BN(conv3x3/2(SN(BN(conv3x3(SN(x))))))   +   BN(conv1x1/2(SN(x)))

MaxPool is 3x3, stride 2, padding 1. The reference constructors run ``T = 1`` by default (its T=4 models set
``T=4``). Images need ``H, W`` divisible by 16 here.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from spikelib.layers.multistep import SeqConvBN, reference_lif
from spikelib.layers.pool import MaxPool2d
from spikelib.layers.residual_mlp import ResidualSpikingMLP
from spikelib.layers.spike_attention import SpikeDrivenAttentionV2
from spikelib.models._images import check_image_size, check_time_steps, image_sequence
from spikelib.models.checkpoints import RefEntry, leaf
from spikelib.models.registry import register_model

__all__ = ["MaxFormer", "DWConvMixer", "SSABlock", "MaxFormerStem", "PatchEmbedMax", "PatchEmbedConv"]


class _Unit(nn.Module):
    """``[MaxPool](BN(conv(SN(x))))``; ``neuron=False`` when the input already is spikes (or the raw image)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, neuron: bool = True, pool: bool = False,
                 spike_input: bool = True) -> None:
        super().__init__()
        self.lif = reference_lif() if neuron else None
        self.conv = SeqConvBN(cin, cout, k, stride, k // 2, spike_input=spike_input)
        self.pool = MaxPool2d(3, 2, 1) if pool else None

    def spikes(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.lif is None else self.lif(x)

    def from_spikes(self, s: torch.Tensor) -> torch.Tensor:
        y = self.conv(s)
        if self.pool is not None:
            p = self.pool(y.flatten(0, 1))
            y = p.reshape(y.shape[0], -1, *p.shape[1:])
        return y


class MaxFormerStem(nn.Module):
    """``Embed_Orig_ImageNet``: real-valued image -> ``dim`` channels at 1/4 resolution."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.embed1 = _Unit(in_channels, dim // 2, 3, 2, neuron=False, spike_input=False)
        self.embed2 = _Unit(dim // 2, dim, 3, 2)
        self.embed3 = _Unit(dim, dim, 3, 1)
        self.embed4 = _Unit(dim // 2, dim, 1, 2, neuron=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.embed2.spikes(self.embed1.from_spikes(x))
        y = self.embed2.from_spikes(s)
        return self.embed3.from_spikes(self.embed3.spikes(y)) + self.embed4.from_spikes(s)

    def reference_layout(self, ref: str) -> List[RefEntry]:
        """The reference embedding's tensors at prefix ``ref``."""
        names = ('embed1', 'embed2', 'embed3', 'embed4')
        return [e for n in names for e in unit_layout(f"{ref}.{n}", getattr(self, n))]


class PatchEmbedMax(nn.Module):
    """``Embed_Max``: max-pool patch embedding, ``cin -> cout`` at half resolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.max_embed1 = _Unit(cin, cout, 3, 1, pool=True)
        self.embed1 = _Unit(cout, cout, 3, 1)
        self.max_embed2 = _Unit(cin, cout, 1, 1, neuron=False, pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.max_embed1.spikes(x)
        y = self.max_embed1.from_spikes(s)
        return self.embed1.from_spikes(self.embed1.spikes(y)) + self.max_embed2.from_spikes(s)

    def reference_layout(self, ref: str) -> List[RefEntry]:
        """The reference embedding's tensors at prefix ``ref``."""
        names = ('max_embed1', 'embed1', 'max_embed2')
        return [e for n in names for e in unit_layout(f"{ref}.{n}", getattr(self, n))]


class PatchEmbedConv(nn.Module):
    """``Embed_Orig_later`` (QKFormer's): strided-conv patch embedding, ``cin -> cout`` at half resolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.embed1 = _Unit(cin, cout, 3, 1)
        self.orig_embed1 = _Unit(cout, cout, 3, 2)
        self.embed2 = _Unit(cin, cout, 1, 2, neuron=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.embed1.spikes(x)
        y = self.embed1.from_spikes(s)
        return self.orig_embed1.from_spikes(self.orig_embed1.spikes(y)) + self.embed2.from_spikes(s)

    def reference_layout(self, ref: str) -> List[RefEntry]:
        """The reference embedding's tensors at prefix ``ref``."""
        names = ('embed1', 'orig_embed1', 'embed2')
        return [e for n in names for e in unit_layout(f"{ref}.{n}", getattr(self, n))]


class DWConvMixer(nn.Module):
    """Token mixer ``x + BN(dwconv_k(SN(x)))`` (``Mixer_DWC3/5/7``), then the MLP block (``Block_DWC*``)."""

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if kernel_size not in (3, 5, 7):
            raise ValueError(f"kernel_size of the depth-wise mixer must be 3, 5 or 7, got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.lif = reference_lif()
        self.dwconv = SeqConvBN(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim, bias=True)
        self.mlp = ResidualSpikingMLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x + self.dwconv(self.lif(x)))

    def reference_layout(self, ref: str) -> List[RefEntry]:
        """``Block_DWC{k}`` at prefix ``ref`` (the 7x7 mixer's tensors are named ``conv5``, ``conv5_bn``)."""
        conv = "conv5" if self.kernel_size == 7 else "conv"
        return [leaf(f"{ref}.mixer.{conv}", self.dwconv.conv), leaf(f"{ref}.mixer.{conv}_bn", self.dwconv.bn)
                ] + mlp_layout(f"{ref}.mlp", self.mlp)


class SSABlock(nn.Module):
    """``Block_SSA``: ``x = x + SSA(x)`` (SDSA-3 with 1x1 Q/K/V, :class:`SpikeDrivenAttentionV2` ``qkv="conv1x1"``),
    then the MLP block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.attn = SpikeDrivenAttentionV2(dim, num_heads, qkv="conv1x1")
        self.mlp = ResidualSpikingMLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x + self.attn(x))

    def reference_layout(self, ref: str) -> List[RefEntry]:
        """``Block_SSA`` at prefix ``ref`` (its Q/K/V/projection are ``Conv1d`` + ``BatchNorm1d`` on tokens)."""
        a = self.attn
        out: List[RefEntry] = []
        for n in ("q", "k", "v", "proj"):
            m = getattr(a, f"{n}_conv")
            out += [leaf(f"{ref}.attn.{n}_conv", m.conv, "conv1d"), leaf(f"{ref}.attn.{n}_bn", m.bn)]
        return out + mlp_layout(f"{ref}.mlp", self.mlp)


def mlp_layout(ref: str, mlp: ResidualSpikingMLP) -> List[RefEntry]:
    """``S_MLP`` / ``MS_MLP_Conv`` at prefix ``ref``."""
    return [leaf(f"{ref}.fc1_conv", mlp.fc1.conv), leaf(f"{ref}.fc1_bn", mlp.fc1.bn),
            leaf(f"{ref}.fc2_conv", mlp.fc2.conv), leaf(f"{ref}.fc2_bn", mlp.fc2.bn)]


def unit_layout(ref: str, unit: "_Unit") -> List[RefEntry]:
    """``Embed`` / ``Max_Embed`` at prefix ``ref``."""
    return [leaf(f"{ref}.embed_conv", unit.conv.conv), leaf(f"{ref}.embed_bn", unit.conv.bn)]


_EMBEDDINGS = {"max": PatchEmbedMax, "conv": PatchEmbedConv}


class MaxFormer(nn.Module):
    """Max-Former (ImageNet); ``forward(x)`` takes ``[B, C, H, W]`` (repeated over ``T``) or a 5-D sequence.

    Args:
        embed_dim: width ``D`` of the attention stage (stages 1, 2 have ``D/4``, ``D/2``; ``D`` divisible by 8).
        depths: blocks of the three stages (the reference: 1, 2, 7, "10" in its names).
        mixer_kernels: depth-wise kernel sizes of stages 1 and 2 (the reference: 7, 5; 3 is also available).
        num_heads: attention heads (default ``D // 64`` as in the reference).
        embedding: ``"max"`` (Max-Former) or ``"conv"`` for the patch embedding of stages 2 and 3.
        mlp_ratio, in_channels, num_classes, T: as usual.
        time_first: a 5-D input is ``[T, B, C, H, W]`` (True) or ``[B, T, C, H, W]`` (False, the reference loader's).
    """

    stride = 16
    reference_wrappers = ()

    def __init__(self, embed_dim: int = 384, depths: Sequence[int] = (1, 2, 7), mixer_kernels: Sequence[int] = (7, 5),
                 num_heads: int = 0, embedding: str = "max", mlp_ratio: float = 4.0, in_channels: int = 3,
                 num_classes: int = 1000, T: int = 1, time_first: bool = True) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ValueError(f"embed_dim must be divisible by 8 (the stem has embed_dim // 8), got {embed_dim}")
        if embedding not in _EMBEDDINGS:
            raise ValueError(f"embedding must be one of {sorted(_EMBEDDINGS)}, got {embedding!r}")
        if len(depths) != 3 or len(mixer_kernels) != 2:
            raise ValueError(f"depths needs 3 entries and mixer_kernels 2, got {tuple(depths)}, {tuple(mixer_kernels)}")
        if not isinstance(time_first, bool):
            raise TypeError(f"time_first must be a bool, got {time_first!r}")
        self.T, self.in_channels, self.num_classes = check_time_steps(T), in_channels, num_classes
        self.time_first, self.embedding, self.depths = time_first, embedding, tuple(depths)
        D = int(embed_dim)
        heads = num_heads or max(D // 64, 1)
        emb = _EMBEDDINGS[embedding]
        self.features = nn.Sequential(
            MaxFormerStem(in_channels, D // 4),
            *(DWConvMixer(D // 4, mixer_kernels[0], mlp_ratio) for _ in range(depths[0])),
            emb(D // 4, D // 2),
            *(DWConvMixer(D // 2, mixer_kernels[1], mlp_ratio) for _ in range(depths[1])),
            emb(D // 2, D),
            *(SSABlock(D, heads, mlp_ratio) for _ in range(depths[2])),
        )
        self.head_lif = reference_lif()
        self.head = nn.Linear(D, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():  # the reference's _init_weights (Conv2d and BatchNorm2d only)
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = image_sequence(x, self.T, self.in_channels, self.time_first)
        check_image_size(self.stride, x)
        x = self.features(x).flatten(3).mean(3)
        return self.head(self.head_lif(x)).mean(0)

    def reference_layout(self) -> List[RefEntry]:
        """The reference ``Max_Former`` (imagenet/max_former.py) state_dict: ``patch_embed1..3`` are registered
        before ``stage1..3`` there (``setattr`` order)."""
        if self.embedding != "max":
            raise ValueError("the reference Max_Former uses the max-pool embedding; embedding='conv' has no layout")
        f = list(self.features)
        d0, d1, _ = self.depths
        embeds = [f[0], f[1 + d0], f[2 + d0 + d1]]
        stages = [f[1:1 + d0], f[2 + d0:2 + d0 + d1], f[3 + d0 + d1:]]
        out: List[RefEntry] = []
        for i, e in enumerate(embeds):
            out += e.reference_layout(f"patch_embed{i + 1}")
        for i, blocks in enumerate(stages):
            for j, blk in enumerate(blocks):
                out += blk.reference_layout(f"stage{i + 1}.{j}")
        if isinstance(self.head, nn.Linear):
            out.append(leaf("head", self.head))
        return out


def _maxformer(D: int, **kw) -> MaxFormer:
    return MaxFormer(embed_dim=D, **kw)


@register_model("maxformer_10_384")
def maxformer_10_384(**kw) -> MaxFormer:
    """``maxformer_10_384`` of the reference (ImageNet, 1000 classes, T=1 unless given)."""
    return _maxformer(384, **kw)


@register_model("maxformer_10_512")
def maxformer_10_512(**kw) -> MaxFormer:
    """``maxformer_10_512`` of the reference."""
    return _maxformer(512, **kw)


@register_model("maxformer_10_768")
def maxformer_10_768(**kw) -> MaxFormer:
    """``maxformer_10_768`` of the reference."""
    return _maxformer(768, **kw)


@register_model("maxformer_tiny_test")
def maxformer_tiny_test(**kw) -> MaxFormer:
    """A tiny configuration for CI (not from the reference): width 32, one block per stage, 2 heads."""
    kw.setdefault("depths", (1, 1, 1))
    kw.setdefault("num_heads", 2)
    kw.setdefault("num_classes", 10)
    kw.setdefault("T", 2)
    kw.setdefault("embed_dim", 32)
    return MaxFormer(**kw)
