"""Integer description of a feed-forward Loihi network: what netx HDF5 stores and what the simulator runs.

A :class:`LoihiNetwork` is an input size and a list of :class:`LoihiLayer` s. Each layer is a dense synapse (integer
weights, optional integer delays) feeding CUBA LIF neurons with Loihi's integer parameters, in the units of lava-dl's
netx format (lava-nc/lava-dl, ``src/lava/lib/dl/netx/hdf5.py``, ``Network.get_neuron_params`` / ``create_dense``):

``weight``  ``[out, in]`` integers. Mixed-sign layers: ``[-256, 254]``; all ``>= 0``: ``[0, 255]``; all ``< 0``:
            ``[-255, -1]`` (netx re-scales the matrix by its own weight exponent and Lava's bit-accurate Dense clips
            inhibitory weights to 255 in magnitude). An all-zero matrix is rejected (netx cannot load it).
``delay``   ``None``, per synapse ``[out, in]`` or per neuron ``[out]``, integers ``0..62``.
``conv``    ``None`` (dense) or a :class:`ConvGeometry`: then ``weight`` is a kernel ``[C_out, C_in / groups, kh, kw]``
            (netx ``conv`` layer; Lava's ``Conv`` synapse: cross-correlation as torch's ``conv2d``, the sum wrapped to
            signed 24 bits) and ``bias`` is per channel.
``bias``    ``None`` or ``[out]`` integers ``-4096..4095`` (13-bit mantissa; netx uses bias exponent 6).
``i_decay`` current decay ``0..4096`` (netx ``iDecay``; Lava ``du = iDecay - 1``, effective decay ``iDecay``).
``v_decay`` voltage decay ``0..4096`` (netx ``vDecay``; Lava ``dv``).
``vth``     threshold mantissa ``0..131071`` (17 bit, netx ``vThMant``); spikes when ``v > vth << 6``.

The dynamics are in :mod:`spikelib.hardware.loihi.simulator`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

__all__ = ["LoihiLayer", "LoihiNetwork", "ConvGeometry", "LIMITS"]

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


def _pair(value: Any, name: str, minimum: int) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


@dataclass
class ConvGeometry:
    """A 2-d convolution's input shape ``(C, H, W)`` and its stride/padding/dilation (``(y, x)`` pairs) and groups.

    Spikes are flattened in torch order ``C, H, W``; netx files and Lava use ``(x, y, z) = (W, H, C)`` internally.
    """

    in_shape: Tuple[int, int, int]
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1

    def __post_init__(self) -> None:
        shape = tuple(self.in_shape)
        if len(shape) != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in shape):
            raise ValueError(f"in_shape must be (C, H, W) positive ints, got {self.in_shape!r}")
        self.in_shape = tuple(int(v) for v in shape)
        self.stride = _pair(self.stride, "stride", 1)
        self.padding = _pair(self.padding, "padding", 0)
        self.dilation = _pair(self.dilation, "dilation", 1)
        if isinstance(self.groups, bool) or not isinstance(self.groups, numbers.Integral) or self.groups < 1 \
                or self.in_shape[0] % self.groups:
            raise ValueError(f"groups must be an int >= 1 dividing the {self.in_shape[0]} input channels, "
                             f"got {self.groups!r}")
        self.groups = int(self.groups)

    def out_shape(self, weight: torch.Tensor) -> Tuple[int, int, int]:
        """``(C_out, H_out, W_out)`` for a kernel ``weight [C_out, C_in / groups, kh, kw]`` (torch's formula)."""
        hw = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
              zip(self.in_shape[1:], self.padding, self.dilation, weight.shape[2:], self.stride)]
        return (int(weight.shape[0]), hw[0], hw[1])


@dataclass
class LoihiLayer:
    """One dense (or, with ``conv``, 2-d convolution) layer of CUBA LIF neurons in Loihi integers (module docstring).

    A conv layer has ``weight [C_out, C_in / groups, kh, kw]``, a per-channel ``bias [C_out]`` and no delays.
    """

    weight: torch.Tensor
    vth: int
    i_decay: int = 4096
    v_decay: int = 0
    bias: Optional[torch.Tensor] = None
    delay: Optional[torch.Tensor] = None
    name: str = "dense"
    conv: Optional[ConvGeometry] = None

    def __post_init__(self) -> None:
        n = self.name
        self.weight = _int_tensor(self.weight, f"layer {n!r}: weight")
        if self.conv is not None:
            self._check_conv()
        elif self.weight.dim() != 2 or 0 in self.weight.shape:
            raise ValueError(f"layer {n!r}: weight must be a non-empty [out, in] matrix, "
                             f"got {tuple(self.weight.shape)}")
        if not bool(self.weight.any()):
            raise ValueError(f"layer {n!r}: weight is all zero (netx cannot load an all-zero weight matrix)")
        _check_range(self.weight, "weight", *weight_range(self.weight), n)
        self.vth = _check_int(self.vth, "vth", *LIMITS["vth"], n)
        self.i_decay = _check_int(self.i_decay, "i_decay", *LIMITS["i_decay"], n)
        self.v_decay = _check_int(self.v_decay, "v_decay", *LIMITS["v_decay"], n)
        out, inp = (self.conv.out_shape(self.weight)[0], None) if self.conv is not None else self.weight.shape
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

    def _check_conv(self) -> None:
        n, g = self.name, self.conv
        if not isinstance(g, ConvGeometry):
            raise TypeError(f"layer {n!r}: conv must be a ConvGeometry, got {type(g).__name__}")
        w = self.weight
        if w.dim() != 4 or 0 in w.shape or w.shape[1] * g.groups != g.in_shape[0] or w.shape[0] % g.groups:
            raise ValueError(f"layer {n!r}: conv weight must be [C_out, C_in / groups, kh, kw] with C_in = "
                             f"{g.in_shape[0]}, groups = {g.groups}, got {tuple(w.shape)}")
        if min(g.out_shape(w)) < 1:
            raise ValueError(f"layer {n!r}: the kernel does not fit the input {g.in_shape}")
        if self.delay is not None:
            raise ValueError(f"layer {n!r}: conv layers have no delays (netx conv has none)")

    @property
    def in_features(self) -> int:
        return int(math.prod(self.conv.in_shape)) if self.conv is not None else int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(math.prod(self.conv.out_shape(self.weight))) if self.conv is not None else int(self.weight.shape[0])

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
