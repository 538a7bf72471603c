"""``spikelib train CONFIG.yaml`` and ``spikelib eval CHECKPOINT``.

``train`` validates the YAML run configuration (:mod:`spikelib.training.config`), applies the command-line overrides
and runs :class:`~spikelib.training.trainer.Trainer` into ``--out`` (default ``runs/<config name>-<stamp>``).
``--resume`` continues the run in ``--out`` from its ``last.pt`` (the configuration defaults to ``--out``'s
``config.yaml``). ``--nproc N`` starts N processes through ``torch.distributed.run`` (torchrun) running this same
command; ``torchrun ... -m spikelib train ...`` works as well (then pass ``--out``). One line per epoch goes to
stdout (also when stdout is not a terminal, e.g. in a batch job's log), the final result line last.

Run size: ``--max-batches N`` (at most N batches per epoch and per evaluation), ``--tiny`` (the recipe's own ``tiny``
section: a CPU-sized variant, e.g. the synthetic data set and small layers), ``--fast-dev-run`` (``--tiny``, one
epoch per stage, two batches, into a temporary folder unless ``--out`` is given: a smoke test of a recipe).

``eval`` loads a checkpoint (:func:`spikelib.training.run.load_run`: checksum, configuration limits, weights checked
against the configuration before anything is built), rebuilds its model and dataset (``--data key=value`` changes
data options, e.g. the folder) and prints loss and accuracy as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, List, Optional

from spikelib.cli_common import CommandError, new_run_dir, non_negative_int, positive_float, positive_int

__all__ = ["register", "EpochPrinter"]

logger = logging.getLogger(__name__)

FAST_DEV_BATCHES = 2


def _overrides(args: argparse.Namespace) -> List[str]:
    out = list(args.set or [])
    for flag, key in (("epochs", "train.epochs"), ("seed", "train.seed"), ("batch_size", "data.batch_size"),
                      ("lr", "optim.lr"), ("device", "train.device"), ("max_batches", "train.max_batches")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out


class EpochPrinter:
    """A trainer callback printing one line per epoch (and one per stage start) on stdout."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def __call__(self, trainer: Any, event: str) -> None:
        from tqdm.auto import tqdm

        if not trainer.dist.is_main:
            return
        if event == "stage_start" and trainer.multi_stage:
            st = trainer.stage_config
            line = f"stage {trainer.stage + 1}/{len(trainer.stages)} {st.name}: {st.epochs} epochs" + (
                f", T={st.timesteps}" if st.timesteps is not None else "")
        elif event == "epoch_end":
            row = trainer.history[-1]
            parts = [f"train loss {row['train_loss']:.4f} acc {row.get('train_acc', float('nan')):.1%}"]
            if "val_loss" in row:
                parts.append(f"val loss {row['val_loss']:.4f} acc {row.get('val_acc', float('nan')):.1%}")
            parts.append(f"lr {row['lr']:.3g}")
            parts.append(f"{row['seconds']:.1f} s")
            stage = f"{trainer.stage_config.name} " if trainer.multi_stage else ""
            line = f"{stage}epoch {row['epoch']}/{trainer.stage_epochs}: " + " | ".join(parts)
        else:
            return
        tqdm.write(line, file=self.stream or sys.stdout)
        (self.stream or sys.stdout).flush()


def _launch(args: argparse.Namespace, run_dir: Path, config_path: str) -> int:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "spikelib"] + ["-v"] * int(getattr(args, "verbose", 0) or 0) + [
        "train", config_path, "--out", str(run_dir)]
    for flag in ("resume", "tiny", "fast_dev_run"):
        if getattr(args, flag):
            cmd.append("--" + flag.replace("_", "-"))
    if not args.progress:
        cmd.append("--no-progress")
    for item in _overrides(args):
        cmd += ["--set", item]
    logger.info("launching %s", " ".join(cmd))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    return subprocess.call(cmd, env=env)


def _fast_dev(raw: dict) -> dict:
    """One epoch per stage and :data:`FAST_DEV_BATCHES` batches (applied to the raw configuration)."""
    raw = dict(raw)
    train = dict(raw.get("train") or {})
    if raw.get("stages") is not None:
        stages = raw["stages"]
        if isinstance(stages, dict):
            stages = dict(stages, epochs=1)
        elif isinstance(stages, list):
            stages = [dict(s, epochs=1) if isinstance(s, dict) else s for s in stages]
        raw["stages"] = stages
        train.pop("epochs", None)
    else:
        train["epochs"] = 1
    train["max_batches"] = FAST_DEV_BATCHES
    raw["train"] = train
    return raw


def _load(args: argparse.Namespace, config_path: str) -> Any:
    from spikelib.training.config import ConfigError, apply_overrides, apply_tiny, parse_config, read_yaml

    raw = read_yaml(config_path)
    try:
        if args.tiny or args.fast_dev_run:
            raw = apply_tiny(raw)
        overrides = _overrides(args)
        if args.fast_dev_run:
            raw = _fast_dev(raw)
            overrides = [o for o in overrides if not o.startswith(("train.epochs=", "train.max_batches="))]
        return parse_config(apply_overrides(raw, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None


def _train(args: argparse.Namespace) -> int:
    from spikelib.training.distributed import cleanup
    from spikelib.training.trainer import Trainer

    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.resume and args.out is None:
        raise CommandError("--resume needs --out RUN_DIR (the folder holding last.pt)")
    config_path = args.config
    if config_path is None:
        if not args.resume:
            raise CommandError("give the run configuration (spikelib train CONFIG.yaml), or --resume --out RUN_DIR")
        config_path = str(Path(args.out) / "config.yaml")
    temporary: Optional[tempfile.TemporaryDirectory] = None
    if args.resume:
        run_dir = Path(args.out)
        if not (run_dir / "last.pt").is_file():
            raise CommandError(f"--resume: {run_dir / 'last.pt'} does not exist")
    elif args.out is not None:
        run_dir = Path(args.out)
        if (run_dir / "last.pt").exists() and not under_torchrun:
            raise CommandError(f"{run_dir} already holds a run (last.pt); pass --resume or another --out")
    elif under_torchrun:
        raise CommandError("under torchrun pass --out RUN_DIR (every process must write to the same folder)")
    elif args.fast_dev_run:
        temporary = tempfile.TemporaryDirectory(prefix="spikelib-fast-dev-run-")
        run_dir = Path(temporary.name)
    else:
        run_dir = None  # created once the configuration is known to be valid
    config = _load(args, config_path)
    if run_dir is None:
        run_dir = new_run_dir(Path("runs"), Path(config_path).stem)
    if args.nproc > 1:
        if under_torchrun:
            raise CommandError("--nproc is for a plain start; under torchrun leave it out")
        run_dir.mkdir(parents=True, exist_ok=True)
        return _launch(args, run_dir, config_path)
    try:
        result = Trainer(config, run_dir, resume=args.resume, progress=args.progress,
                         callbacks=[EpochPrinter()]).fit()
    finally:
        cleanup()
        if temporary is not None:
            temporary.cleanup()
    if int(os.environ.get("RANK", "0")) == 0:
        parts = [f"best epoch {result['best']['epoch']}"]
        for key in ("val", "test"):
            if key in result:
                parts.append(f"{key} acc {result[key]['acc']:.1%} (loss {result[key]['loss']:.4f})")
        where = "fast-dev-run passed" if args.fast_dev_run and temporary is not None else str(run_dir)
        print(f"{where}: " + ", ".join(parts), flush=True)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from spikelib.training.evaluation import evaluate_loader
    from spikelib.training.distributed import rank_device
    from spikelib.training.losses import build_loss
    from spikelib.training.metrics import METRICS
    from spikelib.training.run import load_run

    run = load_run(args.checkpoint, data_overrides=args.data or (), eval_batch_size=args.batch_size)
    device = rank_device(args.device)
    model = run.model.to(device)
    dataset = run.dataset(args.split)
    loader = DataLoader(dataset, batch_size=run.config.data.eval_batch_size, collate_fn=run.bundle.collate)
    loss = build_loss(run.config.loss.name, run.config.loss.args, run.config.train.label_smoothing)
    metrics = evaluate_loader(model, loader, loss=loss, metrics={"acc": METRICS["acc"]}, device=device,
                              dtype=getattr(torch, run.config.train.dtype), context=run.eval_context,
                              progress=args.progress and sys.stderr.isatty(), desc=f"eval {args.split}",
                              max_batches=args.max_batches, layout=str(run.info.get("layout", "time")))
    d = run.config.delays
    result = {"checkpoint": str(args.checkpoint), "model": run.model_name, "dataset": run.config.data.dataset,
              "split": args.split, **metrics, "rounded_delays": d is not None and d.eval == "rounded",
              "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib train`` and ``spikelib eval``."""
    train = subparsers.add_parser(
        "train", help="train from a YAML run configuration",
        description="Train from a YAML run configuration (sections data, model, loss, optim, schedule, train, "
                    "delays, stages, tiny; see spikelib.training.config). Writes config.yaml, last.pt, best.pt, "
                    "metrics.csv/json and result.json to --out and prints one line per epoch.")
    train.add_argument("config", nargs="?", default=None,
                       help="the YAML run configuration (with --resume: default --out/config.yaml)")
    train.add_argument("--out", default=None, help="run folder (default runs/<config name>-<timestamp>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="processes (DDP through torch.distributed.run; gloo on CPU, nccl on GPU)")
    train.add_argument("--epochs", type=positive_int, default=None, help="override train.epochs")
    train.add_argument("--seed", type=non_negative_int, default=None, help="override train.seed")
    train.add_argument("--batch-size", type=positive_int, default=None, help="override data.batch_size (global)")
    train.add_argument("--lr", type=positive_float, default=None, help="override optim.lr")
    train.add_argument("--device", default=None, help="override train.device (auto, cpu, cuda, cuda:N)")
    train.add_argument("--max-batches", type=positive_int, default=None,
                       help="at most this many batches per epoch and per evaluation (train.max_batches)")
    train.add_argument("--tiny", action="store_true",
                       help="apply the configuration's 'tiny' section (its documented CPU-sized variant)")
    train.add_argument("--fast-dev-run", action="store_true",
                       help=f"smoke test: --tiny, one epoch per stage, {FAST_DEV_BATCHES} batches, into a temporary "
                            f"folder unless --out is given")
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override any configuration key (repeatable), e.g. --set schedule.name=cosine; the value "
                            "is read as the key's type (numbers, lists like [64,64], null)")
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    train.set_defaults(func=_train)

    ev = subparsers.add_parser(
        "eval", help="evaluate a checkpoint on its dataset",
        description="Evaluate a checkpoint (last.pt or best.pt of a run) on a split of the dataset named in its "
                    "configuration; prints JSON with loss, acc and count.")
    ev.add_argument("checkpoint", help="a checkpoint written by spikelib train")
    ev.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split (default test)")
    ev.add_argument("--data", action="append", metavar="KEY=VALUE",
                    help="change a data option of the stored configuration (repeatable), e.g. --data root=/data/shd")
    ev.add_argument("--batch-size", type=positive_int, default=None, help="evaluation batch size")
    ev.add_argument("--max-batches", type=positive_int, default=None, help="evaluate at most this many batches")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    ev.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    ev.set_defaults(func=_eval)
