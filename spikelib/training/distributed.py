"""Distributed data parallel (DDP) helpers: process-group set-up from torchrun's environment, samplers, reductions.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` joins the group (``nccl`` on GPUs, ``gloo``
on CPUs). Training batches come from :class:`ResumableDistributedSampler`: torch's ``DistributedSampler`` (one
permutation per epoch from ``seed + epoch``, rank ``r`` takes positions ``r, r + N, r + 2N, ...``) that can start
part-way into an epoch. With a per-rank batch of ``B / N``, the ``i``-th batches of all ranks together are exactly
the samples of the ``i``-th batch of a single process with batch ``B``; DDP averages the ranks' gradients, so with
a mean loss per rank the update equals the single-process update (same number of samples on every rank). When the
training set is not divisible by N, ``DistributedSampler`` repeats a few samples to even out the ranks. BatchNorm
statistics stay per rank (no SyncBatchNorm). Evaluation shards the data without padding (:class:`ShardSampler`) and
sums loss/correct/count over the ranks.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

logger = logging.getLogger(__name__)

__all__ = ["DistInfo", "init_from_env", "ResumableDistributedSampler", "ShardSampler", "all_reduce_sum", "barrier",
           "cleanup"]


@dataclass
class DistInfo:
    """Where this process stands: ``rank``, ``world_size``, ``local_rank``; ``enabled`` when world_size > 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise RuntimeError(f"environment variable {name} must be an integer, got {text!r}") from None


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op without ``WORLD_SIZE`` > 1)."""
    info = DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if not info.enabled:
        return info
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this torch build")
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=_dt.timedelta(minutes=30))
        logger.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)
    return info


def cleanup() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: List[float], device: torch.device) -> List[float]:
    """Sum ``values`` over all ranks (float64; unchanged outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` whose epoch can start at a given position (``set_start``, in samples of this rank)."""

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share in the next iteration."""
        if start < 0 or start > self.num_samples:
            raise ValueError(f"start must be in [0, {self.num_samples}], got {start}")
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler):
    """Indices ``rank, rank + N, ...`` of a dataset in order, without padding (for evaluation; sums are reduced)."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, n, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def local_batch_size(global_batch: int, info: DistInfo, path: str = "data.batch_size") -> int:
    """``global_batch / world_size``; an error unless it divides evenly."""
    if global_batch % info.world_size:
        raise ValueError(f"{path}={global_batch} is not divisible by the {info.world_size} processes")
    return global_batch // info.world_size


def rank_device(requested: str, info: Optional[DistInfo] = None) -> torch.device:
    """The device of this process: ``auto`` = CUDA when available; with DDP on CUDA, ``cuda:LOCAL_RANK``."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={requested!r} but CUDA is not available")
        if info is not None and info.enabled:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device
