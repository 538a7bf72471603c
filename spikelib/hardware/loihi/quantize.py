"""Quantise a trained spikelib network to Loihi fixed point, report what changed, and optionally fine-tune for it.

The float -> Loihi mapping, per layer (:mod:`spikelib.hardware.loihi.extract` reads the network's declared layer graph
and gives ``W``, ``b``, ``D``, ``tau``,
``v_th`` and ``decay_input``; the Loihi equations are in :mod:`spikelib.hardware.loihi.simulator`). The float LIF is
``V[t] = (1 - 1/tau) V[t-1] + c X[t]`` with ``X = W s + b`` and ``c = 1/tau`` (``decay_input=True``) or ``c = 1``.
Loihi's voltage with ``iDecay = 4096`` (no current memory, ``u[t] = a[t] << 6``) is
``v[t] = trunc((1 - vDecay/4096) v[t-1]) + 64 (a[t] + bias)``. With a per-layer scale ``lambda`` and
``v = 64 lambda V``:

    vDecay = round(4096 / tau)                         iDecay = 4096
    w      = step * round(lambda c W / step)           8-bit weights: step = 2^(9 - weight_bits) = 2, w in [-256, 254]
    bias   = round(lambda c b)                         13-bit mantissa in [-4096, 4095] (netx bias exponent 6)
    vth    = round(lambda v_th)                        17-bit mantissa in [0, 131071]; a non-firing readout gets
                                                       netx's 131072 (1 << 17), which no clipped v can exceed
    delay  = D (already integers: DelayedLinear rounds its delays at inference), in [0, 62]

``w = m * 2^(9 - weight_bits)`` with an 8-bit signed mantissa ``m`` in ``[-128, 127]`` is Loihi's mixed-sign synapse
format; the per-layer exponent that maps these integers onto the dendritic accumulator (netx's ``weight_exponent``)
is derived by netx from the integers, so the real degree of freedom per layer is ``lambda``. By default
``lambda = min(254 / max|c W|, 131071 / v_th)``: the largest weight uses the whole 8-bit range unless the threshold
would not fit in 17 bits. ``lambda`` cancels in the spike condition (``V > v_th`` <-> ``v > 64 vth``), so only the
rounding above changes the network. Out-of-range values (user scales, large biases, delays > 62) raise
:class:`QuantizationRangeError` with a summary unless ``clip=True``, which clips them and records it in the report.

Time: layer ``l`` (0-based) of the Loihi network sees the input ``l + 1`` steps later than the float model (one step
of synaptic latency per layer), so the readout of an ``L``-layer network at float step ``t`` is Loihi step ``t + L``;
:func:`fixed_point_logits` runs ``T + pad + L`` steps and reads that window. Biases act from step 0 on Loihi, i.e.
``l + 1`` steps before the first input reaches layer ``l`` (a transient the float model does not have).

Quantisation-aware fine-tuning (:func:`fake_quantized`, used by :func:`spikelib.training.finetune_quantized`): inside
the context every synapse weight (every declared ``Affine``, ``DelayedAffine`` or ``Conv`` layer with a ``weight``
parameter) is replaced in the forward pass by ``W + (Q(W) - W).detach()`` (straight-through estimator),
``Q(W) = s round(W / s)`` with ``s = max|W| step / 254``, which is the grid above expressed in ``W`` (``c`` and
``lambda`` cancel); on exit the weights stay on the grid. With batch norm the grid applies to the unfolded weights,
an approximation.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from spikelib.graph import declared_layers
from spikelib.graph import nodes as N
from spikelib.hardware.loihi.extract import READOUTS, FloatLayer, FloatNetwork, extract_float_network
from spikelib.hardware.loihi.network import LIMITS, VTH_NEVER, LoihiLayer, LoihiNetwork
from spikelib.hardware.loihi.simulator import simulate

__all__ = ["QuantizationRangeError", "QuantReport", "quantize", "fixed_point_logits", "float_logits",
           "compare_float_fixed", "fake_quantize", "fake_quantized"]

logger = logging.getLogger(__name__)

VTH_MAX = LIMITS["vth"][1]  # the largest threshold mantissa a firing layer can have


class QuantizationRangeError(ValueError):
    """Values outside Loihi's ranges and ``clip=False``; the message lists them per layer."""


def _decay_text(r: Dict[str, Any]) -> str:
    if isinstance(r["tau"], list):
        errs = [abs(e - t) / t for t, e in zip(r["tau"], r["tau_effective"]) if math.isfinite(t)]
        return (f"vDecay per neuron {min(r['v_decay'])}..{max(r['v_decay'])} (tau {min(r['tau']):.4g}.."
                f"{max(r['tau']):.4g}, largest rounding {100 * max(errs, default=0.0):.2f}%)")
    return f"vDecay {r['v_decay']} (tau {r['tau']:.4g} -> {r['tau_effective']:.4g})"


@dataclass
class QuantReport:
    """What quantisation rounded and clipped, per layer (``layers``: one dict each) and in total."""

    layers: List[Dict[str, Any]] = field(default_factory=list)
    clipped: bool = False

    def summary(self) -> str:
        lines = []
        for r in self.layers:
            w = r["weight"]
            line = (f"{r['name']}: scale {r['scale']:.4g}, weights max rounding error {w['max_abs_error']:.3g} "
                    f"({100 * w['max_rel_error']:.2f}% of max|W|), {w['zeroed']} rounded to 0, {w['clipped']} clipped; "
                    f"vth {r['vth']} (threshold error {100 * r['threshold_rel_error']:.3f}%); "
                    f"{_decay_text(r)}")
            if r["bias"] is not None:
                line += f"; bias max error {r['bias']['max_abs_error']:.3g}, {r['bias']['clipped']} clipped"
            if r["delay"] is not None:
                line += f"; delays max {r['delay']['max']}, {r['delay']['clipped']} clipped"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {"clipped": self.clipped, "layers": self.layers}


def _quantize_values(x: torch.Tensor, lo: int, hi: int, step: int, clip: bool, what: str, problems: List[str]):
    q = torch.round(x / step) * step
    bad = (q < lo) | (q > hi)
    n_bad = int(bad.sum())
    if n_bad:
        if clip:
            q = q.clamp(lo, hi)
        else:
            problems.append(f"{what}: {n_bad} values outside [{lo}, {hi}] (range of the rounded values "
                            f"[{q.min().item():.0f}, {q.max().item():.0f}])")
    return q.to(torch.int64), n_bad


def _per_neuron(tau: Union[float, torch.Tensor], n: int, name: str) -> torch.Tensor:
    """``tau`` as a float64 tensor ``[n]`` (one value per neuron, or per output channel of a conv layer)."""
    t = torch.as_tensor(tau, dtype=torch.float64).reshape(-1)
    if t.numel() == 1:
        return t.expand(n).clone()
    if t.numel() != n:
        raise QuantizationRangeError(f"layer {name!r}: {t.numel()} time constants for {n} neurons (Loihi decays are "
                                     f"one per neuron of a dense layer, one per channel of a conv layer)")
    return t


def _check_finite(fl: FloatLayer) -> None:
    for what, value in (("weight", fl.weight), ("bias", fl.bias), ("delay", fl.delay)):
        if value is not None and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise QuantizationRangeError(f"layer {fl.name!r}: {bad} {what} value(s) are NaN or infinite; Loihi "
                                         f"takes finite integers (check the trained weights)")
    if math.isnan(fl.v_threshold) or (not math.isfinite(fl.v_threshold) and fl.v_threshold < 0):
        raise QuantizationRangeError(f"layer {fl.name!r}: v_threshold is {fl.v_threshold}")


def _warn_outliers(name: str, zeroed: int, nonzero: int, w_eff: torch.Tensor) -> None:
    """Warn when the largest weights are so far above the rest that rounding zeroes most weights."""
    if nonzero and zeroed > nonzero // 2:
        a = w_eff.abs().reshape(-1)
        logger.warning("layer %r: %d of %d nonzero weights round to 0 on Loihi's 8-bit grid: the largest weight "
                       "(%.4g) is %.3g times the median magnitude (%.4g); a few outliers set the scale. Clip or "
                       "regularise the outliers, or fine-tune with fake quantisation.", name, zeroed, nonzero,
                       float(a.max()), float(a.max() / a[a > 0].median()), float(a[a > 0].median()))


def quantize(
    model: Union[nn.Module, FloatNetwork],
    *,
    weight_bits: int = 8,
    scales: Optional[Sequence[float]] = None,
    clip: bool = False,
    input_shape: Optional[Sequence[int]] = None,
) -> Tuple[LoihiNetwork, QuantReport]:
    """Map a trained network to a :class:`LoihiNetwork` (see the module docstring for the equations).

    Args:
        model: a supported spikelib model (in eval mode) or its :class:`FloatNetwork`.
        weight_bits: signed weight mantissa bits, 2..8 (8: weights ``-256, -254, ..., 254``).
        scales: one ``lambda`` per layer instead of the default.
        clip: clip out-of-range weights, biases, thresholds and delays (recorded in the report) instead of raising.
        input_shape: ``(C, H, W)`` of the input when the first synapse is an ``nn.Conv2d``.

    Returns:
        ``(network, report)``; ``network.meta`` holds the scales, the readout kind and the padding steps.
    """
    fnet = model if isinstance(model, FloatNetwork) else extract_float_network(model, input_shape)
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 2 <= weight_bits <= 8:
        raise ValueError(f"weight_bits must be an int in 2..8, got {weight_bits!r}")
    if scales is not None and len(scales) != len(fnet.layers):
        raise ValueError(f"scales must have one value per layer ({len(fnet.layers)}), got {len(scales)}")
    step = 2 ** (9 - weight_bits)
    w_max = 256 - step
    layers, report, problems = [], QuantReport(), []
    for i, fl in enumerate(fnet.layers):
        _check_finite(fl)
        n_out = int(fl.weight.shape[0])
        tau = _per_neuron(fl.tau, n_out, fl.name)  # [out] (per neuron, or per channel of a conv)
        c = ((1.0 / tau) if fl.decay_input else torch.ones_like(tau)) * fl.input_gain
        rows = c.reshape((-1,) + (1,) * (fl.weight.dim() - 1))
        w_eff = fl.weight.double() * rows
        w_rec = None if fl.weight_rec is None else fl.weight_rec.double() * c.reshape(-1, 1)
        both = w_eff if w_rec is None else torch.cat([w_eff.reshape(n_out, -1), w_rec], dim=1)
        w_abs = float(both.abs().max())
        if w_abs == 0.0:
            raise QuantizationRangeError(f"layer {fl.name!r}: all weights are zero (nothing to map)")
        if scales is not None:
            lam = float(scales[i])
            if not (math.isfinite(lam) and lam > 0):
                raise ValueError(f"scales[{i}] must be a finite number > 0, got {scales[i]!r}")
        else:
            lam = w_max / w_abs
            if math.isfinite(fl.v_threshold):
                lam = min(lam, VTH_MAX / fl.v_threshold)
        lo = -256 if bool((both > 0).any()) else -w_max  # netx scales the feed-forward and recurrent weights together
        w, w_clip = _quantize_values(lam * w_eff, lo, w_max, step, clip, f"layer {fl.name!r} weight", problems)
        rec = None
        if w_rec is not None:
            rec, r_clip = _quantize_values(lam * w_rec, lo, w_max, step, clip, f"layer {fl.name!r} weight_rec",
                                           problems)
            w_clip += r_clip
        zeroed = int(((w == 0) & (w_eff != 0)).sum())
        _warn_outliers(fl.name, zeroed, int((w_eff != 0).sum()), w_eff)
        err = (w.double() / lam - w_eff).abs().max().item()
        c_max = float(c.max())
        bias = bias_rep = None
        if fl.bias is not None or fl.neuron_bias is not None:
            # a synapse bias is scaled like the input (c); a CUBA neuron's bias adds to v directly
            b_eff = torch.zeros(n_out, dtype=torch.float64) if fl.bias is None else c * fl.bias.double()
            if fl.neuron_bias is not None:
                b_eff = b_eff + torch.as_tensor(fl.neuron_bias, dtype=torch.float64).reshape(-1).expand(n_out)
            bias, b_clip = _quantize_values(lam * b_eff, *LIMITS["bias"], 1, clip, f"layer {fl.name!r} bias",
                                            problems)
            bias_rep = {"max_abs_error": float((bias.double() / lam - b_eff).abs().max()), "clipped": b_clip}
        if math.isfinite(fl.v_threshold):
            vth_t, _ = _quantize_values(torch.tensor([lam * fl.v_threshold]), *LIMITS["vth"], 1, clip,
                                        f"layer {fl.name!r} threshold", problems)
            vth = int(vth_t[0])
            if vth == 0 and not problems:
                raise QuantizationRangeError(
                    f"layer {fl.name!r}: the threshold rounds to 0 at scale {lam:.4g} (the largest weight, "
                    f"{w_abs / float(c.min()):.4g}, is {w_abs / float(c.min()) / fl.v_threshold:.3g} thresholds): "
                    f"every input would fire the layer; check the weights for outliers")
            th_err = abs(vth / lam - fl.v_threshold) / fl.v_threshold
        else:
            vth, th_err = VTH_NEVER, 0.0  # 1 << 17: v (clipped to 2^23 - 1) never exceeds vth << 6
        delay = delay_rep = None
        if fl.delay is not None:
            delay, d_clip = _quantize_values(fl.delay.double(), *LIMITS["delay"], 1, clip,
                                             f"layer {fl.name!r} delay", problems)
            delay_rep = {"max": int(delay.max()), "clipped": d_clip}
        v_decay_t = torch.round(4096.0 / tau).to(torch.int64)  # tau = inf (no leak): 0
        uniform = bool((v_decay_t == v_decay_t[0]).all()) and bool((tau == tau[0]).all())
        v_decay = int(v_decay_t[0]) if uniform else v_decay_t
        i_decay: Any = 4096  # no current memory: u = a_in every step (a LIF)
        if fl.current_decay is not None:
            du = _per_neuron(fl.current_decay, n_out, fl.name)
            i_decay_t = torch.round(4096.0 * du).to(torch.int64)
            i_decay = int(i_decay_t[0]) if bool((i_decay_t == i_decay_t[0]).all()) else i_decay_t
        tau_eff = torch.where(v_decay_t > 0, 4096.0 / v_decay_t.clamp_min(1).double(), torch.full_like(tau, math.inf))
        report.clipped |= bool(w_clip or (bias_rep and bias_rep["clipped"]) or (delay_rep and delay_rep["clipped"]))
        report.layers.append({
            "name": fl.name, "scale": lam, "weight_bits": weight_bits, "vth": vth,
            "v_decay": v_decay if uniform else v_decay_t.tolist(),
            "i_decay": i_decay if isinstance(i_decay, int) else i_decay.tolist(),
            "tau": float(tau[0]) if uniform else tau.tolist(),
            "tau_effective": float(tau_eff[0]) if uniform else tau_eff.tolist(),
            "threshold_rel_error": th_err, "non_firing": not math.isfinite(fl.v_threshold),
            "weight": {"max_abs_error": err / float(c.min()) if c_max else 0.0, "max_rel_error": err / w_abs,
                       "zeroed": zeroed, "clipped": w_clip, "nonzero": int((w != 0).sum()), "total": w.numel()},
            "bias": bias_rep, "delay": delay_rep,
        })
        if not problems:
            layers.append(LoihiLayer(weight=w, vth=vth, i_decay=i_decay, v_decay=v_decay, bias=bias, delay=delay,
                                     name=fl.name, conv=fl.conv, weight_rec=rec))
    if problems:
        raise QuantizationRangeError("values outside Loihi's ranges (pass clip=True to clip them):\n  " +
                                     "\n  ".join(problems))
    meta = {"scales": [r["scale"] for r in report.layers], "readout": fnet.readout, "pad_steps": fnet.pad_steps,
            "weight_bits": weight_bits, **fnet.info}
    return LoihiNetwork(fnet.input_size, layers, meta), report


def fixed_point_logits(net: LoihiNetwork, x: torch.Tensor) -> torch.Tensor:
    """Class scores of the quantised network for float-model input ``x [T, B, C]`` (spikes or event counts 0..255).

    Runs ``T + pad + L`` steps and reads the last layer at Loihi steps ``L .. L + T + pad - 1`` (see the module
    docstring) as the float model reads its output: spike counts, the mean membrane ``v / (64 lambda)``, or the sum of
    its softmax over time; ``"membrane"``: the membrane sequence ``[T + pad, B, N]``.
    """
    readout = net.meta.get("readout", "spikes")
    pad = int(net.meta.get("pad_steps", 0))
    L = len(net.layers)
    T = x.shape[0]
    xp = torch.cat([x, x.new_zeros((pad + L,) + tuple(x.shape[1:]))], 0)
    r = simulate(net, xp, traces=readout != "spikes")
    if readout == "spikes":
        return r.spikes[-1][L:].sum(0)
    lam = float(net.meta["scales"][-1])
    u = r.v[-1][L:L + T + pad].double() / (64.0 * lam)
    if readout == "membrane_mean":
        return u.mean(0).to(torch.get_default_dtype())
    if readout == "softmax_sum":
        return torch.softmax(u, dim=-1).sum(0).to(torch.get_default_dtype())
    if readout == "membrane":
        return u.to(torch.get_default_dtype())
    raise ValueError(f"net.meta['readout'] must be one of {list(READOUTS)}, got {readout!r}")


@torch.no_grad()
def float_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The float model's output for ``x [T, B, C]`` in eval mode, with its delays rounded as at inference."""
    from spikelib.layers.delay_schedule import rounded_delays

    model.eval()
    with rounded_delays(model):
        return model(x.to(torch.get_default_dtype()))


def _predictions(logits: torch.Tensor) -> torch.Tensor:
    """Classes from ``[B, N]`` scores, or from a sequence ``[T, B, N]`` summed over time."""
    return (logits.sum(0) if logits.dim() == 3 else logits).argmax(-1)


def compare_float_fixed(model: nn.Module, net: LoihiNetwork, batches) -> Dict[str, float]:
    """Accuracy of the float model and of the quantised network on ``batches`` of ``(x [B, T, C], y [B])``.

    Returns ``float_acc``, ``fixed_acc``, ``agreement`` (fraction of equal predictions) and ``n``.
    """
    n = correct_f = correct_q = agree = 0
    for x, y in batches:
        xt = x.transpose(0, 1).contiguous()
        pf = _predictions(float_logits(model, xt))
        pq = _predictions(fixed_point_logits(net, xt))
        n += len(y)
        correct_f += int((pf == y).sum())
        correct_q += int((pq == y).sum())
        agree += int((pf == pq).sum())
    if n == 0:
        raise ValueError("batches is empty")
    return {"float_acc": correct_f / n, "fixed_acc": correct_q / n, "agreement": agree / n, "n": n}


def fake_quantize(weight: torch.Tensor, weight_bits: int = 8) -> torch.Tensor:
    """``Q(W)`` on the 8-bit grid of :func:`quantize` with a straight-through gradient (identity)."""
    step = 2 ** (9 - weight_bits)
    s = weight.detach().abs().max().clamp_min(1e-30) * step / (256 - step)
    return weight + (torch.round(weight / s) * s - weight).detach()


class _FakeQuant(nn.Module):
    def __init__(self, weight_bits: int) -> None:
        super().__init__()
        self.weight_bits = weight_bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize(w, self.weight_bits)


def _synapse_modules(model: nn.Module) -> List[nn.Module]:
    """The declared synapse layers of ``model`` that hold their weight as a ``weight`` parameter."""
    out = []
    for _name, module, node in declared_layers(model):
        if isinstance(node, (N.Affine, N.DelayedAffine, N.Conv)) and isinstance(getattr(module, "weight", None),
                                                                               nn.Parameter):
            out.append(module)
    return out


@contextlib.contextmanager
def fake_quantized(model: nn.Module, weight_bits: int = 8) -> Iterator[List[nn.Module]]:
    """Within the context, every synapse weight of ``model`` is fake-quantised in the forward pass (straight-through
    gradient, see the module docstring); on exit the weights are left on the quantisation grid. Yields the synapse
    modules. The network must map to Loihi (checked first, naming the layer that does not)."""
    from torch.nn.utils import parametrize

    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 2 <= weight_bits <= 8:
        raise ValueError(f"weight_bits must be an int in 2..8, got {weight_bits!r}")
    from spikelib.layers.delay_schedule import rounded_delays

    was_training = model.training
    try:
        with rounded_delays(model):  # the inference form a chip runs
            extract_float_network(model.eval())  # fail early, naming the layer, if the network cannot be mapped
    finally:
        model.train(was_training)
    synapses = _synapse_modules(model)
    done: List[nn.Module] = []
    try:
        for m in synapses:
            parametrize.register_parametrization(m, "weight", _FakeQuant(weight_bits))
            done.append(m)
        yield synapses
    finally:
        for m in done:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
