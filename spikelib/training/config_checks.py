"""Validation of single configuration values (a leaf of :mod:`spikelib.training.config`): field specifications
with their kind and range, and the checks that turn a bad value into a :class:`ConfigError` naming the key path, the
expected type/range and the value found. Nothing is coerced silently (an int is accepted where a float is expected,
a bool never counts as a number)."""

from __future__ import annotations

import copy
import difflib
import math
import numbers
from dataclasses import field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from spikelib.training.errors import ConfigError

__all__ = ["spec", "check_value", "unknown_key"]


def spec(default: Any, kind: str, doc: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
          open_min: bool = False, open_max: bool = False, choices: Optional[Sequence[Any]] = None,
          optional: bool = False) -> Any:
    meta = dict(kind=kind, doc=doc, minimum=minimum, maximum=maximum, open_min=open_min, open_max=open_max,
                choices=tuple(choices) if choices is not None else None, optional=optional)
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


def unknown_key(path: str, key: str, known: Sequence[str]) -> ConfigError:
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


def _real(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)


def _check_groups(path: str, value: Any) -> List[Dict[str, Any]]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list of groups {{params: PATTERN, lr: ..., weight_decay: ...}}, "
                          f"got {value!r}")
    out = []
    for i, group in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(group, Mapping) or not isinstance(group.get("params"), str) or not group["params"]:
            raise ConfigError(f"{where}: expected a mapping with params: PATTERN (a glob on parameter names or "
                              f"@no_decay), got {group!r}")
        for key, v in group.items():
            if key == "params":
                continue
            if key in ("lr", "weight_decay", "momentum"):
                if not _real(v) or v < 0 or (key == "lr" and v == 0):
                    raise ConfigError(f"{where}.{key}: expected a finite number {'> 0' if key == 'lr' else '>= 0'}"
                                      f", got {v!r}")
            elif key == "betas":
                check_value(f"{where}.betas", v, dict(kind="pair01", optional=False, choices=None))
            else:
                raise unknown_key(f"{where}.", str(key), ["params", "lr", "weight_decay", "betas", "momentum"])
        out.append(copy.deepcopy(dict(group)))
    return out


def check_value(path: str, value: Any, meta: Mapping[str, Any]) -> Any:
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
    elif kind == "select":
        if not isinstance(value, str) or not (value == "last" or (value.startswith("val_") and len(value) > 4)):
            raise ConfigError(f"{path}: expected val_acc, val_loss, val_<metric> or last, got {value!r}")
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
    elif kind == "groups":
        return _check_groups(path, value)
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
