"""``ChannelDelay``: per-channel integer delays ``y[t, b, c] = x[t - d_c, b, c]`` (zeros before the start; NIR's
``Delay`` node with delays in steps)."""

from __future__ import annotations

import torch
from torch import nn

from spikelib.graph import nodes

__all__ = ["ChannelDelay"]


class ChannelDelay(nn.Module):
    """Delay each channel (each element of the per-sample shape) by its own number of steps ``>= 0``."""

    temporal = True

    def __init__(self, delays: torch.Tensor) -> None:
        super().__init__()
        d = torch.as_tensor(delays)
        if d.is_floating_point():
            if not bool(torch.isfinite(d).all()) or not bool((d == d.round()).all()):
                raise ValueError("delays must be whole numbers of steps")
        elif d.dtype == torch.bool or d.is_complex():
            raise TypeError(f"delays must be integers, got {d.dtype}")
        if d.numel() and int(d.min()) < 0:
            raise ValueError(f"delays must be >= 0, got min {int(d.min())}")
        self.register_buffer("delays", d.to(torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        flat = x.reshape(T, x.shape[1], -1)
        if flat.shape[2] != self.delays.numel():
            raise ValueError(f"ChannelDelay has {self.delays.numel()} delays, the input has {flat.shape[2]} channels "
                             f"per sample (shape {tuple(x.shape)})")
        idx = torch.arange(T, device=x.device)[:, None] - self.delays.reshape(-1)[None, :]  # [T, C]
        out = torch.gather(flat, 0, idx.clamp_min(0)[:, None, :].expand_as(flat))
        return torch.where((idx >= 0)[:, None, :], out, torch.zeros((), dtype=x.dtype, device=x.device)).reshape(x.shape)

    def graph_node(self) -> nodes.Delay:
        return nodes.Delay(self.delays)
