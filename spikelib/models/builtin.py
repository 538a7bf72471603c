"""Registry names of the classifiers that are built from plain keyword arguments (YAML ``model`` sections).

``spiking_mlp`` -> :class:`~spikelib.models.SpikingMLP`, ``snn_delays`` -> :class:`~spikelib.models.SNNDelays`
(``SNNDelays.from_config``: ``surrogate_alpha`` builds the ATan surrogate), ``elm_classifier`` ->
:class:`~spikelib.models.ELMClassifier`.
"""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from spikelib.models.elm_net import ELMClassifier
from spikelib.models.mlp import SpikingMLP
from spikelib.models.registry import register_model
from spikelib.models.snn_delays import SNNDelays

__all__: list = []


@register_model("spiking_mlp", params=SpikingMLP)
def spiking_mlp(**kwargs: Any) -> nn.Module:
    """:class:`SpikingMLP` (``hidden`` may be a YAML list)."""
    if isinstance(kwargs.get("hidden"), list):
        kwargs["hidden"] = tuple(kwargs["hidden"])
    return SpikingMLP(**kwargs)


@register_model("snn_delays", params=SNNDelays)
def snn_delays(*, surrogate_alpha: Optional[float] = None, **kwargs: Any) -> nn.Module:
    """:class:`SNNDelays` from a ``model`` section (``SNNDelays.from_config``; ``surrogate_alpha`` builds the ATan
    surrogate)."""
    if surrogate_alpha is not None:
        kwargs["surrogate_alpha"] = surrogate_alpha
    return SNNDelays.from_config(kwargs)


@register_model("elm_classifier", params=ELMClassifier)
def elm_classifier(**kwargs: Any) -> nn.Module:
    """:class:`ELMClassifier` from a ``model`` section."""
    return ELMClassifier.from_config(kwargs)
