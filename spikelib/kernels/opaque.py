"""Non-tensor arguments of spikelib's custom operators, written as text.

A PyTorch custom operator (``torch.library.custom_op``) takes tensors and plain values only, so a kernel's
configuration (a :class:`~spikelib.functional.lif.LIFConfig`, or a neuron family's
:class:`~spikelib.functional.dynamics.NeuronSpec`; both hold a surrogate object) travels as a string built from its
choices (:func:`lif_config_key`, :func:`spec_key`, which torch.compile traces as constants) with its numbers as
float arguments, and is rebuilt from them by the operator (:func:`lif_config_from_key`, :func:`spec_from_key`,
cached). A surrogate is named by its class
(``module.qualname``, any :class:`~spikelib.surrogate.Surrogate` subclass defined in the process) and its ``alpha``; a
family by its registered name. The text holds only names, booleans and numbers (read back with ``ast.literal_eval``):
nothing in it can run code.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import fields

from spikelib.functional.dynamics import NeuronSpec, family_by_name
from spikelib.functional.lif import LIFConfig
from spikelib.surrogate import class_key, surrogate_from_key

__all__ = ["lif_config_key", "lif_config_from_key", "spec_key", "spec_from_key"]

_SEP = "|"


def lif_config_key(c: LIFConfig) -> str:
    """The text of a LIF configuration's choices (its numbers, ``v_reset`` and the surrogate's ``alpha``, travel as
    float arguments: under torch.compile they may be symbolic)."""
    return _SEP.join([c.reset, "1" if c.decay_input else "0", "1" if c.detach_reset else "0",
                      class_key(type(c.surrogate)), c.decay, c.fire])


@functools.lru_cache(maxsize=None)
def lif_config_from_key(key: str, v_reset: float, alpha: float) -> LIFConfig:
    """The :class:`LIFConfig` of :func:`lif_config_key`'s text and the two numbers."""
    reset, decay_input, detach, sur, decay, fire = key.split(_SEP)
    return LIFConfig(reset, decay_input == "1", detach == "1", float(v_reset), surrogate_from_key(sur, float(alpha)),
                     decay, fire)


def spec_key(spec: NeuronSpec) -> str:
    """The text of a neuron family's variant (the surrogate's ``alpha`` travels as a float argument)."""
    opts = spec.options
    items = []
    for f in fields(opts):
        value = getattr(opts, f.name)
        if f.name == "surrogate":
            continue
        if isinstance(value, bool):
            items.append(f"{f.name}={'True' if value else 'False'}")
        elif isinstance(value, str):
            items.append(f"{f.name}='{value}'")
        else:
            raise TypeError(f"option {f.name} of {spec.family.name} must be a bool or a str to travel as text")
    return _SEP.join([spec.family.name, class_key(type(opts.surrogate)), ";".join(items)])


@functools.lru_cache(maxsize=None)
def spec_from_key(key: str, alpha: float) -> NeuronSpec:
    """The :class:`NeuronSpec` of :func:`spec_key`'s text and the surrogate's ``alpha``."""
    name, sur, items = key.split(_SEP)
    family = family_by_name(name)
    values = {}
    for item in filter(None, items.split(";")):
        field, text = item.split("=", 1)
        values[field] = ast.literal_eval(text)
    return NeuronSpec(family, family.options_type(**values, surrogate=surrogate_from_key(sur, float(alpha))))
