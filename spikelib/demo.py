"""``spikelib demo``: the end-to-end demo as a pipeline of stages.

What it does (``make demo``): generate the synthetic SHD-like data set (:func:`spikelib.data.write_synthetic_shd`,
official SHD HDF5 layout, 20 classes; cached under ``--data-dir``, default ``runs/data``), bin it to 20 ms frames and
pool 700 -> 140 channels, train a small SNN with learnable delays (:class:`spikelib.models.SNNDelays`, one hidden
layer) with :class:`spikelib.training.Trainer` (progress bars, validation split from the training set, best model),
evaluate it on the test split with rounded integer delays, and write ``model.pt`` plus ``summary.json`` /
``summary.md`` to ``<out>/demo-<stamp>/`` (the trainer's files are in ``train/``). The exit status is 1 when the test
accuracy is below ``--min-accuracy`` (default: chance + half the way to 100%, i.e. 52.5% for 20 classes) or a stage
failed. The training recipe is :data:`DEMO_CONFIG` (also ``configs/demo.yaml``).

Stages: the demo runs the stages in :data:`DEMO_STAGES` in order on one :class:`DemoContext`. A stage is a function
``stage(ctx: DemoContext) -> dict``; its returned dict (JSON-serialisable) is stored as ``ctx.results[name]`` and
written into the summary. A stage may set ``"passed": False`` in its result; the demo then exits with status 1 (after
writing the summary). A stage that raises stops the demo: the summary is still written with the error, and the exit
status is 1.

Adding a stage (energy report, Loihi export, ...): write ``def stage(ctx) -> dict`` in your own module and append ONE
line ``("name", "your.module:function")`` to :data:`DEMO_STAGES` (strings are imported lazily, so there are no
import cycles and a stage's heavy imports stay in its module). Keep each stage within a few seconds on 2 CPU cores.
What a later stage finds on the context after the built-in stages: ``ctx.model`` (trained, best validation weights,
eval mode, on ``ctx.device``; its delay layers are in their float training mode -- use
:func:`spikelib.layers.delay_schedule.rounded_delays` for the integer delays a chip runs), ``ctx.datasets`` /
``ctx.loaders`` with keys ``"train"``, ``"val"``, ``"test"`` (loaders yield batch-first ``(x: [B, T, C], y: [B])``;
models take time first ``[T, B, C]``), ``ctx.info`` (``n_classes``, ``n_channels``, ``n_steps``, ``chance``,
``bin_ms``, ``description``), ``ctx.checkpoint_path`` (``model.pt``: a spikelib checkpoint with ``model``,
``model_name`` and ``config``) and ``ctx.results`` of the earlier stages.
"""

from __future__ import annotations

import argparse
import copy
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

from spikelib.cli_common import fraction, new_run_dir, non_negative_int, positive_float, positive_int

__all__ = ["DEMO_CONFIG", "DEMO_STAGES", "DemoContext", "run_demo", "register"]

logger = logging.getLogger(__name__)

#: The demo's training recipe (a spikelib.training run configuration; configs/demo.yaml is the same).
DEMO_CONFIG: Dict[str, Any] = {
    "data": {"dataset": "synthetic_shd", "root": "runs/data", "n_train": 2000, "n_test": 500, "channels_out": 140,
             "bin_ms": 20, "max_time": 1.0, "batch_size": 64, "val_fraction": 0.1},
    "model": {"name": "snn_delays", "hidden": [64], "max_delay": 10, "dropout": 0.1},
    "optim": {"name": "adam", "lr": 0.005},
    "schedule": {"name": "cosine"},
    "delays": {"lr": 0.3, "final_epoch": 1},
    "train": {"epochs": 3, "seed": 0, "device": "cpu"},
    "tiny": {"data.n_train": 120, "data.n_test": 40, "model.hidden": [16], "train.epochs": 1},
}


@dataclass
class DemoContext:
    """Everything the demo's stages share.

    Attributes:
        run_dir: the run folder ``<out>/demo-<stamp>/`` (exists); stages write their files here (a sub-folder each).
        config: the demo settings: ``"run"`` (the training run configuration, a plain dict in the schema of
            :mod:`spikelib.training.config`), ``"min_accuracy"`` (the pass threshold or ``None`` for the default) and
            ``"seed"``.
        device: where the model lives and runs.
        logger: the demo's logger (use it for diagnostics; ``echo`` for what the user should read).
        echo: prints one line of user-facing output (stdout).
        progress: whether stages may show progress bars (on stderr).
        model: the network (set by the ``train`` stage: best validation weights, eval mode).
        datasets: ``"train"``, ``"val"``, ``"test"`` datasets (items ``(x: [T, C], label)``).
        loaders: DataLoaders for the same keys (batch-first ``[B, T, C]``).
        info: facts about the data: ``n_classes``, ``n_channels``, ``n_steps``, ``chance``, ``description``, ...
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
    #: private hand-over between the built-in stages (the data bundle, the trainer)
    state: Dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ built-in stages
def stage_data(ctx: DemoContext) -> Dict[str, Any]:
    """Generate (once, cached) and open the synthetic SHD-like data set."""
    from spikelib.training.config import parse_config
    from spikelib.training.datasets import build_datasets

    config = parse_config(ctx.config["run"])
    t0 = time.perf_counter()
    bundle = build_datasets(config.data.dataset, config.train.seed, **config.data.args)
    ctx.state.update(config=config, bundle=bundle)
    d = config.data.args
    ctx.info = dict(bundle.info, description=(
        f"synthetic SHD-like spoken digits: {bundle.info['n_classes']} classes, 700 -> {bundle.info['n_channels']} "
        f"channels, {bundle.info.get('bin_ms', 0):g} ms bins, T={bundle.info.get('n_steps')}"))
    ctx.echo(f"data: {ctx.info['description']}; {len(bundle.train)} train (incl. "
             f"{config.data.val_fraction:.0%} validation) / {len(bundle.test)} test samples in "
             f"{bundle.info.get('generated')}")
    return {"dataset": config.data.dataset, "n_train": len(bundle.train), "n_test": len(bundle.test),
            "folder": bundle.info.get("generated"), "seconds_to_prepare": time.perf_counter() - t0,
            **{k: v for k, v in d.items() if k not in ("root",)}, **ctx.info}


def stage_model(ctx: DemoContext) -> Dict[str, Any]:
    """Build the network (seeded)."""
    from spikelib.training.build import build_model, seed_everything

    config = ctx.state["config"]
    seed_everything(config.train.seed)
    ctx.model = build_model(config, ctx.info)
    n_params = sum(p.numel() for p in ctx.model.parameters())
    args = config.model.args
    ctx.echo(f"model: {config.model.name} {ctx.info['n_channels']} -> {'-'.join(map(str, args.get('hidden', [])))} "
             f"-> {ctx.info['n_classes']} with learnable delays up to {args.get('max_delay')} steps "
             f"({n_params} parameters)")
    return {"name": config.model.name, **args, "parameters": n_params}


def stage_train(ctx: DemoContext) -> Dict[str, Any]:
    """Train with :class:`spikelib.training.Trainer` into ``run_dir/train`` (validation split from the train set)."""
    from spikelib.kernels import backend_calls
    from spikelib.training.trainer import Trainer

    config = ctx.state["config"]
    epochs = config.train.epochs
    ctx.echo(f"training: {config.optim.name} lr={config.optim.lr:g} ({config.schedule.name}), delays lr="
             f"{config.delays.lr if config.delays else 0:g}, {epochs} epochs, batch {config.data.batch_size}; "
             f"chance level {ctx.info['chance']:.1%}")

    def report(trainer: Trainer, event: str) -> None:
        if event == "epoch_end":
            m = trainer.history[-1]
            ctx.echo(f"epoch {m['epoch']:>2}/{epochs}: train loss {m['train_loss']:.3f} acc {m['train_acc']:.1%} | "
                     f"val acc {m.get('val_acc', float('nan')):.1%}   ({m['seconds']:.1f} s)")

    calls_before = backend_calls("lif")
    trainer = Trainer(config, ctx.run_dir / "train", progress=ctx.progress, callbacks=[report],
                      datasets=ctx.state["bundle"], model=ctx.model)
    result = trainer.fit()
    calls = {k: v - calls_before.get(k, 0) for k, v in backend_calls("lif").items() if v - calls_before.get(k, 0)}
    ctx.model = trainer.model.eval()
    ctx.device = trainer.device
    ctx.state["trainer"] = trainer
    ctx.datasets = dict(trainer.datasets)
    ctx.loaders = {"train": trainer.train_loader, **trainer.eval_loaders}
    return {"epochs": epochs, "history": trainer.history, "best": result["best"], "val": result.get("val"),
            "lif_backend_calls": calls, "torch_threads": torch.get_num_threads(),
            "folder": str(ctx.run_dir / "train")}


def stage_evaluate(ctx: DemoContext) -> Dict[str, Any]:
    """Evaluate the best model on the test split (rounded delays); ``passed`` when it reaches the threshold."""
    trainer = ctx.state["trainer"]
    chance = ctx.info["chance"]
    min_acc = ctx.config.get("min_accuracy")
    min_acc = chance + 0.5 * (1.0 - chance) if min_acc is None else float(min_acc)
    test = trainer.evaluate("test")
    passed = test["acc"] >= min_acc
    ctx.echo(f"test accuracy {test['acc']:.1%} on {test['count']} samples (chance {chance:.1%}, pass at >= "
             f"{min_acc:.1%}): {'PASSED' if passed else 'FAILED'}")
    return {"test_acc": test["acc"], "test_loss": test["loss"], "n_test": test["count"], "chance_level": chance,
            "min_accuracy": min_acc, "delays": "rounded", "passed": passed}


def stage_checkpoint(ctx: DemoContext) -> Dict[str, Any]:
    """Save the trained model to ``model.pt`` (a spikelib checkpoint: ``spikelib eval model.pt`` reads it)."""
    from spikelib.training.checkpoint import save_checkpoint

    config = ctx.state["config"]
    path = ctx.run_dir / "model.pt"
    save_checkpoint(path, {"model_name": config.model.name, "config": config.to_dict(),
                           "model": ctx.model.state_dict(),
                           "info": {k: v for k, v in ctx.info.items() if isinstance(v, (int, float, str, bool))}})
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
    ("loihi", "spikelib.hardware.loihi.demo_stage:stage"),
    # append further stages here
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
    if isinstance(value, np.generic):
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
            if not isinstance(result, dict):
                raise TypeError(f"demo stage {name!r} must return a dict, got {type(result).__name__}")
        except Exception as exc:  # recorded in the summary, then the demo fails
            error = f"stage {name!r} failed: {type(exc).__name__}: {exc}"
            ctx.logger.error("%s\n%s", error, traceback.format_exc())
            ctx.results[name] = {"error": f"{type(exc).__name__}: {exc}", "passed": False,
                                 "seconds": time.perf_counter() - t0}
            break
        ctx.results[name] = {**result, "seconds": time.perf_counter() - t0}
    passed = error is None and all(r.get("passed", True) is not False for r in ctx.results.values())
    summary = _jsonable({
        "command": "demo",
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": {"spikelib": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": ctx.config,
        "device": str(ctx.device),
        "stages": ctx.results,
        "passed": passed,
        "error": error,
        "seconds": time.perf_counter() - start,
    })
    atomic_write_text(ctx.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(ctx.run_dir / "summary.md", _summary_md(summary))
    ctx.echo(f"demo {'PASSED' if passed else 'FAILED'} in {summary['seconds']:.1f} s; wrote "
             f"{ctx.run_dir / 'summary.json'}")
    if not passed:
        failed = error or ", ".join(n for n, r in ctx.results.items() if r.get("passed") is False)
        sys.stderr.write(f"FAILED: {failed}\n")
    return 0 if passed else 1


def demo_run_config(args: argparse.Namespace) -> Dict[str, Any]:
    """:data:`DEMO_CONFIG` with the command-line options applied."""
    run = copy.deepcopy(DEMO_CONFIG)
    run["data"]["root"] = str(args.data_dir)
    run["train"].update(epochs=args.epochs, seed=args.seed, device=args.device)
    for key, section, name in (("n_train", "data", "n_train"), ("n_test", "data", "n_test"),
                               ("batch_size", "data", "batch_size"), ("lr", "optim", "lr")):
        value = getattr(args, key)
        if value is not None:
            run[section][name] = value
    if args.hidden is not None:
        run["model"]["hidden"] = list(args.hidden)
    return run


def _demo(args: argparse.Namespace) -> int:
    config = {"run": demo_run_config(args), "min_accuracy": args.min_accuracy, "seed": args.seed}
    run_dir = new_run_dir(Path(args.out), "demo")
    ctx = DemoContext(run_dir=run_dir, config=config, progress=args.progress)
    return run_demo(ctx)


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib demo``."""
    d = DEMO_CONFIG
    demo = subparsers.add_parser(
        "demo", help="the end-to-end demo: synthetic SHD -> delay SNN -> evaluation -> summary",
        description="Generate the synthetic SHD-like data set (cached), train a small spiking network with learnable "
                    "delays with progress bars, evaluate it on the test split and write model.pt and "
                    "summary.json/summary.md to <out>/demo-<stamp>/. Exits 1 below --min-accuracy.")
    demo.add_argument("--epochs", type=positive_int, default=d["train"]["epochs"],
                      help=f"training epochs (default {d['train']['epochs']})")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="seed of data, init and order (default 0)")
    demo.add_argument("--out", default="runs", help="folder for demo-<timestamp>/ (default runs/)")
    demo.add_argument("--data-dir", default=d["data"]["root"],
                      help=f"cache folder of the generated data (default {d['data']['root']})")
    demo.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    demo.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    demo.add_argument("--n-train", type=positive_int, default=None,
                      help=f"training samples incl. validation (default {d['data']['n_train']})")
    demo.add_argument("--n-test", type=positive_int, default=None,
                      help=f"test samples (default {d['data']['n_test']})")
    demo.add_argument("--batch-size", type=positive_int, default=None,
                      help=f"batch size (default {d['data']['batch_size']})")
    demo.add_argument("--lr", type=positive_float, default=None, help=f"learning rate (default {d['optim']['lr']})")
    demo.add_argument("--hidden", type=positive_int, nargs="+", default=None,
                      help=f"hidden layer sizes (default {' '.join(map(str, d['model']['hidden']))})")
    demo.add_argument("--min-accuracy", type=fraction, default=None,
                      help="exit 1 below this test accuracy (default: chance + (1 - chance) / 2)")
    demo.set_defaults(func=_demo)
