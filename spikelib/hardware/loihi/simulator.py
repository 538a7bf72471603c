"""Bit-accurate simulation of a :class:`~spikelib.hardware.loihi.network.LoihiNetwork`, vectorised in torch.

It reproduces, integer for integer, what Lava computes with ``Loihi2SimCfg(select_tag='fixed_pt')`` for a netx
network of dense layers: lava-nc/lava ``src/lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``,
``PyLifModelBitAcc``), ``src/lava/proc/dense/models.py`` (``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc``) and
lava-nc/lava-dl ``src/lava/lib/dl/netx/hdf5.py`` (parameter mapping). Lava runs one sample at a time in numpy; this
runs a whole batch ``[T, B, ...]`` at once. Per layer, with steps ``t = 0, 1, ...`` and input spikes ``s[t]``::

    a[t] = sum_{d} W_d s[t - 1 - d]                   W_d = W masked to the synapses with delay d (no delay: d = 0)
    u[t] = wrap24( trunc(u[t-1] (4096 - iDecay) / 4096) + (a[t] << 6) )
    v'   = clip( trunc(v[t-1] (4096 - vDecay) / 4096) + u[t] + (bias << 6), -(2^23 - 1), 2^23 - 1 )
    z[t] = v' > (vth << 6);     v[t] = 0 where z[t] else v'

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

from spikelib.hardware.loihi.network import LoihiLayer, LoihiNetwork

__all__ = ["SimResult", "simulate", "simulate_layer", "synaptic_input", "conv_input", "check_spike_input"]

_UV_MAX = 2 ** 23
_DECAY_UNITY = 4096
_SHIFT = 6
_CHUNK_ELEMENTS = 1 << 22  # bound on the [spikes, out] index block of one chunk of input spikes


class SimResult(NamedTuple):
    """Per layer (index 0 = first layer): spikes ``[T, B, out]`` (float 0/1), ``u``/``v`` ``[T, B, out]`` (int64)."""

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


def simulate_layer(layer: LoihiLayer, spikes: torch.Tensor, traces: bool = True):
    """Run one layer on float 0/1 ``spikes [T, B, in]``; returns ``(z, u, v)`` (``u``, ``v`` None without traces)."""
    if layer.conv is not None:
        a = conv_input(spikes, layer) << _SHIFT
    else:
        a = synaptic_input(spikes, layer.weight, layer.synapse_delays()) << _SHIFT
    T, B, n = a.shape
    u = torch.zeros(B, n, dtype=torch.int64)
    v = torch.zeros(B, n, dtype=torch.int64)
    u_fac = _DECAY_UNITY - layer.i_decay
    v_fac = _DECAY_UNITY - layer.v_decay
    bias = (layer.bias.to(torch.int64) << _SHIFT) if layer.bias is not None else torch.zeros(n, dtype=torch.int64)
    if layer.conv is not None and layer.bias is not None:
        bias = bias.repeat_interleave(n // bias.numel())  # per channel, flattened C, H, W
    vth = layer.vth << _SHIFT
    z_all = torch.empty(T, B, n, dtype=torch.float32)
    u_all = torch.empty(T, B, n, dtype=torch.int64) if traces else None
    v_all = torch.empty(T, B, n, dtype=torch.int64) if traces else None
    lim = _UV_MAX - 1
    for t in range(T):
        u = torch.div(u * u_fac, _DECAY_UNITY, rounding_mode="trunc") + a[t]
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


def simulate(net: LoihiNetwork, spikes: torch.Tensor, traces: bool = True) -> SimResult:
    """Run ``net`` on input ``spikes [T, B, input_size]`` for ``T`` steps (see the module docstring).

    Args:
        net: the integer network.
        spikes: input spikes, time first: 0/1, or graded payloads 0..255 (see :func:`check_spike_input`).
        traces: also return the ``u``/``v`` traces (``SimResult.u``/``v`` hold None per layer otherwise).

    Returns:
        :class:`SimResult` with one entry per layer. Layer ``l`` (0-based) first sees input ``l + 1`` steps after it
        entered the network (plus its delays): pad the input with zeros to let late spikes come out.
    """
    if not isinstance(net, LoihiNetwork):
        raise TypeError(f"net must be a LoihiNetwork, got {type(net).__name__}")
    x = check_spike_input(spikes, net.input_size)
    zs, us, vs = [], [], []
    with torch.no_grad():
        for layer in net.layers:
            z, u, v = simulate_layer(layer, x, traces)
            zs.append(z)
            us.append(u)
            vs.append(v)
            x = z
    return SimResult(zs, us, vs)
