"""Bit-accurate simulation of a :class:`~spikelib.hardware.loihi.network.LoihiNetwork`, vectorised in torch.

It reproduces, integer for integer, what Lava computes with ``Loihi2SimCfg(select_tag='fixed_pt')`` for a netx
network: lava-nc/lava ``src/lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``, ``PyLifModelBitAcc``,
``PyLifResetModelBitAcc``), ``src/lava/proc/dense/models.py`` (``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc``),
``src/lava/proc/conv/models.py`` and lava-nc/lava-dl ``src/lava/lib/dl/netx/hdf5.py`` / ``blocks/process.py``
(parameter mapping, ``Input``, ``RecurrentDense``, ``reset_interval``). Lava runs one sample at a time in numpy; this
runs a whole batch ``[T, B, ...]`` at once. Per neuron group, with steps ``t = 0, 1, ...`` and input spikes ``s[t]``::

    a[t] = sum_{d} W_d s[t - 1 - d] + W_rec z[t - 1]  W_d = W masked to the synapses with delay d (no delay: d = 0);
                                                      W_rec: recurrent weights (netx dense_rec), else 0
    u[t] = wrap24( trunc(u[t-1] (4096 - iDecay) / 4096) + (a[t] << 6) )
    v'   = clip( trunc(v[t-1] (4096 - vDecay) / 4096) + u[t] + (bias << 6), -(2^23 - 1), 2^23 - 1 )
    z[t] = v' > (vth << 6);     v[t] = 0 where z[t] else v'

``iDecay``/``vDecay`` may differ per neuron (per channel in conv layers). The input neuron group of a network with
:class:`~spikelib.hardware.loihi.network.InputNeurons` has no synapse: ``a[t] = x[t]``, the graded input current at
the same step, and its bias is given per call (``input_bias``, Lava's ``in_layer.neuron.bias_mant``).

Periodic reset (netx ``reset_interval``/``reset_offset``, Lava ``LIFReset``): neuron group ``l`` (0-based, the input
neuron group first when there is one) sets ``u = v = 0`` before step ``t`` whenever
``t % reset_interval == (reset_offset + l) % reset_interval``, so a sample of ``reset_interval`` steps passes through
the pipeline one group per step (lava-dl's ground-truth test of ``tiny.net`` resets the same steps with ``Reset``
processes). Synaptic input already on its way (delays, the one-step latency) is not reset, as in Lava.

``trunc`` rounds toward zero (Lava: ``sign(x) * (|x| >> 12)``). ``wrap24`` is Lava's single conditional wrap:
``x - 2^24`` if ``x > 2^23``, then ``x + 2^24`` if ``x <= -2^23`` (so ``2^23`` itself is kept, as in Lava). A spike
emitted at step ``t`` reaches the next layer's neurons at ``t + 1 + d`` (the dense synapse's one-step latency plus the
delay). ``u`` is never reset. ``u[-1] = v[-1] = 0``. The returned ``u``/``v`` traces are the values after step ``t``
(``v`` after the reset), as Lava's ``u``/``v`` variables read after each step.

Integer arithmetic is int64. Without delays the synaptic sums are float32 matrix products, exact because every partial
sum is an integer below ``2^24`` in magnitude (``in_features * 256 < 2^24``; float64 otherwise). With delays the input
is event-driven: every input spike scatters its weight column to the step ``t + 1 + d`` of each synapse (an int64
``index_add_``), so the cost is spikes x outputs, independent of the number of distinct delays.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import torch

from spikelib.hardware.loihi.network import INPUT_CURRENT_MAX, LIMITS, InputNeurons, LoihiLayer, LoihiNetwork

__all__ = ["SimResult", "simulate", "simulate_layer", "synaptic_input", "conv_input", "check_spike_input",
           "check_input_current", "check_input_bias", "check_reset", "simulate_input_neurons"]

_UV_MAX = 2 ** 23
_DECAY_UNITY = 4096
_SHIFT = 6
_CHUNK_ELEMENTS = 1 << 22  # bound on the [spikes, out] index block of one chunk of input spikes


class SimResult(NamedTuple):
    """Per neuron group (index 0 = the input neurons if the network has them, else the first layer): spikes
    ``[T, B, out]`` (float 0/1), ``u``/``v`` ``[T, B, out]`` (int64)."""

    spikes: List[torch.Tensor]
    u: List[torch.Tensor]
    v: List[torch.Tensor]


MAX_GRADED_INPUT = 255  # 8-bit graded input spikes (netx ``input_message_bits=8``)


def check_spike_input(spikes: torch.Tensor, n_in: int, name: str = "spikes") -> torch.Tensor:
    """Validate input spikes ``[T, B, n_in]`` and return them as float32.

    Values must be integers in ``0..255``: 0/1 are unary spikes, larger values graded input spikes (event counts),
    which Lava runs with netx ``input_message_bits=8`` (the first synapse then multiplies the weight by the payload).
    """
    if not isinstance(spikes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [T, B, {n_in}], got {type(spikes).__name__}")
    if spikes.dim() != 3 or spikes.shape[2] != n_in or spikes.shape[0] < 1 or spikes.shape[1] < 1:
        raise ValueError(f"{name} must have shape [T, B, {n_in}] (time first), got {tuple(spikes.shape)}")
    if spikes.is_complex():
        raise TypeError(f"{name} must be real spike counts, got dtype {spikes.dtype}")
    x = spikes.to(torch.float32)
    if not bool(((x == x.round()) & (x >= 0) & (x <= MAX_GRADED_INPUT)).all()):
        raise ValueError(f"{name} must hold integers in 0..{MAX_GRADED_INPUT} (0/1 spikes, or graded input spike "
                         f"payloads)")
    return x


def check_input_current(x: torch.Tensor, n_in: int, name: str = "current") -> torch.Tensor:
    """Validate the graded input current ``[T, B, n_in]`` of an input neuron group; returns it as int64.

    Values must be integers in ``[-INPUT_CURRENT_MAX, INPUT_CURRENT_MAX]`` (``2^17``: ``x << 6`` stays within the
    24-bit current ``u``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [T, B, {n_in}], got {type(x).__name__}")
    if x.dim() != 3 or x.shape[2] != n_in or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape [T, B, {n_in}] (time first), got {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be real integer currents, got dtype {x.dtype}")
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()) or not torch.equal(x, x.round()):
            raise ValueError(f"{name} must hold integers (input neurons take graded integer current)")
        if x.numel() and float(x.abs().max()) > INPUT_CURRENT_MAX:
            raise ValueError(f"{name} must be in [-{INPUT_CURRENT_MAX}, {INPUT_CURRENT_MAX}], got magnitude "
                             f"{float(x.abs().max()):g}")
        return x.to(torch.int64)
    if x.numel() and (int(x.min()) < -INPUT_CURRENT_MAX or int(x.max()) > INPUT_CURRENT_MAX):
        raise ValueError(f"{name} must be in [-{INPUT_CURRENT_MAX}, {INPUT_CURRENT_MAX}], got "
                         f"[{int(x.min())}, {int(x.max())}]")
    return x.to(torch.int64)


def check_input_bias(bias, batch: int, n_in: int) -> Optional[torch.Tensor]:
    """Validate ``input_bias`` (``[n_in]`` or ``[B, n_in]`` integers in the 13-bit bias range); returns ``[B, n_in]``
    int64, or None."""
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"input_bias must be a torch.Tensor [{n_in}] or [B, {n_in}], got {type(bias).__name__}")
    if tuple(bias.shape) not in ((n_in,), (batch, n_in)):
        raise ValueError(f"input_bias must have shape ({n_in},) or ({batch}, {n_in}), got {tuple(bias.shape)}")
    if bias.is_complex() or bias.dtype == torch.bool or (bias.is_floating_point() and not (
            bool(torch.isfinite(bias).all()) and torch.equal(bias, bias.round()))):
        raise ValueError("input_bias must hold integers (Lava's bias_mant)")
    lo, hi = LIMITS["bias"]
    if bias.numel() and (float(bias.min()) < lo or float(bias.max()) > hi):
        raise ValueError(f"input_bias must be in [{lo}, {hi}] (13-bit bias mantissa), got "
                         f"[{float(bias.min()):g}, {float(bias.max()):g}]")
    return bias.to(torch.int64).expand(batch, n_in)


def check_reset(reset_interval: Optional[int], reset_offset: int) -> None:
    """Validate ``reset_interval`` (None or an int >= 1) and ``reset_offset`` (an int)."""
    for name, value in (("reset_interval", reset_interval), ("reset_offset", reset_offset)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if reset_interval is not None and reset_interval < 1:
        raise ValueError(f"reset_interval must be None (no reset) or an int >= 1, got {reset_interval}")
    if reset_offset is None:
        raise TypeError("reset_offset must be an int, got None")


def synaptic_input(spikes: torch.Tensor, weight: torch.Tensor, delays: Optional[torch.Tensor]) -> torch.Tensor:
    """Dendritic input ``a[t] = sum_d W_d s[t - 1 - d]``, int64 ``[T, B, out]``, for ``spikes [T, B, in]``."""
    T, B, n_in = spikes.shape
    out = weight.shape[0]
    dtype = torch.float32 if n_in * 256 * max(1, int(spikes.max())) < 2 ** 24 else torch.float64
    x = spikes.to(dtype).reshape(T * B, n_in)
    a = torch.zeros(T, B, out, dtype=torch.int64)
    if T < 2:
        return a
    if delays is None:
        y = (x @ weight.to(dtype).t()).reshape(T, B, out)
        a[1:] = y[:-1].round().to(torch.int64)
        return a
    # Event-driven: each input spike (t, b, i) adds W[o, i] to a[t + 1 + D[o, i], b, o] for every output o.
    xs = x.reshape(T, B, n_in)
    t_idx, b_idx, i_idx = xs.nonzero(as_tuple=True)
    counts = xs[t_idx, b_idx, i_idx].round().to(torch.int64)  # 1 for unary spikes, the payload for graded ones
    flat = torch.zeros((T + int(delays.max()) + 1) * B * out, dtype=torch.int64)
    w_t = weight.t().contiguous()  # [in, out]
    base = (1 + delays.t()) * (B * out) + torch.arange(out)  # [in, out]: flat offset of input i's column at t = 0
    per_chunk = max(1, _CHUNK_ELEMENTS // out)
    for start in range(0, len(t_idx), per_chunk):
        t_c, b_c, i_c, n_c = (v[start:start + per_chunk] for v in (t_idx, b_idx, i_idx, counts))
        index = base[i_c] + ((t_c * B + b_c) * out)[:, None]  # [spikes, out]
        flat.index_add_(0, index.reshape(-1), (w_t[i_c] * n_c[:, None]).reshape(-1))
    return flat[: T * B * out].reshape(T, B, out)


def conv_input(spikes: torch.Tensor, layer: LoihiLayer) -> torch.Tensor:
    """Dendritic input of a conv layer: ``a[t] = wrap24(conv2d(s[t - 1], W))`` as int64 ``[T, B, out]``.

    Lava's ``PyConvModelFixed`` (lava-nc/lava ``src/lava/proc/conv/models.py``, ``utils.conv``) computes torch's
    ``conv2d`` (cross-correlation) on float32 and wraps the result to signed 24 bits (``utils.signed_clamp``); the
    float64 convolution here equals it while the sums stay below ``2^24`` (exact in float32).
    """
    g = layer.conv
    T, B, _ = spikes.shape
    x = spikes.to(torch.float64).reshape((T * B,) + g.in_shape)
    y = torch.nn.functional.conv2d(x, layer.weight.to(torch.float64), stride=g.stride, padding=g.padding,
                                   dilation=g.dilation, groups=g.groups)
    y = y.round().to(torch.int64).reshape(T, B, -1)
    y = torch.remainder(y + _UV_MAX, 2 * _UV_MAX) - _UV_MAX
    a = torch.zeros_like(y)
    a[1:] = y[:-1]
    return a


def _neuron_steps(a: torch.Tensor, u_fac: torch.Tensor, v_fac: torch.Tensor, bias: torch.Tensor, vth: int,
                  traces: bool, reset: Optional[tuple] = None, weight_rec: Optional[torch.Tensor] = None):
    """CUBA LIF steps on the synaptic input ``a [T, B, n]`` (int64, not yet shifted); ``u_fac``/``v_fac`` ``[n]``,
    ``bias [n]`` or ``[B, n]`` (shifted), ``reset = (interval, phase)``, ``weight_rec [n, n]`` (recurrent)."""
    T, B, n = a.shape
    u = torch.zeros(B, n, dtype=torch.int64)
    v = torch.zeros(B, n, dtype=torch.int64)
    vth = vth << _SHIFT
    z_all = torch.empty(T, B, n, dtype=torch.float32)
    u_all = torch.empty(T, B, n, dtype=torch.int64) if traces else None
    v_all = torch.empty(T, B, n, dtype=torch.int64) if traces else None
    w_rec = None
    if weight_rec is not None:
        rec_dtype = torch.float32 if n * 256 < 2 ** 24 else torch.float64  # exact integer sums
        w_rec = weight_rec.to(rec_dtype).t()
    lim = _UV_MAX - 1
    z = torch.zeros(B, n, dtype=torch.bool)
    for t in range(T):
        if reset is not None and t % reset[0] == reset[1]:
            u = torch.zeros_like(u)
            v = torch.zeros_like(v)
        a_t = a[t]
        if w_rec is not None and t > 0:
            a_t = a_t + (z.to(w_rec.dtype) @ w_rec).round().to(torch.int64)
        u = torch.div(u * u_fac, _DECAY_UNITY, rounding_mode="trunc") + (a_t << _SHIFT)
        u = torch.where(u > _UV_MAX, u - 2 * _UV_MAX, u)
        u = torch.where(u <= -_UV_MAX, u + 2 * _UV_MAX, u)
        v = (torch.div(v * v_fac, _DECAY_UNITY, rounding_mode="trunc") + u + bias).clamp_(-lim, lim)
        z = v > vth
        v = v.masked_fill(z, 0)
        z_all[t] = z
        if traces:
            u_all[t] = u
            v_all[t] = v
    return z_all, u_all, v_all


def _reset_phase(reset_interval: Optional[int], reset_offset: int, group: int) -> Optional[tuple]:
    if reset_interval is None:
        return None
    return reset_interval, (reset_offset + group) % reset_interval


def simulate_layer(layer: LoihiLayer, spikes: torch.Tensor, traces: bool = True,
                   reset: Optional[tuple] = None):
    """Run one layer on float ``spikes [T, B, in]``; returns ``(z, u, v)`` (``u``, ``v`` None without traces).

    ``reset`` is ``(interval, phase)``: ``u = v = 0`` before every step ``t`` with ``t % interval == phase``.
    """
    if layer.conv is not None:
        a = conv_input(spikes, layer)
    else:
        a = synaptic_input(spikes, layer.weight, layer.synapse_delays())
    n = a.shape[2]
    bias = (layer.bias.to(torch.int64) << _SHIFT) if layer.bias is not None else torch.zeros(n, dtype=torch.int64)
    if layer.conv is not None and layer.bias is not None:
        bias = bias.repeat_interleave(n // bias.numel())  # per channel, flattened C, H, W
    u_fac = _DECAY_UNITY - layer.per_neuron(layer.i_decay)
    v_fac = _DECAY_UNITY - layer.per_neuron(layer.v_decay)
    return _neuron_steps(a, u_fac, v_fac, bias, layer.vth, traces, reset, layer.weight_rec)


def simulate_input_neurons(group: InputNeurons, current: torch.Tensor, bias: Optional[torch.Tensor] = None,
                           traces: bool = True, reset: Optional[tuple] = None):
    """Run an input neuron group on int64 ``current [T, B, n]`` (no synapse, no latency) with ``bias [B, n]``."""
    B, n = current.shape[1], current.shape[2]
    b = (bias << _SHIFT) if bias is not None else torch.zeros(B, n, dtype=torch.int64)
    u_fac = _DECAY_UNITY - group.per_neuron(group.i_decay)
    v_fac = _DECAY_UNITY - group.per_neuron(group.v_decay)
    return _neuron_steps(current, u_fac, v_fac, b, group.vth, traces, reset)


def simulate(net: LoihiNetwork, spikes: torch.Tensor, traces: bool = True, *, reset_interval: Optional[int] = None,
             reset_offset: int = 0, input_bias: Optional[torch.Tensor] = None) -> SimResult:
    """Run ``net`` on ``spikes [T, B, input_size]`` for ``T`` steps (see the module docstring).

    Args:
        net: the integer network.
        spikes: input, time first. Without input neurons: spikes 0/1, or graded payloads 0..255 (see
            :func:`check_spike_input`). With ``net.input_neurons``: their graded input current, integers in
            ``[-2^17, 2^17]`` (see :func:`check_input_current`); zeros where there is none.
        traces: also return the ``u``/``v`` traces (``SimResult.u``/``v`` hold None per group otherwise).
        reset_interval: reset every neuron group's ``u`` and ``v`` every ``reset_interval`` steps (netx
            ``reset_interval``); None: never.
        reset_offset: phase of the reset (netx ``reset_offset``); group ``l`` resets before the steps ``t`` with
            ``t % reset_interval == (reset_offset + l) % reset_interval``.
        input_bias: bias mantissas of the input neurons (``[input_size]``, or ``[B, input_size]`` per sample), as
            lava-dl's tests set ``in_layer.neuron.bias_mant``; only for networks with input neurons.

    Returns:
        :class:`SimResult` with one entry per neuron group (``net.neuron_groups``). Layer ``l`` (0-based) first sees
        input ``l + 1`` steps after it entered the network (plus its delays, plus one step after input neurons):
        pad the input with zeros to let late spikes come out.
    """
    if not isinstance(net, LoihiNetwork):
        raise TypeError(f"net must be a LoihiNetwork, got {type(net).__name__}")
    check_reset(reset_interval, reset_offset)
    zs, us, vs = [], [], []
    group = 0
    with torch.no_grad():
        if net.input_neurons is not None:
            current = check_input_current(spikes, net.input_size, "spikes")
            bias = check_input_bias(input_bias, current.shape[1], net.input_size)
            z, u, v = simulate_input_neurons(net.input_neurons, current, bias, traces,
                                             _reset_phase(reset_interval, reset_offset, 0))
            zs.append(z)
            us.append(u)
            vs.append(v)
            x, group = z, 1
        else:
            if input_bias is not None:
                raise ValueError("input_bias needs a network with input neurons (net.input_neurons)")
            x = check_spike_input(spikes, net.input_size)
        for layer in net.layers:
            z, u, v = simulate_layer(layer, x, traces, _reset_phase(reset_interval, reset_offset, group))
            zs.append(z)
            us.append(u)
            vs.append(v)
            x, group = z, group + 1
    return SimResult(zs, us, vs)
