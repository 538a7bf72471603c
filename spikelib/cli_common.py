"""Shared pieces of the ``spikelib`` command's faces: ``argparse`` value types, run-folder names, the verbosity
option, input-file reading and the error convention. A leaf module: it imports nothing of spikelib, so every
sub-command module can use it without importing :mod:`spikelib.cli` (only ``cli.py`` / ``__main__.py`` do).

Error convention: an *expected* failure (bad input, a missing file or optional package, a full disk, permission
denied, an interrupted run) ends in one line ``error: <cause and what to do>`` on stderr and exit status 2; a command
raises :class:`CommandError` (or one of the library's own error types, see :func:`spikelib.cli.describe_failure`)
and :func:`spikelib.cli.main` prints it. Tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import pickle
from pathlib import Path
from typing import Any, Tuple

__all__ = ["CommandError", "positive_int", "non_negative_int", "fraction", "positive_float", "non_negative_float",
           "new_run_dir", "add_verbosity", "read_tensor_file", "EXIT_ERROR"]

#: exit status of an expected failure
EXIT_ERROR = 2


class CommandError(Exception):
    """An expected failure of a command: its message is printed as ``error: <message>`` and the exit status is 2."""


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """``argparse`` type: an integer >= 0."""
    value = _integer(text)
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


def non_negative_float(text: str) -> float:
    """``argparse`` type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
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
    raise CommandError(f"could not create a new run folder under {out} (1000 names taken); pass --out")


def add_verbosity(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """Add ``-v/--verbose`` (repeatable: ``-v`` training/progress messages, ``-vv`` everything, backends included).

    On sub-command parsers the default is ``SUPPRESS``, so ``spikelib -v train ...`` and ``spikelib train ... -v``
    both work (the top-level parser holds the default 0).
    """
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                        help="more messages (-v: INFO; -vv: DEBUG, including which kernel backends run)")


def read_tensor_file(path: str, option: str) -> Any:
    """Load a ``.npy`` (no pickles) or torch ``.pt`` file (``weights_only=True``) given on the command line.

    Raises :class:`CommandError` naming ``option`` for a missing, truncated or foreign file.
    """
    import numpy as np
    import torch

    p = Path(path)
    if not p.exists():
        raise CommandError(f"{option}: {p} does not exist")
    if not p.is_file():
        raise CommandError(f"{option}: {p} is not a file")
    try:
        if p.suffix == ".npy":
            return torch.from_numpy(np.load(p, allow_pickle=False))
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # also what the weights-only unpickler raises for foreign objects
        raise CommandError(f"{option}: {p} is not a tensor file, or holds objects other than tensors and plain "
                           f"values (files are loaded with weights_only=True): {exc}") from None
    except (OSError, ValueError, RuntimeError, EOFError, TypeError) as exc:
        raise CommandError(f"{option}: {p} could not be read (truncated, corrupt or not a .npy/.pt tensor file): "
                           f"{type(exc).__name__}: {exc}") from None

