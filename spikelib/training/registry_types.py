"""What the open configuration sections accept: the parameters of the dataset builder (``data``), of the model
constructor (``model``, as exposed by :func:`spikelib.models.registry.model_parameters`) and of the loss (``loss``),
used to parse ``--set`` values by their target's type and to check every value before anything is built."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional

from spikelib.training.typecheck import check_arguments, parameters

__all__ = ["section_parameters", "resolve_type", "check_arguments", "accepts_var_keyword"]


def section_parameters(section: str, raw: Mapping[str, Any]) -> Optional[Dict[str, inspect.Parameter]]:
    """The parameters the open ``section`` of ``raw`` feeds (``None`` when its target is unknown)."""
    body = raw.get(section) or {}
    if not isinstance(body, Mapping):
        return None
    if section == "data":
        from spikelib.training.datasets import dataset_builder

        name = body.get("dataset")
        fn = dataset_builder(name) if isinstance(name, str) else None
        return None if fn is None else parameters(fn)
    if section == "model":
        from spikelib.models.registry import list_models, model_parameters

        name = body.get("name")
        return model_parameters(name) if isinstance(name, str) and name in list_models() else None
    if section == "loss":
        from spikelib.training.losses import loss_class

        cls = loss_class(body.get("name", "cross_entropy"))
        return None if cls is None else parameters(cls)
    return None


def resolve_type(section: str, key: str, raw: Mapping[str, Any]) -> Any:
    """The annotation of the parameter ``section.key`` feeds, or ``None``."""
    params = section_parameters(section, raw)
    if not params or key not in params:
        return None
    tp = params[key].annotation
    return None if tp is inspect.Parameter.empty else tp


def accepts_var_keyword(fn: Callable) -> bool:
    """Whether ``fn`` takes ``**kwargs``."""
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())

