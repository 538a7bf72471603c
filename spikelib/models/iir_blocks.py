"""Building blocks of the IIR-SNN image models (Chowdhury, Rathi, Roy; SayeedChowdhury/IIR-SNN
``vgg_spiking_bnfused_biasyes.py``, ``resnet_spiking_bnfused_biasconv.py``) and of the ANNs they are converted from.

- :class:`DirectInputSNN` runs a time-first spiking network on images: a static batch ``[B, C, H, W]`` is presented
  unchanged at each of ``timesteps`` steps (direct, analog input: the first convolution sees real values every step),
  a time-first ``[T, B, C, H, W]`` input is run as given. ``set_timesteps(T)`` changes ``T`` (the trainer's timestep
  stages call it).
- :class:`SequenceDropout`: dropout whose mask is drawn once per sequence and shared by every time step (the
  reference draws ``mask = Dropout(ones)`` once per forward pass, in ``neuron_init``); the identity in eval mode.
- :class:`ResidualBlock` (ANN): ``relu(body(x) + shortcut(x))``; :class:`SpikingResidualBlock`: the same with a
  spiking neuron after the sum, ``neuron(body(s) + shortcut(s))``, the sum an :class:`~spikelib.layers.Add` layer.

Everything here is a container of declared layers (or declares ``Free`` for the dropout), so energy counting, the
Loihi mapping and NIR export read these networks through the declared layer graph.
"""

from __future__ import annotations

import numbers
from typing import Optional

import torch
from torch import nn

from spikelib.graph import nodes
from spikelib.layers import Add, Sequential

__all__ = ["DirectInputSNN", "SequenceDropout", "ResidualBlock", "SpikingResidualBlock", "check_timesteps"]


def check_timesteps(value: object, name: str = "timesteps") -> int:
    """An int ``>= 1`` or a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


class SequenceDropout(nn.Module):
    """Dropout over ``[T, B, ...]`` with one mask per sample shared by all steps (training only).

    In training: ``y[t] = x[t] * m`` with ``m ~ Bernoulli(1 - p) / (1 - p)`` of shape ``[B, ...]``, drawn from torch's
    global generator once per call; in eval mode ``y = x``.
    """

    temporal = True

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() < 2:
            raise ValueError(f"SequenceDropout needs x: [T, B, ...], got shape {tuple(x.shape)}")
        mask = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * mask

    def graph_node(self) -> nodes.Free:
        return nodes.Free("SequenceDropout", keeps_spikes=True)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class ResidualBlock(nn.Module):
    """ANN residual block ``relu(body(x) + shortcut(x))``; ``shortcut=None`` is the identity."""

    def __init__(self, body: nn.Module, shortcut: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.body(x) + skip)


class SpikingResidualBlock(nn.Module):
    """``neuron(body(s) + shortcut(s))`` over ``[T, B, ...]`` (``shortcut=None``: the identity).

    ``body`` and ``shortcut`` run as :class:`~spikelib.layers.Sequential` (per-step layers on the steps folded into
    the batch); the sum is an :class:`~spikelib.layers.Add` layer.
    """

    temporal = True

    def __init__(self, body: Sequential, shortcut: Optional[Sequential], neuron: nn.Module) -> None:
        super().__init__()
        for name, part in (("body", body), ("shortcut", shortcut)):
            if part is not None and not isinstance(part, Sequential):
                raise TypeError(f"{name} must be a spikelib.layers.Sequential, got {type(part).__name__}")
        self.body = body
        self.shortcut = shortcut
        self.add = Add()
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.neuron(self.add(self.body(x), skip))


class DirectInputSNN(nn.Module):
    """A time-first spiking ``net`` fed with images (see the module docstring).

    Args:
        net: the network on ``[T, B, ...]`` (a :class:`~spikelib.layers.Sequential`), returning logits ``[B, K]``.
        timesteps: ``T`` for static inputs.
        sample_dims: dimensions of one input sample (3 for ``[C, H, W]`` images).
    """

    def __init__(self, net: nn.Module, timesteps: int = 5, sample_dims: int = 3) -> None:
        super().__init__()
        self.net = net
        self.timesteps = check_timesteps(timesteps)
        if isinstance(sample_dims, bool) or not isinstance(sample_dims, numbers.Integral) or sample_dims < 1:
            raise ValueError(f"sample_dims must be an int >= 1, got {sample_dims!r}")
        self.sample_dims = int(sample_dims)

    def set_timesteps(self, timesteps: int) -> None:
        """Run static inputs for ``timesteps`` steps from now on."""
        self.timesteps = check_timesteps(timesteps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` of a static batch ``[B, *sample]`` (repeated ``timesteps`` times) or of a time-first
        sequence ``[T, B, *sample]``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        if x.dim() == self.sample_dims + 1:
            x = x.unsqueeze(0).expand((self.timesteps,) + tuple(x.shape))
        elif x.dim() != self.sample_dims + 2:
            raise ValueError(f"x must be a static batch [B, ...] with {self.sample_dims} sample dimensions or a "
                             f"time-first sequence [T, B, ...], got shape {tuple(x.shape)}")
        return self.net(x)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, sample_dims={self.sample_dims}"
