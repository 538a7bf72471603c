"""Small image transforms on ``[C, H, W]`` float tensors (no torchvision): per-channel normalisation, random crop
after zero padding, random horizontal flip.

The CIFAR recipe of IIR-SNN (SayeedChowdhury/IIR-SNN ``snncifar_bnfused.py``, ``ann_bn.py``) trains with
``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()`` and ``Normalize(mean, std)``; :class:`PadCropFlip` is the
first two. The random draws use torch's global generator (the trainer seeds it and saves it in checkpoints; DataLoader
workers get their own seed), so a run is reproducible from its seed.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence

import torch

__all__ = ["normalize", "PadCropFlip", "check_stats"]


def check_stats(mean: Sequence[float], std: Sequence[float], channels: int) -> tuple:
    """``(mean, std)`` as ``[C, 1, 1]`` tensors; clear errors for the wrong length or a non-positive std."""
    out = []
    for name, values in (("mean", mean), ("std", std)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != channels or any(
                isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values):
            raise ValueError(f"{name} must be {channels} numbers (one per channel), got {values!r}")
        out.append(torch.tensor([float(v) for v in values], dtype=torch.float32).reshape(channels, 1, 1))
    if not bool((out[1] > 0).all()):
        raise ValueError(f"std must be > 0 for every channel, got {list(std)}")
    return out[0], out[1]


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel (``mean``, ``std``: ``[C, 1, 1]``)."""
    return (x - mean) / std


class PadCropFlip:
    """Zero-pad by ``padding`` pixels, crop a random ``H x W`` window, flip left-right with probability ``flip``.

    Args:
        padding: pixels of zero padding on each side (0: no crop).
        flip: probability of a horizontal flip (0: never).
        generator: the random generator (None: torch's global one).
    """

    def __init__(self, padding: int = 4, flip: float = 0.5, generator: Optional[torch.Generator] = None) -> None:
        if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
            raise ValueError(f"padding must be an int >= 0, got {padding!r}")
        if isinstance(flip, bool) or not isinstance(flip, numbers.Real) or not 0.0 <= float(flip) <= 1.0:
            raise ValueError(f"flip must be a probability in [0, 1], got {flip!r}")
        self.padding, self.flip, self.generator = int(padding), float(flip), generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"PadCropFlip expects one image [C, H, W], got shape {tuple(x.shape)}")
        p = self.padding
        if p:
            h, w = x.shape[1:]
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            top, left = (int(v) for v in torch.randint(0, 2 * p + 1, (2,), generator=self.generator))
            x = padded[:, top:top + h, left:left + w]
        if self.flip and float(torch.rand((), generator=self.generator)) < self.flip:
            x = x.flip(-1)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"PadCropFlip(padding={self.padding}, flip={self.flip:g})"
