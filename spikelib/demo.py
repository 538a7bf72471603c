"""``spikelib demo``: the end-to-end demo as a pipeline of stages.

The demo runs the stages in :data:`DEMO_STAGES` in order on one :class:`DemoContext`. A stage is a function
``stage(ctx: DemoContext) -> dict``; its returned dict (JSON-serialisable) is stored as ``ctx.results[name]`` and
written into ``summary.json`` / ``summary.md`` in the run folder ``<out>/demo-<stamp>/``. A stage may set
``"passed": False`` in its result; the demo then exits with status 1 (after writing the summary). A stage that raises
stops the demo: the summary is still written with the error, and the exit status is 1.

Adding a stage (energy report, Loihi export, ...): write ``def stage(ctx) -> dict`` in your own module and append ONE
line ``("name", "your.module:function")`` to :data:`DEMO_STAGES` (strings are imported lazily, so there are no
import cycles and a stage's heavy imports stay in its module). Keep each stage within a few seconds on 2 CPU cores.
What a later stage finds on the context after the built-in stages: ``ctx.model`` (trained, eval mode, on
``ctx.device``), ``ctx.datasets`` / ``ctx.loaders`` with keys ``"train"``, ``"val"``, ``"test"`` (loaders yield
batch-first ``(x: [B, T, C], y: [B])``; models take time first ``[T, B, C]``), ``ctx.info`` (data facts: ``n_classes``,
``n_steps``, ``n_channels``, ``chance``), ``ctx.checkpoint_path`` and ``ctx.results`` of the earlier stages.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import logging
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from spikelib.cli import fraction, new_run_dir, non_negative_int, positive_float, positive_int

__all__ = ["DEMO_STAGES", "DemoContext", "run_demo", "register", "DEMO_DATA", "DEMO_MODEL"]

logger = logging.getLogger(__name__)

# The demo's recipe. Measured on a 2-core CPU: about 0.2-3 s per epoch (depending on load), ~95% test accuracy.
DEMO_DATA = dict(n_classes=10, n_steps=80, n_channels=50, n_groups=5)
DEMO_MODEL = dict(hidden=(128,), tau=4.0, readout="membrane", tau_out=2.0, init_gain=4.0)


@dataclass
class DemoContext:
    """Everything the demo's stages share.

    Attributes:
        run_dir: the run folder ``<out>/demo-<stamp>/`` (exists); stages write their files here.
        config: the demo settings (the parsed command-line options as a plain dict: ``seed``, ``epochs``, ...).
        device: where the model lives and runs.
        logger: the demo's logger (use it for diagnostics; ``echo`` for what the user should read).
        echo: prints one line of user-facing output (stdout).
        progress: whether stages may show progress bars (on stderr).
        model: the network (set by the ``model`` stage; trained and in eval mode after ``train``).
        datasets: ``"train"``, ``"val"``, ``"test"`` datasets (items ``(x: [T, C], label)``).
        loaders: DataLoaders for the same keys (batch-first ``[B, T, C]``).
        info: facts about the data: ``n_classes``, ``n_steps``, ``n_channels``, ``chance`` and a ``description``.
        checkpoint_path: the trained model's checkpoint (set by the ``checkpoint`` stage).
        results: stage name -> the dict that stage returned (filled in as the demo runs).
    """

    run_dir: Path
    config: Dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("spikelib.demo"))
    echo: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    progress: bool = True
    model: Optional[nn.Module] = None
    datasets: Dict[str, Any] = field(default_factory=dict)
    loaders: Dict[str, Any] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)
    checkpoint_path: Optional[Path] = None
    results: Dict[str, Dict[str, Any]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ built-in stages
def stage_data(ctx: DemoContext) -> Dict[str, Any]:
    """Build the train/val/test datasets and loaders."""
    from torch.utils.data import DataLoader

    from spikelib.data import SyntheticTemporalDataset

    cfg = ctx.config
    train_seed, val_seed, test_seed = (int(s) for s in np.random.SeedSequence(cfg["seed"]).generate_state(3))
    data_kw = dict(DEMO_DATA, task_seed=cfg["seed"])
    train = SyntheticTemporalDataset(cfg["n_train"], train_seed, **data_kw)
    val = SyntheticTemporalDataset(max(cfg["n_train"] // 10, 1), val_seed, **data_kw)
    test = SyntheticTemporalDataset(cfg["n_test"], test_seed, **data_kw)
    ctx.datasets = {"train": train, "val": val, "test": test}
    shuffle = torch.Generator().manual_seed(cfg["seed"])
    ctx.loaders = {"train": DataLoader(train, batch_size=cfg["batch_size"], shuffle=True, generator=shuffle),
                   "val": DataLoader(val, batch_size=256), "test": DataLoader(test, batch_size=256)}
    ctx.info = {"n_classes": train.n_classes, "n_steps": train.n_steps, "n_channels": train.n_channels,
                "chance": train.chance_level,
                "description": f"synthetic burst-order task: {train.n_classes} classes = burst orders of "
                               f"{train.n_groups} channel groups, T={train.n_steps}, C={train.n_channels}"}
    ctx.echo(f"data: {ctx.info['description']}; {len(train)} train / {len(val)} val / {len(test)} test samples")
    return {**data_kw, "train_seed": train_seed, "val_seed": val_seed, "test_seed": test_seed,
            "n_train": len(train), "n_val": len(val), "n_test": len(test), **ctx.info}


def stage_model(ctx: DemoContext) -> Dict[str, Any]:
    """Build the network."""
    from spikelib.models import SpikingMLP

    model_kw = dict(DEMO_MODEL, hidden=tuple(ctx.config["hidden"]))
    torch.manual_seed(ctx.config["seed"])
    ctx.model = SpikingMLP(ctx.info["n_channels"], out_features=ctx.info["n_classes"], **model_kw).to(ctx.device)
    n_params = sum(p.numel() for p in ctx.model.parameters())
    ctx.echo(f"model: SpikingMLP {ctx.info['n_channels']} -> {'-'.join(map(str, model_kw['hidden']))} -> "
             f"{ctx.info['n_classes']} ({n_params} parameters)")
    return {"name": "SpikingMLP", **model_kw, "hidden": list(model_kw["hidden"]), "parameters": n_params}


def stage_train(ctx: DemoContext) -> Dict[str, Any]:
    """Train, evaluating on the validation split after every epoch."""
    from spikelib.kernels import backend_calls
    from spikelib.training import train_classifier

    cfg = ctx.config
    ctx.echo(f"training: Adam lr={cfg['lr']:g}, {cfg['epochs']} epochs, batch {cfg['batch_size']}; "
             f"chance level {ctx.info['chance']:.1%}")

    def report(m: Dict[str, float]) -> None:
        ctx.echo(f"epoch {m['epoch']:>2}/{cfg['epochs']}: train loss {m['train_loss']:.3f} acc {m['train_acc']:.1%} "
                 f"| val acc {m['test_acc']:.1%}   ({m['seconds']:.1f} s)")

    calls_before = backend_calls("lif")
    history = train_classifier(ctx.model, ctx.loaders["train"], ctx.loaders["val"], cfg["epochs"], cfg["lr"],
                               ctx.device, progress=ctx.progress, on_epoch_end=report)
    ctx.model.eval()
    calls = {k: v - calls_before.get(k, 0) for k, v in backend_calls("lif").items() if v - calls_before.get(k, 0)}
    history = [{**{k.replace("test_", "val_"): v for k, v in h.items()}} for h in history]
    return {"epochs": cfg["epochs"], "lr": cfg["lr"], "batch_size": cfg["batch_size"], "optimizer": "Adam",
            "history": history, "lif_backend_calls": calls, "torch_threads": torch.get_num_threads()}


def stage_evaluate(ctx: DemoContext) -> Dict[str, Any]:
    """Evaluate on the test split; ``passed`` when the accuracy reaches the threshold."""
    from spikelib.training import evaluate

    chance = ctx.info["chance"]
    min_acc = ctx.config.get("min_accuracy")
    min_acc = chance + 0.25 * (1.0 - chance) if min_acc is None else float(min_acc)
    test = evaluate(ctx.model, ctx.loaders["test"], ctx.device)
    passed = test["acc"] >= min_acc
    ctx.echo(f"test accuracy {test['acc']:.1%} (chance {chance:.1%}, pass at >= {min_acc:.1%}): "
             f"{'PASSED' if passed else 'FAILED'}")
    return {"test_acc": test["acc"], "test_loss": test["loss"], "chance_level": chance, "min_accuracy": min_acc,
            "passed": passed}


def stage_checkpoint(ctx: DemoContext) -> Dict[str, Any]:
    """Save the trained weights to ``model.pt`` (atomically)."""
    from spikelib.training.atomic import atomic_torch_save

    path = ctx.run_dir / "model.pt"
    atomic_torch_save({"model": ctx.model.state_dict(), "model_name": type(ctx.model).__name__}, path)
    ctx.checkpoint_path = path
    ctx.echo(f"checkpoint: {path}")
    return {"path": str(path), "bytes": path.stat().st_size}


#: The demo's stages, in order: ``(name, "module:function")`` or ``(name, callable)``. Append one line per stage.
DEMO_STAGES: List[Tuple[str, Union[str, Callable[[DemoContext], Dict[str, Any]]]]] = [
    ("data", "spikelib.demo:stage_data"),
    ("model", "spikelib.demo:stage_model"),
    ("train", "spikelib.demo:stage_train"),
    ("evaluate", "spikelib.demo:stage_evaluate"),
    ("checkpoint", "spikelib.demo:stage_checkpoint"),
    ("energy", "spikelib.hardware.energy.cli:demo_stage"),
    # later stages (energy report, Loihi quantise/export/simulate) are appended here
]


def _resolve(stage: Union[str, Callable]) -> Callable[[DemoContext], Dict[str, Any]]:
    if callable(stage):
        return stage
    module, _, name = stage.partition(":")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise TypeError(f"demo stage {stage!r}: {module} has no function {name!r}")
    return fn


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _summary_md(summary: Dict[str, Any]) -> str:
    lines = [f"# spikelib demo ({summary['created']})", "",
             f"Status: **{'PASSED' if summary['passed'] else 'FAILED'}** in {summary['seconds']:.1f} s", "",
             "| stage | seconds | key results |", "|---|---|---|"]
    for name, res in summary["stages"].items():
        keys = {k: v for k, v in res.items() if isinstance(v, (int, float, str, bool)) and k != "seconds"}
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(keys.items())[:8])
        lines.append(f"| {name} | {res.get('seconds', 0.0):.2f} | {text} |")
    if summary.get("error"):
        lines += ["", f"Error: `{summary['error']}`"]
    return "\n".join(lines) + "\n"


def run_demo(ctx: DemoContext, stages: Optional[List[Tuple[str, Any]]] = None) -> int:
    """Run ``stages`` (default :data:`DEMO_STAGES`) on ``ctx``, write ``summary.json``/``summary.md``; exit status."""
    from spikelib import __version__
    from spikelib.training.atomic import atomic_write_text

    start = time.perf_counter()
    error = None
    for name, stage in (DEMO_STAGES if stages is None else stages):
        t0 = time.perf_counter()
        ctx.logger.info("demo stage %s", name)
        try:
            result = _resolve(stage)(ctx)
        except Exception as exc:  # recorded in the summary, then the demo fails
            error = f"stage {name!r} failed: {type(exc).__name__}: {exc}"
            ctx.logger.error("%s\n%s", error, traceback.format_exc())
            ctx.results[name] = {"error": f"{type(exc).__name__}: {exc}", "passed": False,
                                 "seconds": time.perf_counter() - t0}
            break
        if not isinstance(result, dict):
            raise TypeError(f"demo stage {name!r} must return a dict, got {type(result).__name__}")
        ctx.results[name] = {**result, "seconds": time.perf_counter() - t0}
    passed = error is None and all(r.get("passed", True) is not False for r in ctx.results.values())
    summary = {
        "command": "demo",
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": {"spikelib": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": ctx.config,
        "device": str(ctx.device),
        "stages": ctx.results,
        "passed": passed,
        "error": error,
        "seconds": time.perf_counter() - start,
    }
    summary = _jsonable(summary)
    atomic_write_text(ctx.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(ctx.run_dir / "summary.md", _summary_md(summary))
    ctx.echo(f"demo {'PASSED' if passed else 'FAILED'} in {summary['seconds']:.1f} s; wrote "
             f"{ctx.run_dir / 'summary.json'}")
    if not passed:
        print(f"FAILED: {error or ', '.join(n for n, r in ctx.results.items() if r.get('passed') is False)}",
              file=sys.stderr)
    return 0 if passed else 1


def _demo(args: argparse.Namespace) -> int:
    config = {k: v for k, v in vars(args).items() if k not in ("func", "command", "verbose", "progress", "out")}
    run_dir = new_run_dir(Path(args.out), "demo")
    ctx = DemoContext(run_dir=run_dir, config=config, progress=args.progress)
    return run_demo(ctx)


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib demo``."""
    demo = subparsers.add_parser("demo", help="the end-to-end demo: train a small SNN, evaluate, save a summary",
                                 description="Train a small spiking network on a synthetic task, evaluate it on the "
                                             "test split and write a checkpoint and summary.json/summary.md to "
                                             "<out>/demo-<stamp>/. Exits 1 below --min-accuracy.")
    demo.add_argument("--epochs", type=positive_int, default=10, help="training epochs (default 10)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="seed of data, class orders and init")
    demo.add_argument("--out", default="runs", help="folder for demo-<timestamp>/ (default runs/)")
    demo.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    demo.add_argument("--n-train", type=positive_int, default=2000, help="training samples (default 2000)")
    demo.add_argument("--n-test", type=positive_int, default=500, help="test samples (default 500)")
    demo.add_argument("--batch-size", type=positive_int, default=64, help="batch size (default 64)")
    demo.add_argument("--lr", type=positive_float, default=1e-2, help="Adam learning rate (default 0.01)")
    demo.add_argument("--hidden", type=positive_int, nargs="+", default=list(DEMO_MODEL["hidden"]),
                      help="hidden layer sizes (default 128)")
    demo.add_argument("--min-accuracy", type=fraction, default=None,
                      help="exit 1 below this final test accuracy (default: chance + (1 - chance) / 4)")
    demo.set_defaults(func=_demo)
