"""Neuron models and surrogate gradients as C snippets for the multi-step template (``multistep_neuron.cu.tmpl``).

A neuron model is its charge function and partial derivatives, each a C function body of ``(v, x or h, tau, inv_tau,
vr)`` with ``v = V[t-1]``, ``x = X[t]``, ``h = H[t]``, ``inv_tau = 1/tau`` and ``vr = v_reset``; firing, reset and BPTT
are written once in the template. The partials may use ``v`` and ``h`` (``x`` is implied by them), which backward
recomputes from the saved ``H``. Models:

=================  ======================================================  ===================  ===========  =====================
model              charge H = f(V, X)                                      dH/dV                dH/dX        dH/dtau
=================  ======================================================  ===================  ===========  =====================
``lif``            V + (X - (V - v_r)) / tau          (decay_input=True)   1 - 1/tau            1/tau        (V - H) / tau
``lif_nodecay``    V - (V - v_r) / tau + X            (decay_input=False)  1 - 1/tau            1            (V - v_r) / tau^2
``lif_leak``       leak (V - v_r) + v_r + X           (decay="leak")       leak                 1            V - v_r
``qif``            V + (X + a0 (V - v_rest)(V - v_c)) / tau                1 + a0 (2V - v_rest  1/tau        (V - H) / tau
                                                                           - v_c) / tau
=================  ======================================================  ===================  ===========  =====================

(``lif_leak``: the ``tau`` slot holds the leak factor and ``dH/dtau`` is ``dH/dleak``.) ``lif`` / ``lif_nodecay`` /
``lif_leak`` are the equations of :mod:`spikelib.functional.lif`, written with the same floating-point
operations in the same order (float32 forward equals the torch reference bitwise on the CPU emulation). ``qif`` is the
quadratic integrate-and-fire neuron of spikingjelly's ``QIFNode`` (fangwei123456/spikingjelly,
spikingjelly/activation_based/neuron.py; defaults a0=1, v_c=0.8, v_rest=0): the second family that proves the template
(its dH/dV depends on the state).

Surrogates (:mod:`spikelib.surrogate`) are given here as C bodies of ``g(x, alpha)``; a custom surrogate may define
``cuda_source(x, alpha) -> str`` (a C function body returning ``g``) to be usable by the CuPy backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from spikelib.surrogate import Surrogate

__all__ = ["NeuronModel", "LIF_DECAY_INPUT", "LIF_NO_DECAY_INPUT", "LIF_LEAK", "QIF", "surrogate_source", "SURROGATE_C",
           "lif_model", "neuron_model_by_name"]


_MODELS: Dict[str, "NeuronModel"] = {}


@dataclass(frozen=True)
class NeuronModel:
    """A neuron model as C function bodies (see the module docstring); registered by name when created."""

    name: str
    charge: str
    dh_dv: str
    dh_dx: str
    dh_dtau: str

    def __post_init__(self) -> None:
        known = _MODELS.setdefault(self.name, self)
        if known != self:
            raise ValueError(f"two neuron models are named {self.name!r}")


def neuron_model_by_name(name: str) -> "NeuronModel":
    """The model created under ``name`` (how the custom operators name it)."""
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"no neuron model named {name!r}; known: {sorted(_MODELS)}") from None


LIF_DECAY_INPUT = NeuronModel(
    name="lif",
    charge="return v + (x - (v - vr)) / tau;",
    dh_dv="return 1.0f - inv_tau;",
    dh_dx="return inv_tau;",
    dh_dtau="return (v - h) * inv_tau;",
)

LIF_NO_DECAY_INPUT = NeuronModel(
    name="lif_nodecay",
    charge="return v - (v - vr) / tau + x;",
    dh_dv="return 1.0f - inv_tau;",
    dh_dx="return 1.0f;",
    dh_dtau="return (v - vr) * inv_tau * inv_tau;",
)


LIF_LEAK = NeuronModel(
    name="lif_leak",
    charge="return tau * (v - vr) + vr + x;",
    dh_dv="return tau;",
    dh_dx="return 1.0f;",
    dh_dtau="return v - vr;",
)


def lif_model(decay: str, decay_input: bool) -> NeuronModel:
    """The model of a LIF configuration (``LIFConfig.decay`` and ``decay_input``)."""
    if decay == "leak":
        return LIF_LEAK
    return LIF_DECAY_INPUT if decay_input else LIF_NO_DECAY_INPUT


def _c_float(value: float) -> str:
    text = repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    return f"{text}f"


def QIF(a0: float = 1.0, v_c: float = 0.8, v_rest: float = 0.0) -> NeuronModel:  # noqa: N802 (a model constructor)
    """Quadratic integrate-and-fire (spikingjelly ``QIFNode``): ``H = V + (X + a0 (V - v_rest)(V - v_c)) / tau``."""
    for name, value in (("a0", a0), ("v_c", v_c), ("v_rest", v_rest)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
            raise ValueError(f"QIF {name} must be a finite number, got {value!r}")
    a, c, r = _c_float(a0), _c_float(v_c), _c_float(v_rest)
    return NeuronModel(
        name=f"qif(a0={a0:g},v_c={v_c:g},v_rest={v_rest:g})",
        charge=f"return v + (x + {a} * (v - {r}) * (v - {c})) / tau;",
        dh_dv=f"return 1.0f + {a} * (2.0f * v - {r} - {c}) * inv_tau;",
        dh_dx="return inv_tau;",
        dh_dtau="return (v - h) * inv_tau;",
    )


# g(x, alpha) of the registered surrogates, the formulas of their torch `grad` (spikelib.surrogate).
SURROGATE_C: Dict[str, str] = {
    "atan": "const float u = 1.5707963267948966f * alpha * x;\n    return alpha * 0.5f / (1.0f + u * u);",
    "sigmoid": "const float s = 1.0f / (1.0f + expf(-(alpha * x)));\n    return alpha * s * (1.0f - s);",
    "fast_sigmoid": "const float u = 1.0f + alpha * fabsf(x);\n    return 1.0f / (u * u);",
    "triangle": "const float u = 1.0f - alpha * fabsf(x);\n    return u > 0.0f ? alpha * u : 0.0f;",
    "rectangular": "return fabsf(x) < 0.5f / alpha ? alpha : 0.0f;",
    "piecewise_linear": "const float u = 1.0f - fabsf(x);\n    return u > 0.0f ? alpha * u : 0.0f;",
}


def surrogate_source(surrogate: Surrogate) -> Optional[str]:
    """The C body of ``g(x, alpha)`` for ``surrogate``, or None when it has none."""
    custom = getattr(surrogate, "cuda_source", None)
    if callable(custom):
        return custom("x", "alpha")
    name = getattr(type(surrogate), "name", "")
    if name in SURROGATE_C and type(surrogate).__module__ == "spikelib.surrogate":
        return SURROGATE_C[name]
    return None
