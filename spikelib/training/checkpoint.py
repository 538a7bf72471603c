"""Crash-safe, verified training checkpoints.

A checkpoint is one ``torch.save``d dict of plain types and tensors only, so it loads with
``torch.load(..., weights_only=True)`` (no pickled objects):

``format`` (``"spikelib-checkpoint"``), ``version``, ``checksum``, ``model_name``, ``config`` (the whole run
configuration as a plain dict), ``model`` (state dict) and, in a trainer's ``last.pt``: ``optimizers`` (per slot: the
optimiser's and its schedules' state dicts), ``scaler``, ``stage`` (0-based stage in progress), ``epoch`` (0-based
epoch of that stage in progress), ``batch`` (batches of that epoch already done), ``global_step``, ``running`` (the
epoch's partial sums), ``best`` (best validation metric of the stage so far and its epoch), ``history`` (finished
epochs' metrics), ``callbacks`` (their states), ``rng`` (the torch CPU and CUDA generator states, NumPy's and
Python's, as tensors/plain values) and ``world_size``.

``checksum`` is the SHA-256 of everything else in the file (every tensor's dtype, shape and bytes, every plain
value), checked by :func:`load_checkpoint`: a flipped bit anywhere is an error, not silently different weights.
Files are serialised in memory, then written atomically (temporary file in the same folder, fsync, ``os.replace``,
fsync of the folder: :mod:`spikelib._atomic`), so a crash, a full disk or an exception mid-write leaves the previous
checkpoint intact, no half-written file under the checkpoint's name, and a plain ``OSError`` (e.g. ``ENOSPC`` with
the file named) rather than a serialiser's internal message.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from spikelib._atomic import atomic_write
from spikelib.training.errors import CheckpointError

logger = logging.getLogger(__name__)

__all__ = ["CheckpointError", "FORMAT", "VERSION", "save_checkpoint", "load_checkpoint", "get_rng_state",
           "set_rng_state", "load_model_state", "check_compatible", "checksum", "non_finite"]

FORMAT = "spikelib-checkpoint"
VERSION = 2
_READABLE = (1, 2)  # version 1 (no checksum, one optimiser) is read for its weights; runs resume from version 2 only


def _digest(obj: Any, h: Any) -> None:
    if isinstance(obj, Mapping):
        h.update(b"{")
        for key in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            h.update(repr(key).encode() + b":")
            _digest(obj[key], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _digest(item, h)
            h.update(b",")
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    else:
        h.update(f"{type(obj).__name__}:{obj!r}".encode())


def checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``payload`` without its ``checksum`` entry: tensors' dtypes, shapes and bytes, plain values."""
    h = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "checksum"}, h)
    return h.hexdigest()


def get_rng_state() -> Dict[str, Any]:
    """The states of the torch (CPU and CUDA), NumPy and Python generators as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generator states saved by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Union[str, Path], payload: Dict[str, Any]) -> Path:
    """Atomically write ``payload`` (with ``format``, ``version`` and ``checksum`` added) to ``path``."""
    data = {"format": FORMAT, "version": VERSION, **{k: v for k, v in payload.items() if k != "checksum"}}
    data["checksum"] = checksum(data)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    path = Path(path)
    try:
        return atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # name the file (e.g. ENOSPC from a write)
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Load and check a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, onto the CPU; the
    checksum of a version-2 file is verified)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else
                              f"checkpoint path {path} is not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for truncated / corrupt / foreign files
        raise CheckpointError(f"checkpoint {path} could not be read (corrupt, truncated or not a torch file): "
                              f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a spikelib checkpoint (no format={FORMAT!r} entry)")
    if data.get("version") not in _READABLE:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')!r} is not supported (expected one "
                              f"of {list(_READABLE)})")
    if data["version"] >= 2:
        stored = data.get("checksum")
        if not isinstance(stored, str):
            raise CheckpointError(f"{path}: checkpoint has no checksum entry (damaged file)")
        if checksum(data) != stored:
            raise CheckpointError(f"{path}: checksum mismatch: the file was damaged after it was written (a flipped "
                                  f"bit on disk or in transfer); use another copy or an earlier checkpoint")
    for key in ("model_name", "config", "model"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    if not isinstance(data["model"], Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data["model"].items()):
        raise CheckpointError(f"{path}: the 'model' entry is not a state dict of named tensors")
    if not isinstance(data["config"], Mapping):
        raise CheckpointError(f"{path}: the 'config' entry is not a mapping")
    return data


def non_finite(state: Mapping[str, torch.Tensor]) -> List[str]:
    """Names of the floating-point tensors of ``state`` that hold NaN or infinite values."""
    return [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def _diff(a: Any, b: Any, path: str, out: list) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a:
                out.append(f"{path}{key}: not in the checkpoint, {b[key]!r} in this run")
            elif key not in b:
                out.append(f"{path}{key}: {a[key]!r} in the checkpoint, not in this run")
            else:
                _diff(a[key], b[key], f"{path}{key}.", out)
    elif a != b:
        out.append(f"{path.rstrip('.')}: {a!r} in the checkpoint, {b!r} in this run")


def check_compatible(checkpoint: Mapping[str, Any], config: Mapping[str, Any], source: str = "checkpoint",
                     sections: tuple = ("model", "data", "loss", "stages"), hint: str = "") -> None:
    """Raise :class:`CheckpointError` naming every key of ``sections`` that differs between checkpoint and run."""
    diffs: list = []
    for section in sections:
        _diff(checkpoint["config"].get(section, {}), config.get(section, {}), f"{section}.", diffs)
    if diffs:
        raise CheckpointError(f"{source} was written by a different model/data configuration (model "
                              f"{checkpoint['model_name']!r}): " + "; ".join(diffs) + hint)


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], model_name: str,
                     source: str = "checkpoint") -> None:
    """``model.load_state_dict(state)`` with an error naming missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} in the checkpoint vs {tuple(own[k].shape)} in the model"
              for k in own if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise CheckpointError(f"{source} (model {model_name!r}) does not fit this {type(model).__name__}: "
                              + ", ".join(parts))
    model.load_state_dict(state)


def optional_state(obj: Optional[Any]) -> Optional[Dict[str, Any]]:
    """``obj.state_dict()`` or ``None``."""
    return None if obj is None else obj.state_dict()
