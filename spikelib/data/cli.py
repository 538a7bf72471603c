"""``spikelib data ...``: the data command group (synthetic data sets that need no download).

``spikelib data synth-shd --out DIR --train N --test M --seed S``
    writes ``DIR/shd_train.h5`` and ``DIR/shd_test.h5`` in the official SHD layout
    (:func:`spikelib.data.write_synthetic_shd`); :class:`spikelib.data.SHDDataset` reads ``DIR``.
``spikelib data synth-modelnet --out DIR --train N --test M --seed S``
    writes synthetic 3D shapes in the ``modelnet40_ply_hdf5_2048`` layout
    (:func:`spikelib.data.write_synthetic_shapes`); :class:`spikelib.data.ModelNet40Dataset` reads ``DIR``.
``spikelib data check PATH [--kind shd|ssc]``
    checks SHD/SSC files (layout and every sample) and prints a JSON summary per file.

Sub-commands come from :data:`DATA_COMMANDS`, a list of ``(name, register_fn)`` pairs; ``register_fn(subparsers)``
adds one parser to the group's sub-parsers and sets ``func=<handler>``. Another module adds a data command with one
line: ``DATA_COMMANDS.append(("name", register_fn))`` (before the parser is built).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Tuple

from spikelib.cli_common import non_negative_float, non_negative_int, positive_int

__all__ = ["DATA_COMMANDS", "register"]


def _ints():
    return positive_int, non_negative_int


_non_negative_float = non_negative_float


def _fail(command: str, exc: Exception) -> int:
    print(f"error: spikelib data {command}: {exc}", file=sys.stderr)
    return 2


def _synth_shd(args: argparse.Namespace) -> int:
    from spikelib.data.synthetic_shd import write_synthetic_shd

    try:
        paths = write_synthetic_shd(args.out, n_train=args.train, n_test=args.test, seed=args.seed,
                                    n_speakers=args.speakers, n_test_speakers=args.test_speakers,
                                    task_seed=args.task_seed, progress=not args.no_progress, overwrite=args.force)
    except (FileExistsError, ValueError) as exc:
        return _fail("synth-shd", exc)
    print(f"wrote {paths['train']} ({args.train} samples) and {paths['test']} ({args.test} samples); "
          f"read them with spikelib.data.SHDDataset({str(Path(args.out))!r}, split='train'|'test')")
    return 0


def _register_synth_shd(sub: "argparse._SubParsersAction") -> None:
    positive_int, non_negative_int = _ints()
    p = sub.add_parser(
        "synth-shd", help="write a synthetic SHD-like set (official SHD HDF5 layout)",
        description="Write DIR/shd_train.h5 and DIR/shd_test.h5: 700 channels, 20 classes coded in the order, "
                    "direction and timing of frequency sweeps, with jitter, rate noise, time warping and speakers "
                    "(test speakers are not in the training file). Deterministic in --seed.")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--train", type=positive_int, default=2000, help="training samples (default 2000)")
    p.add_argument("--test", type=positive_int, default=500, help="test samples (default 500)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of speakers and samples (default 0)")
    p.add_argument("--task-seed", type=non_negative_int, default=0,
                   help="seed of the class vocabulary; keep it equal across sets (default 0)")
    p.add_argument("--speakers", type=positive_int, default=12, help="number of speakers (default 12)")
    p.add_argument("--test-speakers", type=positive_int, default=2,
                   help="speakers only in the test file (default 2)")
    p.add_argument("--force", action="store_true",
                   help="replace existing files even if they are not synthetic (e.g. the real SHD)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth_shd)


def _synth_modelnet(args: argparse.Namespace) -> int:
    from spikelib.data.synthetic_shapes import SHAPE_CLASSES, write_synthetic_shapes

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if classes is not None:
        unknown = sorted(set(classes) - set(SHAPE_CLASSES))
        if unknown:
            return _fail("synth-modelnet", ValueError(f"unknown --classes {unknown}; choose from "
                                                      f"{','.join(SHAPE_CLASSES)}"))
    try:
        paths = write_synthetic_shapes(args.out, n_train=args.train, n_test=args.test, seed=args.seed,
                                       n_points=args.points, classes=classes, noise=args.noise,
                                       progress=not args.no_progress, overwrite=args.force)
    except (FileExistsError, ValueError) as exc:
        return _fail("synth-modelnet", exc)
    print(f"wrote {len(paths['train'])} training and {len(paths['test'])} test files to {args.out}; read them with "
          f"spikelib.data.ModelNet40Dataset({str(Path(args.out))!r}, split='train'|'test')")
    return 0


def _register_synth_modelnet(sub: "argparse._SubParsersAction") -> None:
    positive_int, non_negative_int = _ints()
    p = sub.add_parser(
        "synth-modelnet", help="write synthetic 3D shapes (modelnet40_ply_hdf5_2048 layout)",
        description="Write parametric solids (sphere, cube, cylinder, cone, torus, pyramid, ...) with random pose, "
                    "proportions and noise as ply_data_{train,test}0.h5 (data [N,P,3], normal [N,P,3], "
                    "label [N,1]) plus shape_names.txt. Deterministic in --seed.")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--train", type=positive_int, default=800, help="training shapes (default 800)")
    p.add_argument("--test", type=positive_int, default=200, help="test shapes (default 200)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--points", type=positive_int, default=2048, help="points per shape (default 2048)")
    p.add_argument("--noise", type=_non_negative_float, default=0.01,
                   help="Gaussian point noise, unit-sphere units (0.01)")
    p.add_argument("--classes", default=None, help="comma-separated subset of the shape classes (default all)")
    p.add_argument("--force", action="store_true", help="replace existing files even if they are not synthetic")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth_modelnet)


def _check(args: argparse.Namespace) -> int:
    import json

    from spikelib.data.shd import SHDDataset

    splits = ("train", "valid", "test") if args.kind == "ssc" else ("train", "test")
    if args.path.is_file():
        splits = (None,)  # the split comes from the file name
    found = 0
    for split in splits:
        try:
            ds = SHDDataset(args.path, split, kind=args.kind)
        except FileNotFoundError as exc:
            print(f"{split}: missing ({exc})", file=sys.stderr)
            continue
        except (OSError, ValueError) as exc:
            return _fail("check", exc)
        try:
            summary = ds.check_all()
        except ValueError as exc:
            return _fail("check", exc)
        finally:
            ds.close()
        print(json.dumps(summary))
        found += 1
    return 0 if found else _fail("check", FileNotFoundError(f"no {args.kind.upper()} files under {args.path}"))


def _register_check(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("check", help="check SHD/SSC files sample by sample and print a summary",
                       description="Open the SHD (or SSC) files in PATH (a folder or one .h5 file), check the "
                                   "layout and every sample (unit range, sorted non-negative times, labels) and "
                                   "print one JSON summary line per file. Exit status 2 on the first problem.")
    p.add_argument("path", type=Path, help="folder with shd_train.h5/shd_test.h5 (or the SSC files), or one file")
    p.add_argument("--kind", choices=("shd", "ssc"), default="shd", help="data set (default shd)")
    p.set_defaults(func=_check)


#: ``(name, register_fn)`` of every ``spikelib data`` sub-command; append one line to add a command.
DATA_COMMANDS: List[Tuple[str, Callable[["argparse._SubParsersAction"], None]]] = [
    ("synth-shd", _register_synth_shd),
    ("synth-modelnet", _register_synth_modelnet),
    ("check", _register_check),
    ("synth-heidelberg", lambda sub: __import__("spikelib.data.heidelberg.cli", fromlist=["register"]).register(sub)),
]


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add the ``spikelib data`` group and every sub-command in :data:`DATA_COMMANDS`."""
    parser = subparsers.add_parser("data", help="generate or prepare data sets (spikelib data --help)",
                                   description="Data set tools: synthetic stand-ins in the official file layouts.")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    for name, register_fn in DATA_COMMANDS:
        before = set(sub.choices)
        register_fn(sub)
        if name not in set(sub.choices) - before:
            raise RuntimeError(f"DATA_COMMANDS entry {name!r} did not add a parser named {name!r}")
