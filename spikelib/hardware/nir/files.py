"""Reading and writing ``.nir`` files (atomically)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from spikelib._atomic import atomic_path
from spikelib.hardware.nir.common import nir_module

__all__ = ["write_nir", "read_nir"]


def write_nir(graph, path: Union[str, os.PathLike]) -> Path:
    """``nir.write`` to a temporary file in the same folder, fsync, then ``os.replace`` (never a partial file)."""
    nir = nir_module()
    path = Path(path)
    with atomic_path(path, create_parent=False) as tmp:
        nir.write(str(tmp), graph)
    return path


def read_nir(path: Union[str, os.PathLike]):
    """``nir.read`` with a clear error for a missing file."""
    nir = nir_module()
    if not Path(path).is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    return nir.read(str(path))
