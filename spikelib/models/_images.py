"""Input handling shared by the spiking vision transformers: static images, event-frame sequences and their layout.

A model with ``T`` time steps takes either a static image batch ``[B, C, H, W]`` (repeated over the ``T`` steps, as
every reference does) or a sequence of 5 dimensions. A 5-D tensor is ambiguous: spikelib is time first
``[T, B, C, H, W]``, while the references' data loaders (BICLab/Spike-Driven-Transformer ``train.py``, bic-L/MaxFormer
``event/train.py``) hand ``[B, T, C, H, W]`` and transpose inside the model. The layout is therefore an explicit
option (``time_first``), and the time dimension must have the model's ``T`` steps: a batch handed in the other layout
fails with an error that names both dimensions, unless ``B == T`` (then no shape check can tell; pass the layout
explicitly).
"""

from __future__ import annotations

import torch

from spikelib.layers.multistep import check_sequence_image

__all__ = ["check_time_steps", "check_image_size", "image_sequence"]


def check_time_steps(T: int) -> int:
    """``T`` itself, or a ValueError unless it is an integer >= 1."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T (time steps) must be an integer >= 1, got {T!r}")
    return T


def check_image_size(stride: int, x: torch.Tensor) -> None:
    """Raise unless the image size of ``x`` (last two dims) is divisible by the model's total stride."""
    H, W = x.shape[-2:]
    if H % stride or W % stride:
        raise ValueError(f"image size {H}x{W} is not divisible by the model's total patching stride {stride}")


def image_sequence(x: torch.Tensor, T: int, in_channels: int, time_first: bool = True) -> torch.Tensor:
    """``[T, B, C, H, W]`` from a static batch ``[B, C, H, W]`` (repeated ``T`` times) or a 5-D sequence.

    Args:
        x: the model input.
        T: the model's time steps (a sequence must have exactly ``T``).
        in_channels: the model's input channels.
        time_first: a 5-D ``x`` is ``[T, B, C, H, W]`` (True) or ``[B, T, C, H, W]`` (False, the references' loaders).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4:
        if x.shape[1] != in_channels:
            raise ValueError(f"x has {x.shape[1]} channels (dim 1 of [B, C, H, W]); the model expects {in_channels}")
        return x.unsqueeze(0).expand(T, *x.shape)
    if x.dim() != 5:
        raise ValueError(f"x must be an image batch [B, C, H, W] or a sequence [T, B, C, H, W], got {tuple(x.shape)}")
    t_dim = 0 if time_first else 1
    layout = "[T, B, C, H, W]" if time_first else "[B, T, C, H, W]"
    if x.shape[t_dim] != T and x.shape[t_dim] >= 1:
        other = x.shape[1 - t_dim]
        hint = (f"; dim {1 - t_dim} has {other}: is the input in the other layout? (time_first={not time_first})"
                if other == T else "")
        raise ValueError(f"x {tuple(x.shape)} is read as {layout} (time_first={time_first}) and has "
                         f"{x.shape[t_dim]} time steps, but the model runs T={T}{hint}")
    if not time_first:
        x = x.transpose(0, 1)
    check_sequence_image(x, in_channels)
    return x
