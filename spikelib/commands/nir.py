"""``spikelib nir export|import|check``: a thin face over :mod:`spikelib.hardware.nir` (``to_nir``, ``write_nir``,
``read_nir``, ``from_nir``).

``spikelib nir export CHECKPOINT --out model.nir [--dt S] [--input-shape C H W]``
    rebuilds the model of a training checkpoint (:func:`spikelib.training.run.load_run`) and writes its NIR graph.
``spikelib nir import FILE.nir [--dt S] [--out weights.pt]``
    builds spikelib modules from the graph (:func:`~spikelib.hardware.nir.from_nir`), prints their summary as JSON
    and, with ``--out``, saves their state dict (a plain tensor file, ``torch.load(..., weights_only=True)``).
``spikelib nir check FILE.nir [--dt S] [--random T]``
    reads the graph, lists its nodes and edges, checks that spikelib can import it and, with ``--random T``, runs
    the imported network on ``T`` steps of random input spikes; prints JSON. Exit status 2 with an ``error:`` line
    when the file is missing or unreadable or a node has no spikelib counterpart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

from spikelib.cli_common import CommandError, non_negative_int, positive_float, positive_int

__all__ = ["register"]


def _nir_errors() -> tuple:
    from spikelib.hardware.nir import NIRConversionError

    return (NIRConversionError,)


def _read(path: str, dt: Any) -> tuple:
    from spikelib.hardware.nir import from_nir, read_nir

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"NIR file {p} does not exist" if not p.exists() else f"{p} is not a file")
    try:
        graph = read_nir(p)
    except (OSError, KeyError, ValueError, TypeError) as exc:  # h5py / nir errors of damaged or foreign files
        raise CommandError(f"{p} could not be read as a NIR graph ({type(exc).__name__}: {exc})") from None
    try:
        module = from_nir(graph, dt=dt)
    except _nir_errors() as exc:
        raise CommandError(f"{p}: {exc}") from None
    return graph, module


def _summary(graph: Any, module: Any) -> Dict[str, Any]:
    return {"nodes": {name: type(node).__name__ for name, node in graph.nodes.items()},
            "edges": [list(e) for e in graph.edges],
            "modules": [type(m).__name__ for m in module.children()] if hasattr(module, "children") else [],
            "parameters": int(sum(p.numel() for p in module.parameters()))}


def _export(args: argparse.Namespace) -> int:
    from spikelib.hardware.nir import to_nir, write_nir
    from spikelib.training.run import load_run

    run = load_run(args.checkpoint, build_data=None)
    try:
        graph = to_nir(run.model, input_shape=args.input_shape, dt=args.dt)
    except _nir_errors() as exc:
        raise CommandError(f"{args.checkpoint}: {exc}") from None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CommandError(f"--out: folder {out.parent} does not exist")
    write_nir(graph, out)
    print(f"wrote {out} ({len(graph.nodes)} nodes)")
    return 0


def _import(args: argparse.Namespace) -> int:
    import torch

    graph, module = _read(args.file, args.dt)
    summary = {"file": str(args.file), **_summary(graph, module)}
    if args.out:
        from spikelib._atomic import atomic_path

        with atomic_path(args.out, create_parent=False) as tmp:
            torch.save(module.state_dict(), tmp)
        summary["weights"] = str(args.out)
    print(json.dumps(summary, indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    import torch

    graph, module = _read(args.file, args.dt)
    summary = {"file": str(args.file), "importable": True, **_summary(graph, module)}
    if args.random:
        shape = None
        inp = graph.nodes.get("input")
        if inp is not None and getattr(inp, "input_type", None):
            shape = tuple(int(s) for s in next(iter(inp.input_type.values())))
        if not shape:
            raise CommandError(f"{args.file}: the graph's input node has no shape; --random needs one")
        g = torch.Generator().manual_seed(args.seed)
        x = (torch.rand((args.random, 1) + shape, generator=g) < 0.1).float()
        with torch.no_grad():
            y = module(x)
        summary["run"] = {"steps": args.random, "output_shape": list(y.shape),
                          "output_sum": float(y.float().sum()), "finite": bool(torch.isfinite(y).all())}
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib nir {export,import,check}``."""
    nir = subparsers.add_parser("nir", help="NIR (Neuromorphic Intermediate Representation): export, import, check",
                                description=__doc__.split("\n\n")[0])
    sub = nir.add_subparsers(dest="nir_command", required=True, metavar="NIR_COMMAND")
    ex = sub.add_parser("export", help="write a training checkpoint's model as a NIR graph")
    ex.add_argument("checkpoint", help="a `spikelib train` checkpoint (last.pt / best.pt)")
    ex.add_argument("--out", required=True, help="NIR file to write")
    ex.add_argument("--dt", type=positive_float, default=1e-4, help="seconds per step (default 1e-4)")
    ex.add_argument("--input-shape", type=positive_int, nargs="+", default=None, metavar="N",
                    help="input shape per sample (needed when the first layer is not a Linear)")
    ex.set_defaults(func=_export)
    im = sub.add_parser("import", help="build spikelib modules from a NIR graph (summary as JSON)")
    im.add_argument("file", help="a .nir file")
    im.add_argument("--dt", type=positive_float, default=None, help="seconds per step (default: the graph's)")
    im.add_argument("--out", default=None, help="also save the modules' state dict here (.pt)")
    im.set_defaults(func=_import)
    ch = sub.add_parser("check", help="check that a NIR graph reads and imports (optionally run it)")
    ch.add_argument("file", help="a .nir file")
    ch.add_argument("--dt", type=positive_float, default=None, help="seconds per step (default: the graph's)")
    ch.add_argument("--random", type=positive_int, default=None, metavar="T",
                    help="run the imported network on T steps of random input spikes")
    ch.add_argument("--seed", type=non_negative_int, default=0, help="seed of --random")
    ch.set_defaults(func=_check)
