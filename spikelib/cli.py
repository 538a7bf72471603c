"""The ``spikelib`` command, built from pluggable command modules.

Every module listed in :data:`COMMAND_MODULES` exposes ``register(subparsers) -> None``, which adds its parser(s)
(with ``--help`` text) to the ``argparse`` sub-parsers and sets ``func=<handler>`` with ``set_defaults``; the handler
takes the parsed ``argparse.Namespace`` and returns the exit status (``int``). Modules are imported only when the
parser is built, so a command's heavy imports stay inside its own module. To add a command, write such a module and
add one line to :data:`COMMAND_MODULES`.

This module also holds the small ``argparse`` value types (:func:`positive_int`, :func:`non_negative_int`,
:func:`fraction`, :func:`positive_float`) and :func:`new_run_dir`, shared by the command modules.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import logging
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["COMMAND_MODULES", "build_parser", "main", "new_run_dir", "positive_int", "non_negative_int", "fraction",
           "positive_float"]

#: Module paths whose ``register(subparsers)`` adds a sub-command (one line per module; order = order in --help).
COMMAND_MODULES = (
    "spikelib.training.cli",
    "spikelib.demo",
    "spikelib.kernels.cli",
    "spikelib.data.cli",
    "spikelib.hardware.energy.cli",
    "spikelib.hardware.loihi.cli",
)


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """``argparse`` type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def fraction(text: str) -> float:
    """``argparse`` type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def positive_float(text: str) -> float:
    """``argparse`` type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value}")
    return value


def new_run_dir(out: Path, prefix: str) -> Path:
    """Create and return ``out/<prefix>-YYYYmmdd-HHMMSS`` (``-2``, ``-3``, ... appended if it exists)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        path = out / (f"{prefix}-{stamp}" if i == 1 else f"{prefix}-{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {out}")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per ``register`` in :data:`COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(prog="spikelib", description="spikelib: spiking neural networks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for path in COMMAND_MODULES:
        module = importlib.import_module(path)
        register = getattr(module, "register", None)
        if not callable(register):
            raise TypeError(f"command module {path} has no register(subparsers) function")
        register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``spikelib`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"command {args.command!r} set no handler (func)")
    return int(func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
