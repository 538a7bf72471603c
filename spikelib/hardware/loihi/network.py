"""Integer description of a Loihi network: what netx HDF5 stores and what the simulator runs.

A :class:`LoihiNetwork` is an input size, an optional :class:`InputNeurons` group and a chain of
:class:`LoihiLayer` s. Each layer is a dense synapse (integer weights, optional integer delays, optional recurrent
weights) or a 2-d convolution feeding CUBA LIF neurons with Loihi's integer parameters, in the units of lava-dl's
netx format (lava-nc/lava-dl, ``src/lava/lib/dl/netx/hdf5.py``, ``Network.get_neuron_params`` / ``create_dense`` /
``create_input``; ``blocks/process.py``, ``Input`` / ``RecurrentDense``):

``weight``  ``[out, in]`` integers. Mixed-sign layers: ``[-256, 254]``; all ``>= 0``: ``[0, 255]``; all ``< 0``:
            ``[-255, -1]`` (netx re-scales the matrix by its own weight exponent and Lava's bit-accurate Dense clips
            inhibitory weights to 255 in magnitude). An all-zero matrix is rejected (netx cannot load it).
``delay``   ``None``, per synapse ``[out, in]`` or per neuron ``[out]``, integers ``0..62``.
``conv``    ``None`` (dense) or a :class:`ConvGeometry`: then ``weight`` is a kernel ``[C_out, C_in / groups, kh, kw]``
            (netx ``conv`` layer; Lava's ``Conv`` synapse: cross-correlation as torch's ``conv2d``, the sum wrapped to
            signed 24 bits) and ``bias`` is per channel.
``bias``    ``None`` or ``[out]`` integers ``-4096..4095`` (13-bit mantissa; netx uses bias exponent 6).
``i_decay`` current decay ``0..4096`` (netx ``iDecay``; Lava ``du = iDecay - 1``, effective decay ``iDecay``): one
            int, or one per neuron ``[out]`` (dense) / per channel ``[C_out]`` (conv), as lava-dl's CUBA neurons with
            ``shared_param=False`` export them (Lava broadcasts ``du`` over the last, channel axis).
``v_decay`` voltage decay ``0..4096`` (netx ``vDecay``; Lava ``dv``), shaped like ``i_decay``.
``vth``     threshold mantissa ``0..131071`` (17 bit, netx ``vThMant``); spikes when ``v > vth << 6``. ``131072``
            (``VTH_NEVER``, netx's value for a dense layer without a ``neuron`` group) never spikes, since ``v`` is
            clipped to ``2^23 - 1``.
``weight_rec`` ``None`` or ``[out, out]`` recurrent weights (netx ``dense_rec``, Lava ``RecurrentDense``): a spike
            of neuron ``j`` at step ``t`` adds ``weight_rec[i, j]`` to neuron ``i``'s input at ``t + 1``. netx scales
            ``weight`` and ``weight_rec`` together, so their sign mode (the ranges above) is that of both matrices
            side by side; a recurrent layer has no delays (lava-dl 0.6's ``RecurrentDense`` drops the weight exponent
            when delays are given).

:class:`InputNeurons` is netx's input layer with a ``neuron`` group (lava-dl ``slayer.block.cuba.Input``, e.g. lava-dl's
``tiny.net`` and PilotNet): CUBA neurons that receive the input values directly as graded current (no synapse, no
latency; Lava connects the source to ``in_layer.neuron.a_in``) and optionally a per-sample bias (Lava's
``in_layer.neuron.bias_mant``), and send binary spikes to the first layer. Its ``transform_weight`` /
``transform_bias`` (netx ``weight``/``bias`` of the input layer, read by netx as ``in_layer.transform``) are how
lava-dl encodes data (``value * weight + bias``); netx does not apply them, and neither does the simulator.

The dynamics are in :mod:`spikelib.hardware.loihi.simulator`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

__all__ = ["LoihiLayer", "LoihiNetwork", "InputNeurons", "ConvGeometry", "LIMITS", "VTH_NEVER", "INPUT_CURRENT_MAX"]

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

#: netx's threshold for a dense layer without a ``neuron`` group (``1 << 17``): such neurons never spike.
VTH_NEVER = 1 << 17

#: Bound on the magnitude of the graded input current of :class:`InputNeurons` (``<< 6`` stays within 24 bits).
INPUT_CURRENT_MAX = 1 << 17

Decay = Union[int, torch.Tensor]


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


def _check_vth(value: Any, layer: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) == VTH_NEVER:
        return VTH_NEVER
    return _check_int(value, "vth", *LIMITS["vth"], layer)


def _check_decay(value: Any, name: str, n: int, per: str, layer: str) -> Decay:
    """An int, or a tensor of ``n`` ints (one per neuron / channel), each in ``LIMITS[name]``."""
    lo, hi = LIMITS[name]
    if isinstance(value, numbers.Integral) or isinstance(value, bool):
        return _check_int(value, name, lo, hi, layer)
    if isinstance(value, (float, str, bytes)) or value is None:
        raise TypeError(f"layer {layer!r}: {name} must be an int or a tensor of {n} ints (one per {per}), "
                        f"got {type(value).__name__}")
    t = _int_tensor(value, f"layer {layer!r}: {name}")
    if t.dim() == 0:
        return _check_int(int(t), name, lo, hi, layer)
    if tuple(t.shape) != (n,):
        raise ValueError(f"layer {layer!r}: {name} must be an int or a tensor of shape ({n},) (one per {per}), "
                         f"got shape {tuple(t.shape)}")
    _check_range(t, name, lo, hi, layer)
    return t


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

    A conv layer has ``weight [C_out, C_in / groups, kh, kw]``, a per-channel ``bias [C_out]``, per-channel decays
    and no delays. A dense layer may have recurrent weights ``weight_rec [out, out]`` (then no delays).
    """

    weight: torch.Tensor
    vth: int
    i_decay: Decay = 4096
    v_decay: Decay = 0
    bias: Optional[torch.Tensor] = None
    delay: Optional[torch.Tensor] = None
    name: str = "dense"
    conv: Optional[ConvGeometry] = None
    weight_rec: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        n = self.name
        self.weight = _int_tensor(self.weight, f"layer {n!r}: weight")
        if self.conv is not None:
            self._check_conv()
        elif self.weight.dim() != 2 or 0 in self.weight.shape:
            raise ValueError(f"layer {n!r}: weight must be a non-empty [out, in] matrix, "
                             f"got {tuple(self.weight.shape)}")
        both = self.weight
        if self.weight_rec is not None:
            self._check_recurrent()
            both = torch.cat([self.weight, self.weight_rec], dim=1)
        if not bool(both.any()):
            raise ValueError(f"layer {n!r}: weight is all zero (netx cannot load an all-zero weight matrix)")
        _check_range(self.weight, "weight", *weight_range(both), n)
        if self.weight_rec is not None:
            _check_range(self.weight_rec, "weight_rec", *weight_range(both), n)
        self.vth = _check_vth(self.vth, n)
        out, inp = (self.conv.out_shape(self.weight)[0], None) if self.conv is not None else self.weight.shape
        per = "output channel" if self.conv is not None else "neuron"
        self.i_decay = _check_decay(self.i_decay, "i_decay", int(out), per, n)
        self.v_decay = _check_decay(self.v_decay, "v_decay", int(out), per, n)
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
        if self.weight_rec is not None:
            raise ValueError(f"layer {n!r}: conv layers have no recurrent weights (netx has dense_rec only)")

    def _check_recurrent(self) -> None:
        n = self.name
        self.weight_rec = _int_tensor(self.weight_rec, f"layer {n!r}: weight_rec")
        out = self.weight.shape[0]
        if tuple(self.weight_rec.shape) != (out, out):
            raise ValueError(f"layer {n!r}: weight_rec must be [out, out] = [{out}, {out}], "
                             f"got {tuple(self.weight_rec.shape)}")
        if self.delay is not None:
            raise ValueError(f"layer {n!r}: a recurrent layer (weight_rec) cannot have delays: lava-dl 0.6's "
                             f"RecurrentDense drops netx's weight exponent when delays are given")

    @property
    def recurrent(self) -> bool:
        return self.weight_rec is not None

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

    def per_neuron(self, value: Decay) -> torch.Tensor:
        """``value`` (an int, or one per neuron / per channel) as an int64 vector over all ``out_features`` neurons
        in spikelib's flattened order (conv: ``C, H, W``)."""
        return _per_neuron(value, self.out_features)


def _per_neuron(value: Decay, n: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(torch.int64).repeat_interleave(n // value.numel())
    return torch.full((n,), int(value), dtype=torch.int64)


@dataclass
class InputNeurons:
    """netx's input layer with a ``neuron`` group: CUBA neurons fed directly with graded input current.

    ``shape`` is ``(n,)`` or ``(C, H, W)``; ``i_decay``/``v_decay`` an int or one per channel (``shape[0]``); ``vth``
    as :class:`LoihiLayer`. ``transform_weight``/``transform_bias`` are netx's input transform (stored, not applied;
    module docstring). The input current ``x[t]`` reaches ``u`` at the same step: ``u[t] = decay(u) + (x[t] << 6)``.
    """

    shape: Tuple[int, ...]
    vth: int
    i_decay: Decay = 4096
    v_decay: Decay = 0
    transform_weight: int = 64
    transform_bias: int = 0
    name: str = "input"

    def __post_init__(self) -> None:
        n = self.name
        shape = (self.shape,) if isinstance(self.shape, numbers.Integral) else tuple(self.shape)
        if len(shape) not in (1, 3) or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                                           for v in shape):
            raise ValueError(f"layer {n!r}: shape must be (n,) or (C, H, W) positive ints, got {self.shape!r}")
        self.shape = tuple(int(v) for v in shape)
        self.vth = _check_vth(self.vth, n)
        per = "channel" if len(self.shape) == 3 else "neuron"
        self.i_decay = _check_decay(self.i_decay, "i_decay", self.shape[0], per, n)
        self.v_decay = _check_decay(self.v_decay, "v_decay", self.shape[0], per, n)
        for key in ("transform_weight", "transform_bias"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"layer {n!r}: {key} must be an int, got {type(value).__name__}")
            setattr(self, key, int(value))

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    def per_neuron(self, value: Decay) -> torch.Tensor:
        """As :meth:`LoihiLayer.per_neuron`."""
        return _per_neuron(value, self.size)


@dataclass
class LoihiNetwork:
    """A chain of :class:`LoihiLayer` s fed by ``input_size`` spike channels, or by an :class:`InputNeurons` group
    of that size (then the input is graded current, see the module docstring).

    ``meta`` holds optional facts from quantisation (per-layer scales, readout kind); it is not part of netx.
    """

    input_size: int
    layers: List[LoihiLayer]
    meta: Dict[str, Any] = field(default_factory=dict)
    input_neurons: Optional[InputNeurons] = None

    def __post_init__(self) -> None:
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, numbers.Integral) \
                or self.input_size < 1:
            raise ValueError(f"input_size must be an int >= 1, got {self.input_size!r}")
        self.input_size = int(self.input_size)
        if not self.layers:
            raise ValueError("layers must be a non-empty list of LoihiLayer")
        if self.input_neurons is not None:
            g = self.input_neurons
            if not isinstance(g, InputNeurons):
                raise TypeError(f"input_neurons must be an InputNeurons, got {type(g).__name__}")
            if g.size != self.input_size:
                raise ValueError(f"input_neurons has {g.size} neurons {g.shape}, but input_size is {self.input_size}")
            first = self.layers[0] if self.layers and isinstance(self.layers[0], LoihiLayer) else None
            if first is not None and first.conv is not None and first.conv.in_shape != g.shape:
                raise ValueError(f"input_neurons shape {g.shape} does not match the first conv layer's input "
                                 f"{first.conv.in_shape}")
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

    @property
    def neuron_groups(self) -> List[Union[InputNeurons, LoihiLayer]]:
        """The groups of neurons in order: the input neurons (if any), then every layer (as netx's
        ``Network.layers``; simulator and Lava results have one entry per group)."""
        return ([self.input_neurons] if self.input_neurons is not None else []) + list(self.layers)
