"""Meta-SpikeFormer (Spike-driven Transformer V2, Yao et al., ICLR 2024), multi-step over ``[T, B, C, H, W]``.

Follows BICLab/Spike-Driven-Transformer-V2 ``classification/models.py`` (``Spiking_vit_MetaFormer``, ``SepConv``,
``MS_ConvBlock``, ``MS_DownSampling``, ``MS_Block``, ``metaspikformer_8_384/512/768``); read, not copied. Layout for
``embed_dims = (c0, c1, c2, c3)`` and an ``H x W`` image (repeated over ``T`` steps when static)::

    down 7x7/2 -> c0/2 (real-valued input: MACs)  ConvBlock(c0/2)
    down 3x3/2 -> c0                               ConvBlock(c0)
    down 3x3/2 -> c1                               ConvBlock(c1) x 2
    down 3x3/2 -> c2                               TransformerBlock(c2) x depths[0]     (SDSA-3, RepConv Q/K/V)
    down 3x3/1 -> c3                               TransformerBlock(c3) x depths[1]
    mean over H, W -> Linear -> mean over T      (the head takes the real-valued mean: MACs)

``ConvBlock``: ``x = x + SepConv(x); x = x + BN(conv3x3(SN(BN(conv3x3(SN(x))))))`` (widths c -> 4c -> c);
``SepConv``: ``BN(pw(dw7x7(SN(BN(pw(SN(x)))))))`` (widths c -> 2c -> c). Downsampling: ``BN(conv(SN(x)))`` (no
neuron before the first). The reference code runs ``T = 1`` by default (``self.T = 1``); images need ``H, W``
divisible by 16 here (the reference pads silently). Note: the constructors keep the reference code's names and widths;
their parameter counts (31.3M, 55.4M, 123.7M) are those the paper gives for its 8-512 and 8-768 models and a larger
one, i.e. the code's names are one size ahead of the paper's table (the paper's 15.1M "8-384" matches widths
(64, 128, 256, 360), which no constructor of models.py builds). The reference's distillation head (``kd=True``, a
second Linear on ``SN(mean)``) is not built. Neurons: :func:`spikelib.layers.multistep.reference_lif`.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from spikelib.layers.multistep import SeqConvBN, check_sequence_image, reference_lif
from spikelib.layers.spike_attention import MetaTransformerBlock
from spikelib.models.registry import register_model

__all__ = ["MetaSpikeFormer", "SepConv", "MSConvBlock", "MSDownsampling", "check_image_size", "check_time_steps",
           "to_sequence"]


def to_sequence(x: torch.Tensor, T: int, in_channels: int) -> torch.Tensor:
    """A static image ``[B, C, H, W]`` repeated over ``T`` steps, or a sequence ``[T', B, C, H, W]`` as it is."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4:
        if x.shape[1] != in_channels:
            raise ValueError(f"x has {x.shape[1]} channels (dim 1 of [B, C, H, W]); the model expects {in_channels}")
        x = x.unsqueeze(0).expand(T, *x.shape)
    elif x.dim() != 5:
        raise ValueError(f"x must be an image batch [B, C, H, W] or a sequence [T, B, C, H, W], got {tuple(x.shape)}")
    check_sequence_image(x, in_channels)
    return x


def check_time_steps(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T (time steps) must be an integer >= 1, got {T!r}")
    return T


def check_image_size(stride: int, x: torch.Tensor) -> None:
    H, W = x.shape[-2:]
    if H % stride or W % stride:
        raise ValueError(f"image size {H}x{W} is not divisible by the model's total patching stride {stride}")


class SepConv(nn.Module):
    """Inverted separable convolution with spiking inputs (MobileNetV2 style): c -> ratio c -> c."""

    def __init__(self, dim: int, expansion: float = 2.0, kernel_size: int = 7) -> None:
        super().__init__()
        med = int(expansion * dim)
        self.lif1 = reference_lif()
        self.pw1 = SeqConvBN(dim, med)
        self.lif2 = reference_lif()
        self.dw = SeqConvBN(med, med, kernel_size, padding=kernel_size // 2, groups=med, bn=False)
        self.pw2 = SeqConvBN(med, dim, spike_input=False)  # input: the depth-wise conv's real-valued output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.dw(self.lif2(self.pw1(self.lif1(x)))))


class MSConvBlock(nn.Module):
    """``x = x + SepConv(x); x = x + BN(conv3x3(SN(BN(conv3x3(SN(x))))))``."""

    def __init__(self, dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.sepconv = SepConv(dim)
        self.lif1 = reference_lif()
        self.conv1 = SeqConvBN(dim, dim * mlp_ratio, 3, padding=1)
        self.lif2 = reference_lif()
        self.conv2 = SeqConvBN(dim * mlp_ratio, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sepconv(x)
        return x + self.conv2(self.lif2(self.conv1(self.lif1(x))))


class MSDownsampling(nn.Module):
    """``BN(conv(SN(x)))``; the first one (``first_layer=True``) takes the real-valued image without a neuron."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2, padding: int = 1,
                 first_layer: bool = False) -> None:
        super().__init__()
        self.lif = None if first_layer else reference_lif()
        self.conv = SeqConvBN(in_channels, out_channels, kernel_size, stride, padding, bias=True,
                              spike_input=not first_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x if self.lif is None else self.lif(x))


class MetaSpikeFormer(nn.Module):
    """Meta-SpikeFormer; ``forward(x)`` takes ``[B, C, H, W]`` (repeated over ``T``) or ``[T, B, C, H, W]``.

    Args:
        embed_dims: the four stage widths ``(c0, c1, c2, c3)``; ``c0`` even.
        num_heads: attention heads in both transformer stages.
        depths: transformer blocks in the two transformer stages (the reference: 6 and 2, "8" in its names).
        mlp_ratio: MLP expansion (4 in the reference; its conv blocks hard-code 4).
        in_channels, num_classes, T: input channels, classes, time steps for static images.
        attention: ``"v2"`` (SDSA-3, the reference) or ``"v1"``.
    """

    stride = 16

    def __init__(self, embed_dims: Sequence[int] = (96, 192, 384, 480), num_heads: int = 8,
                 depths: Tuple[int, int] = (6, 2), mlp_ratio: int = 4, in_channels: int = 3, num_classes: int = 1000,
                 T: int = 1, attention: str = "v2") -> None:
        super().__init__()
        c0, c1, c2, c3 = (int(c) for c in embed_dims)
        if c0 % 2:
            raise ValueError(f"embed_dims[0] must be even (the first stage has embed_dims[0] // 2), got {c0}")
        self.T, self.in_channels, self.num_classes = check_time_steps(T), in_channels, num_classes
        blocks = lambda dim, n: nn.Sequential(*(MetaTransformerBlock(dim, num_heads, mlp_ratio, attention)  # noqa
                                               for _ in range(n)))
        self.features = nn.Sequential(
            MSDownsampling(in_channels, c0 // 2, 7, 2, 3, first_layer=True), MSConvBlock(c0 // 2, mlp_ratio),
            MSDownsampling(c0 // 2, c0), MSConvBlock(c0, mlp_ratio),
            MSDownsampling(c0, c1), MSConvBlock(c1, mlp_ratio), MSConvBlock(c1, mlp_ratio),
            MSDownsampling(c1, c2), blocks(c2, depths[0]),
            MSDownsampling(c2, c3, stride=1), blocks(c3, depths[1]),
        )
        self.head = nn.Linear(c3, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_sequence(x, self.T, self.in_channels)
        check_image_size(self.stride, x)
        x = self.features(x).flatten(3).mean(3)  # [T, B, C]
        return self.head(x).mean(0)


def _meta(embed_dims: Sequence[int], **kw) -> MetaSpikeFormer:
    kw.setdefault("num_heads", 8)
    return MetaSpikeFormer(embed_dims=embed_dims, **kw)


@register_model("meta_spikeformer_8_384")
def meta_spikeformer_8_384(**kw) -> MetaSpikeFormer:
    """``metaspikformer_8_384`` of the reference (ImageNet, 224 x 224, 1000 classes)."""
    return _meta((96, 192, 384, 480), **kw)


@register_model("meta_spikeformer_8_512")
def meta_spikeformer_8_512(**kw) -> MetaSpikeFormer:
    """``metaspikformer_8_512`` of the reference."""
    return _meta((128, 256, 512, 640), **kw)


@register_model("meta_spikeformer_8_768")
def meta_spikeformer_8_768(**kw) -> MetaSpikeFormer:
    """``metaspikformer_8_768`` of the reference."""
    return _meta((192, 384, 768, 960), **kw)


@register_model("meta_spikeformer_tiny_test")
def meta_spikeformer_tiny_test(**kw) -> MetaSpikeFormer:
    """A tiny configuration for CI (not from the reference): widths 16/32/64/64, one block per stage, 2 heads."""
    kw.setdefault("num_heads", 2)
    kw.setdefault("depths", (1, 1))
    kw.setdefault("num_classes", 10)
    kw.setdefault("T", 2)
    return MetaSpikeFormer(embed_dims=(16, 32, 64, 64), **kw)
