"""Building the parts of a run from its configuration: seeding, the model (with sizes taken from the data), the
validation split, the loaders and the resumable sampler."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from spikelib.training.config import RunConfig
from spikelib.training.errors import ConfigError

__all__ = ["seed_everything", "stream_seed", "worker_init_fn", "build_model", "model_arguments", "split_train_val", "build_data",
           "RunData", "FROM_DATA", "DEFAULT_VAL_FRACTION"]

#: constructor arguments filled from the data set's facts when the model section leaves them out (or sets null);
#: when the section sets one and the data set says otherwise, that is an error
FROM_DATA = {"in_features": "n_channels", "num_input": "n_channels", "in_channels": "n_channels",
             "out_features": "n_classes", "num_classes": "n_classes"}

#: share of the training set held out for validation when ``data.val_fraction`` is unset and the data set has no
#: official validation split
DEFAULT_VAL_FRACTION = 0.1


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stream_seed(seed: int, stream: str) -> int:
    """The seed of one named random stream of a run (e.g. ``"delay_positions"``), derived from the run's seed.

    A generator seeded with the run's seed itself replays the global generator that :func:`seed_everything` seeded,
    whose first draws are the model's initial weights: a tensor of the same shape drawn the same way from it is a
    function of those weights (initial delay positions drawn so were 99.99% correlated with the first layer's
    weights). The derived seed (a hash of the run's seed and the stream's name) starts an independent stream.

    Args:
        seed: The run's seed (``train.seed``).
        stream: The stream's name; different names give independent streams.

    Returns:
        A 63-bit seed for :meth:`torch.Generator.manual_seed`.
    """
    digest = hashlib.blake2b(f"{int(seed)}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def worker_init_fn(worker_id: int) -> None:
    """DataLoader workers: seed NumPy and ``random`` from the worker's torch seed (set from the loader generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def model_arguments(config: RunConfig, info: Dict[str, Any]) -> Dict[str, Any]:
    """``model.args`` checked against the constructor the registry exposes, with sizes from the data (``FROM_DATA``).

    Raises :class:`ConfigError` for an unknown model, an unknown argument, a value of the wrong type, or a size that
    contradicts the data set (e.g. ``num_classes: 40`` on a 10-class set).
    """
    from spikelib.models.registry import list_models, model_accepts_any, model_parameters
    from spikelib.training.typecheck import check_arguments

    name = config.model.name
    if not name:
        raise ConfigError("model.name: required key is missing (a name of spikelib.models.list_models(), or pass the "
                          "model to the Trainer in Python)")
    if name not in list_models():
        raise ConfigError(f"model.name: unknown model {name!r}; known: {', '.join(list_models())}")
    params = model_parameters(name)
    args = dict(config.model.args)
    check_arguments(params, {k: v for k, v in args.items() if v is not None or k not in FROM_DATA}, "model",
                    accepts_more=model_accepts_any(name))
    dataset = config.data.dataset or "the data set"
    for key, source in FROM_DATA.items():
        if key not in params or source not in info:
            continue
        have = int(info[source])
        if args.get(key) is None:
            args[key] = have
        elif args[key] != have:
            what = "classes" if source == "n_classes" else "input channels"
            raise ConfigError(f"model.{key}: {args[key]!r} in the configuration, but {dataset} has {have} {what}; "
                              f"remove model.{key} (it is taken from the data) or fix it")
    return args


def build_model(config: RunConfig, info: Dict[str, Any]) -> nn.Module:
    """``get_model(model.name, **model_arguments(config, info))``."""
    from spikelib.models import get_model

    args = model_arguments(config, info)
    try:
        return get_model(config.model.name, **args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {config.model.name!r} rejected its arguments: {exc}") from exc


def split_train_val(train: Any, fraction: float, seed: int) -> tuple:
    """A seeded split of the training set into (train, val) subsets; val has ``round(fraction * n)`` samples."""
    n = len(train)
    n_val = int(round(fraction * n))
    if n_val == 0:
        return train, None
    if n_val >= n:
        raise ConfigError(f"data.val_fraction={fraction} leaves no training samples out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return Subset(train, sorted(perm[n_val:])), Subset(train, sorted(perm[:n_val]))

@dataclass
class RunData:
    """The data side of a run: facts, loaders, the resumable sampler and its generator, steps per epoch."""

    info: Dict[str, Any]
    layout: str
    batch_mix: Optional[Callable]
    sampler: Any
    loader_generator: torch.Generator
    datasets: Dict[str, Any]
    train_loader: Any
    eval_loaders: Dict[str, Any]
    steps_per_epoch: int
    local_batch: int


def build_data(cfg: RunConfig, datasets: Any, loaders: Optional[Mapping[str, Any]], dist: Any,
               device: torch.device) -> RunData:
    """Datasets (given, or from ``cfg.data``), the validation split (official, or seeded from the training set),
    the resumable training sampler and the loaders (or the ``loaders`` given as they are)."""
    from spikelib.training import distributed as D
    from spikelib.training.datasets import build_datasets

    generator = torch.Generator()
    mb = cfg.train.max_batches
    if loaders is not None:
        train_loader = loaders["train"]
        try:
            n = len(train_loader)
        except TypeError:
            raise ValueError("loaders['train'] must have a length (the schedules count steps per epoch)") from None
        return RunData({}, "time", None, None, generator, {}, train_loader,
                       {k: v for k, v in loaders.items() if k != "train" and v is not None}, min(n, mb) if mb else n,
                       getattr(train_loader, "batch_size", None) or 1)
    bundle = datasets or build_datasets(cfg.data.dataset, cfg.train.seed, **cfg.data.args)
    fraction = cfg.data.val_fraction
    if fraction is None and bundle.val is not None:
        train, val = bundle.train, bundle.val
    else:
        train, val = split_train_val(bundle.train, DEFAULT_VAL_FRACTION if fraction is None else fraction,
                                     cfg.train.seed)
    if len(train) == 0:
        raise ConfigError(f"data.dataset {cfg.data.dataset or 'given'!r}: the training set is empty")
    local_batch = D.local_batch_size(cfg.data.batch_size, dist)
    sampler = D.ResumableDistributedSampler(train, dist.world_size, dist.rank, shuffle=True, seed=cfg.train.seed)
    loader_kw = dict(num_workers=cfg.data.num_workers, worker_init_fn=worker_init_fn,
                     pin_memory=device.type == "cuda", persistent_workers=False)
    if bundle.collate is not None:
        loader_kw["collate_fn"] = bundle.collate
    train_loader = DataLoader(train, batch_size=local_batch, sampler=sampler, generator=generator, **loader_kw)
    eval_loaders = {}
    for key, ds in (("val", val), ("test", bundle.test)):
        if ds is not None and len(ds) > 0:
            shard = D.ShardSampler(len(ds), dist.world_size, dist.rank)
            eval_loaders[key] = DataLoader(ds, batch_size=cfg.data.eval_batch_size, sampler=shard, **loader_kw)
    n = -(-sampler.num_samples // local_batch)
    info = dict(bundle.info)
    return RunData(info, str(info.get("layout", "time")), bundle.batch_mix, sampler, generator,
                   {"train": train, "val": val, "test": bundle.test}, train_loader, eval_loaders,
                   min(n, mb) if mb else n, local_batch)
