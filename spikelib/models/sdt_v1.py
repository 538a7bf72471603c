"""Spike-driven Transformer (v1; Yao et al., NeurIPS 2023), multi-step over ``[T, B, C, H, W]``.

Follows BICLab/Spike-Driven-Transformer ``model/spikeformer.py`` (``SpikeDrivenTransformer``), ``module/sps.py``
(``MS_SPS``) and ``module/ms_conv.py`` (``MS_SSA_Conv``, ``MS_MLP_Conv``, ``MS_Block_Conv``); read, not copied.
For embedding width ``E`` and ``depths`` blocks::

    patch splitting (MS_SPS, :class:`~spikelib.layers.sps.SpikingPatchSplitting`)   -> [T, B, E, H/s, W/s]
    depths x block:  x = x + SDSA(x)                     (Hadamard + column sum, :class:`SpikeDrivenAttentionV1`)
                     x = MLP(x)                          (MS_MLP_Conv, residual included)
    mean over H, W -> SN -> Linear -> mean over T        (``tet=True``: the per-step logits [T, B, classes])

``SDSA``: ``y = BN(conv_proj(Q * SN_0.5(sum_tokens(K * V))))`` with ``Q, K, V = SN(BN(conv1x1(SN(x))))``; with
``dvs=True`` (the reference's ``dvs_mode`` on CIFAR10-DVS) max-pools are added
(:class:`~spikelib.layers.sdsa_dvs.SpikeDrivenAttentionV1DVS`). Neurons: LIF ``tau = 2`` (``spike_mode="lif"``,
:func:`~spikelib.layers.multistep.reference_lif`) or PLIF with ``init_tau = 2`` (``"plif"``, spikingjelly's
``MultiStepParametricLIFNode``: ``tau = 1 / sigmoid(w)`` learned per layer), both with hard reset to 0, detached
reset, Sigmoid surrogate (alpha 4), threshold 1 (0.5 after the column sum). Initialisation as the reference:
convolutions trunc-normal (std 0.02, bias 0), BatchNorm (1, 0), the head PyTorch's default.

Reference facts kept here: ``talking_heads`` (a Conv1d) and ``attn_lif`` are built but never called, and the
patch splitting's ``rpe_lif`` is never called either; their tensors in a checkpoint are skipped when loading. The
reference takes 4-D images (repeated over ``T``) or 5-D ``[B, T, C, H, W]`` batches, which it transposes: here the
layout of a 5-D input is the explicit ``time_first`` option (:mod:`spikelib.models._images`).

Sizes (``conf/``): ImageNet ``sdt_8_384`` ... ``sdt_8_768`` (224 x 224, pooling ``"1111"``, T = 4); CIFAR-10/100
``sdt_cifar_2_256``/``2_512`` (32 x 32, ``"0011"``); CIFAR10-DVS ``sdt_cifar10dvs`` (2 x 64 x 64, ``"0011"``,
T = 10, DVS pooling, TET); DVS128 Gesture ``sdt_gesture`` (2 x 128 x 128, ``"0111"``, T = 16).
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from spikelib.layers.multistep import reference_lif
from spikelib.layers.residual_mlp import ResidualSpikingMLP
from spikelib.layers.sdsa_dvs import SpikeDrivenAttentionV1DVS
from spikelib.layers.spike_attention import SpikeDrivenAttentionV1
from spikelib.layers.sps import SpikingPatchSplitting
from spikelib.models._images import check_image_size, check_time_steps, image_sequence
from spikelib.models.checkpoints import RefEntry, leaf, unused
from spikelib.models.maxformer import mlp_layout
from spikelib.models.registry import register_model
from spikelib.neurons.lif import LIF, ParametricLIF
from spikelib.surrogate import Sigmoid

__all__ = ["SpikeDrivenTransformer", "SDTBlock", "reference_plif"]

_SPIKE_MODES = ("lif", "plif")


def reference_plif(v_threshold: float = 1.0) -> ParametricLIF:
    """spikingjelly ``MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True)``: one learned ``tau`` per layer."""
    return ParametricLIF(init_tau=2.0, v_threshold=float(v_threshold), v_reset=0.0, reset="hard", decay_input=True,
                         detach_reset=True, surrogate=Sigmoid(alpha=4.0))


def _to_plif(module: nn.Module) -> None:
    """Replace every reference LIF child of ``module`` (recursively) by the PLIF of the same threshold."""
    for name, child in list(module.named_children()):
        if isinstance(child, LIF):
            setattr(module, name, reference_plif(float(child.v_threshold)))
        else:
            _to_plif(child)


class SDTBlock(nn.Module):
    """``MS_Block_Conv``: ``x = x + SDSA(x)``, then the MLP block (residuals included)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dvs: bool = False,
                 spike_mode: str = "lif") -> None:
        super().__init__()
        self.attn = (SpikeDrivenAttentionV1DVS if dvs else SpikeDrivenAttentionV1)(dim, num_heads)
        neuron = reference_plif if spike_mode == "plif" else reference_lif
        self.mlp = ResidualSpikingMLP(dim, int(dim * mlp_ratio), neuron=neuron)
        if spike_mode == "plif":
            _to_plif(self.attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x + self.attn(x))

    def reference_layout(self, ref: str) -> List[RefEntry]:
        a, plif = self.attn, isinstance(self.attn.q_lif, ParametricLIF)
        out: List[RefEntry] = []
        for n in ("q", "k", "v"):
            m = getattr(a, f"{n}_conv")
            out += [leaf(f"{ref}.attn.{n}_conv", m.conv), leaf(f"{ref}.attn.{n}_bn", m.bn),
                    leaf(f"{ref}.attn.{n}_lif", getattr(a, f"{n}_lif"))]
        if plif:
            out.append(unused(f"{ref}.attn.attn_lif", ["w"], "MS_SSA_Conv.attn_lif is built but never called"))
        out += [unused(f"{ref}.attn.talking_heads", ["weight"], "MS_SSA_Conv.talking_heads is built but never "
                                                                 "called"),
                leaf(f"{ref}.attn.talking_heads_lif", a.talking_heads_lif),
                leaf(f"{ref}.attn.proj_conv", a.proj_conv.conv), leaf(f"{ref}.attn.proj_bn", a.proj_conv.bn),
                leaf(f"{ref}.attn.shortcut_lif", a.head_lif)]
        m = self.mlp
        return out + mlp_layout(f"{ref}.mlp", m)[:2] + [leaf(f"{ref}.mlp.fc1_lif", m.fc1_lif)] + mlp_layout(
            f"{ref}.mlp", m)[2:] + [leaf(f"{ref}.mlp.fc2_lif", m.fc2_lif)]


class SpikeDrivenTransformer(nn.Module):
    """Spike-driven Transformer v1 (module docstring); ``forward`` takes ``[B, C, H, W]`` or a 5-D sequence.

    Args:
        embed_dim: ``E`` (divisible by 8 and by ``num_heads``).
        depths: number of blocks (the reference's ``layer``).
        num_heads, mlp_ratio: attention heads (8) and MLP expansion (4).
        in_channels, num_classes, T: as usual.
        pooling_stat: max-pools of the patch splitting (``"1111"``: stride 16; ``"0011"``: stride 4).
        spike_mode: ``"lif"`` or ``"plif"``.
        dvs: the DVS pooling in the attention (the reference sets it for CIFAR10-DVS).
        tet: return the per-step logits ``[T, B, classes]`` (for the TET loss) instead of their mean.
        time_first: a 5-D input is ``[T, B, C, H, W]`` (True) or ``[B, T, C, H, W]`` (False, the reference loader).
    """

    reference_wrappers = ()

    def __init__(self, embed_dim: int = 512, depths: int = 8, num_heads: int = 8, mlp_ratio: float = 4.0,
                 in_channels: int = 3, num_classes: int = 1000, T: int = 4, pooling_stat: str = "1111",
                 spike_mode: str = "lif", dvs: bool = False, tet: bool = False, time_first: bool = True) -> None:
        super().__init__()
        if spike_mode not in _SPIKE_MODES:
            raise ValueError(f"spike_mode must be one of {_SPIKE_MODES}, got {spike_mode!r}")
        for name, v in (("dvs", dvs), ("tet", tet), ("time_first", time_first)):
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool, got {v!r}")
        if isinstance(depths, bool) or not isinstance(depths, int) or depths < 1:
            raise ValueError(f"depths must be an int >= 1, got {depths!r}")
        self.T, self.in_channels, self.num_classes = check_time_steps(T), in_channels, num_classes
        self.spike_mode, self.dvs, self.tet, self.time_first = spike_mode, dvs, tet, time_first
        neuron = reference_plif if spike_mode == "plif" else reference_lif
        self.patch_embed = SpikingPatchSplitting(in_channels, embed_dim, pooling_stat, neuron=neuron)
        self.blocks = nn.ModuleList(SDTBlock(embed_dim, num_heads, mlp_ratio, dvs, spike_mode) for _ in range(depths))
        self.head_lif = neuron()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():  # the reference's _init_weights: Conv2d and BatchNorm2d
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def stride(self) -> int:
        return self.patch_embed.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = image_sequence(x, self.T, self.in_channels, self.time_first)
        check_image_size(self.stride, x)
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        out = self.head(self.head_lif(x.flatten(3).mean(3)))
        return out if self.tet else out.mean(0)

    def reference_layout(self) -> List[RefEntry]:
        """The reference ``SpikeDrivenTransformer`` state_dict (``patch_embed``, ``block.j``, ``head_lif``,
        ``head``)."""
        pe, out = self.patch_embed, []
        for i, sfx in enumerate(("", "1", "2", "3")):
            out += [leaf(f"patch_embed.proj_conv{sfx}", pe.convs[i].conv), leaf(f"patch_embed.proj_bn{sfx}",
                                                                                 pe.convs[i].bn),
                    leaf(f"patch_embed.proj_lif{sfx}", pe.lifs[i])]
        out += [leaf("patch_embed.rpe_conv", pe.rpe.conv), leaf("patch_embed.rpe_bn", pe.rpe.bn)]
        if self.spike_mode == "plif":
            out.append(unused("patch_embed.rpe_lif", ["w"], "MS_SPS.rpe_lif is built but never called"))
        for j, blk in enumerate(self.blocks):
            out += blk.reference_layout(f"block.{j}")
        out.append(leaf("head_lif", self.head_lif))
        if isinstance(self.head, nn.Linear):
            out.append(leaf("head", self.head))
        return out


def _sdt(**defaults):
    def build(**kw) -> SpikeDrivenTransformer:
        return SpikeDrivenTransformer(**{**defaults, **kw})
    return build


_SIZES = {
    "sdt_8_384": dict(embed_dim=384, depths=8), "sdt_6_512": dict(embed_dim=512, depths=6),
    "sdt_8_512": dict(embed_dim=512, depths=8), "sdt_10_512": dict(embed_dim=512, depths=10),
    "sdt_8_768": dict(embed_dim=768, depths=8),
}
for _name, _kw in _SIZES.items():  # conf/imagenet/*.yml: 224 x 224, pooling 1111, T = 4, 1000 classes
    register_model(_name)(_sdt(**_kw, num_classes=1000, T=4, pooling_stat="1111"))
register_model("sdt_cifar_2_256")(_sdt(embed_dim=256, depths=2, num_classes=10, T=4, pooling_stat="0011"))
register_model("sdt_cifar_2_512")(_sdt(embed_dim=512, depths=2, num_classes=10, T=4, pooling_stat="0011"))
register_model("sdt_cifar10dvs")(_sdt(embed_dim=256, depths=2, in_channels=2, num_classes=10, T=10,
                                      pooling_stat="0011", dvs=True, tet=True))
register_model("sdt_gesture")(_sdt(embed_dim=256, depths=2, in_channels=2, num_classes=11, T=16,
                                   pooling_stat="0111"))
register_model("sdt_tiny_test")(_sdt(embed_dim=32, depths=1, num_heads=2, num_classes=10, T=2, pooling_stat="0011"))
