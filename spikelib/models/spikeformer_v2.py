"""Meta-SpikeFormer (Spike-driven Transformer V2, Yao et al., ICLR 2024), multi-step over ``[T, B, C, H, W]``.

Follows BICLab/Spike-Driven-Transformer-V2 ``classification/models.py`` (``Spiking_vit_MetaFormer``, ``SepConv``,
``MS_ConvBlock``, ``MS_DownSampling``, ``MS_Block``, ``metaspikformer_8_384/512/768``); read, not copied. Layout for
``embed_dims = (c0, c1, c2, c3)`` and an ``H x W`` image (repeated over ``T`` steps when static)::

    down 7x7/2 -> c0/2 (real-valued input: MACs)  ConvBlock(c0/2)
    down 3x3/2 -> c0                               ConvBlock(c0)
    down 3x3/2 -> c1                               ConvBlock(c1) x 2
    down 3x3/2 -> c2                               TransformerBlock(c2) x depths[0]     (SDSA-3, RepConv Q/K/V)
    down 3x3/1 -> c3                               TransformerBlock(c3) x depths[1]
    mean over H, W -> SN -> Linear -> mean over T  (the head reads spikes: accumulates)

``ConvBlock``: ``x = x + SepConv(x); x = x + BN(conv3x3(SN(BN(conv3x3(SN(x))))))`` (widths c -> 4c -> c);
``SepConv``: ``BN(pw(dw7x7(SN(BN(pw(SN(x)))))))`` (widths c -> 2c -> c). Downsampling: ``BN(conv(SN(x)))`` (no
neuron before the first). The head is the reference's ``x = self.lif(x); x = self.head(x).mean(0)``: a spiking neuron
on the pooled features, so the classifier is spike-driven like every other layer.

Distillation head (``kd=True``, the reference's ``head_kd``): a second Linear on the same spikes. The reference
returns both logits in training mode and their mean in evaluation mode; here ``forward`` always returns the mean
(numerics do not depend on ``module.training``) and :meth:`MetaSpikeFormer.forward_heads` returns the pair
``(head, head_kd)`` for a distillation loss (the reference's ``util/kd_loss.py``).

Sizes: the constructors keep the reference code's names and widths; their parameter counts (31.3M, 55.4M, 123.7M)
are those the paper gives for its 8-512 and 8-768 models and a larger one, i.e. the code's names are one size ahead
of the paper's table. The paper's 15.1M model (its "8-384") has widths (64, 128, 256, 360), which no constructor of
models.py builds: :func:`meta_spikeformer_15m`. The reference code runs ``T = 1`` by default (``self.T = 1``) and
takes static images only; a 5-D input here is an event sequence whose layout is ``time_first`` (see
:mod:`spikelib.models._images`). Images need ``H, W`` divisible by 16 (the reference pads silently). The
reference's DropPath is built but never called, so there is none. Neurons:
:func:`spikelib.layers.multistep.reference_lif`. Loading the authors' checkpoints:
:meth:`MetaSpikeFormer.reference_layout` and :func:`spikelib.models.load_reference_checkpoint` (the reference's MLP
uses ``Conv1d``/``BatchNorm1d`` on flattened tokens; its weights are reshaped to the 1x1 ``Conv2d`` here).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from spikelib.layers.multistep import SeqConvBN, reference_lif
from spikelib.layers.repconv import RepConv
from spikelib.layers.spike_attention import MetaTransformerBlock
from spikelib.models._images import check_image_size, check_time_steps, image_sequence
from spikelib.models.checkpoints import RefEntry, leaf
from spikelib.models.registry import register_model

__all__ = ["MetaSpikeFormer", "SepConv", "MSConvBlock", "MSDownsampling", "check_image_size", "check_time_steps",
           "to_sequence", "meta_spikeformer_15m"]


def to_sequence(x: torch.Tensor, T: int, in_channels: int, time_first: bool = True) -> torch.Tensor:
    """A static image ``[B, C, H, W]`` repeated over ``T`` steps, or a 5-D sequence (:func:`image_sequence`)."""
    return image_sequence(x, T, in_channels, time_first)


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
    """Meta-SpikeFormer; ``forward(x)`` takes ``[B, C, H, W]`` (repeated over ``T``) or a 5-D sequence.

    Args:
        embed_dims: the four stage widths ``(c0, c1, c2, c3)``; ``c0`` even.
        num_heads: attention heads in both transformer stages.
        depths: transformer blocks in the two transformer stages (the reference: 6 and 2, "8" in its names).
        mlp_ratio: MLP expansion (4 in the reference; its conv blocks hard-code 4).
        in_channels, num_classes, T: input channels, classes, time steps.
        attention: ``"v2"`` (SDSA-3, the reference) or ``"v1"``.
        kd: add the distillation head ``head_kd`` (module docstring).
        time_first: a 5-D input is ``[T, B, C, H, W]`` (True) or ``[B, T, C, H, W]`` (False).
    """

    stride = 16
    reference_wrappers = ()

    def __init__(self, embed_dims: Sequence[int] = (96, 192, 384, 480), num_heads: int = 8,
                 depths: Tuple[int, int] = (6, 2), mlp_ratio: int = 4, in_channels: int = 3, num_classes: int = 1000,
                 T: int = 1, attention: str = "v2", kd: bool = False, time_first: bool = True) -> None:
        super().__init__()
        c0, c1, c2, c3 = (int(c) for c in embed_dims)
        if c0 % 2:
            raise ValueError(f"embed_dims[0] must be even (the first stage has embed_dims[0] // 2), got {c0}")
        if not isinstance(kd, bool) or not isinstance(time_first, bool):
            raise TypeError(f"kd and time_first must be bools, got {kd!r}, {time_first!r}")
        self.T, self.in_channels, self.num_classes = check_time_steps(T), in_channels, num_classes
        self.embed_dims, self.depths, self.attention = (c0, c1, c2, c3), tuple(int(d) for d in depths), attention
        self.kd, self.time_first = kd, time_first
        blocks = lambda dim, n: nn.Sequential(*(MetaTransformerBlock(dim, num_heads, mlp_ratio, attention)  # noqa
                                               for _ in range(n)))
        self.features = nn.Sequential(
            MSDownsampling(in_channels, c0 // 2, 7, 2, 3, first_layer=True), MSConvBlock(c0 // 2, mlp_ratio),
            MSDownsampling(c0 // 2, c0), MSConvBlock(c0, mlp_ratio),
            MSDownsampling(c0, c1), MSConvBlock(c1, mlp_ratio), MSConvBlock(c1, mlp_ratio),
            MSDownsampling(c1, c2), blocks(c2, self.depths[0]),
            MSDownsampling(c2, c3, stride=1), blocks(c3, self.depths[1]),
        )
        self.head_lif = reference_lif()
        self.head = self._linear(c3, num_classes)
        self.head_kd = self._linear(c3, num_classes) if kd else None

    @staticmethod
    def _linear(dim: int, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def head_spikes(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes ``[T, B, c3]`` of the head neuron on the pooled features of ``x``."""
        x = to_sequence(x, self.T, self.in_channels, self.time_first)
        check_image_size(self.stride, x)
        return self.head_lif(self.features(x).flatten(3).mean(3))

    def forward_heads(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(head, head_kd)`` logits ``[B, num_classes]`` each (needs ``kd=True``), for a distillation loss."""
        if self.head_kd is None:
            raise RuntimeError("forward_heads needs the distillation head: build the model with kd=True")
        s = self.head_spikes(x)
        return self.head(s).mean(0), self.head_kd(s).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.head_spikes(x)
        out = self.head(s).mean(0)
        if self.head_kd is not None:
            out = (out + self.head_kd(s).mean(0)) / 2
        return out

    def reference_layout(self) -> List[RefEntry]:
        """The reference ``Spiking_vit_MetaFormer`` state_dict, leaf by leaf (:mod:`spikelib.models.checkpoints`)."""
        f = self.features
        out: List[RefEntry] = []
        for ref, down in (("downsample1_1", f[0]), ("downsample1_2", f[2]), ("downsample2", f[4]),
                          ("downsample3", f[7]), ("downsample4", f[9])):
            out += [leaf(f"{ref}.encode_conv", down.conv.conv), leaf(f"{ref}.encode_bn", down.conv.bn)]
            if ref == "downsample1_1":
                out += _conv_block_layout("ConvBlock1_1.0", f[1])
            elif ref == "downsample1_2":
                out += _conv_block_layout("ConvBlock1_2.0", f[3])
            elif ref == "downsample2":
                out += _conv_block_layout("ConvBlock2_1.0", f[5]) + _conv_block_layout("ConvBlock2_2.0", f[6])
            else:
                stage = "block3" if ref == "downsample3" else "block4"
                for j, blk in enumerate(f[8] if ref == "downsample3" else f[10]):
                    out += _ms_block_layout(f"{stage}.{j}", blk)
        if isinstance(self.head, nn.Linear):
            out.append(leaf("head", self.head))
        if isinstance(self.head_kd, nn.Linear):
            out.append(leaf("head_kd", self.head_kd))
        return out


def _conv_block_layout(ref: str, blk: MSConvBlock) -> List[RefEntry]:
    sc = blk.sepconv
    return [leaf(f"{ref}.Conv.pwconv1", sc.pw1.conv), leaf(f"{ref}.Conv.bn1", sc.pw1.bn),
            leaf(f"{ref}.Conv.dwconv", sc.dw.conv), leaf(f"{ref}.Conv.pwconv2", sc.pw2.conv),
            leaf(f"{ref}.Conv.bn2", sc.pw2.bn),
            leaf(f"{ref}.conv1", blk.conv1.conv), leaf(f"{ref}.bn1", blk.conv1.bn),
            leaf(f"{ref}.conv2", blk.conv2.conv), leaf(f"{ref}.bn2", blk.conv2.bn)]


def _repconv_layout(ref: str, rc: RepConv) -> List[RefEntry]:
    """``nn.Sequential(RepConv(dim, dim), BatchNorm2d(dim))`` of the reference's attention."""
    if rc.fused is not None:
        raise ValueError(f"{ref}: a fused RepConv cannot take a reference checkpoint; load before fuse()")
    return [leaf(f"{ref}.0.body.0", rc.conv1), leaf(f"{ref}.0.body.1.bn", rc.bn1),
            leaf(f"{ref}.0.body.2.0", rc.dwconv), leaf(f"{ref}.0.body.2.1", rc.pwconv),
            leaf(f"{ref}.0.body.2.2", rc.bn2), leaf(f"{ref}.1", rc.bn3)]


def _ms_block_layout(ref: str, blk: MetaTransformerBlock) -> List[RefEntry]:
    a, m = blk.attn, blk.mlp
    if getattr(a, "qkv", None) != "repconv":
        raise ValueError(f"{ref}: only the reference attention (v2, RepConv Q/K/V) has a reference checkpoint layout")
    out: List[RefEntry] = []
    for n in ("q_conv", "k_conv", "v_conv"):
        out += _repconv_layout(f"{ref}.attn.{n}", getattr(a, n))
    out += _repconv_layout(f"{ref}.attn.proj_conv", a.proj_conv)
    return out + [leaf(f"{ref}.mlp.fc1_conv", m.fc1.conv, "conv1d"), leaf(f"{ref}.mlp.fc1_bn", m.fc1.bn),
                  leaf(f"{ref}.mlp.fc2_conv", m.fc2.conv, "conv1d"), leaf(f"{ref}.mlp.fc2_bn", m.fc2.bn)]


def _meta(embed_dims: Sequence[int], **kw) -> MetaSpikeFormer:
    kw.setdefault("num_heads", 8)
    return MetaSpikeFormer(embed_dims=embed_dims, **kw)


@register_model("meta_spikeformer_15m")
def meta_spikeformer_15m(**kw) -> MetaSpikeFormer:
    """The paper's 15.1M model (its table's "8-384"): widths (64, 128, 256, 360), 8 heads, ImageNet."""
    return _meta((64, 128, 256, 360), **kw)


@register_model("meta_spikeformer_8_384")
def meta_spikeformer_8_384(**kw) -> MetaSpikeFormer:
    """``metaspikformer_8_384`` of the reference code (ImageNet, 224 x 224, 1000 classes; 31.3M parameters)."""
    return _meta((96, 192, 384, 480), **kw)


@register_model("meta_spikeformer_8_512")
def meta_spikeformer_8_512(**kw) -> MetaSpikeFormer:
    """``metaspikformer_8_512`` of the reference code (55.4M parameters)."""
    return _meta((128, 256, 512, 640), **kw)


@register_model("meta_spikeformer_8_768")
def meta_spikeformer_8_768(**kw) -> MetaSpikeFormer:
    """``metaspikformer_8_768`` of the reference code (123.7M parameters)."""
    return _meta((192, 384, 768, 960), **kw)


@register_model("meta_spikeformer_tiny_test")
def meta_spikeformer_tiny_test(**kw) -> MetaSpikeFormer:
    """A tiny configuration for CI (not from the reference): widths 16/32/64/64, one block per stage, 2 heads."""
    kw.setdefault("num_heads", 2)
    kw.setdefault("depths", (1, 1))
    kw.setdefault("num_classes", 10)
    kw.setdefault("T", 2)
    kw.setdefault("embed_dims", (16, 32, 64, 64))
    return MetaSpikeFormer(**kw)
