"""Loading a finished or running training run: checkpoint -> configuration -> model -> data sets, in one place.

:func:`load_run` is what ``spikelib eval``, ``energy``, ``loihi export`` and ``nir export`` call. Everything read from
the file is checked before anything large is built: the checksum (:func:`~spikelib.training.checkpoint.
load_checkpoint`), the configuration's structure and values (:func:`~spikelib.training.config.check_limits`,
:func:`~spikelib.training.config.parse_config`), the model is built under an allocation guard
(:func:`allocation_guard`: every tensor factory call is counted, and the construction stops before it would allocate
more than a few times what the checkpoint's own tensors hold, so ``hidden: [400000000]`` in a small file is an
error, not a 19 GB allocation), its shapes must equal the checkpoint's tensors, and the weights must be finite.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from torch.overrides import TorchFunctionMode

from spikelib.training.build import DEFAULT_VAL_FRACTION, build_model, split_train_val
from spikelib.training.checkpoint import load_checkpoint, load_model_state, non_finite
from spikelib.training.config import RunConfig, apply_overrides, check_limits, parse_config
from spikelib.training.datasets import DatasetBundle, build_datasets
from spikelib.training.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

__all__ = ["LoadedRun", "load_run", "allocation_guard"]

_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
              torch.empty_strided}
_NEW = ("new_empty", "new_zeros", "new_ones", "new_full")


def _requested(func: Any, args: tuple, kwargs: dict) -> int:
    """Elements a factory call asks for (0 when it cannot tell)."""
    if getattr(func, "__name__", "") in _NEW:
        args = args[1:]
    size = kwargs.get("size")
    if size is None:
        size = next((a for a in args if isinstance(a, (tuple, list, torch.Size))), None)
    if size is None:
        ints = []
        for a in args:
            if isinstance(a, int) and not isinstance(a, bool):
                ints.append(a)
            else:
                break
        size = ints if func in (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn) else []
    try:
        return int(math.prod(int(s) for s in size))
    except (TypeError, ValueError):
        return 0


class allocation_guard(TorchFunctionMode):
    """Within the block, tensor factory calls (``torch.empty``, ``zeros``, ``rand``, ``Tensor.new_*``, ...) may ask for
    at most ``budget`` elements in total; the call that would exceed it raises :class:`CheckpointError` naming
    ``where`` before anything is allocated."""

    def __init__(self, budget: int, where: str) -> None:
        super().__init__()
        self.budget = int(budget)
        self.where = where
        self.used = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        if func in _FACTORIES or getattr(func, "__name__", "") in _NEW:
            self.used += _requested(func, args, kwargs)
            if self.used > self.budget:
                raise CheckpointError(f"{self.where}: its configuration asks for a model far larger than the "
                                      f"weights the file holds (over {self.budget:,} elements while building it); "
                                      f"the file is damaged or was edited")
        return func(*args, **kwargs)


@dataclass
class LoadedRun:
    """A run loaded from a checkpoint: the ``checkpoint`` dict, its validated ``config``, the ``model`` (weights
    loaded, eval mode, on the CPU), the data ``bundle`` (or ``None``) and the data facts ``info`` it was built from."""

    path: Path
    checkpoint: Dict[str, Any]
    config: RunConfig
    model: nn.Module
    bundle: Optional[DatasetBundle] = None
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return str(self.checkpoint["model_name"])

    def eval_context(self) -> Any:
        """Evaluation as the run evaluated: rounded integer delays when its ``delays.eval`` says so."""
        d = self.config.delays
        if d is not None and d.eval == "rounded":
            from spikelib.layers.delay_schedule import rounded_delays

            return rounded_delays(self.model)
        return contextlib.nullcontext()

    def dataset(self, split: str) -> Any:
        """The ``train``, ``val`` or ``test`` split as the run used it (validation: the same seeded split)."""
        if self.bundle is None:
            raise ConfigError("this run was loaded without its data set (build_data=False)")
        if split == "test":
            if self.bundle.test is None:
                raise ConfigError("the data set has no test split")
            return self.bundle.test
        fraction = self.config.data.val_fraction
        if fraction is None and self.bundle.val is not None:
            return self.bundle.train if split == "train" else self.bundle.val
        fraction = DEFAULT_VAL_FRACTION if fraction is None else fraction
        train, val = split_train_val(self.bundle.train, fraction, self.config.train.seed)
        if split == "train":
            return train
        if val is None:
            raise ConfigError("--split val: the run had no validation split (data.val_fraction = 0)")
        return val


def _check_shapes(model: nn.Module, state: Mapping[str, torch.Tensor], name: str, source: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k}: {tuple(own[k].shape)} by the configuration vs {tuple(state[k].shape)} in the file"
             for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    unexpected = [k for k in state if k not in own]
    if missing or wrong or unexpected:
        parts = ([f"shape mismatch {'; '.join(wrong[:3])}"] if wrong else []) + (
            [f"missing keys {missing[:5]}"] if missing else []) + ([f"unexpected keys {unexpected[:5]}"]
                                                                   if unexpected else [])
        raise CheckpointError(f"{source}: its configuration does not describe its weights (model {name!r}): "
                              + ", ".join(parts) + "; the file is damaged or was edited")


def load_run(checkpoint: Union[str, Path], *, data_overrides: Sequence[str] = (), build_data: Optional[bool] = True,
             info: Optional[Mapping[str, Any]] = None, eval_batch_size: Optional[int] = None,
             model: Optional[Callable[..., nn.Module]] = None) -> LoadedRun:
    """Load the run of ``checkpoint`` (see the module docstring).

    Args:
        checkpoint: ``last.pt``, ``best.pt`` or another spikelib checkpoint with ``model_name``/``config``/``model``.
        data_overrides: ``key=value`` changes of the stored ``data`` section (e.g. ``root=/data/shd``).
        build_data: build the data sets (``False``: build the model from the checkpoint's saved data facts and
            ``info`` only; ``None``: build them only when the checkpoint saved no data facts).
        info: data facts that override the saved ones (e.g. the channels of a ``--data`` file).
        eval_batch_size: replaces ``data.eval_batch_size``.
        model: for a run trained on a model that is not in the registry, a constructor ``fn(config) -> nn.Module``.
    """
    path = Path(checkpoint)
    data = load_checkpoint(path)
    raw = data["config"]
    try:
        check_limits(raw, f"{path}: configuration")
        raw = apply_overrides(raw, [f"data.{item}" for item in data_overrides])
        if eval_batch_size is not None:
            raw["data"]["eval_batch_size"] = eval_batch_size
        config = parse_config(raw, require=("data",) if model is not None else ("data", "model"))
    except ConfigError as exc:
        text = str(exc)
        raise CheckpointError(text if text.startswith(str(path)) else f"{path}: configuration: {text}") from None
    saved = data.get("info")
    facts: Dict[str, Any] = dict(saved) if isinstance(saved, Mapping) else {}
    bundle = None
    if build_data is None:
        build_data = not facts
    if build_data:
        bundle = build_datasets(config.data.dataset, config.train.seed, **config.data.args)
        facts.update(bundle.info)
    facts.update(info or {})
    if model is None and not config.model.name:
        raise CheckpointError(f"{path} was written by a run with a model outside the registry (no model.name); "
                              f"load it in Python: load_run(path, model=fn(config) -> nn.Module)")
    stored = sum(int(t.numel()) for t in data["model"].values())
    with allocation_guard(4 * stored + (1 << 24), str(path)):
        net = build_model(config, facts) if model is None else model(config)
    _check_shapes(net, data["model"], data["model_name"], str(path))
    bad = non_finite(data["model"])
    if bad:
        raise CheckpointError(f"{path}: the weights {', '.join(bad[:4])} hold NaN or infinite values (the run "
                              f"diverged); use an earlier checkpoint, e.g. best.pt")
    load_model_state(net, data["model"], data["model_name"], str(path))
    stage = data.get("stage_info")
    if isinstance(stage, Mapping) and stage.get("timesteps") is not None:
        from spikelib.training.stages import apply_timesteps

        apply_timesteps(net, int(stage["timesteps"]))
    if isinstance(stage, Mapping) and stage.get("delays") == "rounded":
        from spikelib.layers.delay_schedule import delay_layers

        for layer in delay_layers(net):
            layer.round_delays()
    return LoadedRun(path, data, config, net.eval(), bundle, facts)
