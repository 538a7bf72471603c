"""Render CUDA kernel variants from ``multistep_neuron.cu.tmpl`` and compile them lazily with CuPy, cached by key.

A variant is fixed by its :class:`VariantKey` (neuron model, surrogate, storage dtype, reset mode, detach_reset); each
renders to one namespace plus two ``extern "C"`` kernels, ``slk_fwd_<tag>`` and ``slk_bwd_<tag>``, whose tag hashes the
key, so any number of variants can share one translation unit (the compile check builds all of them in a few units).
Choices that are a uniform branch per launch (saving H or V, which gradients exist, the spike gradient's strides, the
firing rule) are
kernel arguments, not variants. Template syntax: ``{{NAME}}`` is replaced by a value; a placeholder left without a
value is an error.

Compiled modules are cached per (key, device) for the process; CuPy keeps the compiled binary in its own on-disk
kernel cache (``~/.cupy/kernel_cache``), so a variant compiles once per machine.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Tuple

from spikelib.kernels.cupy.neurons import LIF_DECAY_INPUT, LIF_LEAK, LIF_NO_DECAY_INPUT, QIF, SURROGATE_C, NeuronModel

__all__ = [
    "DTYPES",
    "VariantKey",
    "render_variant",
    "translation_unit",
    "all_variant_keys",
    "get_kernels",
    "COMPILE_OPTIONS",
]

_DIR = Path(__file__).resolve().parent
# storage type, load function, store function (prelude.cuh)
DTYPES: Dict[str, Tuple[str, str, str]] = {
    "float32": ("float", "slk_f32_load", "slk_f32_store"),
    "float16": ("unsigned short", "slk_f16_load", "slk_f16_store"),
    "bfloat16": ("unsigned short", "slk_bf16_load", "slk_bf16_store"),
}
COMPILE_OPTIONS: Tuple[str, ...] = ("--std=c++17",)  # the default of NVRTC 12+ and nvcc 12+; explicit for both
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


@dataclass(frozen=True)
class VariantKey:
    """Everything that selects a compiled kernel pair."""

    neuron: NeuronModel
    surrogate: str  # registry name (or a custom surrogate's class name)
    surrogate_body: str
    dtype: str
    hard_reset: bool
    detach_reset: bool

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")

    @property
    def tag(self) -> str:
        text = repr((self.neuron, self.surrogate, self.surrogate_body, self.dtype, self.hard_reset, self.detach_reset))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def forward_name(self) -> str:
        return f"slk_fwd_{self.tag}"

    @property
    def backward_name(self) -> str:
        return f"slk_bwd_{self.tag}"


def _fill(template: str, values: Dict[str, str]) -> str:
    def sub(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"template placeholder {{{{{name}}}}} has no value")
        return values[name]

    return _PLACEHOLDER.sub(sub, template)


def render_variant(key: VariantKey) -> str:
    """The source of one variant (without the prelude)."""
    storage, load, store = DTYPES[key.dtype]
    values = {
        "TAG": key.tag,
        "NEURON": key.neuron.name,
        "SURROGATE": key.surrogate,
        "DTYPE": key.dtype,
        "RESET": "hard" if key.hard_reset else "soft",
        "DETACH": "detach_reset" if key.detach_reset else "reset in the graph",
        "STORAGE": storage,
        "LOAD": load,
        "STORE": store,
        "HARD_RESET": "true" if key.hard_reset else "false",
        "RESET_GRAD": "false" if key.detach_reset else "true",
        "CHARGE": key.neuron.charge,
        "DH_DV": key.neuron.dh_dv,
        "DH_DX": key.neuron.dh_dx,
        "DH_DTAU": key.neuron.dh_dtau,
        "SURROGATE_BODY": key.surrogate_body,
    }
    return _fill((_DIR / "multistep_neuron.cu.tmpl").read_text(), values)


def translation_unit(keys: Iterable[VariantKey], host: bool = False) -> str:
    """One compilable source holding the prelude and every variant in ``keys``.

    Args:
        keys: the variants (:class:`VariantKey`, or any key with a ``render()`` method such as the multi-state
            kernels' :class:`~spikelib.kernels.cupy.multistate.MultiStateKey`).
        host: prepend ``host_harness.h`` so that the source compiles as host C++ (the CPU emulation used in tests).
    """
    parts: List[str] = []
    if host:
        parts.append((_DIR / "host_harness.h").read_text())
    parts.append((_DIR / "prelude.cuh").read_text())
    seen = set()
    for key in keys:
        if key.tag in seen:
            continue
        seen.add(key.tag)
        parts.append(render_variant(key) if isinstance(key, VariantKey) else key.render())
    return "\n".join(parts)


def all_variant_keys() -> Iterator[VariantKey]:
    """Every variant the backend can generate for the built-in models and registered surrogates."""
    neurons = [LIF_DECAY_INPUT, LIF_NO_DECAY_INPUT, LIF_LEAK, QIF()]
    for neuron, (sname, body), dtype, hard, detach in itertools.product(
        neurons, sorted(SURROGATE_C.items()), sorted(DTYPES), (True, False), (False, True)
    ):
        yield VariantKey(neuron, sname, body, dtype, hard, detach)


_KERNELS: Dict[Tuple[str, int], Tuple[object, object]] = {}
_LOCK = threading.Lock()


def get_kernels(key: VariantKey, device_index: int):
    """``(forward, backward)`` CuPy kernels of ``key`` for a device, compiled on first use and cached."""
    cache_key = (key.tag, device_index)
    with _LOCK:
        kernels = _KERNELS.get(cache_key)
        if kernels is None:
            import cupy  # lazily: the caller has checked that CuPy is importable

            with cupy.cuda.Device(device_index):
                options = getattr(key, "compile_options", COMPILE_OPTIONS)
                module = cupy.RawModule(code=translation_unit([key]), options=options)
                kernels = (module.get_function(key.forward_name), module.get_function(key.backward_name))
            _KERNELS[cache_key] = kernels
    return kernels
