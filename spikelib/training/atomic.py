"""Atomic file writes for the trainer (see :mod:`spikelib._atomic`, the one implementation): a temporary file in the
target's folder, flushed and fsynced, ``os.replace``d onto the target, then the folder fsynced. A crash or an exception
at any point leaves either the old file or the new one, never a partial file, and no temporary file behind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import torch

from spikelib._atomic import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_torch_save"]

PathLike = Union[str, os.PathLike]


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))
