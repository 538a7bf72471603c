"""The checkpoint side of :class:`spikelib.training.Trainer`: what ``last.pt`` and the best checkpoints hold, writing
them, and restoring a run from ``last.pt`` (see :mod:`spikelib.training.checkpoint` for the file format)."""

from __future__ import annotations

import logging
from typing import Any, Dict

from spikelib.training import distributed as D
from spikelib.training.checkpoint import (check_compatible, get_rng_state, load_checkpoint, load_model_state,
                                          save_checkpoint, set_rng_state)
from spikelib.training.config import StageConfig
from spikelib.training.errors import CheckpointError
from spikelib.training.stages import stage_file

logger = logging.getLogger(__name__)

__all__ = ["CheckpointMixin"]


def _plain_info(info: Any) -> Dict[str, Any]:
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}


class CheckpointMixin:
    """Checkpoint methods of the trainer (they use its attributes: model, optimizers, counters, run_dir, ...)."""

    def _base_payload(self) -> Dict[str, Any]:
        stage = self.stage_config
        return {"model_name": self.model_name, "config": self.config.to_dict(), "model": self.model.state_dict(),
                "info": _plain_info(self.info), "stage": self.stage,
                "stage_info": {"name": stage.name, "timesteps": stage.timesteps, "delays": stage.delays}}

    def checkpoint_payload(self) -> Dict[str, Any]:
        """Everything needed to continue exactly where the run stands now."""
        return {**self._base_payload(),
                "optimizers": {slot.name: slot.state_dict() for slot in self.optimizers},
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
                "running": dict(self.running), "best": dict(self.best), "history": [dict(h) for h in self.history],
                "callbacks": {str(i): cb.state_dict() for i, cb in enumerate(self.callbacks)},
                "rng": get_rng_state(), "world_size": self.dist.world_size}

    def save(self) -> None:
        """Write ``last.pt`` (rank 0; nothing without a run folder)."""
        if self.writes:
            save_checkpoint(self.run_dir / "last.pt", self.checkpoint_payload())
            self._emit("on_checkpoint")

    def _load_resume(self) -> None:
        path = self.run_dir / "last.pt"
        data = load_checkpoint(path)
        hint = (f"; to continue this run use its own configuration: spikelib train --resume --out {self.run_dir} "
                f"(reads {self.run_dir / 'config.yaml'}), or start the changed configuration in another --out")
        check_compatible(data, self.config.to_dict(), source=str(path), hint=hint)
        if data["model_name"] != self.model_name:
            raise CheckpointError(f"{path} holds model {data['model_name']!r}, this run builds {self.model_name!r}")
        if "optimizers" not in data:
            raise CheckpointError(f"{path} was written by an older spikelib (checkpoint version {data['version']}): "
                                  f"its weights can be evaluated, but the run cannot be resumed")
        stage = int(data.get("stage", 0))
        if not 0 <= stage < len(self.stages):
            raise CheckpointError(f"{path}: stage {stage} is not a stage of this configuration")
        load_model_state(self.model, data["model"], data["model_name"], str(path))
        self._enter_stage(stage, transition=False)
        try:
            if set(data["optimizers"]) != {s.name for s in self.optimizers}:
                raise ValueError(f"optimisers {sorted(data['optimizers'])} saved, this run has "
                                 f"{[s.name for s in self.optimizers]}")
            for slot in self.optimizers:
                slot.load_state_dict(data["optimizers"][slot.name])
            if self.scaler is not None and data.get("scaler"):
                self.scaler.load_state_dict(data["scaler"])
            for i, cb in enumerate(self.callbacks):
                cb.load_state_dict(data.get("callbacks", {}).get(str(i), {}))
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: optimiser/schedule state does not fit this run: {exc}") from exc
        self.epoch, self.batch, self.global_step = int(data["epoch"]), int(data["batch"]), int(data["global_step"])
        if self.batch and self.sampler is None:
            raise CheckpointError(f"{path} was written mid-epoch; a run with loaders= can resume only from an "
                                  f"epoch boundary (use datasets= for exact mid-epoch resume)")
        if self.batch > self.steps_per_epoch:
            raise CheckpointError(f"{path}: batch {self.batch} of an epoch of {self.steps_per_epoch} batches (was "
                                  f"the batch size or train.max_batches changed?)")
        self.running = {k: float(v) for k, v in data["running"].items()}
        self.best = dict(data["best"])
        self.history = [dict(h) for h in data["history"]]
        set_rng_state(data["rng"])
        logger.info("resumed %s at stage %d, epoch %d, batch %d", path, stage + 1, self.epoch + 1, self.batch)

    def _save_best(self, row: Dict[str, Any]) -> None:
        if self.writes:
            save_checkpoint(self.run_dir / stage_file(self.stage_config, self.multi_stage),
                            {**self._base_payload(), "epoch": self.epoch + 1, "metrics": dict(row)})
        elif self.run_dir is None:
            self._best_states[self.stage_config.name] = {k: v.detach().clone()
                                                         for k, v in self.model.state_dict().items()}

    def restore_best(self, stage: StageConfig) -> None:
        """Load the best weights of ``stage`` into the model (from its file, or from memory without a folder)."""
        if self.run_dir is None:
            if stage.name in self._best_states:
                self.model.load_state_dict(self._best_states[stage.name])
            return
        D.barrier()
        path = self.run_dir / stage_file(stage, self.multi_stage)
        if path.is_file():
            data = load_checkpoint(path)
            load_model_state(self.model, data["model"], data["model_name"], str(path))
