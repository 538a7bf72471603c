"""The training core: :class:`Trainer` (``fit`` / ``evaluate``), used by ``spikelib train``, the demo, every recipe
and the Python API for custom models, losses and data sets.

Inputs: a run configuration (:mod:`spikelib.training.config`; a ``RunConfig``, a plain mapping, or ``None`` for the
defaults), and, instead of the registries, any of ``model=`` (an ``nn.Module`` taking ``[T, B, ...]``), ``datasets=``
(a :class:`~spikelib.training.datasets.DatasetBundle`), ``loaders=`` (ready DataLoaders), ``loss=`` (a
:class:`~spikelib.training.losses.Loss` or ``fn(output, y)``), ``metrics=`` (``{name: fn(scores, y) -> [B]}``) and
``callbacks=`` (:mod:`spikelib.training.callbacks`). With ``run_dir=None`` nothing is written (the best weights are
kept in memory).

Per batch: :func:`spikelib.reset`, forward on the prepared batch (time first, under ``torch.autocast`` when mixed
precision is on), the per-sample loss (two targets mixed per sample for CutMix-style batch mixes) and its mean, a
clear error if it is not finite, backward (through a ``GradScaler`` for float16), optional gradient-norm clipping over
all parameters, every optimiser slot steps (:mod:`spikelib.training.optim`), per-step schedules step, callbacks. Per
epoch: per-epoch schedules step, validation (with the callbacks' evaluation contexts, e.g. rounded delays), the best
model by ``train.select`` (``val_acc`` highest, ``val_loss`` lowest, ``last``), ``last.pt``. At the end the best
model is evaluated on the validation and test splits. Validation data is the data set's official split, or a seeded
split of the TRAINING set, never the test set. Stages (:mod:`spikelib.training.stages`) run one after the other.

Run folder: ``config.yaml``, ``last.pt`` (resumable, see :mod:`spikelib.training.checkpoint`), ``best.pt`` (and
``best_<stage>.pt``), ``metrics.csv`` / ``metrics.json``, ``result.json``, optionally ``tensorboard/``. The folder is
locked while a run writes into it, and temporaries of interrupted writes are removed when a run starts
(:mod:`spikelib.training.runfolder`).

Determinism and resume: torch/NumPy/Python are seeded from ``train.seed``; the training order is a function of
``(seed, epoch)`` only (:class:`~spikelib.training.distributed.ResumableDistributedSampler`), the DataLoader has its
own generator (re-seeded every epoch) and workers are seeded by ``worker_init_fn``. ``last.pt`` holds the stage,
the position inside the epoch, every optimiser/schedule/callback state and every generator's state, so on the CPU
with ``num_workers: 0`` a run killed at any point and resumed ends with the same weights as an uninterrupted run.
SIGINT/SIGTERM stop a run at the next batch boundary with a checkpoint of that point
(:class:`~spikelib.training.errors.TrainingInterrupted`). Under torchrun, rank 0 alone logs, shows progress and
writes files; metrics are summed over ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from spikelib.neurons import reset
from spikelib.training import distributed as D
from spikelib.training.atomic import atomic_write_text
from spikelib.training.build import build_data, build_model, seed_everything, split_train_val, worker_init_fn
from spikelib.training.callbacks import Callback, MetricFiles, TensorBoardCallback, as_callback
from spikelib.training.checkpointing import CheckpointMixin
from spikelib.training.config import RunConfig, StageConfig, parse_config
from spikelib.training.datasets import DatasetBundle
from spikelib.training.errors import ConfigError, TrainingDivergedError, TrainingInterrupted
from spikelib.training.evaluation import evaluate_loader, prepare_batch, to_time_first
from spikelib.training.losses import as_loss, build_loss
from spikelib.training.metrics import METRICS
from spikelib.training.optim import OptimizerSlot, build_optimizers
from spikelib.training.runfolder import RunLock, StopSignals, remove_temporaries
from spikelib.training.stages import apply_timesteps, copy_file_atomic, run_stages, stage_file, stage_results

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "seed_everything", "worker_init_fn", "build_model", "split_train_val", "to_time_first"]

_RUNNING = ("loss_sum", "count")


class Trainer(CheckpointMixin):
    """Train one run (see the module docstring).

    Args:
        config: a :class:`RunConfig`, a plain mapping in its schema (``data.dataset`` / ``model.name`` may be left
            out when ``datasets``/``loaders`` / ``model`` are given), or ``None`` (defaults).
        run_dir: the run folder (created and locked), or ``None`` to write nothing.
        resume: continue from ``run_dir/last.pt``.
        progress: override ``train.progress`` (bars are shown only on a terminal and on rank 0).
        model: a model instead of ``get_model(config.model...)`` (for ``resume`` it must be built the same way).
        datasets: a :class:`DatasetBundle` instead of ``config.data``.
        loaders: ready loaders ``{"train": ..., "val": ..., "test": ...}`` (batches ``(x [B, T, ...], y)``) instead of
            datasets; resuming then restarts the interrupted epoch's order from the loader.
        loss: a :class:`Loss` or ``fn(output, y)`` instead of ``config.loss``.
        metrics: extra metrics ``{name: fn(scores [B, C], y [B]) -> per-sample values [B]}`` (``acc`` is built in).
        callbacks: :class:`~spikelib.training.callbacks.Callback` objects or functions ``fn(trainer, event)``.
        timestep_hook: ``fn(model, T, datasets)`` applying a stage's time steps (default
            :func:`spikelib.training.stages.apply_timesteps`).
        prepare_batch: ``fn(batch) -> (x, y)`` on the device, instead of the default (time first unless the data's
            ``info["layout"]`` is ``"static"``).
        monitor: the splits evaluated after every epoch (default ``("val",)``; rows get ``<split>_loss`` etc.).
        reseed: seed torch/NumPy/Python from ``train.seed`` at set-up (``False`` leaves the caller's generators).
    """

    def __init__(self, config: Union[RunConfig, Mapping[str, Any], None] = None,
                 run_dir: Union[str, Path, None] = None, *, resume: bool = False, progress: Optional[bool] = None,
                 model: Optional[nn.Module] = None, datasets: Optional[DatasetBundle] = None,
                 loaders: Optional[Mapping[str, Any]] = None, loss: Any = None,
                 metrics: Optional[Mapping[str, Callable]] = None, callbacks: Sequence[Any] = (),
                 timestep_hook: Optional[Callable[[nn.Module, int, Dict[str, Any]], None]] = None,
                 prepare_batch: Optional[Callable[[Any], Any]] = None, monitor: Sequence[str] = ("val",),
                 reseed: bool = True) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if datasets is not None and loaders is not None:
            raise ValueError("pass datasets or loaders, not both")
        if datasets is not None and not isinstance(datasets, DatasetBundle):
            raise TypeError(f"datasets must be a spikelib.training.DatasetBundle, got {type(datasets).__name__}")
        if loaders is not None and "train" not in loaders:
            raise ValueError("loaders must have a 'train' entry")
        if not isinstance(config, RunConfig):
            require = [s for s, given in (("data", datasets is not None or loaders is not None),
                                          ("model", model is not None)) if not given]
            raw = dict(config or {})
            for section in ("data", "model"):
                raw.setdefault(section, {})
            config = parse_config(raw, require=require)
        if resume and run_dir is None:
            raise ValueError("resume=True needs a run_dir holding last.pt")
        self.config = config
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume = resume
        self._model = model
        self._datasets = datasets
        self._loaders = dict(loaders) if loaders is not None else None
        self._loss = loss
        self.metrics: Dict[str, Callable] = {"acc": METRICS["acc"], **dict(metrics or {})}
        self.callbacks: List[Callback] = [as_callback(c) for c in callbacks]
        self.timestep_hook = timestep_hook or apply_timesteps
        self._prepare = prepare_batch
        self.monitor = tuple(monitor)
        self.reseed = reseed
        want = config.train.progress if progress is None else progress
        self.progress = bool(want) and sys.stderr.isatty()
        self.stages: List[StageConfig] = run_stages(config)
        self.stage = 0
        self.epoch = 0
        self.batch = 0
        self.global_step = 0
        self.running: Dict[str, float] = {}
        self.best: Dict[str, Any] = {"metric": None, "epoch": None}
        self.history: List[Dict[str, Any]] = []
        self.row: Dict[str, Any] = {}
        self.optimizers: List[OptimizerSlot] = []
        self.dist = D.DistInfo()
        self.device = torch.device("cpu")
        self.dtype = getattr(torch, config.train.dtype)
        self.ready = False
        self.writes = False
        self._lock: Optional[RunLock] = None
        self._best_states: Dict[str, Dict[str, torch.Tensor]] = {}
        self._signals = StopSignals(False)

    # ------------------------------------------------------------------------------------------------- set-up
    @property
    def multi_stage(self) -> bool:
        return len(self.stages) > 1

    @property
    def stage_config(self) -> StageConfig:
        """The stage in progress."""
        return self.stages[self.stage]

    @property
    def stage_epochs(self) -> int:
        return self.stages[self.stage].epochs

    @property
    def global_epoch(self) -> int:
        """Epochs finished before this one, over all stages (seeds the data order, so stages differ)."""
        return sum(s.epochs for s in self.stages[:self.stage]) + self.epoch

    def setup(self) -> "Trainer":
        """Build everything (device, data, model, loss, optimisers, callbacks) and, with ``resume``, restore
        ``last.pt``; called by :meth:`fit` (idempotent)."""
        if self.ready:
            return self
        cfg = self.config
        device_type = "cuda" if cfg.train.device.startswith("cuda") or (
            cfg.train.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.dist = D.init_from_env(device_type)
        self.device = D.rank_device(cfg.train.device, self.dist)
        self.progress = self.progress and self.dist.is_main
        self.writes = self.run_dir is not None and self.dist.is_main
        if self.writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.run_dir).acquire()
            remove_temporaries(self.run_dir)
        done = False
        try:
            self._setup(cfg)
            done = True
        finally:
            if not done:  # release the folder on any failure (the exception goes on unchanged)
                self.close()
        self.ready = True
        return self

    def _setup(self, cfg: RunConfig) -> None:
        if self.reseed:
            seed_everything(cfg.train.seed)
        self._setup_data(cfg)
        model = self._model if self._model is not None else build_model(cfg, self.info)
        if cfg.delays is not None and cfg.delays.init == "reference" and not self.resume:
            from spikelib.training.delays import init_reference_positions

            init_reference_positions(model, cfg.train.seed)
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.model_name = cfg.model.name or type(model).__name__
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if self._loss is not None:
            self.loss = as_loss(self._loss)
        else:
            self.loss = build_loss(cfg.loss.name, cfg.loss.args, cfg.train.label_smoothing)
        self.loss.to(self.device)
        amp = cfg.train.amp
        self.amp = (self.device.type == "cuda") if amp == "auto" else bool(amp)
        self.amp_dtype = getattr(torch, cfg.train.amp_dtype)
        use_scaler = self.amp and self.device.type == "cuda" and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        builtin: List[Callback] = []
        if cfg.delays is not None:
            from spikelib.training.delays import DelayCallback

            builtin.append(DelayCallback(cfg.delays))
        if self.writes:
            builtin.append(MetricFiles(self.run_dir))
            if cfg.train.tensorboard:
                builtin.append(TensorBoardCallback(self.run_dir))
        self.callbacks = builtin + self.callbacks
        self._check_select()
        if self.resume:
            self._load_resume()
        else:
            self._enter_stage(0, transition=False)
        if self.writes:  # the configuration in force (a resumed run may have changed e.g. train.epochs)
            atomic_write_text(self.run_dir / "config.yaml", _to_yaml(cfg.to_dict()))

    def _setup_data(self, cfg: RunConfig) -> None:
        data = build_data(cfg, self._datasets, self._loaders, self.dist, self.device)
        for key, value in vars(data).items():
            setattr(self, key, value)

    def _check_select(self) -> None:
        select = self.config.train.select
        if select == "last":
            return
        name = select[len("val_"):]
        if name != "loss" and name not in self.metrics:
            raise ConfigError(f"train.select: {select!r} names no metric (known: val_loss, "
                              f"{', '.join('val_' + m for m in self.metrics)}, last)")

    def _enter_stage(self, k: int, transition: bool) -> None:
        """Set up stage ``k``: weights of the previous stage (on a transition), time steps, fresh optimisers."""
        self.stage = k
        st = self.stages[k]
        if transition and st.init == "best":
            self.restore_best(self.stages[k - 1])
        if st.timesteps is not None:
            self.timestep_hook(self.model, st.timesteps, getattr(self, "datasets", {}))
        self.optimizers = build_optimizers(self.model, self.config, self.steps_per_epoch, st.epochs, lr=st.lr,
                                           positions=st.delays != "rounded")
        self.epoch = 0
        self.batch = 0
        self.running = {}
        self.best = {"metric": None, "epoch": None}
        self._emit("on_stage_start")

    # ------------------------------------------------------------------------------------------- checkpoints
    def autocast(self) -> Any:
        """The mixed-precision context of this run (a no-op when off)."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def eval_context(self) -> Any:
        """The context of evaluation passes (the callbacks' ones, e.g. rounded delays, nested)."""
        stack = contextlib.ExitStack()
        for cb in self.callbacks:
            ctx = cb.eval_context(self)
            if ctx is not None:
                stack.enter_context(ctx)
        return stack

    # -------------------------------------------------------------------------------------------------- loop
    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def log(self, key: str, value: Any) -> None:
        """Add ``key: value`` to the metrics row of the epoch in progress (for callbacks)."""
        self.row[key] = value

    def prepare(self, batch: Any) -> tuple:
        """A loader batch -> ``(x, y)`` on the device (the ``prepare_batch`` argument, or the default)."""
        if self._prepare is not None:
            return self._prepare(batch)
        return prepare_batch(batch, self.device, self.dtype, self.layout)

    def _train_step(self, batch: Any) -> None:
        mixed = None
        if self.batch_mix is not None:
            xb, yb = batch
            xb, y_a, y_b, lam = self.batch_mix(xb, yb)
            batch = (xb, y_a)
            mixed = (y_b.to(self.device, torch.long), lam.to(self.device, self.dtype))
        x, y = self.prepare(batch)
        n_classes = self.info.get("n_classes")
        if n_classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            bad = int(y.max()) if int(y.max()) >= n_classes else int(y.min())
            raise ValueError(f"data.dataset {self.config.data.dataset or 'given'!r}: label {bad} is out of range "
                             f"0..{n_classes - 1}")
        reset(self.net)
        with self.autocast():
            out = self.net(x)
        per = self.loss(out, y)
        if mixed is not None:
            if per.dim() == 0:
                raise ValueError("this data set mixes two targets per sample (batch_mix); the loss must return "
                                 "per-sample values [B], not a scalar")
            lam = mixed[1].to(per.dtype)
            per = (1 - lam) * per + lam * self.loss(out, mixed[0])
        loss = per.mean() if per.dim() else per
        if self.config.train.stop_on_nan and not bool(torch.isfinite(loss.detach())):
            raise TrainingDivergedError(
                f"the training loss is {float(loss):g} at stage {self.stage + 1}, epoch {self.epoch + 1}, batch "
                f"{self.batch + 1}: the run diverged; lower optim.lr, set optim.grad_clip, or resume from an "
                f"earlier checkpoint")
        for slot in self.optimizers:
            slot.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            for slot in self.optimizers:
                self.scaler.unscale_(slot.optimizer)
        else:
            loss.backward()
        if self.config.optim.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        for slot in self.optimizers:
            if self.scaler is not None:
                self.scaler.step(slot.optimizer)
            else:
                slot.optimizer.step()
        if self.scaler is not None:
            self.scaler.update()
        for slot in self.optimizers:
            for sched, interval in slot.schedulers:
                if interval == "step":
                    sched.step()
        self._emit("on_step_end")
        n = float(y.numel())
        r = self.running
        r["loss_sum"] = r.get("loss_sum", 0.0) + (float(per.detach().sum()) if per.dim() else float(loss.detach()) * n)
        r["count"] = r.get("count", 0.0) + n
        with torch.no_grad():
            scores = self.loss.scores(out.detach())
            for name, fn in self.metrics.items():
                r[name] = r.get(name, 0.0) + float(fn(scores, y).sum())

    def _better(self, value: Optional[float]) -> bool:
        select = self.config.train.select
        if select == "last" or value is None:  # no selection / no validation split: the last epoch is the best
            return True
        if self.best["metric"] is None:
            return True
        minimise = select.endswith("loss")
        return value < self.best["metric"] if minimise else value > self.best["metric"]

    def evaluate(self, split: Union[str, Any] = "test", *, max_batches: Optional[int] = None,
                 desc: Optional[str] = None) -> Dict[str, float]:
        """Loss and metrics of the model on a split (``"val"``, ``"test"``) or a loader, with the evaluation
        contexts (e.g. rounded delays) and ``train.max_batches`` unless ``max_batches`` is given."""
        self.setup()
        loader = self.eval_loaders.get(split) if isinstance(split, str) else split
        if loader is None:
            raise ValueError(f"no {split!r} split (known: {', '.join(self.eval_loaders) or 'none'})")
        return evaluate_loader(self.model, loader, loss=self.loss, metrics=self.metrics, device=self.device,
                               dtype=self.dtype, prepare=self.prepare if self._prepare else None,
                               autocast=self.autocast, context=self.eval_context,
                               max_batches=max_batches or self.config.train.max_batches,
                               progress=self.progress, desc=desc or str(split), layout=self.layout)

    def _run_epoch(self) -> None:
        start = time.perf_counter()
        st = self.stage_config
        if self.sampler is not None:
            self.sampler.set_epoch(self.global_epoch)
            self.sampler.set_start(self.batch * self.local_batch)
            self.loader_generator.manual_seed(self.config.train.seed * 100003 + self.global_epoch)
        self.row = {}
        self._emit("on_epoch_start")
        self.net.train()
        label = f"{st.name} " if self.multi_stage else ""
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch, desc=f"{label}epoch {self.epoch + 1}/{st.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True, file=sys.stderr)
        try:
            if self.batch < self.steps_per_epoch:
                for batch in self.train_loader:
                    self._train_step(batch)
                    self.batch += 1
                    self.global_step += 1
                    bar.update(1)
                    if self.progress:
                        c = max(self.running["count"], 1.0)
                        bar.set_postfix(loss=f"{self.running['loss_sum'] / c:.3f}",
                                        acc=f"{self.running['acc'] / c:.3f}")
                    self._emit("on_batch_end")
                    every = self.config.train.checkpoint_every
                    if every and self.batch % every == 0 and self.batch < self.steps_per_epoch:
                        self.save()
                    self._check_stop()
                    if self.batch >= self.steps_per_epoch:
                        break
        finally:
            bar.close()
        self._end_epoch(time.perf_counter() - start)

    def _end_epoch(self, seconds: float) -> None:
        names = [k for k in self.running if k not in _RUNNING]
        sums = D.all_reduce_sum([self.running.get("loss_sum", 0.0), self.running.get("count", 0.0)]
                                + [self.running[k] for k in names], self.device)
        count = max(sums[1], 1.0)
        row: Dict[str, Any] = {}
        if self.multi_stage:
            row.update(stage=self.stage_config.name, timesteps=self.stage_config.timesteps)
        row.update(epoch=self.epoch + 1, train_loss=sums[0] / count)
        row.update({f"train_{k}": v / count for k, v in zip(names, sums[2:])})
        row["lr"] = self.optimizers[0].optimizer.param_groups[0]["lr"]
        for slot in self.optimizers:
            for sched, interval in slot.schedulers:
                if interval == "epoch":
                    sched.step()
        self._emit("on_train_epoch_end")
        row.update(self.row)
        for split in self.monitor:
            if split in self.eval_loaders:
                m = self.evaluate(split, desc=f"{split} {self.epoch + 1}")
                row.update({f"{split}_{k}": v for k, v in m.items() if k != "count"})
        row["seconds"] = seconds
        self.history.append(row)
        select = self.config.train.select
        if self._better(row.get(select)):
            self.best = {"metric": row.get(select), "epoch": self.epoch + 1}
            self._save_best(row)
        self.epoch += 1
        self.batch = 0
        self.running = {}
        self.save()
        logger.info("epoch %d/%d: %s", self.epoch, self.stage_epochs,
                    ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
        self._emit("on_epoch_end")
        self._check_stop()

    # --------------------------------------------------------------------------------------------- stopping
    def _check_stop(self) -> None:
        signum = self._signals.requested
        flag = 1.0 if signum is not None else 0.0
        if self.dist.enabled:
            flag = D.all_reduce_sum([flag], self.device)[0]
        if not flag:
            return
        self.save()
        name = signal.Signals(signum).name if signum is not None else "another process"
        where = f"stage {self.stage + 1}, " if self.multi_stage else ""
        raise TrainingInterrupted(
            f"interrupted by {name} at {where}epoch {self.epoch + 1}, batch {self.batch}; {self.run_dir / 'last.pt'} "
            f"holds this point: continue with spikelib train --resume --out {self.run_dir}")

    # -------------------------------------------------------------------------------------------- fit, finish
    def fit(self) -> Dict[str, Any]:
        """Train (or continue) every stage to its end; returns the final result (also written to ``result.json``)."""
        try:
            self.setup()
            self._signals = StopSignals(self.run_dir is not None)  # every rank: they agree at each batch
            with self._signals:
                self._emit("on_fit_start")
                while True:
                    while self.epoch < self.stage_epochs:
                        self._run_epoch()
                    if self.stage + 1 >= len(self.stages):
                        break
                    self._enter_stage(self.stage + 1, transition=True)
                    self.save()
                result = self._finish()
            self._emit("on_fit_end", result)
            return result
        finally:
            self.close()

    def close(self) -> None:
        """Release the run folder (also done by :meth:`fit`)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def evaluate_final(self) -> Dict[str, Any]:
        """The model's validation and (``train.evaluate_test``) test results, as reported at the end of a run."""
        out = {}
        for key in ("val", "test"):
            if key in self.eval_loaders and (key == "val" or self.config.train.evaluate_test):
                out[key] = self.evaluate(key, desc=f"final {key}")
        return out

    def _finish(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {"epochs": sum(s.epochs for s in self.stages), "best": dict(self.best),
                                  "last": dict(self.history[-1]) if self.history else None}
        if self.multi_stage:
            result["stages"] = stage_results(self)
            result.update({k: v for k, v in result["stages"][-1].items() if k in ("val", "test")})
            if self.writes and self.config.train.select != "last":
                copy_file_atomic(self.run_dir / stage_file(self.stages[-1], True), self.run_dir / "best.pt")
        else:
            self.restore_best(self.stages[0])
            result.update(self.evaluate_final())
        if self.writes:
            atomic_write_text(self.run_dir / "result.json", json.dumps(result, indent=2) + "\n")
        D.barrier()
        return result


def _to_yaml(data: Dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)

