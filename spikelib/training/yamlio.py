"""Reading run configurations (a leaf of :mod:`spikelib.training.config`): YAML files that are UTF-8, at most
:data:`MAX_YAML_BYTES`, parsed safely and refused when a mapping repeats a key (``lr: 0.01`` then ``lr: 5.0`` is an
error, not 5.0), and :func:`check_limits` for configurations read from untrusted places (checkpoints)."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Dict, Mapping, Union

from spikelib.training.errors import ConfigError

__all__ = ["MAX_YAML_BYTES", "loads_yaml", "read_yaml", "check_limits", "yaml_module"]

MAX_YAML_BYTES = 1 << 20


def yaml_module():
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is a core dependency
        raise ImportError("reading YAML configs needs PyYAML: pip install pyyaml") from exc
    return yaml


def _unique_key_loader():
    yaml = yaml_module()

    class UniqueKeyLoader(yaml.SafeLoader):
        """A safe loader that refuses a key repeated within one mapping."""

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        seen: Dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}",
                                                        key_node.start_mark) from None
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one mapping "
                                  f"(first on line {seen[key] + 1}); remove one of them")
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return UniqueKeyLoader


def loads_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text`` (safe, duplicate keys refused); ``where`` prefixes error messages."""
    yaml = yaml_module()
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None


def read_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """The YAML document at ``path`` (a mapping), with clear errors for a missing, oversized, non-UTF-8 or bad file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else
                          f"config path {path} is not a file")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: {size} bytes is too large for a run configuration (at most {MAX_YAML_BYTES})")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the "
                          f"file as UTF-8") from None
    raw = loads_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    return raw


def check_limits(raw: Any, where: str = "config", *, max_depth: int = 8, max_items: int = 4096,
                 max_string: int = 4096, max_nodes: int = 20000, max_int: int = 1 << 40) -> None:
    """Refuse a configuration read from an untrusted place (a checkpoint) whose structure is out of all proportion:
    nesting deeper than ``max_depth``, a list or mapping of more than ``max_items`` entries, a string longer than
    ``max_string``, more than ``max_nodes`` values, an integer beyond ``max_int`` or a non-finite float. (Sizes that
    would allocate memory are checked against the checkpoint's own weights before anything is built:
    :func:`spikelib.training.run.load_run`.)"""
    count = [0]

    def walk(value: Any, path: str, depth: int) -> None:
        count[0] += 1
        if count[0] > max_nodes:
            raise ConfigError(f"{where}: more than {max_nodes} values")
        if depth > max_depth:
            raise ConfigError(f"{where}: {path} is nested deeper than {max_depth} levels")
        if isinstance(value, Mapping):
            if len(value) > max_items:
                raise ConfigError(f"{where}: {path} has {len(value)} keys (at most {max_items})")
            for k, v in value.items():
                if not isinstance(k, str) or len(k) > max_string:
                    raise ConfigError(f"{where}: {path} has a key that is not a short string: {str(k)[:40]!r}")
                walk(v, f"{path}.{k}" if path else k, depth + 1)
        elif isinstance(value, (list, tuple)):
            if len(value) > max_items:
                raise ConfigError(f"{where}: {path} has {len(value)} items (at most {max_items})")
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]", depth + 1)
        elif isinstance(value, str):
            if len(value) > max_string:
                raise ConfigError(f"{where}: {path} is a string of {len(value)} characters (at most {max_string})")
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, numbers.Integral):
            if abs(int(value)) > max_int:
                raise ConfigError(f"{where}: {path} = {value} is beyond {max_int}")
        elif isinstance(value, numbers.Real):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: {path} = {value} is not finite")
        else:
            raise ConfigError(f"{where}: {path} holds a {type(value).__name__}, not a plain value")

    walk(raw, "", 0)
