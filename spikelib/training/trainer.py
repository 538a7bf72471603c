"""The trainer behind ``spikelib train``: a validated :class:`~spikelib.training.config.RunConfig` in, a run folder out.

Run folder: ``config.yaml`` (the resolved configuration), ``last.pt`` (resumable checkpoint, see
:mod:`spikelib.training.checkpoint`), ``best.pt`` (weights with the best validation metric), ``metrics.csv`` and
``metrics.json`` (one row per epoch), ``result.json`` (final validation/test metrics of the best model) and, when
asked, ``tensorboard/``.

Per batch: :func:`spikelib.reset`, forward on time-first ``[T, B, C]`` (under ``torch.autocast`` when mixed precision
is on), cross-entropy (mean over the batch), backward (through a ``GradScaler`` for float16), optional gradient-norm
clipping, optimiser step, schedule step. Validation data is a seeded split of the TRAINING set; the best model (by
``train.select``) is evaluated on the test split at the end.

Determinism and resume: torch/NumPy/Python are seeded from ``train.seed``; the training order is a function of
``(seed, epoch)`` only (:class:`~spikelib.training.distributed.ResumableDistributedSampler`), the DataLoader has its
own generator (re-seeded every epoch, so creating an iterator draws nothing from the global generator) and workers are
seeded by ``worker_init_fn``. A checkpoint holds the position inside the epoch and every generator's state, so on the
CPU with ``num_workers: 0`` a run killed at any point and resumed from its last checkpoint ends with the same weights
as an uninterrupted run (tests/test_resume_kill.py). Under torchrun, rank 0 alone logs, shows progress and writes
files; metrics are summed over ranks.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from spikelib.neurons import reset
from spikelib.training import distributed as D
from spikelib.training.atomic import atomic_write_text
from spikelib.training.checkpoint import (CheckpointError, check_compatible, get_rng_state, load_checkpoint,
                                          load_model_state, optional_state, save_checkpoint, set_rng_state)
from spikelib.training.config import ConfigError, RunConfig
from spikelib.training.datasets import DatasetBundle, build_datasets, check_kwargs
from spikelib.training.loop import to_time_first
from spikelib.training.metrics import TensorBoardLogger, write_metrics
from spikelib.training.schedules import base_lr, build_scheduler

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "seed_everything", "worker_init_fn", "build_model", "split_train_val", "evaluate_model"]

#: constructor arguments filled from the data when a model section leaves them out
_FROM_DATA = {"in_features": "n_channels", "num_input": "n_channels", "out_features": "n_classes",
              "num_classes": "n_classes"}


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader workers: seed NumPy and ``random`` from the worker's torch seed (set from the loader generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_model(config: RunConfig, info: Dict[str, Any]) -> nn.Module:
    """``get_model(model.name, **model.args)``, with in/out sizes filled from the data when left out."""
    from spikelib.models import get_model, list_models
    from spikelib.models.registry import _MODELS

    name = config.model.name
    if name not in _MODELS:
        raise ConfigError(f"model.name: unknown model {name!r}; known: {', '.join(list_models())}")
    args = dict(config.model.args)
    params = inspect.signature(_MODELS[name]).parameters
    check_kwargs(_MODELS[name], args, "model")
    accepts_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, source in _FROM_DATA.items():
        if key not in args and source in info and (key in params or (accepts_all and _takes(name, key))):
            args[key] = int(info[source])
    try:
        return get_model(name, **args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {name!r} rejected its arguments: {exc}") from exc


def _takes(name: str, key: str) -> bool:
    """Whether the class behind a ``**kwargs`` registry entry takes ``key`` (the built-in ones)."""
    from spikelib.models import ELMClassifier, SNNDelays, SpikingMLP

    cls = {"spiking_mlp": SpikingMLP, "snn_delays": SNNDelays, "elm_classifier": ELMClassifier}.get(name)
    return cls is not None and key in inspect.signature(cls.__init__).parameters


def split_train_val(train: Any, fraction: float, seed: int) -> tuple:
    """A seeded split of the training set into (train, val) subsets; val has ``round(fraction * n)`` samples."""
    n = len(train)
    n_val = int(round(fraction * n))
    if n_val == 0:
        return train, None
    if n_val >= n:
        raise ConfigError(f"data.val_fraction={fraction} leaves no training samples out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return Subset(train, sorted(perm[n_val:])), Subset(train, sorted(perm[:n_val]))


def _batch(batch: Any, device: torch.device) -> tuple:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("a loader must yield (x, y) pairs with x: [B, T, C] and y: [B]")
    x, y = batch
    x = to_time_first(x.to(device=device, dtype=torch.float32, non_blocking=True))
    return x, y.to(device=device, dtype=torch.long, non_blocking=True)


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: Any, device: torch.device, autocast: Callable = contextlib.nullcontext,
                   progress: bool = False, desc: str = "eval") -> Dict[str, float]:
    """Summed loss/correct/count over ``loader`` reduced over ranks: ``{"loss", "acc", "count"}``."""
    was_training = model.training
    model.eval()
    sums = [0.0, 0.0, 0.0]
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True, file=sys.stderr):
            x, y = _batch(batch, device)
            if y.numel() == 0:
                continue
            reset(model)
            with autocast():
                logits = model(x)
            sums[0] += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
            sums[1] += float((logits.argmax(1) == y).sum())
            sums[2] += float(y.numel())
    finally:
        reset(model)
        model.train(was_training)
    loss, correct, count = D.all_reduce_sum(sums, device)
    if count == 0:
        raise ValueError(f"{desc}: the loader yielded no samples")
    return {"loss": loss / count, "acc": correct / count, "count": int(count)}


class Trainer:
    """Train one run (see the module docstring).

    Args:
        config: the validated run configuration.
        run_dir: the run folder (created); with ``resume=True`` it must hold ``last.pt``.
        resume: continue from ``run_dir/last.pt``.
        progress: override ``train.progress`` (bars are shown only on a terminal and on rank 0).
        callbacks: called as ``fn(trainer, event)`` with ``event`` in ``"batch_end"``, ``"epoch_end"``,
            ``"checkpoint"`` (rank 0 only for ``"checkpoint"``).
        datasets: a prebuilt :class:`DatasetBundle` instead of ``config.data`` (tests, the demo).
        model: a prebuilt model instead of ``get_model(config.model...)`` (it must be what the config describes, or
            checkpoints will not resume).
    """

    def __init__(self, config: RunConfig, run_dir: Union[str, Path], *, resume: bool = False,
                 progress: Optional[bool] = None, callbacks: Sequence[Callable[["Trainer", str], None]] = (),
                 datasets: Optional[DatasetBundle] = None, model: Optional[nn.Module] = None) -> None:
        self.config = config
        self._model = model
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.callbacks = list(callbacks)
        self._datasets = datasets
        want = config.train.progress if progress is None else progress
        self.epoch = 0
        self.batch = 0
        self.global_step = 0
        self.running = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
        self.best: Dict[str, Any] = {"metric": None, "epoch": None}
        self.history: List[Dict[str, Any]] = []
        self.dist = D.DistInfo()
        self.device = torch.device("cpu")
        self.progress = bool(want) and sys.stderr.isatty()

    # ------------------------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        cfg = self.config
        device_type = "cuda" if cfg.train.device.startswith("cuda") or (
            cfg.train.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.dist = D.init_from_env(device_type)
        self.device = D.rank_device(cfg.train.device, self.dist)
        self.progress = self.progress and self.dist.is_main
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.train.seed)
        bundle = self._datasets or build_datasets(cfg.data.dataset, cfg.train.seed, **cfg.data.args)
        self.info = dict(bundle.info)
        self.batch_mix = bundle.batch_mix
        train, val = split_train_val(bundle.train, cfg.data.val_fraction, cfg.train.seed)
        self.datasets = {"train": train, "val": val, "test": bundle.test}
        if len(train) == 0:
            raise ConfigError(f"data.dataset {cfg.data.dataset!r}: the training set is empty")
        self.local_batch = D.local_batch_size(cfg.data.batch_size, self.dist)
        self.sampler = D.ResumableDistributedSampler(train, self.dist.world_size, self.dist.rank, shuffle=True,
                                                     seed=cfg.train.seed)
        self.loader_generator = torch.Generator()
        loader_kw = dict(num_workers=cfg.data.num_workers, worker_init_fn=worker_init_fn,
                         pin_memory=self.device.type == "cuda", persistent_workers=False)
        if bundle.collate is not None:
            loader_kw["collate_fn"] = bundle.collate
        self.train_loader = DataLoader(train, batch_size=self.local_batch, sampler=self.sampler,
                                       generator=self.loader_generator, **loader_kw)
        self.eval_loaders = {}
        for key in ("val", "test"):
            ds = self.datasets[key]
            if ds is not None and len(ds) > 0:
                sampler = D.ShardSampler(len(ds), self.dist.world_size, self.dist.rank)
                self.eval_loaders[key] = DataLoader(ds, batch_size=cfg.data.eval_batch_size, sampler=sampler,
                                                    **loader_kw)
        self.steps_per_epoch = -(-self.sampler.num_samples // self.local_batch)
        self.model = (self._model if self._model is not None else build_model(cfg, self.info)).to(self.device)
        self.model_name = cfg.model.name
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        lr = base_lr(cfg.optim, cfg.schedule)
        self.sigma_schedule = None
        self.optimizer = self._optimizer(lr)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, lr, self.steps_per_epoch, cfg.train.epochs,
                                         delays=cfg.delays)
        amp = cfg.train.amp
        self.amp = (self.device.type == "cuda") if amp == "auto" else bool(amp)
        self.amp_dtype = getattr(torch, cfg.train.amp_dtype)
        use_scaler = self.amp and self.device.type == "cuda" and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.tb = TensorBoardLogger(self.run_dir) if cfg.train.tensorboard and self.dist.is_main else None
        if self.resume:
            self._load_resume()
        if self.dist.is_main:  # the configuration in force (a resumed run may have changed e.g. train.epochs)
            atomic_write_text(self.run_dir / "config.yaml", _to_yaml(cfg.to_dict()))

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        o = self.config.optim
        params: Any = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.delays is not None:
            from spikelib.layers.delay_schedule import SigmaSchedule, delay_layers, split_delay_parameters

            layers = delay_layers(self.model)
            if not layers:
                raise ConfigError(f"delays: model {self.config.model.name!r} has no delay layers (DelayedLinear); "
                                  f"remove the delays section")
            d = self.config.delays
            self.sigma_schedule = SigmaSchedule(layers[0].max_delay, self.config.train.epochs, d.sig_init,
                                                d.sig_final, d.final_epoch)
            groups = split_delay_parameters(self.model)
            # always three groups (possibly empty) so the schedule's per-group factors line up
            params = [{"params": groups.weights, "weight_decay": o.weight_decay},
                      {"params": groups.no_decay, "weight_decay": 0.0},
                      {"params": groups.delays, "weight_decay": 0.0, "lr": d.lr}]
        if o.nesterov and o.name != "sgd":
            raise ConfigError(f"optim.nesterov: Nesterov momentum is an SGD option; optim.name is {o.name!r}")
        if o.name == "sgd":
            if o.nesterov and o.momentum <= 0:
                raise ConfigError("optim.nesterov: Nesterov momentum needs optim.momentum > 0")
            return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                   nesterov=o.nesterov)
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}[o.name]
        return cls(params, lr=lr, betas=tuple(o.betas), weight_decay=o.weight_decay)

    def _eval_context(self):
        if self.config.delays is not None and self.config.delays.eval == "rounded":
            from spikelib.layers.delay_schedule import rounded_delays

            return rounded_delays(self.model)
        return contextlib.nullcontext()

    def autocast(self):
        """The mixed-precision context of this run (a no-op when off)."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> Dict[str, Any]:
        """Everything needed to continue exactly where the run stands now."""
        return {
            "model_name": self.model_name, "config": self.config.to_dict(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": optional_state(self.scaler), "epoch": self.epoch, "batch": self.batch,
            "global_step": self.global_step, "running": dict(self.running), "best": dict(self.best),
            "history": [dict(h) for h in self.history], "rng": get_rng_state(), "world_size": self.dist.world_size,
            "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool))},
        }

    def save(self) -> None:
        """Write ``last.pt`` (rank 0)."""
        if self.dist.is_main:
            save_checkpoint(self.run_dir / "last.pt", self.checkpoint_payload())
            self._emit("checkpoint")

    def _load_resume(self) -> None:
        path = self.run_dir / "last.pt"
        if self.dist.is_main:  # temporary files left by a process killed mid-write
            for name in ("last.pt", "best.pt", "metrics.csv", "metrics.json", "result.json", "config.yaml"):
                for stale in self.run_dir.glob(f".{name}.*.tmp"):
                    stale.unlink(missing_ok=True)
        data = load_checkpoint(path)
        check_compatible(data, self.config.to_dict(), source=str(path))
        if data["model_name"] != self.model_name:
            raise CheckpointError(f"{path} holds model {data['model_name']!r}, this run builds {self.model_name!r}")
        load_model_state(self.model, data["model"], data["model_name"], str(path))
        try:
            self.optimizer.load_state_dict(data["optimizer"])
            self.scheduler.load_state_dict(data["scheduler"])
            if self.scaler is not None and data.get("scaler"):
                self.scaler.load_state_dict(data["scaler"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: optimiser/scheduler state does not fit this run: {exc}") from exc
        self.epoch, self.batch, self.global_step = int(data["epoch"]), int(data["batch"]), int(data["global_step"])
        self.running = {k: float(v) for k, v in data["running"].items()}
        self.best = dict(data["best"])
        self.history = [dict(h) for h in data["history"]]
        set_rng_state(data["rng"])
        logger.info("resumed %s at epoch %d, batch %d", path, self.epoch + 1, self.batch)

    # -------------------------------------------------------------------------------------------------- loop
    def _emit(self, event: str) -> None:
        for fn in self.callbacks:
            fn(self, event)

    def _train_step(self, batch: Any) -> None:
        cfg = self.config
        mixed = None
        if self.batch_mix is not None:
            xb, yb = batch
            xb, y_a, y_b, lam = self.batch_mix(xb, yb)
            batch = (xb, y_a)
            mixed = (y_b.to(self.device, torch.long), lam.to(self.device))
        x, y = _batch(batch, self.device)
        n_classes = self.info.get("n_classes")
        if n_classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            bad = int(y.max()) if int(y.max()) >= n_classes else int(y.min())
            raise ValueError(f"data.dataset {cfg.data.dataset!r}: label {bad} is out of range 0..{n_classes - 1}")
        reset(self.net)
        with self.autocast():
            logits = self.net(x)
        if mixed is None:
            loss = nn.functional.cross_entropy(logits.float(), y, label_smoothing=cfg.train.label_smoothing)
        else:
            from spikelib.data.augment import mix_cross_entropy

            loss = mix_cross_entropy(logits.float(), y, mixed[0], mixed[1])
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if cfg.optim.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.sigma_schedule is not None:
            from spikelib.layers.delay_schedule import clamp_delays_

            clamp_delays_(self.model)
        self.scheduler.step()
        n = float(y.numel())
        self.running["loss_sum"] += float(loss.detach()) * n
        self.running["correct"] += float((logits.detach().argmax(1) == y).sum())
        self.running["count"] += n

    def _better(self, metrics: Dict[str, Any]) -> bool:
        key = self.config.train.select
        value = metrics.get(key)
        if value is None:  # no validation split: the last epoch is the best
            return True
        if self.best["metric"] is None:
            return True
        return value > self.best["metric"] if key == "val_acc" else value < self.best["metric"]

    def _end_epoch(self, seconds: float) -> None:
        loss_sum, correct, count = D.all_reduce_sum(
            [self.running["loss_sum"], self.running["correct"], self.running["count"]], self.device)
        metrics: Dict[str, Any] = {"epoch": self.epoch + 1, "train_loss": loss_sum / max(count, 1),
                                   "train_acc": correct / max(count, 1), "lr": self.optimizer.param_groups[0]["lr"]}
        if self.sigma_schedule is not None:
            metrics["sigma"] = self.sigma_schedule(self.epoch)
        if "val" in self.eval_loaders:
            with self._eval_context():
                val = evaluate_model(self.model, self.eval_loaders["val"], self.device, self.autocast, self.progress,
                                     desc=f"val {self.epoch + 1}")
            metrics.update(val_loss=val["loss"], val_acc=val["acc"])
        metrics["seconds"] = seconds
        self.history.append(metrics)
        if self._better(metrics):
            self.best = {"metric": metrics.get(self.config.train.select), "epoch": self.epoch + 1}
            if self.dist.is_main:
                save_checkpoint(self.run_dir / "best.pt", {
                    "model_name": self.model_name, "config": self.config.to_dict(), "model": self.model.state_dict(),
                    "epoch": self.epoch + 1, "metrics": dict(metrics),
                    "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool))}})
        self.epoch += 1
        self.batch = 0
        self.running = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
        self.save()
        if self.dist.is_main:
            write_metrics(self.run_dir, self.history)
            if self.tb is not None:
                self.tb.log(metrics, self.epoch)
            logger.info("epoch %d/%d: %s", self.epoch, self.config.train.epochs,
                        ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch"))
        self._emit("epoch_end")

    def fit(self) -> Dict[str, Any]:
        """Train (or continue) to ``train.epochs``; returns the final result (also written to ``result.json``)."""
        self.tb = None
        try:
            self._setup()
            return self._fit()
        finally:
            if self.tb is not None:
                self.tb.close()

    def _fit(self) -> Dict[str, Any]:
        cfg = self.config
        every = cfg.train.checkpoint_every
        epochs = cfg.train.epochs
        bar_epochs = tqdm(total=epochs, initial=self.epoch, desc="epochs", disable=not self.progress,
                          dynamic_ncols=True, file=sys.stderr)
        while self.epoch < epochs:
            start = time.perf_counter()
            self.sampler.set_epoch(self.epoch)
            self.sampler.set_start(self.batch * self.local_batch)
            self.loader_generator.manual_seed(cfg.train.seed * 100003 + self.epoch)
            if self.sigma_schedule is not None:
                from spikelib.layers.delay_schedule import set_sigma_

                set_sigma_(self.model, self.sigma_schedule(self.epoch))
            self.net.train()
            bar = tqdm(self.train_loader, total=self.steps_per_epoch, initial=self.batch,
                       desc=f"epoch {self.epoch + 1}/{epochs}", disable=not self.progress, leave=False,
                       dynamic_ncols=True, file=sys.stderr)
            for batch in bar:
                self._train_step(batch)
                self.batch += 1
                self.global_step += 1
                if self.progress:
                    c = max(self.running["count"], 1.0)
                    bar.set_postfix(loss=f"{self.running['loss_sum'] / c:.3f}",
                                    acc=f"{self.running['correct'] / c:.3f}")
                self._emit("batch_end")
                if every and self.batch % every == 0 and self.batch < self.steps_per_epoch:
                    self.save()
            bar.close()
            self._end_epoch(time.perf_counter() - start)
            bar_epochs.update(1)
            if self.progress and self.history:
                bar_epochs.set_postfix({k: f"{v:.3f}" for k, v in self.history[-1].items()
                                        if k in ("train_loss", "val_acc")})
        bar_epochs.close()
        return self._finish()

    def _finish(self) -> Dict[str, Any]:
        cfg = self.config
        result: Dict[str, Any] = {"epochs": self.epoch, "best": dict(self.best), "last": dict(self.history[-1])}
        best_path = self.run_dir / "best.pt"
        D.barrier()
        if best_path.is_file():
            data = load_checkpoint(best_path)
            load_model_state(self.model, data["model"], data["model_name"], str(best_path))
        for key in ("val", "test"):
            if key in self.eval_loaders and (key == "val" or cfg.train.evaluate_test):
                with self._eval_context():
                    metrics = evaluate_model(self.model, self.eval_loaders[key], self.device, self.autocast)
                result[key] = metrics
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "result.json", json.dumps(result, indent=2) + "\n")
        D.barrier()
        return result


def _to_yaml(data: Dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
