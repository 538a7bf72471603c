"""The ``spikelib`` command, built from pluggable command modules.

Every module listed in :data:`COMMAND_MODULES` exposes ``register(subparsers) -> None``, which adds its parser(s)
(with ``--help`` text) to the ``argparse`` sub-parsers and sets ``func=<handler>`` with ``set_defaults``; the handler
takes the parsed ``argparse.Namespace`` and returns the exit status (``int``). Modules are imported only when the
parser is built, so a command's heavy imports stay inside its own module. To add a command, write such a module and
add one line to :data:`COMMAND_MODULES`. Shared argparse types and helpers are in :mod:`spikelib.cli_common` (a leaf
module: no command module imports this one).

``-v`` (INFO: training progress, one line per epoch) and ``-vv`` (DEBUG, including which kernel backend runs) are
accepted before or after the sub-command. Expected failures end in one ``error: <cause and what to do>`` line and
exit status 2 (:func:`describe_failure` decides what is expected: the library's own error types, missing files,
permission and disk errors, missing optional packages, an interrupted run); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from typing import Optional, Sequence

from spikelib.cli_common import EXIT_ERROR, CommandError, add_verbosity

__all__ = ["COMMAND_MODULES", "build_parser", "main", "describe_failure"]

#: Module paths whose ``register(subparsers)`` adds a sub-command (one line per module; order = order in --help).
COMMAND_MODULES = (
    "spikelib.training.cli",
    "spikelib.demo",
    "spikelib.kernels.cli",
    "spikelib.data.cli",
    "spikelib.hardware.energy.cli",
    "spikelib.hardware.loihi.cli",
    "spikelib.commands.nir",
)

#: loggers that stay at WARNING under ``-v`` (their INFO messages matter only when debugging: ``-vv``)
QUIET_AT_INFO = ("spikelib.kernels", "spikelib.functional", "numba", "h5py")


def _add_verbosity_everywhere(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if not any("-v" in a.option_strings for a in sub._actions):
                    add_verbosity(sub)
                _add_verbosity_everywhere(sub)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per ``register`` in :data:`COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(prog="spikelib", description="spikelib: spiking neural networks")
    add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for path in COMMAND_MODULES:
        module = importlib.import_module(path)
        register = getattr(module, "register", None)
        if not callable(register):
            raise TypeError(f"command module {path} has no register(subparsers) function")
        register(sub)
    _add_verbosity_everywhere(parser)
    return parser


def configure_logging(verbosity: int) -> None:
    """WARNING by default, INFO with ``-v`` (backend and numerics libraries stay at WARNING), DEBUG with ``-vv``."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in QUIET_AT_INFO:
        logging.getLogger(name).setLevel(logging.WARNING if verbosity <= 1 else logging.DEBUG)


def _os_message(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else None
    where = f" {name}" if name else ""
    if exc.errno == errno.ENOSPC:
        return (f"no space left on device while writing{where}: free some space or write elsewhere (--out); files "
                f"written before are intact")
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing{where}: free some space or write elsewhere (--out)"
    if exc.errno == errno.EROFS:
        return f"read-only file system:{where}: write elsewhere (--out)"
    if isinstance(exc, PermissionError):
        return f"permission denied:{where}: choose a file or folder you can read/write (e.g. another --out)"
    if exc.errno is None or exc.strerror is None:
        return str(exc)  # an OSError raised with a message of its own (e.g. a missing data file, h5py)
    return f"{exc.strerror}:{where}" if where else exc.strerror


def describe_failure(exc: BaseException) -> Optional[str]:
    """The ``error:`` message for an expected failure, ``None`` for a bug (which keeps its traceback)."""
    from spikelib.training.errors import (CheckpointError, ConfigError, RunLockedError, TrainingDivergedError,
                                          TrainingInterrupted)

    if isinstance(exc, (CommandError, ConfigError, CheckpointError, RunLockedError, TrainingDivergedError,
                        TrainingInterrupted)):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
    if isinstance(exc, OSError):
        return _os_message(exc)
    if isinstance(exc, ImportError):
        name = getattr(exc, "name", None) or ""
        if name.startswith("spikelib"):
            return None
        text = str(exc)
        return text if "install" in text else f"an optional package is missing: {text}; install it (pip install " \
                                              f"{name or 'the named package'})"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (f"out of memory ({exc}); use a smaller data.batch_size / data.eval_batch_size or a smaller model "
                f"(--set ...)")
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``spikelib`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    configure_logging(int(getattr(args, "verbose", 0) or 0))
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"command {args.command!r} set no handler (func)")
    try:
        return int(func(args))
    except (Exception, KeyboardInterrupt) as exc:
        message = describe_failure(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
