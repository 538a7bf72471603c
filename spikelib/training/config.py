"""Validated YAML run configurations for ``spikelib train`` and :class:`~spikelib.training.Trainer`.

A run configuration has these sections (every key optional unless marked; see the dataclasses below)::

    data:      dataset (required unless the datasets are passed in Python), batch_size, eval_batch_size,
               val_fraction, num_workers, plus the dataset builder's own options (checked against its signature
               and type annotations)
    model:     name (required unless the model is passed in Python), plus the constructor's arguments (checked
               against the signature the model registry exposes)
    loss:      name (cross_entropy | sum_softmax | tet | rate_mse | ce_rate) plus the loss's options
    optim:     name (adam | adamw | adamax | sgd), lr, weight_decay, momentum, nesterov, betas, grad_clip, groups
    schedule:  name (constant | cosine | step | multistep | onecycle), interval (step | epoch), warmup_epochs,
               min_lr, step_epochs, milestones, gamma, max_lr, pct_start, cycle_momentum, base_momentum,
               max_momentum
    train:     epochs, seed, device, dtype, amp, amp_dtype, label_smoothing, select, checkpoint_every, max_batches,
               progress, tensorboard, evaluate_test, stop_on_nan
    delays:    (models with learnable delay layers, the SNN-delays recipe) lr, schedule, init, sig_init, sig_final,
               final_epoch, eval
    stages:    (optional) training stages run one after the other in one run folder, each initialised from the
               previous stage's best checkpoint: a list of {name, epochs, timesteps, lr, delays, init}, or the short
               form {timesteps: [5, 3, 2, 1], epochs: 10 or a list, lr: ..., init: best}
    tiny:      (optional) the recipe's documented smoke-test size: a mapping "section.key: value" applied by
               ``spikelib train --tiny`` / ``--fast-dev-run`` before validation

Unknown keys and values of the wrong type or out of range raise :class:`ConfigError` naming the key path (e.g.
``optim.lr``), the expected type/range and the value found; nothing is coerced silently (an int is accepted where a
float is expected, a bool never counts as a number). YAML files must be UTF-8, at most 1 MB, and may not repeat a
key within a mapping (``lr: 0.01`` then ``lr: 5.0`` is an error, not 5.0). Configurations read back from checkpoints
are checked by :func:`check_limits` before anything is built. Overrides (``--set section.key=value``) are parsed by
the type of their target (:func:`apply_overrides`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from spikelib.training.config_checks import check_value, spec, unknown_key
from spikelib.training.errors import ConfigError
from spikelib.training.yamlio import MAX_YAML_BYTES, check_limits, loads_yaml, read_yaml

__all__ = ["ConfigError", "DataConfig", "DelaysConfig", "LossConfig", "ModelConfig", "OptimConfig", "ScheduleConfig",
           "StageConfig", "TrainConfig", "RunConfig", "load_config", "parse_config", "apply_overrides", "read_yaml",
           "check_limits", "apply_tiny", "MAX_YAML_BYTES", "loads_yaml"]


@dataclass
class DataConfig:
    """``data`` section; keys other than these go to the dataset builder (``args``)."""

    dataset: str = spec("", "str", "dataset name (spikelib.training.datasets.list_datasets())")
    batch_size: int = spec(64, "int", "training batch size (global, over all processes)", minimum=1)
    eval_batch_size: int = spec(256, "int", "evaluation batch size", minimum=1)
    val_fraction: Optional[float] = spec(
        None, "float", "share of the TRAINING set held out for validation (null: 0.1, or the data set's official "
        "validation split where it has one)", minimum=0.0, maximum=1.0, open_max=True, optional=True)
    num_workers: int = spec(0, "int", "DataLoader worker processes", minimum=0)
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """``model`` section: ``name`` plus the constructor's keyword arguments (``args``)."""

    name: str = spec("", "str", "model name (spikelib.models.list_models())")
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """``loss`` section: ``name`` plus the loss's options (``args``; see :mod:`spikelib.training.losses`)."""

    name: str = spec("cross_entropy", "str", "loss (spikelib.training.losses.list_losses())")
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """``optim`` section. ``groups``: parameter groups, each ``{params: PATTERN, lr, weight_decay, betas,
    momentum}`` where PATTERN is a glob on parameter names (``"*.bias"``) or ``"@no_decay"`` (parameters with at
    most one dimension: biases, normalisation and neuron parameters); a parameter goes to the first group that
    matches, the others form the default group."""

    name: str = spec("adam", "str", "optimiser", choices=("adam", "adamw", "adamax", "sgd"))
    lr: float = spec(1e-3, "float", "(peak) learning rate", minimum=0.0, open_min=True)
    weight_decay: float = spec(0.0, "float", "weight decay", minimum=0.0)
    momentum: float = spec(0.9, "float", "SGD momentum", minimum=0.0, maximum=1.0, open_max=True)
    nesterov: bool = spec(False, "bool", "SGD: Nesterov momentum (needs momentum > 0)")
    betas: List[float] = spec([0.9, 0.999], "pair01", "Adam betas (two numbers in [0, 1))")
    grad_clip: Optional[float] = spec(None, "float", "clip the global gradient norm to this (null: off)",
                                       minimum=0.0, open_min=True, optional=True)
    groups: List[Dict[str, Any]] = spec([], "groups", "parameter groups (see the class docstring)")


@dataclass
class ScheduleConfig:
    """``schedule`` section: the learning rate per optimiser step or per epoch (after a linear warm-up)."""

    name: str = spec("constant", "str", "schedule",
                      choices=("constant", "cosine", "step", "multistep", "onecycle"))
    interval: str = spec("step", "str", "step the schedule after every optimiser step or after every epoch",
                          choices=("step", "epoch"))
    warmup_epochs: float = spec(0.0, "float", "linear warm-up from 0 over this many epochs", minimum=0.0)
    min_lr: float = spec(0.0, "float", "cosine: final learning rate", minimum=0.0)
    step_epochs: int = spec(30, "int", "step: multiply by gamma every this many epochs", minimum=1)
    milestones: List[float] = spec([], "increasing", "multistep: epochs at which the rate is multiplied by gamma")
    gamma: float = spec(0.1, "float", "step/multistep: factor", minimum=0.0, maximum=1.0, open_min=True)
    max_lr: Optional[float] = spec(None, "float", "onecycle: peak (null: optim.lr)", minimum=0.0, open_min=True,
                                    optional=True)
    pct_start: float = spec(0.3, "float", "onecycle: share of the steps rising", minimum=0.0, maximum=1.0,
                             open_min=True, open_max=True)
    cycle_momentum: bool = spec(False, "bool", "onecycle: also cycle momentum / Adam's beta1 (max -> base -> max)")
    base_momentum: float = spec(0.85, "float", "onecycle: lowest momentum / beta1", minimum=0.0, maximum=1.0,
                                 open_max=True)
    max_momentum: float = spec(0.95, "float", "onecycle: highest momentum / beta1", minimum=0.0, maximum=1.0,
                                open_max=True)


@dataclass
class TrainConfig:
    """``train`` section."""

    epochs: int = spec(10, "int", "training epochs (with a stages section: per stage, see stages)", minimum=1)
    seed: int = spec(0, "int", "seed of init, shuffling, splits and dropout", minimum=0)
    device: str = spec("auto", "device", "auto | cpu | cuda | cuda:N")
    dtype: str = spec("float32", "str", "dtype of the parameters and inputs", choices=("float32", "float64"))
    amp: Union[bool, str] = spec("auto", "amp", "mixed precision: auto (on GPU only) | true | false")
    amp_dtype: str = spec("float16", "str", "autocast dtype", choices=("float16", "bfloat16"))
    label_smoothing: float = spec(0.0, "float", "cross-entropy label smoothing", minimum=0.0, maximum=1.0,
                                   open_max=True)
    select: str = spec("val_acc", "select", "best model by val_acc (highest), val_loss (lowest), another "
                        "val_<metric> (highest; lowest if it ends in loss) or last (no selection)")
    checkpoint_every: int = spec(0, "int", "also checkpoint every this many batches (0: at epoch ends only)",
                                  minimum=0)
    max_batches: Optional[int] = spec(None, "int", "at most this many batches per epoch and per evaluation "
                                       "(smoke tests; null: all)", minimum=1, optional=True)
    progress: bool = spec(True, "bool", "tqdm progress bars (only on a terminal)")
    tensorboard: bool = spec(False, "bool", "also log to TensorBoard (needs the tensorboard package)")
    evaluate_test: bool = spec(True, "bool", "evaluate the best model on the test split at the end")
    stop_on_nan: bool = spec(True, "bool", "stop with an error when the training loss is NaN or infinite")


@dataclass
class DelaysConfig:
    """``delays`` section (optional): learnable delay positions get their own Adam optimiser (default betas, no
    weight decay) with learning rate ``lr`` and their own schedule (stepped like ``schedule.interval``); the Gaussian
    width follows :class:`~spikelib.layers.delay_schedule.SigmaSchedule` per epoch; positions are clamped after every
    step; evaluation can use rounded integer delays. Weight decay then applies only to the delay layers' synaptic
    weights (not to biases, BatchNorm or neuron parameters). ``init: reference`` redraws the initial positions as
    SNN-delays does (:meth:`spikelib.layers.delay.DelayedLinear.init_delays_`)."""

    lr: float = spec(0.1, "float", "learning rate of the delay positions", minimum=0.0, open_min=True)
    schedule: str = spec("cosine", "str", "schedule of the positions' learning rate", choices=("constant", "cosine"))
    init: str = spec("model", "str", "initial positions: as the model draws them, or as SNN-delays (reference)",
                      choices=("model", "reference"))
    sig_init: Optional[float] = spec(None, "float", "initial SIG (null: (max_delay + 1) // 2)", minimum=0.0,
                                      open_min=True, optional=True)
    sig_final: float = spec(0.23, "float", "final SIG", minimum=0.0, open_min=True)
    final_epoch: Optional[int] = spec(None, "int", "epochs until SIG reaches sig_final (null: epochs // 4)",
                                       minimum=0, optional=True)
    eval: str = spec("rounded", "str", "evaluate with rounded integer delays or the float ones",
                      choices=("rounded", "float"))


@dataclass
class StageConfig:
    """One training stage (see :mod:`spikelib.training.stages`)."""

    name: str = spec("", "str", "stage name (default T<timesteps> or stage<k>)")
    epochs: int = spec(1, "int", "epochs of this stage", minimum=1)
    timesteps: Optional[int] = spec(None, "int", "time steps T of this stage (applied by the timestep hook)",
                                     minimum=1, optional=True)
    lr: Optional[float] = spec(None, "float", "learning rate of this stage (null: optim.lr)", minimum=0.0,
                                open_min=True, optional=True)
    delays: Optional[str] = spec(None, "str", "rounded: integer delays for good, positions frozen (fine-tuning)",
                                  choices=("learn", "rounded"), optional=True)
    init: str = spec("best", "str", "start from the previous stage's best or last weights", choices=("best", "last"))


@dataclass
class RunConfig:
    """A whole run configuration (see the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    delays: Optional[DelaysConfig] = None
    stages: Optional[List[StageConfig]] = None
    tiny: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The plain (YAML/JSON-able) form; ``parse_config(cfg.to_dict()) == cfg``."""
        out: Dict[str, Any] = {}
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if value is None or (section.name == "tiny" and not value):
                continue
            if section.name == "tiny":
                out["tiny"] = copy.deepcopy(value)
            elif section.name == "stages":
                out["stages"] = [_plain(s) for s in value]
            else:
                out[section.name] = _plain(value)
        if self.stages:  # the epochs are per stage
            out["train"].pop("epochs")
        return out

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run (the sum over the stages)."""
        return sum(s.epochs for s in self.stages) if self.stages else self.train.epochs


def _plain(value: Any) -> Dict[str, Any]:
    d = {f.name: copy.deepcopy(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "args"}
    if hasattr(value, "args"):
        d.update(copy.deepcopy(value.args))
    return d


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
             "schedule": ScheduleConfig, "train": TrainConfig, "delays": DelaysConfig}
_OPTIONAL_SECTIONS = ("delays",)  # absent = not used
_OPEN_SECTIONS = ("data", "model", "loss")  # extra keys are the builder's / constructor's arguments
_REQUIRED = {"data": "dataset", "model": "name"}
ALL_SECTIONS = tuple(_SECTIONS) + ("stages", "tiny")


def _parse_fields(cls: type, name: str, raw: Any, open_section: bool) -> Any:
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
            values[key] = check_value(f"{name}.{key}", value, fields[key].metadata)
        elif open_section:
            args[key] = copy.deepcopy(value)
        else:
            raise unknown_key(f"{name}.", key, list(fields))
    section = cls(**values)
    if open_section:
        section.args = args
    return section


def _parse_stages(raw: Any) -> List[StageConfig]:
    if isinstance(raw, Mapping):  # short form: {timesteps: [...], epochs: N or [...], lr: x or [...], init: best}
        known = ("timesteps", "epochs", "lr", "init", "names")
        for key in raw:
            if key not in known:
                raise unknown_key("stages.", str(key), known)
        steps = raw.get("timesteps")
        if not isinstance(steps, (list, tuple)) or not steps:
            raise ConfigError(f"stages.timesteps: expected a non-empty list of time steps (e.g. [5, 3, 2, 1]), got "
                              f"{steps!r}")
        n = len(steps)

        def per_stage(key: str, default: Any) -> List[Any]:
            value = raw.get(key, default)
            if isinstance(value, (list, tuple)):
                if len(value) != n:
                    raise ConfigError(f"stages.{key}: expected one value or a list of {n} (one per stage), got "
                                      f"{list(value)!r}")
                return list(value)
            return [value] * n

        items = [{"timesteps": t, "epochs": e, "lr": lr, "init": init, **({"name": nm} if nm else {})}
                 for t, e, lr, init, nm in zip(steps, per_stage("epochs", None), per_stage("lr", None),
                                                per_stage("init", "best"), per_stage("names", None))]
        for i, item in enumerate(items):
            if item["epochs"] is None:
                raise ConfigError(f"stages.epochs: required (one number, or a list of {n}: one per stage)")
            if item["lr"] is None:
                del item["lr"]
        raw = items
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"stages: expected a non-empty list of stages ({{name, epochs, timesteps, lr, delays, "
                          f"init}}) or {{timesteps: [...], epochs: ...}}, got {raw!r}")
    stages = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or "epochs" not in item:
            raise ConfigError(f"stages[{i}]: expected a mapping with at least epochs, got {item!r}")
        stage = _parse_fields(StageConfig, f"stages[{i}]", item, False)
        if "name" not in item:
            stage.name = f"T{stage.timesteps}" if stage.timesteps is not None else f"stage{i + 1}"
        stages.append(stage)
    names = [s.name for s in stages]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"stages: stage name {name!r} appears twice; give the stages distinct names")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"stages: stage name {name!r} must be letters, digits, '-' or '_' (it names files)")
    return stages


def _parse_tiny(raw: Any) -> Dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"tiny: expected a mapping 'section.key: value', got {type(raw).__name__}")
    for key in raw:
        parts = str(key).split(".")
        if len(parts) != 2 or not all(parts) or parts[0] not in _SECTIONS:
            raise ConfigError(f"tiny.{key}: expected section.key with a section of {', '.join(_SECTIONS)}")
    return copy.deepcopy(dict(raw))


def parse_config(raw: Any, *, require: Sequence[str] = ("data", "model")) -> RunConfig:
    """Validate a plain mapping (e.g. the YAML document) into a :class:`RunConfig`.

    ``require``: the open sections whose name key (``data.dataset``, ``model.name``) must be present (leave one out
    when the datasets or the model are passed to the :class:`~spikelib.training.Trainer` in Python).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a run configuration must be a mapping with sections {', '.join(ALL_SECTIONS)}, "
                          f"got {type(raw).__name__}")
    for key in raw:
        if key not in ALL_SECTIONS:
            raise unknown_key("", str(key), list(ALL_SECTIONS))
    for section in require:
        if section not in raw:
            raise ConfigError(f"{section}: required section is missing")
    parsed: Dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name in _OPTIONAL_SECTIONS and name not in raw:
            continue
        parsed[name] = _parse_fields(cls, name, raw.get(name), name in _OPEN_SECTIONS)
    for section, key in _REQUIRED.items():
        if section in require and not raw.get(section, {}).get(key):
            doc = dict((f.name, f) for f in dataclasses.fields(_SECTIONS[section]))[key].metadata["doc"]
            raise ConfigError(f"{section}.{key}: required key is missing ({doc})")
    if raw.get("stages") is not None:
        parsed["stages"] = _parse_stages(raw["stages"])
        if "epochs" in (raw.get("train") or {}):
            raise ConfigError("train.epochs: with a stages section the epochs are given per stage (stages[i].epochs "
                              "or stages.epochs); remove train.epochs")
    if raw.get("tiny") is not None:
        parsed["tiny"] = _parse_tiny(raw["tiny"])
    config = RunConfig(**parsed)
    _check_combinations(config)
    return config


def _check_combinations(c: RunConfig) -> None:
    if c.optim.nesterov and c.optim.name != "sgd":
        raise ConfigError(f"optim.nesterov: Nesterov momentum is an SGD option; optim.name is {c.optim.name!r}")
    if c.optim.nesterov and c.optim.momentum <= 0:
        raise ConfigError("optim.nesterov: Nesterov momentum needs optim.momentum > 0")
    s = c.schedule
    if s.name == "onecycle" and s.warmup_epochs:
        raise ConfigError("schedule.warmup_epochs: must be 0 with schedule.name=onecycle (its rise is the warm-up)")
    if s.name == "multistep" and not s.milestones:
        raise ConfigError("schedule.milestones: schedule.name=multistep needs at least one milestone (in epochs)")
    if s.cycle_momentum and s.name != "onecycle":
        raise ConfigError("schedule.cycle_momentum: momentum cycling is part of schedule.name=onecycle")
    if s.cycle_momentum and s.base_momentum > s.max_momentum:
        raise ConfigError(f"schedule.base_momentum: {s.base_momentum} is above schedule.max_momentum "
                          f"{s.max_momentum}")
    if c.stages and any(st.delays == "rounded" for st in c.stages) and c.delays is None:
        raise ConfigError("stages: delays: rounded needs a delays section (a model with learnable delays)")


def _target_type(section: str, key: str, raw: Mapping[str, Any],
                 resolve: Optional[Callable[[str, str, Mapping[str, Any]], Any]]) -> Any:
    cls = _SECTIONS.get(section)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "args"} if cls else {}
    if key in fields:
        kind = fields[key].metadata["kind"]
        optional = fields[key].metadata["optional"]
        tp = {"int": int, "float": float, "bool": bool, "str": str, "select": str, "device": str}.get(kind)
        if tp is not None and optional:
            return Optional[tp]
        return tp
    return resolve(section, key, raw) if resolve is not None else None


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str],
                    resolve: Optional[Callable[[str, str, Mapping[str, Any]], Any]] = None) -> Dict[str, Any]:
    """Apply ``section.key=value`` strings to a copy of ``raw``.

    Each value is parsed by the type of its target (:func:`spikelib.training.typecheck.parse_text`): the schema's
    own keys by their field type, the open sections' keys (``data``, ``model``, ``loss``) by the annotation of the
    builder/constructor parameter that ``resolve(section, key, raw)`` returns (default: the registries, see
    :func:`spikelib.training.registry_types`); a key of unknown type is read as YAML. ``section.key=`` with an
    empty value removes the key (the default applies again).
    """
    from spikelib.training.typecheck import parse_text

    if resolve is None:
        from spikelib.training.registry_types import resolve_type as resolve
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r}: expected section.key=value (e.g. optim.lr=0.01)")
        section, name = parts
        if section not in _SECTIONS:
            raise unknown_key("", section, list(_SECTIONS))
        target = out.setdefault(section, {})
        if target is None:
            target = out[section] = {}
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: expected a mapping, got {type(target).__name__}")
        if text == "":
            target.pop(name, None)
            continue
        try:
            value = parse_text(text, _target_type(section, name, out, resolve))
        except ValueError as exc:
            raise ConfigError(f"override {item!r}: {exc}") from None
        target[name] = value
    return out


def apply_tiny(raw: Mapping[str, Any], where: str = "config") -> Dict[str, Any]:
    """``raw`` with its ``tiny`` section applied (see the module docstring); an error when it has none."""
    tiny = raw.get("tiny")
    if not tiny:
        raise ConfigError(f"{where}: --tiny/--fast-dev-run needs a 'tiny' section in the configuration (a mapping "
                          f"'section.key: value' that makes the recipe CPU-sized)")
    out = copy.deepcopy(dict(raw))
    for key, value in _parse_tiny(tiny).items():
        section, name = key.split(".")
        target = out.setdefault(section, {}) or {}
        out[section] = target
        if value is None and section in _OPEN_SECTIONS:
            target.pop(name, None)  # null in tiny removes an open-section key (e.g. take num_classes from the data)
        else:
            target[name] = copy.deepcopy(value)
    return out


def load_config(path: Union[str, Path], overrides: Sequence[str] = (), *, tiny: bool = False) -> RunConfig:
    """Read, (optionally) shrink with the ``tiny`` section, override and validate the run configuration at ``path``."""
    raw = read_yaml(path)
    try:
        if tiny:
            raw = apply_tiny(raw)
        return parse_config(apply_overrides(raw, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
