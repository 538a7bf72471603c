"""Validated YAML run configurations for ``spikelib train``.

A run configuration has five sections (every key optional unless marked required; see the dataclasses below)::

    data:      dataset (required, a name of spikelib.training.datasets), batch_size, eval_batch_size, val_fraction,
               num_workers, plus the dataset's own options (validated against the dataset builder's signature)
    model:     name (required, a name of spikelib.models.get_model), plus the constructor's arguments (validated
               against its signature)
    optim:     name (adam | adamw | adamax | sgd), lr, weight_decay, momentum, nesterov, betas, grad_clip
    schedule:  name (constant | cosine | step | multistep | onecycle), warmup_epochs, min_lr, step_epochs,
               milestones, gamma, max_lr, pct_start
    train:     epochs, seed, device, amp, amp_dtype, label_smoothing, select, checkpoint_every, progress, tensorboard,
               evaluate_test
    delays:    (optional; models with learnable delay layers, the SNN-delays recipe) lr, schedule, sig_init,
               sig_final, final_epoch, eval

Unknown keys and values of the wrong type or out of range raise :class:`ConfigError` naming the key path (e.g.
``optim.lr``), the expected type/range and the value found; nothing is coerced silently (an int is accepted where a
float is expected, a bool never counts as a number). ``--set section.key=value`` overrides are applied before the
validation with :func:`apply_overrides` (values are parsed as YAML scalars).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = ["ConfigError", "DataConfig", "DelaysConfig", "ModelConfig", "OptimConfig", "ScheduleConfig", "TrainConfig",
           "RunConfig", "load_config", "parse_config", "apply_overrides", "read_yaml"]


class ConfigError(ValueError):
    """A run configuration is missing, unreadable, or has an unknown key or a bad value (the message names it)."""


def _spec(default: Any, kind: str, doc: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
          open_min: bool = False, open_max: bool = False, choices: Optional[Sequence[Any]] = None,
          optional: bool = False) -> Any:
    meta = dict(kind=kind, doc=doc, minimum=minimum, maximum=maximum, open_min=open_min, open_max=open_max,
                choices=tuple(choices) if choices is not None else None, optional=optional)
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """``data`` section; keys other than these go to the dataset builder (``args``)."""

    dataset: str = _spec("", "str", "dataset name (spikelib.training.datasets.list_datasets())")
    batch_size: int = _spec(64, "int", "training batch size (global, over all processes)", minimum=1)
    eval_batch_size: int = _spec(256, "int", "evaluation batch size", minimum=1)
    val_fraction: float = _spec(0.1, "float", "share of the TRAINING set held out for validation", minimum=0.0,
                                maximum=1.0, open_max=True)
    num_workers: int = _spec(0, "int", "DataLoader worker processes", minimum=0)
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """``model`` section: ``name`` plus the constructor's keyword arguments (``args``)."""

    name: str = _spec("", "str", "model name (spikelib.models.list_models())")
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """``optim`` section."""

    name: str = _spec("adam", "str", "optimiser", choices=("adam", "adamw", "adamax", "sgd"))
    lr: float = _spec(1e-3, "float", "(peak) learning rate", minimum=0.0, open_min=True)
    weight_decay: float = _spec(0.0, "float", "weight decay", minimum=0.0)
    momentum: float = _spec(0.9, "float", "SGD momentum", minimum=0.0, maximum=1.0, open_max=True)
    nesterov: bool = _spec(False, "bool", "SGD: Nesterov momentum (needs momentum > 0)")
    betas: List[float] = _spec([0.9, 0.999], "pair01", "Adam betas (two numbers in [0, 1))")
    grad_clip: Optional[float] = _spec(None, "float", "clip the global gradient norm to this (null: off)",
                                       minimum=0.0, open_min=True, optional=True)


@dataclass
class ScheduleConfig:
    """``schedule`` section: the learning rate per optimiser step (after a linear warm-up)."""

    name: str = _spec("constant", "str", "schedule",
                      choices=("constant", "cosine", "step", "multistep", "onecycle"))
    warmup_epochs: float = _spec(0.0, "float", "linear warm-up from 0 over this many epochs", minimum=0.0)
    min_lr: float = _spec(0.0, "float", "cosine: final learning rate", minimum=0.0)
    step_epochs: int = _spec(30, "int", "step: multiply by gamma every this many epochs", minimum=1)
    milestones: List[float] = _spec([], "increasing", "multistep: epochs at which the rate is multiplied by gamma")
    gamma: float = _spec(0.1, "float", "step/multistep: factor", minimum=0.0, maximum=1.0, open_min=True)
    max_lr: Optional[float] = _spec(None, "float", "onecycle: peak (null: optim.lr)", minimum=0.0, open_min=True,
                                    optional=True)
    pct_start: float = _spec(0.3, "float", "onecycle: share of the steps rising", minimum=0.0, maximum=1.0,
                             open_min=True, open_max=True)


@dataclass
class TrainConfig:
    """``train`` section."""

    epochs: int = _spec(10, "int", "training epochs", minimum=1)
    seed: int = _spec(0, "int", "seed of init, shuffling, splits and dropout", minimum=0)
    device: str = _spec("auto", "device", "auto | cpu | cuda | cuda:N")
    amp: Union[bool, str] = _spec("auto", "amp", "mixed precision: auto (on GPU only) | true | false")
    amp_dtype: str = _spec("float16", "str", "autocast dtype", choices=("float16", "bfloat16"))
    label_smoothing: float = _spec(0.0, "float", "cross-entropy label smoothing", minimum=0.0, maximum=1.0,
                                   open_max=True)
    select: str = _spec("val_acc", "str", "metric for the best model", choices=("val_acc", "val_loss"))
    checkpoint_every: int = _spec(0, "int", "also checkpoint every this many batches (0: at epoch ends only)",
                                  minimum=0)
    progress: bool = _spec(True, "bool", "tqdm progress bars (only on a terminal)")
    tensorboard: bool = _spec(False, "bool", "also log to TensorBoard (needs the tensorboard package)")
    evaluate_test: bool = _spec(True, "bool", "evaluate the best model on the test split at the end")


@dataclass
class DelaysConfig:
    """``delays`` section (optional): learnable delay positions get their own learning rate (no weight decay),
    the Gaussian width follows :class:`~spikelib.layers.delay_schedule.SigmaSchedule` per epoch, positions are
    clamped after every step, and evaluation can use rounded integer delays. Weight decay then applies only to the
    delay layers' synaptic weights (not to biases, BatchNorm or neuron parameters)."""

    lr: float = _spec(0.1, "float", "learning rate of the delay positions", minimum=0.0, open_min=True)
    schedule: str = _spec("cosine", "str", "schedule of the positions' learning rate", choices=("constant", "cosine"))
    sig_init: Optional[float] = _spec(None, "float", "initial SIG (null: (max_delay + 1) // 2)", minimum=0.0,
                                      open_min=True, optional=True)
    sig_final: float = _spec(0.23, "float", "final SIG", minimum=0.0, open_min=True)
    final_epoch: Optional[int] = _spec(None, "int", "epochs until SIG reaches sig_final (null: epochs // 4)",
                                       minimum=0, optional=True)
    eval: str = _spec("rounded", "str", "evaluate with rounded integer delays or the float ones",
                      choices=("rounded", "float"))


@dataclass
class RunConfig:
    """A whole run configuration (see the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    delays: Optional[DelaysConfig] = None

    def to_dict(self) -> Dict[str, Any]:
        """The plain (YAML/JSON-able) form; ``parse_config(cfg.to_dict()) == cfg``."""
        out: Dict[str, Any] = {}
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if value is None:
                continue
            d = {f.name: copy.deepcopy(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "args"}
            if hasattr(value, "args"):
                d.update(copy.deepcopy(value.args))
            out[section.name] = d
        return out


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig,
             "train": TrainConfig, "delays": DelaysConfig}
_OPTIONAL_SECTIONS = ("delays",)  # absent = not used
_OPEN_SECTIONS = ("data", "model")  # extra keys are the builder's / constructor's arguments


def _unknown(path: str, key: str, known: Sequence[str]) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    more = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{path}{key}: unknown key{more}; known keys: {', '.join(sorted(known))}")


def _range_text(meta: Mapping[str, Any]) -> str:
    parts = []
    if meta["minimum"] is not None:
        parts.append(f"{'>' if meta['open_min'] else '>='} {meta['minimum']:g}")
    if meta["maximum"] is not None:
        parts.append(f"{'<' if meta['open_max'] else '<='} {meta['maximum']:g}")
    return " and ".join(parts)


def _check_value(path: str, value: Any, meta: Mapping[str, Any]) -> Any:
    kind = meta["kind"]
    if value is None and meta["optional"]:
        return None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{path}: expected an integer {_range_text(meta)}, got {value!r}")
        value = int(value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number {_range_text(meta)}, got {value!r}")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: expected a non-empty string, got {value!r}")
    elif kind == "pair01":
        if (not isinstance(value, (list, tuple)) or len(value) != 2 or any(
                isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < 1 for v in value)):
            raise ConfigError(f"{path}: expected two numbers in [0, 1), got {value!r}")
        return [float(v) for v in value]
    elif kind == "increasing":
        if (not isinstance(value, (list, tuple)) or any(
                isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0
                for v in value) or any(b <= a for a, b in zip(value, value[1:]))):
            raise ConfigError(f"{path}: expected a list of strictly increasing positive numbers, got {value!r}")
        return [float(v) for v in value]
    elif kind == "amp":
        if not (isinstance(value, bool) or value == "auto"):
            raise ConfigError(f"{path}: expected auto, true or false, got {value!r}")
    elif kind == "device":
        ok = isinstance(value, str) and (value in ("auto", "cpu", "cuda") or (
            value.startswith("cuda:") and value[5:].isdigit()))
        if not ok:
            raise ConfigError(f"{path}: expected auto, cpu, cuda or cuda:N, got {value!r}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{path}: expected one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if kind in ("int", "float"):
        lo, hi = meta["minimum"], meta["maximum"]
        if (lo is not None and (value <= lo if meta["open_min"] else value < lo)) or (
                hi is not None and (value >= hi if meta["open_max"] else value > hi)):
            what = "an integer" if kind == "int" else "a number"
            raise ConfigError(f"{path}: expected {what} {_range_text(meta)}, got {value!r}")
    return value


def _parse_section(name: str, raw: Any) -> Any:
    cls = _SECTIONS[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a mapping of keys to values, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "args"}
    values: Dict[str, Any] = {}
    args: Dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"{name}: keys must be strings, got {key!r}")
        if key in fields:
            values[key] = _check_value(f"{name}.{key}", value, fields[key].metadata)
        elif name in _OPEN_SECTIONS:
            args[key] = copy.deepcopy(value)
        else:
            raise _unknown(f"{name}.", key, list(fields))
    for key in ("dataset", "name"):
        if key in fields and name in _OPEN_SECTIONS and key not in values:
            raise ConfigError(f"{name}.{key}: required key is missing ({fields[key].metadata['doc']})")
    section = cls(**values)
    if name in _OPEN_SECTIONS:
        section.args = args
    return section


def parse_config(raw: Any) -> RunConfig:
    """Validate a plain mapping (e.g. the YAML document) into a :class:`RunConfig`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a run configuration must be a mapping with sections {', '.join(_SECTIONS)}, "
                          f"got {type(raw).__name__}")
    for key in raw:
        if key not in _SECTIONS:
            raise _unknown("", str(key), list(_SECTIONS))
    for key in _OPEN_SECTIONS:
        if key not in raw:
            raise ConfigError(f"{key}: required section is missing")
    return RunConfig(**{name: _parse_section(name, raw.get(name)) for name in _SECTIONS
                        if name not in _OPTIONAL_SECTIONS or name in raw})


def _yaml():
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is a core dependency
        raise ImportError("reading YAML configs needs PyYAML: pip install pyyaml") from exc
    return yaml


def read_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """The YAML document at ``path`` (a mapping), with clear errors for a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else
                          f"config path {path} is not a file")
    yaml = _yaml()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    return raw


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars) to a copy of ``raw``."""
    out = copy.deepcopy(raw)
    yaml = _yaml()
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r}: expected section.key=value (e.g. optim.lr=0.01)")
        section, name = parts
        if section not in _SECTIONS:
            raise _unknown("", section, list(_SECTIONS))
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None
        target = out.setdefault(section, {})
        if target is None:
            target = out[section] = {}
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: expected a mapping, got {type(target).__name__}")
        target[name] = value
    return out


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> RunConfig:
    """Read, override and validate the run configuration at ``path``."""
    raw = read_yaml(path)
    try:
        return parse_config(apply_overrides(raw, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

