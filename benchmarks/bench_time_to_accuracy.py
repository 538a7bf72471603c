"""Time to accuracy: the SNN-delays SHD recipe trained by spikelib and by the authors' own training loop, on the same
binned full-size synthetic Heidelberg set, for the same number of epochs (CPU).

* Data: ``spikelib data synth-heidelberg --speakers 52 --test-speakers 12 --repeats 10`` (SHD's size: 8,000 training
  and 2,400 test samples from 40 and 12 synthetic speakers), generated once into ``--data`` (about half an hour on 2
  cores; a second run finds it). Both implementations get the same tensors: :class:`spikelib.data.SHDDataset` with the
  recipe's binning (``configs/shd_delays.yaml``: 10 ms frames from each sample's first spike, 700 -> 140 channels by
  sums of 5 neighbours, each batch zero-padded to its longest sample).
* spikelib: :class:`spikelib.training.Trainer` on ``configs/shd_delays.yaml`` as a user runs it, with
  ``train.epochs = E``, ``delays.final_epoch = E // 4`` and the data root set; ``data.val_fraction = 0`` and the
  test set evaluated after every epoch (with rounded delays), as the reference does for SHD.
* reference: ``Model.train_model`` of Thvnvtos/SNN-delays (``model.py``; :mod:`refcode` pins the commit) with their
  ``best_config_SHD.Config`` at ``epochs = E`` (``final_epoch``, ``t_max_w`` and ``t_max_pos`` recomputed as the file
  derives them; wandb off), unchanged: their ``main.py`` for SHD passes the test loader as ``valid_loader``, evaluated
  after every epoch by their ``eval_model`` (rounded positions, DCLS ``version='max'``). Their loaders are replaced by
  ``DataLoader(batch_size=256, shuffle=True)`` over spikelib's binned samples (``num_workers=0`` on both sides).

The two runs are sequential fresh processes (never side by side). By default the initial weights and sample orders
come from each implementation's own seeded generators (same distributions, different draws), so the accuracy curves
differ by the luck of one draw; ``--init reference`` gives spikelib the reference's initial weights, positions and
BatchNorm state (their ``init_model``), so only the sample order and the dropout masks differ. Recorded per epoch:
test accuracy, the wall time of the training part and of the evaluation. Accuracies are compared per sample on both
sides: the reference's ``eval_model`` returns the mean of its per-batch accuracies, which weighs the smaller last test
batch (96 of 2,400 samples, all from the last test speaker, in the test set's order) 2.5 times as much as a sample
elsewhere, so the wrapper also notes each batch's size beside their ``calc_metric`` (their code unchanged) and
counts the correct samples; their own figure is kept as ``test_acc_reported``.

    python benchmarks/bench_time_to_accuracy.py --data /scratch/shd_full --epochs 5  # full size (about 27 min)
    python benchmarks/bench_time_to_accuracy.py --data /scratch/shd_full --epochs 5 --seed 1  # another pair of draws
    python benchmarks/bench_time_to_accuracy.py --data DIR --quick                   # smoke test: 2 epochs, 512 samples

``--seed N`` seeds both runs (spikelib's ``train.seed``, the reference's ``config.seed``, which their ``set_seed``
applies to the initial weights and to the training loop), so runs at several seeds show how far each implementation's
accuracy moves from one draw to the next: the noise the two curves are compared against.

Writes ``results/time_to_accuracy_cpu.json`` (with ``--init reference``:
``results/time_to_accuracy_reference_init_cpu.json``; with ``--seed N`` other than 0, ``_seedN`` before ``_cpu``).
Target of the issue: accuracy per epoch within noise of each other and wall time at least 3x less.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import refcode  # noqa: E402

NAME = "time_to_accuracy_cpu"
INIT_REFERENCE_NAME = "time_to_accuracy_reference_init_cpu"  # --init reference
SCRIPT = Path(__file__).resolve()
CONFIG = common.REPO_ROOT / "configs" / "shd_delays.yaml"
FULL_SET = ("--speakers", "52", "--test-speakers", "12", "--repeats", "10")
IMPLS = ("spikelib", "reference")
BATCH = 256
BINNING = dict(bin_ms=10, channels_out=140, max_time=None, time_origin="first_spike")


def binned_sets(data: Path, limit: Optional[int]):
    """The recipe's binned training and test sets (the first ``limit`` samples of each with ``--limit``)."""
    from torch.utils.data import Subset

    from spikelib.training.datasets import build_datasets

    bundle = build_datasets("shd", 0, root=str(data), **BINNING)
    train, test = bundle.train, bundle.test
    if limit:
        train, test = Subset(train, range(min(limit, len(train)))), Subset(test, range(min(limit, len(test))))
    return train, test


# ------------------------------------------------------------------------------------------------------ spikelib
def run_spikelib(args: argparse.Namespace) -> Dict[str, Any]:
    """configs/shd_delays.yaml through :class:`spikelib.training.Trainer`; per-epoch test accuracy and times."""
    from spikelib.training import Callback, DatasetBundle, Trainer, load_config
    from spikelib.data import pad_collate

    start = time.perf_counter()
    overrides = [f"data.root={args.data}", "data.val_fraction=0", f"data.batch_size={BATCH}",
                 f"train.epochs={args.epochs}", f"delays.final_epoch={args.epochs // 4}", "train.device=cpu",
                 "train.progress=false", "train.evaluate_test=false", "train.select=last", f"train.seed={args.seed}"]
    model = None
    if args.init == "reference":  # their initial weights, positions and BatchNorm state (kept: delays.init=model)
        from spikelib.models import load_reference_checkpoint
        from spikelib.training.build import build_model

        overrides.append("delays.init=model")
        config = load_config(CONFIG, overrides)
        model = build_model(config, {"n_classes": 20, "n_channels": 140})
        load_reference_checkpoint(model, reference_model(args).state_dict())
    else:
        config = load_config(CONFIG, overrides)
    datasets = None
    if args.limit:  # smoke test: the same subsets as the reference gets
        train, test = binned_sets(args.data, args.limit)
        datasets = DatasetBundle(train, test, {"n_classes": 20, "n_channels": 140}, collate=pad_collate)

    class Clock(Callback):
        def __init__(self) -> None:
            self.marks: List[float] = []

        def on_train_epoch_end(self, trainer: Any) -> None:
            self.marks.append(time.perf_counter())

        def on_epoch_end(self, trainer: Any) -> None:
            self.marks.append(time.perf_counter())

    clock = Clock()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir) / "run", monitor=("test",), callbacks=[clock], datasets=datasets,
                          model=model)
        trainer.fit()
    total = time.perf_counter() - start
    epochs = []
    for k, row in enumerate(trainer.history):
        train_end, epoch_end = clock.marks[2 * k], clock.marks[2 * k + 1]
        epochs.append({"epoch": k + 1, "test_acc": row["test_acc"], "test_loss": row["test_loss"],
                       "train_loss": row["train_loss"], "train_acc": row.get("train_acc"),
                       "train_s": row["seconds"], "eval_s": epoch_end - train_end, "elapsed_s": epoch_end - start})
    return {"epochs": epochs, "total_s": total}


# ----------------------------------------------------------------------------------------------------- reference
def reference_model(args: argparse.Namespace) -> Any:
    """Their ``SnnDelays`` from ``best_config_SHD.Config`` at ``args.epochs`` (``final_epoch``, ``t_max_w`` and
    ``t_max_pos`` recomputed as the file derives them; wandb off), initialised by their ``init_model``."""
    folder = refcode.checkout("SNN-delays", args)
    refcode.stand_in("wandb")
    refcode.stand_in("datasets", Augs=_NoAugs)
    sys.path.insert(0, str(folder))
    try:
        config = importlib.import_module("best_config_SHD").Config
        snn_delays = importlib.import_module("snn_delays")
    except Exception as exc:  # their imports may fail on other versions of their dependencies
        raise refcode.RefUnavailable(f"cannot import SNN-delays ({type(exc).__name__}: {exc})") from exc
    config.epochs = args.epochs
    config.final_epoch = args.epochs // 4
    config.t_max_w = config.t_max_pos = args.epochs
    config.use_wandb = False
    config.seed = args.seed  # their set_seed(config.seed) at model construction and at the start of train_model
    return snn_delays.SnnDelays(config())


class _NoAugs:
    """Stand-in for their ``datasets.Augs`` (``config.augment`` is False: built by train_model, never called)."""

    def __init__(self, config: Any) -> None:
        self.config = config


def run_reference(args: argparse.Namespace) -> Dict[str, Any]:
    """Their ``Model.train_model``, unchanged, on spikelib's binned samples; per-epoch test accuracy and times."""
    import torch
    from torch.utils.data import DataLoader

    from spikelib.data import pad_collate

    start = time.perf_counter()
    model = reference_model(args)
    train, test = binned_sets(args.data, args.limit)

    def collate(batch):  # their loaders yield (x [B, T, C], y, lengths) and use the first two
        x, y = pad_collate(batch)
        return x, y, None

    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True, collate_fn=collate)
    test_loader = DataLoader(test, batch_size=BATCH, collate_fn=collate)
    marks: List[Dict[str, float]] = []
    real_eval, real_metric = model.eval_model, model.calc_metric
    scored: List[Tuple[float, int]] = []  # (their batch accuracy, batch size) of each test batch while evaluating
    evaluating = [False]

    def calc_metric(output, y):  # their metric, unchanged; during evaluation its batch size is noted beside it
        metric = real_metric(output, y)
        if evaluating[0]:
            scored.append((float(metric), int(y.shape[0])))
        return metric

    def eval_model(loader, device):  # timestamps around their per-epoch evaluation
        scored.clear()
        evaluating[0] = True
        t0 = time.perf_counter()
        try:
            loss, metric = real_eval(loader, device)
        finally:
            evaluating[0] = False
        marks.append({"train_end": t0, "eval_end": time.perf_counter(), "loss": float(loss),
                      "acc_reported": float(metric), "acc": per_sample_accuracy(scored)})
        return loss, metric

    model.calc_metric = calc_metric
    model.eval_model = eval_model
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # their checkpoints (best models, eval_model's temporary copy) go to the working directory
        try:
            model.train_model(train_loader, test_loader, None, torch.device("cpu"))
        finally:
            os.chdir(cwd)
    total = time.perf_counter() - start
    epochs, previous = [], start
    for k, m in enumerate(marks):
        epochs.append({"epoch": k + 1, "test_acc": m["acc"], "test_acc_reported": m["acc_reported"],
                       "test_loss": m["loss"],
                       "train_s": m["train_end"] - previous,
                       "eval_s": m["eval_end"] - m["train_end"], "elapsed_s": m["eval_end"] - start})
        previous = m["eval_end"]
    return {"epochs": epochs, "total_s": total,
            "note": "the first epoch's train_s includes binning the data set and building the model; test_acc is "
                    "per sample (their per-batch accuracies weighted by batch size), test_acc_reported is the mean "
                    "of their per-batch accuracies as their eval_model returns it"}


def per_sample_accuracy(scored: Sequence[Tuple[float, int]]) -> float:
    """Accuracy over all samples from ``(batch accuracy, batch size)`` pairs: each batch's correct count is its
    accuracy times its size (an integer up to float rounding, so it is rounded)."""
    total = sum(n for _, n in scored)
    if total == 0:
        raise RuntimeError("their eval_model scored no test batch")
    return sum(round(acc * n) for acc, n in scored) / total


# ---------------------------------------------------------------------------------------------------- driver
def ensure_data(args: argparse.Namespace) -> None:
    """Generate the full-size set into ``--data`` unless its files are there."""
    if (args.data / "shd_train.h5").exists() and (args.data / "shd_test.h5").exists():
        return
    if not args.generate:
        raise SystemExit(f"error: --data {args.data} has no shd_train.h5/shd_test.h5; generate them with "
                         f"`spikelib data synth-heidelberg --out {args.data} {' '.join(FULL_SET)}` or pass --generate")
    cmd = [sys.executable, "-m", "spikelib", "data", "synth-heidelberg", "--out", str(args.data), *FULL_SET,
           "--no-progress"]
    print("generating:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def data_summary(data: Path) -> Dict[str, Any]:
    import h5py

    out: Dict[str, Any] = {"folder": str(data)}
    for split in ("train", "test"):
        with h5py.File(data / f"shd_{split}.h5", "r") as f:
            out[f"n_{split}"] = int(f["labels"].shape[0])
    return out


def run(args: argparse.Namespace) -> Dict[str, Any]:
    print(f"== time to accuracy: SNN-delays SHD recipe, {args.epochs} epochs, batch {BATCH}"
          f"{'  [QUICK: smoke test sizes, not a result]' if args.quick else ''}; loadavg {common.loadavg()}",
          flush=True)
    payload: Dict[str, Any] = {"data": data_summary(args.data), "runs": {}}
    for impl in args.impls:
        t0 = time.perf_counter()
        result = common.run_probe(SCRIPT, [*child_args(args), "--impl", impl], {}, timeout=6 * 3600)
        result["wall_s"] = time.perf_counter() - t0
        result["loadavg_after"] = common.loadavg()
        payload["runs"][impl] = result
        if "error" in result:
            print(f"{impl}: {result['error']}")
            continue
        for e in result["epochs"]:
            print(f"  {impl} epoch {e['epoch']}: test acc {100 * e['test_acc']:.2f}%, train {e['train_s']:.1f} s, "
                  f"eval {e['eval_s']:.1f} s", flush=True)
        print(f"{impl}: {result['total_s']:.1f} s in all; loadavg {result['loadavg_after']}", flush=True)
    ours, ref = payload["runs"].get("spikelib", {}), payload["runs"].get("reference", {})
    if "total_s" in ours and "total_s" in ref:
        payload["speedup_total"] = ref["total_s"] / ours["total_s"]
        train = lambda r: sum(e["train_s"] for e in r["epochs"][1:])  # noqa: E731  (epoch 1 includes the set-up)
        payload["speedup_train_epochs_2_on"] = train(ref) / train(ours) if len(ours["epochs"]) > 1 else None
        payload["accuracy_diff_per_epoch"] = [100 * (a["test_acc"] - b["test_acc"])
                                              for a, b in zip(ours["epochs"], ref["epochs"])]
        print(f"spikelib {payload['speedup_total']:.2f}x the reference in wall time (target 3x)")
    return payload


def child_args(args: argparse.Namespace) -> List[str]:
    out = ["--data", str(args.data), "--epochs", str(args.epochs), "--init", args.init, "--seed", str(args.seed),
           "--refs", str(args.refs), "--git-url", args.git_url]
    if args.limit:
        out += ["--limit", str(args.limit)]
    return out + (["--quick"] if args.quick else [])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with (or for) the full-size set's shd_*.h5")
    p.add_argument("--generate", action="store_true", help="generate the set into --data if it is missing")
    p.add_argument("--epochs", type=int, default=None, help="epochs of both runs (default 10; --quick: 2)")
    p.add_argument("--init", choices=("own", "reference"), default="own",
                   help="spikelib's initial weights: its own seeded draw (default) or the reference's (their "
                        "init_model at --seed), so that only the sample order and dropout masks differ")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of both runs: spikelib's train.seed and the reference's config.seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="use the first N training and test samples only")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 epochs on 512 samples (not a result)")
    p.add_argument("--only", action="append", default=[], help="spikelib or reference (default both)")
    p.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc settings as they are")
    p.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    refcode.add_arguments(p)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 10
    if args.epochs < 1:
        p.error(f"--epochs: expected at least 1, got {args.epochs}")
    if args.seed < 0:
        p.error(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.quick and args.limit is None:
        args.limit = 512
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit: expected at least 1, got {args.limit}")
    only = [o for item in args.only for o in item.split(",") if o]
    bad = [o for o in only if o not in IMPLS]
    if bad:
        p.error(f"--only: expected spikelib or reference, got {', '.join(bad)}")
    args.impls = tuple(i for i in IMPLS if not only or i in only)
    return args


def result_name(init: str, seed: int) -> str:
    """The result file's stem: ``time_to_accuracy[_reference_init][_seedN]_cpu`` (no suffix for seed 0)."""
    stem = NAME if init == "own" else INIT_REFERENCE_NAME
    return stem if seed == 0 else stem.replace("_cpu", f"_seed{seed}_cpu")


def main(argv: Optional[Sequence[str]] = None, command: Optional[str] = None) -> int:
    args = parse_args(argv)
    if args.impl:
        result = run_spikelib(args) if args.impl == "spikelib" else run_reference(args)
        common.emit_probe(result)
        return 0
    ensure_data(args)
    name = result_name(args.init, args.seed)
    title = "Time to accuracy (CPU): SNN-delays SHD recipe, spikelib vs the authors' training loop" + (
        "" if args.init == "own" else ", spikelib from the reference's initial weights") + (
        f", seed {args.seed}" if args.seed else "")
    base = {"benchmark": name, "title": title, "quick": bool(args.quick), "command": command or common.command_line(),
            "machine": common.machine_info(not args.no_malloc_tuning),
            "config": {"epochs": args.epochs, "batch_size": BATCH, "spikelib_init": args.init, "seed": args.seed,
                       "limit": args.limit,
                       **BINNING,
                       "data_command": "spikelib data synth-heidelberg " + " ".join(FULL_SET),
                       "reference": f"Thvnvtos/SNN-delays@{refcode.REPOS['SNN-delays'][1][:12]}"}}
    payload = {**base, **run(args)}
    path = common.write_json(name, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
