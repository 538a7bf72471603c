"""Values of open configuration sections (``data`` options, ``model`` arguments, ``loss`` options) checked against the
type annotations of the function that receives them, and ``--set`` texts parsed by the type of their target.

Understood annotations: ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``None``, ``Optional``/``Union``,
``Sequence``/``List``/``Tuple`` (variadic or fixed) of those, ``Mapping``/``Dict``, ``Literal`` and ``Any``. Any other
annotation (a class such as ``torch.Generator``, a string that cannot be resolved) is *unknown*: such a value is not
checked here (the receiving function validates it). Nothing is coerced: ``8`` where a sequence of ints is expected
is an error with an example of the expected form, never ``[8]``.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import math
import numbers
import typing
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from spikelib.training.errors import ConfigError

__all__ = ["parameters", "check_value", "check_arguments", "describe", "parse_text", "UNKNOWN"]

#: the "cannot tell" marker of :func:`check_value`
UNKNOWN = object()

_SEQUENCES = (list, tuple, cabc.Sequence, cabc.MutableSequence, typing.Sequence, typing.List, typing.Tuple)


def parameters(fn: Callable) -> Dict[str, inspect.Parameter]:
    """``fn``'s keyword parameters with annotations resolved where possible (strings left as they are otherwise)."""
    try:
        sig = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError, AttributeError):
        sig = inspect.signature(fn)
    return {n: p for n, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in ("self", "cls")}


def _origin(tp: Any) -> Tuple[Any, Tuple[Any, ...]]:
    return typing.get_origin(tp), typing.get_args(tp)


def _is_union(origin: Any) -> bool:
    import types

    return origin is typing.Union or origin is getattr(types, "UnionType", None)


def check_value(value: Any, tp: Any) -> Any:
    """``True`` if ``value`` fits annotation ``tp``, ``False`` if it does not, :data:`UNKNOWN` if ``tp`` is unknown."""
    if tp is inspect.Parameter.empty or tp is Any or isinstance(tp, str):
        return UNKNOWN
    if tp is None or tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    origin, args = _origin(tp)
    if _is_union(origin):
        results = [check_value(value, a) for a in args]
        if any(r is True for r in results):
            return True
        return UNKNOWN if any(r is UNKNOWN for r in results) else False
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in _SEQUENCES or tp in _SEQUENCES:
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                return False
            results = [check_value(v, a) for v, a in zip(value, args)]
        else:
            results = [check_value(v, args[0]) for v in value]
        if any(r is False for r in results):
            return False
        return True if all(r is True for r in results) else UNKNOWN
    if origin in (dict, cabc.Mapping, cabc.MutableMapping) or tp in (dict, cabc.Mapping, typing.Dict):
        return isinstance(value, dict)
    return UNKNOWN


def describe(tp: Any) -> str:
    """Words for annotation ``tp`` with an example, for error messages."""
    if tp is None or tp is type(None):
        return "null"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin, args = _origin(tp)
    if _is_union(origin):
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"null or {text}" if type(None) in args else text
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in _SEQUENCES or tp in _SEQUENCES:
        if args and origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
        inner = describe(args[0]) if args else "values"
        example = {"an integer": " (e.g. [64] or [64, 64])", "a number": " (e.g. [0.5, 1.0])"}.get(inner, "")
        inner = {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(inner, inner)
        return f"a list of {inner}{example}"
    if origin in (dict, cabc.Mapping) or tp in (dict, cabc.Mapping):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _strings_only(tp: Any) -> Optional[bool]:
    """``True`` when ``tp`` is ``str`` or ``Optional[str]`` (then ``--set`` texts are taken verbatim)."""
    if tp is str:
        return True
    origin, args = _origin(tp)
    if _is_union(origin):
        rest = [a for a in args if a is not type(None)]
        return len(rest) == 1 and rest[0] is str
    return False


def parse_text(text: str, tp: Any) -> Any:
    """A ``--set`` value: parsed as the target's type ``tp`` where that decides (``str``: verbatim, ``null``/``~``
    for an optional one; ``float``: Python's float syntax, so ``1e-3`` works; ``int``: an integer literal), else as a
    YAML scalar or flow sequence/mapping."""
    stripped = text.strip()
    if _strings_only(tp):
        if stripped in ("null", "~", "") and tp is not str:
            return None
        return text
    number = tp
    origin, args = _origin(tp)
    if _is_union(origin):
        rest = [a for a in args if a is not type(None)]
        if stripped in ("null", "~"):
            return None
        number = rest[0] if len(rest) == 1 else None
    if number is float:
        try:
            value = float(stripped)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return int(value) if stripped.lstrip("+-").isdigit() else value
    if number is int:
        try:
            return int(stripped)
        except ValueError:
            pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not a valid value ({str(exc).splitlines()[0]})") from None


def check_arguments(fn_params: Mapping[str, inspect.Parameter], args: Mapping[str, Any], path: str,
                    accepts_more: bool = False, skip: Sequence[str] = (), also: Sequence[str] = ()) -> None:
    """Every key of ``args`` is a parameter (unless ``accepts_more``) and every value fits its annotation; otherwise
    :class:`ConfigError` naming ``path.key``, what is expected and what was found. ``also``: further accepted names
    (checked by the caller)."""
    known = [n for n in fn_params if n not in skip] + list(also)
    args = {k: v for k, v in args.items() if k not in also}
    for key, value in args.items():
        if key not in fn_params or key in skip:
            if accepts_more:
                continue
            raise ConfigError(f"{path}.{key}: unknown key; this accepts: {', '.join(sorted(known)) or 'nothing'}")
        tp = fn_params[key].annotation
        if check_value(value, tp) is False:
            raise ConfigError(f"{path}.{key}: expected {describe(tp)}, got {value!r}")
