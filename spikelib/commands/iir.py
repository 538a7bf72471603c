"""``spikelib iir RECIPE --run-dir DIR [--resume]``: IIR-SNN end to end (a thin face over
:func:`spikelib.conversion.iir.run_iir`): train the ANN, convert it, retrain the SNN at each ``T`` of the recipe's
stages (5, 3, 2, 1), optionally train the same SNN from scratch, and print test accuracy and energy per inference at
every ``T`` beside the ANN (also ``DIR/summary.md`` and ``DIR/result.json``). Recipes: ``configs/iir/*.yaml``
(they are not ``spikelib train`` run configurations, hence their own folder)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from spikelib.conversion.iir import run_iir, summary_table

    result = run_iir(args.recipe, args.run_dir, resume=args.resume, progress=False if args.no_progress else None)
    print(summary_table(result), end="")
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib iir``."""
    p = subparsers.add_parser("iir", help="IIR-SNN: ANN -> conversion -> SNN retrained down to T = 1",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="recipe YAML (configs/iir/digits.yaml, configs/iir/cifar10_vgg16.yaml, ...)")
    p.add_argument("--run-dir", required=True, help="run folder (new, or an interrupted run with --resume)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (also in the middle of a stage)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
