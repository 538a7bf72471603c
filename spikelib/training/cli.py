"""``spikelib train CONFIG.yaml`` and ``spikelib eval CHECKPOINT``.

``train`` validates the YAML run configuration (:mod:`spikelib.training.config`), applies the command-line overrides
and runs :class:`~spikelib.training.trainer.Trainer` into ``--out`` (default ``runs/<config name>-<stamp>``);
``--resume`` continues the run in ``--out`` from its ``last.pt``. ``--nproc N`` starts N processes through
``torch.distributed.run`` (torchrun) running this same command; ``torchrun ... -m spikelib train ...`` works as well
(then pass ``--out``). ``eval`` loads a checkpoint (``weights_only=True``), rebuilds its model and dataset from the
configuration stored in it (``--data key=value`` changes data options, e.g. the folder) and prints loss and accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import List

from spikelib.cli import new_run_dir, non_negative_int, positive_float, positive_int

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _overrides(args: argparse.Namespace) -> List[str]:
    out = list(args.set or [])
    for flag, key in (("epochs", "train.epochs"), ("seed", "train.seed"), ("batch_size", "data.batch_size"),
                      ("lr", "optim.lr"), ("device", "train.device")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def _launch(args: argparse.Namespace, run_dir: Path) -> int:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "spikelib"] + (["-v"] if args.verbose else []) + ["train", str(args.config), "--out", str(run_dir)]
    if args.resume:
        cmd.append("--resume")
    if not args.progress:
        cmd.append("--no-progress")
    for item in _overrides(args):
        cmd += ["--set", item]
    logger.info("launching %s", " ".join(cmd))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    return subprocess.call(cmd, env=env)


def _train(args: argparse.Namespace) -> int:
    from spikelib.training.config import ConfigError, load_config
    from spikelib.training.trainer import Trainer

    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.resume:
        if args.out is None:
            print("error: --resume needs --out RUN_DIR (the folder holding last.pt)", file=sys.stderr)
            return 2
        run_dir = Path(args.out)
        if not (run_dir / "last.pt").is_file():
            print(f"error: --resume: {run_dir / 'last.pt'} does not exist", file=sys.stderr)
            return 2
    elif args.out is not None:
        run_dir = Path(args.out)
        if (run_dir / "last.pt").exists() and not under_torchrun:
            print(f"error: {run_dir} already holds a run (last.pt); pass --resume or another --out", file=sys.stderr)
            return 2
    elif under_torchrun:
        print("error: under torchrun pass --out RUN_DIR (every process must write to the same folder)",
              file=sys.stderr)
        return 2
    else:
        run_dir = new_run_dir(Path("runs"), Path(args.config).stem)
    if args.nproc > 1:
        if under_torchrun:
            print("error: --nproc is for a plain start; under torchrun leave it out", file=sys.stderr)
            return 2
        run_dir.mkdir(parents=True, exist_ok=True)
        return _launch(args, run_dir)
    from spikelib.training.checkpoint import CheckpointError
    from spikelib.training.distributed import cleanup

    try:
        result = Trainer(config, run_dir, resume=args.resume, progress=args.progress).fit()
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    if int(os.environ.get("RANK", "0")) == 0:
        parts = [f"best epoch {result['best']['epoch']}"]
        for key in ("val", "test"):
            if key in result:
                parts.append(f"{key} acc {result[key]['acc']:.1%} (loss {result[key]['loss']:.4f})")
        print(f"{run_dir}: " + ", ".join(parts))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from spikelib.training.checkpoint import CheckpointError, load_checkpoint, load_model_state
    from spikelib.training.config import ConfigError, apply_overrides, parse_config
    from spikelib.training.datasets import build_datasets
    from spikelib.training.distributed import rank_device
    from spikelib.training.trainer import build_model, evaluate_model, split_train_val

    try:
        data = load_checkpoint(args.checkpoint)
        raw = apply_overrides(data["config"], [f"data.{item}" for item in (args.data or [])])
        if args.batch_size is not None:
            raw["data"]["eval_batch_size"] = args.batch_size
        config = parse_config(raw)
        bundle = build_datasets(config.data.dataset, config.train.seed, **config.data.args)
        model = build_model(config, bundle.info)
        load_model_state(model, data["model"], data["model_name"], str(args.checkpoint))
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = rank_device(args.device)
    model.to(device)
    if args.split == "test":
        dataset = bundle.test
    else:
        train, val = split_train_val(bundle.train, config.data.val_fraction, config.train.seed)
        dataset = train if args.split == "train" else val
        if dataset is None:
            print("error: --split val: the run had no validation split (data.val_fraction = 0)", file=sys.stderr)
            return 2
    loader = DataLoader(dataset, batch_size=config.data.eval_batch_size, collate_fn=bundle.collate)
    rounded = config.delays is not None and config.delays.eval == "rounded"
    if rounded:
        from spikelib.layers.delay_schedule import rounded_delays

        context = rounded_delays(model)
    else:
        import contextlib

        context = contextlib.nullcontext()
    with context:
        metrics = evaluate_model(model, loader, device, progress=args.progress and sys.stderr.isatty(),
                                 desc=f"eval {args.split}")
    result = {"checkpoint": str(args.checkpoint), "model": data["model_name"], "dataset": config.data.dataset,
              "split": args.split, **metrics, "rounded_delays": rounded, "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib train`` and ``spikelib eval``."""
    train = subparsers.add_parser(
        "train", help="train from a YAML run configuration",
        description="Train from a YAML run configuration (sections data, model, optim, schedule, train; see "
                    "spikelib.training.config). Writes config.yaml, last.pt, best.pt, metrics.csv/json and "
                    "result.json to --out.")
    train.add_argument("config", help="the YAML run configuration")
    train.add_argument("--out", default=None, help="run folder (default runs/<config name>-<timestamp>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="processes (DDP through torch.distributed.run; gloo on CPU, nccl on GPU)")
    train.add_argument("--epochs", type=positive_int, default=None, help="override train.epochs")
    train.add_argument("--seed", type=non_negative_int, default=None, help="override train.seed")
    train.add_argument("--batch-size", type=positive_int, default=None, help="override data.batch_size (global)")
    train.add_argument("--lr", type=positive_float, default=None, help="override optim.lr")
    train.add_argument("--device", default=None, help="override train.device (auto, cpu, cuda, cuda:N)")
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override any configuration key (repeatable), e.g. --set schedule.name=cosine")
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
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    ev.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    ev.set_defaults(func=_eval)
