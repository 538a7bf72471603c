"""Integer description of a feed-forward Loihi network: what netx HDF5 stores and what the simulator runs.

A :class:`LoihiNetwork` is an input size and a list of :class:`LoihiLayer` s. Each layer is a dense synapse (integer
weights, optional integer delays) feeding CUBA LIF neurons with Loihi's integer parameters, in the units of lava-dl's
netx format (lava-nc/lava-dl, ``src/lava/lib/dl/netx/hdf5.py``, ``Network.get_neuron_params`` / ``create_dense``):

``weight``  ``[out, in]`` integers. Mixed-sign layers: ``[-256, 254]``; all ``>= 0``: ``[0, 255]``; all ``< 0``:
            ``[-255, -1]`` (netx re-scales the matrix by its own weight exponent and Lava's bit-accurate Dense clips
            inhibitory weights to 255 in magnitude). An all-zero matrix is rejected (netx cannot load it).
``delay``   ``None``, per synapse ``[out, in]`` or per neuron ``[out]``, integers ``0..62``.
``bias``    ``None`` or ``[out]`` integers ``-4096..4095`` (13-bit mantissa; netx uses bias exponent 6).
``i_decay`` current decay ``0..4096`` (netx ``iDecay``; Lava ``du = iDecay - 1``, effective decay ``iDecay``).
``v_decay`` voltage decay ``0..4096`` (netx ``vDecay``; Lava ``dv``).
``vth``     threshold mantissa ``0..131071`` (17 bit, netx ``vThMant``); spikes when ``v > vth << 6``.

The dynamics are in :mod:`spikelib.hardware.loihi.simulator`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

__all__ = ["LoihiLayer", "LoihiNetwork", "LIMITS"]

#: Ranges of the integer parameters (inclusive).
LIMITS: Dict[str, tuple] = {
    "weight_mixed": (-256, 254),
    "weight_excitatory": (0, 255),
    "weight_inhibitory": (-255, -1),
    "delay": (0, 62),
    "bias": (-4096, 4095),
    "i_decay": (0, 4096),
    "v_decay": (0, 4096),
    "vth": (0, 131071),
}


def _int_tensor(value: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(value)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        if t.is_floating_point() and torch.equal(t, t.round()) and bool(torch.isfinite(t).all()):
            return t.to(torch.int64)
        raise ValueError(f"{name} must hold integers, got dtype {t.dtype} with non-integer values")
    return t.to(torch.int64)


def _check_range(t: torch.Tensor, name: str, lo: int, hi: int, layer: str) -> None:
    if t.numel() and (int(t.min()) < lo or int(t.max()) > hi):
        raise ValueError(f"layer {layer!r}: {name} must be in [{lo}, {hi}], got [{int(t.min())}, {int(t.max())}]")


def _check_int(value: Any, name: str, lo: int, hi: int, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"layer {layer!r}: {name} must be an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"layer {layer!r}: {name} must be in [{lo}, {hi}], got {value}")
    return int(value)


def weight_range(weight: torch.Tensor) -> tuple:
    """The allowed range for ``weight`` given its sign mode (see the module docstring)."""
    if int(weight.min()) >= 0:
        return LIMITS["weight_excitatory"]
    if int(weight.max()) < 0:
        return LIMITS["weight_inhibitory"]
    return LIMITS["weight_mixed"]


@dataclass
class LoihiLayer:
    """One dense layer of CUBA LIF neurons in Loihi integers (see the module docstring)."""

    weight: torch.Tensor
    vth: int
    i_decay: int = 4096
    v_decay: int = 0
    bias: Optional[torch.Tensor] = None
    delay: Optional[torch.Tensor] = None
    name: str = "dense"

    def __post_init__(self) -> None:
        n = self.name
        self.weight = _int_tensor(self.weight, f"layer {n!r}: weight")
        if self.weight.dim() != 2 or 0 in self.weight.shape:
            raise ValueError(f"layer {n!r}: weight must be a non-empty [out, in] matrix, "
                             f"got {tuple(self.weight.shape)}")
        if not bool(self.weight.any()):
            raise ValueError(f"layer {n!r}: weight is all zero (netx cannot load an all-zero weight matrix)")
        _check_range(self.weight, "weight", *weight_range(self.weight), n)
        self.vth = _check_int(self.vth, "vth", *LIMITS["vth"], n)
        self.i_decay = _check_int(self.i_decay, "i_decay", *LIMITS["i_decay"], n)
        self.v_decay = _check_int(self.v_decay, "v_decay", *LIMITS["v_decay"], n)
        out, inp = self.weight.shape
        if self.bias is not None:
            self.bias = _int_tensor(self.bias, f"layer {n!r}: bias")
            if tuple(self.bias.shape) != (out,):
                raise ValueError(f"layer {n!r}: bias must have shape ({out},), got {tuple(self.bias.shape)}")
            _check_range(self.bias, "bias", *LIMITS["bias"], n)
        if self.delay is not None:
            self.delay = _int_tensor(self.delay, f"layer {n!r}: delay")
            if tuple(self.delay.shape) not in ((out, inp), (out,)):
                raise ValueError(f"layer {n!r}: delay must have shape ({out}, {inp}) (per synapse) or ({out},) "
                                 f"(per neuron), got {tuple(self.delay.shape)}")
            _check_range(self.delay, "delay", *LIMITS["delay"], n)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def synapse_delays(self) -> Optional[torch.Tensor]:
        """Delays as ``[out, in]`` (per-neuron delays broadcast over the inputs), or None."""
        if self.delay is None:
            return None
        return self.delay if self.delay.dim() == 2 else self.delay[:, None].expand_as(self.weight)


@dataclass
class LoihiNetwork:
    """A feed-forward chain of :class:`LoihiLayer` s fed by ``input_size`` spike channels.

    ``meta`` holds optional facts from quantisation (per-layer scales, readout kind); it is not part of netx.
    """

    input_size: int
    layers: List[LoihiLayer]
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, numbers.Integral) \
                or self.input_size < 1:
            raise ValueError(f"input_size must be an int >= 1, got {self.input_size!r}")
        self.input_size = int(self.input_size)
        if not self.layers:
            raise ValueError("layers must be a non-empty list of LoihiLayer")
        size = self.input_size
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LoihiLayer):
                raise TypeError(f"layers[{i}] must be a LoihiLayer, got {type(layer).__name__}")
            if layer.in_features != size:
                raise ValueError(f"layers[{i}] ({layer.name!r}) takes {layer.in_features} inputs, but the previous "
                                 f"layer gives {size}")
            size = layer.out_features

    @property
    def sizes(self) -> List[int]:
        return [self.input_size] + [layer.out_features for layer in self.layers]
