"""Re-parameterisable convolution (RepConv) of Meta-SpikeFormer and its fused inference form.

Follows BICLab/Spike-Driven-Transformer-V2 ``classification/models.py`` (``RepConv``, ``BNAndPadLayer``). Training
form, for an input ``x`` of ``C_in`` channels (time folded into the batch)::

    y1 = BN1(conv1x1(x))                 C_in -> C_in, then padded by one pixel with BN1's value for a zero input
    y2 = conv1x1'(dwconv3x3(y1))         depth-wise 3x3 (no padding: y1 was padded), then C_in -> C_out
    y  = BN2(y2)  [-> BN3(y) when post_bn, the BatchNorm2d the reference puts after RepConv in the attention]

Every stage is affine, so the whole is one 3x3 convolution with padding 1 and a bias (:meth:`RepConv.fuse`). With
``A = diag(s1) W1`` and ``c1 = t1`` (``BNk(z) = sk z + tk`` from the running statistics), depth-wise kernel ``D``,
point-wise ``P`` and the output scale/shift ``s, t`` of BN2 (and BN3)::

    W[o, i, kh, kw] = s[o] sum_c P[o, c] D[c, kh, kw] A[c, i]
    b[o]            = s[o] sum_c P[o, c] c1[c] sum_k D[c, k] + t[o]

Padding ``y1`` with ``c1`` is what makes this exact at the border: the fused convolution sees a zero-padded input,
whose first stage gives exactly ``c1``. Fusing uses the running statistics, so it equals the training form in eval
mode; :meth:`fuse` switches the module to eval mode.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from spikelib.layers.conv import Conv2d
from spikelib.layers.multistep import fold, unfold

__all__ = ["RepConv"]


def _bn_affine(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """``BN(z) = s z + t`` in eval mode."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return s, bn.bias - bn.running_mean * s


class RepConv(nn.Module):
    """RepConv on ``[T, B, C_in, H, W]`` -> ``[T, B, C_out, H, W]`` (same spatial size).

    Args:
        in_channels, out_channels: channel counts.
        post_bn: add the BatchNorm2d that follows RepConv in the reference's attention (``nn.Sequential(RepConv,
            BatchNorm2d)``); it is folded by :meth:`fuse` too.
        spike_input: the input is a spike tensor (documentation, checked by tests).
    """

    def __init__(self, in_channels: int, out_channels: int, post_bn: bool = False, spike_input: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv1 = Conv2d(in_channels, in_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.dwconv = Conv2d(in_channels, in_channels, 3, groups=in_channels, bias=False)
        self.pwconv = Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.bn3: Optional[nn.BatchNorm2d] = nn.BatchNorm2d(out_channels) if post_bn else None
        self.spike_input = spike_input
        self.fused: Optional[nn.Conv2d] = None

    def _pad_with_bn_zero(self, y: torch.Tensor) -> torch.Tensor:
        """Pad by one pixel with BN1's output for a zero input (its shift, computed from running statistics, no
        gradient), as the reference's ``BNAndPadLayer`` writes it: the border holds that value, the inside ``y``."""
        bn = self.bn1
        with torch.no_grad():  # the reference's expression, in its order of operations
            t = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
        n, c, h, w = y.shape
        padded = t.to(y.dtype).view(1, c, 1, 1).expand(n, c, h + 2, w + 2).contiguous()
        padded[:, :, 1:-1, 1:-1] = y
        return padded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        z = fold(x)
        if self.fused is not None:
            return unfold(self.fused(z), T)
        y1 = self.conv1(z)
        y = self.pwconv(self.dwconv(self._pad_with_bn_zero(self.bn1(y1))))
        y = self.bn2(y)
        if self.bn3 is not None:
            y = self.bn3(y)
        return unfold(y, T)

    @torch.no_grad()
    def fused_weights(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight ``[C_out, C_in, 3, 3]`` and bias ``[C_out]`` of the equivalent 3x3 convolution (padding 1)."""
        s1, t1 = _bn_affine(self.bn1)
        A = s1[:, None] * self.conv1.weight[:, :, 0, 0]  # [C_in, C_in]
        D = self.dwconv.weight[:, 0]  # [C_in, 3, 3]
        P = self.pwconv.weight[:, :, 0, 0]  # [C_out, C_in]
        s, t = _bn_affine(self.bn2)
        if self.bn3 is not None:
            s3, t3 = _bn_affine(self.bn3)
            s, t = s * s3, t * s3 + t3
        w = s[:, None, None, None] * torch.einsum("oc,chw,ci->oihw", P, D, A)
        b = s * (P @ (t1 * D.sum(dim=(1, 2)))) + t
        return w, b

    @torch.no_grad()
    def fuse(self) -> "RepConv":
        """Replace the training form by one 3x3 convolution with bias (uses running statistics; sets eval mode)."""
        self.eval()
        w, b = self.fused_weights()
        conv = Conv2d(self.in_channels, self.out_channels, 3, padding=1, bias=True)
        conv = conv.to(device=w.device, dtype=w.dtype)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        self.fused = conv
        return self

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, post_bn={self.bn3 is not None}, "
                f"fused={self.fused is not None}")
