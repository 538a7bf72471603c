"""Training stages: one run, several stages one after the other, in one run folder.

A ``stages`` section (:class:`~spikelib.training.config.StageConfig`) lists the stages; each has its own epochs,
optionally its time steps ``T`` (IIR-SNN's 5 -> 3 -> 2 -> 1 retraining: SayeedChowdhury/IIR-SNN, each stage
initialised from the previous one), learning rate, delay mode (``rounded``: SNN-delays' fine-tuning with integer
delays) and whether it starts from the previous stage's ``best`` (default) or ``last`` weights. Each stage starts with
fresh optimisers and schedules (as the reference's separate runs do) and its own best-model selection.

Files: ``best_<stage>.pt`` per stage (``best.pt`` is the final stage's best at the end), one ``metrics.csv`` /
``metrics.json`` whose rows carry ``stage`` and ``timesteps``, ``result.json`` with every stage's validation/test
results, and ``last.pt`` that knows the stage, so a run killed anywhere (mid-stage, or between two stages) resumes to
the same result as an uninterrupted run.

How ``T`` reaches the data and the model is a hook ``timestep_hook(model, T, datasets)`` (argument of the
:class:`~spikelib.training.Trainer`); :func:`apply_timesteps`, the default, calls ``model.set_timesteps(T)`` or sets
an integer attribute ``model.T``, and calls ``set_timesteps(T)`` of every dataset that has one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from torch import nn

from spikelib._atomic import atomic_path
from spikelib.training.config import RunConfig, StageConfig
from spikelib.training.errors import ConfigError

__all__ = ["apply_timesteps", "run_stages", "stage_file", "stage_results", "copy_file_atomic"]


def apply_timesteps(model: nn.Module, T: int, datasets: Optional[Dict[str, Any]] = None) -> None:
    """The default timestep hook (module docstring)."""
    target = getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if callable(getattr(target, "set_timesteps", None)):
        target.set_timesteps(T)
    elif isinstance(getattr(target, "T", None), int) and not isinstance(getattr(target, "T"), bool):
        target.T = int(T)
    else:
        raise ConfigError(f"stages.timesteps: model {type(target).__name__} has no set_timesteps(T) method and no "
                          f"integer attribute T; give it one, or pass timestep_hook=fn(model, T, datasets) to the "
                          f"Trainer")
    for ds in (datasets or {}).values():
        if ds is not None and callable(getattr(ds, "set_timesteps", None)):
            ds.set_timesteps(T)


def run_stages(config: RunConfig) -> List[StageConfig]:
    """The stages of a run: its ``stages`` section, or one unnamed stage of ``train.epochs`` epochs."""
    if config.stages:
        return list(config.stages)
    return [StageConfig(name="", epochs=config.train.epochs)]


def stage_file(stage: StageConfig, multi: bool) -> str:
    """File name of a stage's best checkpoint: ``best.pt`` for a one-stage run, ``best_<name>.pt`` otherwise."""
    return f"best_{stage.name}.pt" if multi else "best.pt"


def _best_of(rows: List[Dict[str, Any]], select: str) -> Dict[str, Any]:
    if not rows:
        return {"metric": None, "epoch": None}
    if select == "last" or select not in rows[-1]:
        return {"metric": rows[-1].get(select), "epoch": rows[-1]["epoch"]}
    pick = min if select.endswith("loss") else max
    best = pick(rows, key=lambda r: r[select])  # the first of equal values, as during training
    return {"metric": best[select], "epoch": best["epoch"]}


def stage_results(trainer: Any) -> List[Dict[str, Any]]:
    """Every stage's best weights evaluated at its own time steps (the last stage's stay loaded in the model)."""
    out = []
    for st in trainer.stages:
        trainer.restore_best(st)
        if st.timesteps is not None:
            trainer.timestep_hook(trainer.model, st.timesteps, trainer.datasets)
        rows = [h for h in trainer.history if h.get("stage") == st.name]
        out.append({"name": st.name, "timesteps": st.timesteps, "epochs": st.epochs,
                    "best": _best_of(rows, trainer.config.train.select), **trainer.evaluate_final()})
    return out


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` onto ``dst`` atomically (nothing when ``src`` does not exist)."""
    if Path(src).is_file():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
