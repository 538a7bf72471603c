"""A small registry of datasets for ``spikelib train``, keyed by name.

A builder takes ``seed`` (the run's seed, for generated data) plus the ``data`` section's own options and returns a
:class:`DatasetBundle` with the ``train`` and ``test`` datasets (items ``(x: [T, C] float tensor, label: int)``) and
``info`` (``n_classes``, ``n_channels``, ``n_steps`` where fixed, ``chance``). The validation split is carved out of
the training set by the trainer (``data.val_fraction``), never out of the test set. Unknown options raise
:class:`~spikelib.training.config.ConfigError` naming ``data.<key>`` and the options the dataset accepts.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

import numpy as np

from spikelib.training.config import ConfigError

__all__ = ["DatasetBundle", "register_dataset", "list_datasets", "build_datasets"]


@dataclass
class DatasetBundle:
    """``train`` and ``test`` datasets and facts about them (``info``: n_classes, n_channels, chance, ...)."""

    train: Any
    test: Any
    info: Dict[str, Any] = field(default_factory=dict)


_DATASETS: Dict[str, Callable[..., DatasetBundle]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., DatasetBundle]], Callable[..., DatasetBundle]]:
    """Decorator: register a builder ``fn(seed, **options) -> DatasetBundle`` under ``name``."""

    def deco(fn: Callable[..., DatasetBundle]) -> Callable[..., DatasetBundle]:
        if name in _DATASETS and _DATASETS[name] is not fn:
            raise ValueError(f"dataset name {name!r} is already registered")
        _DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> List[str]:
    """The registered dataset names, sorted."""
    return sorted(_DATASETS)


def check_kwargs(fn: Callable, kwargs: Dict[str, Any], path: str, skip: tuple = ()) -> None:
    """Raise :class:`ConfigError` for keys of ``kwargs`` that ``fn`` does not accept (``path.key``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if n not in skip and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in known:
            raise ConfigError(f"{path}.{key}: unknown key; this accepts: {', '.join(sorted(known)) or 'nothing'}")


def build_datasets(name: str, seed: int, **options: Any) -> DatasetBundle:
    """Build the dataset registered as ``name`` with the ``data`` section's options."""
    if name not in _DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    fn = _DATASETS[name]
    check_kwargs(fn, options, "data", skip=("seed",))
    try:
        return fn(seed=seed, **options)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"data: dataset {name!r} rejected its options: {exc}") from exc


def _seeds(seed: int, n: int) -> List[int]:
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


@register_dataset("synthetic_temporal")
def _synthetic_temporal(seed: int, n_train: int = 2000, n_test: int = 500, **task: Any) -> DatasetBundle:
    """:class:`spikelib.data.SyntheticTemporalDataset` (class = burst order of channel groups)."""
    from spikelib.data import SyntheticTemporalDataset

    check_kwargs(SyntheticTemporalDataset.__init__, task, "data", skip=("self", "n_samples", "seed"))
    train_seed, test_seed = _seeds(seed, 2)
    task.setdefault("task_seed", seed)
    train = SyntheticTemporalDataset(n_train, train_seed, **task)
    test = SyntheticTemporalDataset(n_test, test_seed, **task)
    return DatasetBundle(train, test, {"n_classes": train.n_classes, "n_channels": train.n_channels,
                                       "n_steps": train.n_steps, "chance": train.chance_level})
