"""The ``spikelib`` command.

``spikelib demo``
    trains a :class:`~spikelib.models.SpikingMLP` on the synthetic temporal task
    (:class:`~spikelib.data.SyntheticTemporalDataset`: the class is the order in which channel groups burst, so
    spike counts alone are at chance) with a progress bar, prints train/test accuracy per epoch and the chance level,
    writes ``<out>/demo-<timestamp>/metrics.json`` atomically, and exits with status 1 when the final test accuracy is
    below ``--min-accuracy`` (default: chance + a quarter of the way from chance to 100%).
``spikelib backends``
    lists the registered LIF backends and which one ``backend="auto"`` picks on CPU for each dtype.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

__all__ = ["main"]

# The demo's recipe. Measured on a 2-core CPU: about 0.2-3 s per epoch (depending on load), ~95% test accuracy.
DEMO_DATA = dict(n_classes=10, n_steps=80, n_channels=50, n_groups=5)
DEMO_MODEL = dict(hidden=(128,), tau=4.0, readout="membrane", tau_out=2.0, init_gain=4.0)


def _write_json_atomic(path: Path, payload: Dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and ``os.replace`` (never a partial file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _new_run_dir(out: Path, prefix: str) -> Path:
    """``out/<prefix>-YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``, ... if it exists), created."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        path = out / (f"{prefix}-{stamp}" if i == 1 else f"{prefix}-{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {out}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value}")
    return value


def _demo(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from spikelib import __version__
    from spikelib.data import SyntheticTemporalDataset
    from spikelib.kernels import backend_calls
    from spikelib.models import SpikingMLP
    from spikelib.training import train_classifier

    start = time.perf_counter()
    train_seed, test_seed = (int(s) for s in np.random.SeedSequence(args.seed).generate_state(2))
    data_kw = dict(DEMO_DATA, task_seed=args.seed)
    train_set = SyntheticTemporalDataset(args.n_train, train_seed, **data_kw)
    test_set = SyntheticTemporalDataset(args.n_test, test_seed, **data_kw)
    chance = train_set.chance_level
    min_acc = args.min_accuracy if args.min_accuracy is not None else chance + 0.25 * (1.0 - chance)
    model_kw = dict(DEMO_MODEL, hidden=tuple(args.hidden))
    torch.manual_seed(args.seed)
    model = SpikingMLP(train_set.n_channels, out_features=train_set.n_classes, **model_kw)
    shuffle = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=shuffle)
    test_loader = DataLoader(test_set, batch_size=256)

    print(f"spikelib demo: {train_set.n_classes} classes = burst orders of {train_set.n_groups} channel groups, "
          f"T={train_set.n_steps}, C={train_set.n_channels}; {len(train_set)} train / {len(test_set)} test samples")
    print(f"model: SpikingMLP {train_set.n_channels} -> {'-'.join(map(str, model.hidden))} -> {train_set.n_classes} "
          f"(LIF tau={model_kw['tau']:g}, {model_kw['readout']} readout); Adam lr={args.lr:g}, {args.epochs} epochs")
    print(f"chance level: {chance:.1%}   (pass if final test accuracy >= {min_acc:.1%})", flush=True)

    def report(m: Dict[str, float]) -> None:
        print(f"epoch {m['epoch']:>2}/{args.epochs}: train loss {m['train_loss']:.3f} acc {m['train_acc']:.1%} | "
              f"test acc {m['test_acc']:.1%}   ({m['seconds']:.1f} s)", flush=True)

    calls_before = backend_calls("lif")
    history = train_classifier(model, train_loader, test_loader, args.epochs, args.lr, "cpu",
                               progress=args.progress, on_epoch_end=report)
    calls = {k: v - calls_before.get(k, 0) for k, v in backend_calls("lif").items() if v - calls_before.get(k, 0)}
    final = history[-1]
    passed = final["test_acc"] >= min_acc
    seconds = time.perf_counter() - start

    run_dir = _new_run_dir(Path(args.out), "demo")
    payload = {
        "command": "demo",
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": {"spikelib": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "seed": args.seed,
        "data": {**data_kw, "train_seed": train_seed, "test_seed": test_seed, "n_train": args.n_train,
                 "n_test": args.n_test, "class_orders": [list(o) for o in train_set.class_orders]},
        "model": {**model_kw, "hidden": list(model_kw["hidden"])},
        "training": {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "optimizer": "Adam",
                     "loss": "cross-entropy on the readout's mean membrane", "device": "cpu",
                     "torch_threads": torch.get_num_threads()},
        "lif_backend_calls": calls,
        "chance_level": chance,
        "min_accuracy": min_acc,
        "history": history,
        "final": {"train_acc": final["train_acc"], "test_acc": final["test_acc"], "test_loss": final["test_loss"]},
        "passed": passed,
        "seconds": seconds,
    }
    metrics_path = run_dir / "metrics.json"
    _write_json_atomic(metrics_path, payload)
    print(f"final test accuracy {final['test_acc']:.1%} (chance {chance:.1%}) in {seconds:.1f} s; "
          f"LIF backend: {', '.join(f'{k} x{v}' for k, v in calls.items()) or 'none'}")
    print(f"wrote {metrics_path}")
    if not passed:
        print(f"FAILED: test accuracy {final['test_acc']:.1%} is below {min_acc:.1%} (chance {chance:.1%})",
              file=sys.stderr)
        return 1
    return 0


def _backends(args: argparse.Namespace) -> int:
    from spikelib.functional.lif import LIFRequest, resolve_lif_config
    from spikelib.kernels import BackendUnavailableError, available_backends, select_backend

    config = resolve_lif_config("hard", True, False, 0.0, args.surrogate)
    cpu = torch.device("cpu")
    names = available_backends("lif")
    print("LIF backends, highest priority first (status for a CPU float32 request with gradients):")
    for name in names:
        request = LIFRequest(cpu, torch.float32, config, True)
        try:
            entry = select_backend("lif", name, request, count=False)
            status, description = "available", entry.description
        except BackendUnavailableError as exc:
            status, description = f"unavailable: {exc}", ""
        print(f"  {name:<8} {description:<50} [{status}]")
    print(f"backend='auto' on CPU (surrogate {args.surrogate!r}):")
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        try:
            pick = select_backend("lif", "auto", LIFRequest(cpu, dtype, config, True), count=False).name
        except BackendUnavailableError as exc:
            pick = f"none ({exc})"
        print(f"  {str(dtype).replace('torch.', ''):<9} -> {pick}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikelib", description="spikelib: spiking neural networks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="train a small LIF network on the synthetic temporal task",
                          description="Train a SpikingMLP on the synthetic burst-order task and write metrics.json.")
    demo.add_argument("--epochs", type=_positive_int, default=10, help="training epochs (default 10)")
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="seed of data, class orders and init")
    demo.add_argument("--out", default="runs", help="folder for demo-<timestamp>/ (default runs/)")
    demo.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    demo.add_argument("--n-train", type=_positive_int, default=2000, help="training samples (default 2000)")
    demo.add_argument("--n-test", type=_positive_int, default=500, help="test samples (default 500)")
    demo.add_argument("--batch-size", type=_positive_int, default=64, help="batch size (default 64)")
    demo.add_argument("--lr", type=_positive_float, default=1e-2, help="Adam learning rate (default 0.01)")
    demo.add_argument("--hidden", type=_positive_int, nargs="+", default=list(DEMO_MODEL["hidden"]),
                      help="hidden layer sizes (default 128)")
    demo.add_argument("--min-accuracy", type=_fraction, default=None,
                      help="exit 1 below this final test accuracy (default: chance + (1 - chance) / 4)")
    demo.set_defaults(func=_demo)

    backends = sub.add_parser("backends", help="list the LIF backends and what 'auto' picks on CPU")
    backends.add_argument("--surrogate", default="atan", help="surrogate of the request (default atan)")
    backends.set_defaults(func=_backends)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``spikelib`` command; returns the exit status."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
