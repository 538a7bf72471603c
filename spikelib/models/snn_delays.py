"""SNN-delays (Hammouamri, Khalfaoui-Hassani, Masquelier, ICLR 2024): learnable synaptic delays with DCLS on SHD.

Follows Thvnvtos/SNN-delays (``snn_delays.py`` ``SnnDelays.build_model``/``forward``, ``model.py`` ``calc_loss``,
``best_config_SHD.py``). Input ``x: [T, B, C_in]`` (SHD: 700 channels summed in groups of 5 to 140, 10 ms bins; that
pooling is a data transform, not part of the model). For each hidden layer ``l``::

    x_pad   = x with ``right_padding`` zero steps appended (the reference pads (K-1)//2 on the right, so every
              delayed layer makes the sequence that much longer and late inputs still reach the next layer)
    I       = DelayedLinear(x_pad)                               [T', B, H]   (no bias)
    I       = BatchNorm1d over the H channels of all T' B rows
    S       = LIF(I): tau ~ 1.005 steps, decay_input=False, hard reset to 0, detach_reset, ATan(alpha=5), v_th 1
    x       = Dropout(S) with one mask per (sample, neuron) shared over time (p = 0.4)

Readout: ``U = LIF(DelayedLinear(x_pad))`` with threshold 1e9 (never fires), i.e. a non-firing leaky integrator
(:class:`~spikelib.neurons.LeakyIntegrator`, same charge equation); its membrane ``U[t]`` ``[T', B, classes]`` is the
output. The reference loss (``loss='sum'``) is ``CrossEntropy(sum_t softmax(U[t]), y)``: the model returns
``m = sum_t softmax(U[t])`` ``[B, classes]`` (:class:`~spikelib.layers.TimeReduce` ``"softmax_sum"``), which is what
cross-entropy is applied to (and argmax gives the class). Every step is a module, so energy counting, Loihi mapping
and NIR export read the network from its layers' declarations.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from spikelib.graph import nodes
from spikelib.layers.delay import DelayedLinear
from spikelib.layers.time_pad import TimePad
from spikelib.layers.readout import TimeReduce
from spikelib.neurons import LIF, LeakyIntegrator
from spikelib.surrogate import ATan, Surrogate

__all__ = ["SNNDelays", "TimePad", "TimeSharedDropout"]



class TimeSharedDropout(nn.Module):
    """Dropout on ``[T, B, ...]`` with one mask per ``(b, ...)`` shared by all time steps (spikingjelly
    ``layer.Dropout`` in multi-step mode); identity in eval mode, ``1 / (1 - p)`` scaling in training."""

    temporal = True

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def graph_node(self) -> nodes.Free:
        return nodes.Free("TimeSharedDropout" + (" (training: scales)" if self.training and self.p else ""))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * (keep / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class SNNDelays(nn.Module):
    """The SNN-delays architecture (see the module docstring).

    Args:
        in_features: input channels (140 for SHD pooled by 5).
        hidden: hidden layer sizes (reference: two of 256).
        out_features: classes (20 for SHD).
        max_delay: largest delay in steps (the reference's 25-tap kernel at 10 ms: 24).
        delays: ``"learn"``, ``"random"`` (fixed random integer delays) or ``"none"`` (see :class:`DelayedLinear`).
        tau: membrane time constant in steps (reference: (10.05 ms + 1e-9) / 10 ms).
        v_threshold: hidden threshold.
        surrogate: surrogate of the hidden LIF layers (reference: ATan, alpha 5).
        detach_reset: cut the gradient through the reset (reference: True).
        dropout: time-shared dropout probability after each hidden layer (reference: 0.4).
        batchnorm: BatchNorm1d after each hidden delayed layer (reference: True).
        right_padding: zero steps appended before every delayed layer (default ``(max_delay + 1 - 1) // 2``, i.e.
            the reference's ``(K - 1) // 2``).
        generator: random generator for initial weights and delays.
        backend: backend of the LIF layers and of the integer delay path.
        time_first: the input is ``[T, B, C]`` (spikelib's convention). ``False``: ``[B, T, C]``, as the reference's
            loader hands it (the model cannot tell the two apart: an explicit choice, never a guess). Hardware tools
            trace time-first models.
    """

    def __init__(
        self,
        in_features: int = 140,
        hidden: Sequence[int] = (256, 256),
        out_features: int = 20,
        *,
        max_delay: int = 24,
        delays: str = "learn",
        tau: float = (10.05 + 1e-9) / 10.0,
        v_threshold: float = 1.0,
        surrogate: Union[str, Surrogate] = ATan(alpha=5.0),
        detach_reset: bool = True,
        dropout: float = 0.4,
        batchnorm: bool = True,
        right_padding: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        backend: str = "auto",
        time_first: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(time_first, bool):
            raise TypeError(f"time_first must be a bool, got {type(time_first).__name__}")
        self.time_first = time_first
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
            raise ValueError(f"hidden must be a non-empty sequence of layer sizes, got {hidden!r}")
        if right_padding is None:
            right_padding = max_delay // 2
        if isinstance(right_padding, bool) or not isinstance(right_padding, numbers.Integral) or right_padding < 0:
            raise ValueError(f"right_padding must be an int >= 0, got {right_padding!r}")
        self.right_padding = int(right_padding)
        self.time_pad = TimePad(self.right_padding)
        self.tau = float(tau)
        self.backend = backend
        sizes = (in_features,) + tuple(hidden)
        syn = dict(max_delay=max_delay, delays=delays, bias=False, generator=generator, backend=backend)
        self.synapses = nn.ModuleList(DelayedLinear(a, b, **syn) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(h) if batchnorm else nn.Identity() for h in hidden)
        lif_args = dict(tau=self.tau, v_threshold=v_threshold, reset="hard", decay_input=False,
                        detach_reset=detach_reset, surrogate=surrogate, backend=backend)
        self.neurons = nn.ModuleList(LIF(**lif_args) for _ in hidden)
        self.dropouts = nn.ModuleList(TimeSharedDropout(dropout) for _ in hidden)
        self.readout = DelayedLinear(sizes[-1], out_features, **syn)
        self.readout_li = LeakyIntegrator(self.tau, decay_input=False, backend=backend)
        self.reduce = TimeReduce("softmax_sum")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> "SNNDelays":
        """Build from the ``model`` section of ``configs/shd_delays.yaml`` (a mapping of constructor arguments)."""
        args = dict(config)
        if "surrogate_alpha" in args:
            args["surrogate"] = ATan(alpha=float(args.pop("surrogate_alpha")))
        if "hidden" in args:
            args["hidden"] = tuple(args["hidden"])
        args.update(overrides)
        return cls(**args)

    def membrane(self, x: torch.Tensor) -> torch.Tensor:
        """Readout membrane ``U`` of shape ``[T + (L + 1) right_padding, B, out_features]`` for ``x: [T, B, C]``
        (``[B, T, C]`` with ``time_first=False``; the membrane is time first either way)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"x must be a tensor [T, B, C] (or [B, T, C] with time_first=False), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        h = x if self.time_first else x.transpose(0, 1)
        for syn, norm, neuron, drop in zip(self.synapses, self.norms, self.neurons, self.dropouts):
            current = syn(self.time_pad(h))
            T, B, H = current.shape
            current = norm(current.reshape(T * B, H)).reshape(T, B, H)
            h = drop(neuron(current))
        return self.readout_li(self.readout(self.time_pad(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``m = sum_t softmax(U[t])`` of shape ``[B, out_features]`` (cross-entropy is applied to it)."""
        return self.reduce(self.membrane(x))
