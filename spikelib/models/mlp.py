"""A small spiking multilayer perceptron: ``Linear -> LIF`` blocks and a readout, time first ``[T, B, C]``.

For input ``x: [T, B, C]`` each hidden block computes ``S_l = LIF(W_l S_{l-1} + b_l)`` (with ``S_0 = x``); the linear
map (:class:`spikelib.layers.Linear`: event-driven on spike inputs on CPU) is applied to all ``T * B`` rows at once
and the LIF layer scans the whole sequence (one backend call). The readout ``I[t] = W_o S_L[t] + b_o`` gives the
logits in one of two ways:

``readout="membrane"`` (default)
    a non-firing leaky integrator ``U[t] = U[t-1] + (I[t] - U[t-1]) / tau_out`` (``U[-1] = 0``, the LIF charge
    equation without threshold: :class:`~spikelib.neurons.LeakyIntegrator`), averaged over time:
    ``logits = (1/T) sum_t U[t]`` (:class:`~spikelib.layers.TimeReduce` ``"mean"``). It trains reliably: every output
    gets a gradient at every step, and logits are not quantised.
``readout="spikes"``
    a LIF output layer; ``logits = sum_t S_out[t]`` (spike counts, ``TimeReduce("sum")``). Gradients reach the output
    only through the surrogate, and logits are integers, so it needs more epochs; it is offered for fully spiking
    deployment.

Every step is a module (``linears``, ``lifs``, ``out``, ``out_lif`` or ``readout_li``, ``reduce``), so energy
counting, Loihi mapping and NIR export read the network from its layers' declarations.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
from torch import nn

from spikelib.layers.linear import Linear
from spikelib.layers.readout import TimeReduce
from spikelib.neurons import LIF, LeakyIntegrator
from spikelib.surrogate import Surrogate

__all__ = ["SpikingMLP"]

_READOUTS = ("membrane", "spikes")


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class SpikingMLP(nn.Module):
    """``in_features -> hidden... -> out_features`` with LIF hidden layers (see the module docstring).

    Args:
        in_features: input channels ``C``.
        hidden: sizes of the hidden LIF layers (may be empty: a linear readout of the input).
        out_features: number of classes (required).
        tau: membrane time constant (steps) of the hidden LIF layers.
        surrogate: surrogate gradient of the LIF layers (name or instance).
        readout: ``"membrane"`` (default) or ``"spikes"``.
        tau_out: time constant of the readout (leaky integrator, or the output LIF for ``readout="spikes"``).
        v_threshold: firing threshold of the LIF layers.
        detach_reset: cut the gradient through the reset in the LIF layers.
        backend: LIF backend (``"auto"`` picks the fastest exact one).
        init_gain: factor on PyTorch's default (Kaiming-uniform) init of the hidden weights. Sparse 0/1 inputs give
            currents far below threshold with the default init, so the LIF layers start silent and learning stalls
            for several epochs; a gain of 3-5 avoids that (the ``spikelib demo`` uses 4).

    ``forward(x)`` takes ``x: [T, B, in_features]`` and returns logits ``[B, out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128,),
        out_features: Optional[int] = None,
        *,
        tau: float = 2.0,
        surrogate: Union[str, Surrogate] = "atan",
        readout: str = "membrane",
        tau_out: float = 2.0,
        v_threshold: float = 1.0,
        detach_reset: bool = False,
        backend: str = "auto",
        init_gain: float = 1.0,
    ) -> None:
        super().__init__()
        in_features = _check_positive_int(in_features, "in_features")
        if out_features is None:
            raise TypeError("out_features is required (the number of classes)")
        out_features = _check_positive_int(out_features, "out_features")
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of layer sizes, got {type(hidden).__name__}")
        hidden = tuple(_check_positive_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))
        if readout not in _READOUTS:
            raise ValueError(f"readout must be one of {_READOUTS}, got {readout!r}")
        for name, value in (("tau", tau), ("tau_out", tau_out)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 1.0 <= float(value) < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 1 (steps), got {value!r}")
        gain_ok = isinstance(init_gain, numbers.Real) and not isinstance(init_gain, bool)
        if not (gain_ok and 0 < float(init_gain) < float("inf")):
            raise ValueError(f"init_gain must be a finite number > 0, got {init_gain!r}")
        self.in_features = in_features
        self.hidden = hidden
        self.out_features = out_features
        self.readout = readout
        self.tau_out = float(tau_out)
        lif_args = dict(tau=float(tau), v_threshold=v_threshold, surrogate=surrogate, detach_reset=detach_reset,
                        backend=backend)
        sizes = (in_features,) + hidden
        self.linears = nn.ModuleList(Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        with torch.no_grad():
            for linear in self.linears:
                linear.weight.mul_(float(init_gain))
        self.lifs = nn.ModuleList(LIF(**lif_args) for _ in hidden)
        self.out = Linear(sizes[-1], out_features)
        self.out_lif = LIF(**{**lif_args, "tau": self.tau_out}) if readout == "spikes" else None
        self.readout_li = LeakyIntegrator(self.tau_out, backend=backend) if readout == "membrane" else None
        self.reduce = TimeReduce("sum" if readout == "spikes" else "mean")

    @staticmethod
    def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        return layer(x.reshape(T * B, -1)).reshape(T, B, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
            raise ValueError(
                f"x must be a floating tensor [T, B, {self.in_features}] (time first), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if x.shape[2] != self.in_features:
            raise ValueError(f"x must have {self.in_features} channels in dim 2 ([T, B, C]), got {x.shape[2]}")
        h = x
        for linear, lif in zip(self.linears, self.lifs):
            h = lif(self._linear(linear, h))
        current = self._linear(self.out, h)
        return self.reduce(self.out_lif(current) if self.out_lif is not None else self.readout_li(current))

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}, tau_out={self.tau_out:g}"
