"""Small HDF5/file helpers shared by the data readers and generators: atomic writes, per-process handles, checks.

Atomic write: :func:`spikelib._atomic.atomic_path` (re-exported here): the file is written under a temporary name in
the destination folder, flushed and ``fsync``-ed, then ``os.replace``-d onto the final name (and the folder is
``fsync``-ed), so a reader never sees a half-written file.

Per-process handle: an ``h5py.File`` must not be shared across ``fork`` (DataLoader workers). :class:`LazyH5` opens
the file on first use in each process (keyed by ``os.getpid()``), drops the handle when pickled, and closes it in
:meth:`LazyH5.close` / ``__del__``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from spikelib._atomic import atomic_path  # re-exported: the data writers use it from here

__all__ = ["atomic_path", "atomic_save_npy", "LazyH5", "check_stored", "file_sha256", "open_h5",
           "require_dataset"]

PathLike = Union[str, "os.PathLike[str]"]


def atomic_save_npy(path: PathLike, array: np.ndarray, fsync: bool = True) -> None:
    """``np.save`` through :func:`atomic_path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # h5py is a core dependency; this only triggers on a broken install
        raise ImportError("reading HDF5 data sets needs h5py: pip install h5py (a spikelib dependency)") from exc
    return h5py


def open_h5(path: PathLike) -> Any:
    """Open ``path`` read-only; a file that is not valid HDF5 (truncated, corrupt) raises a clear ``OSError``."""
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise OSError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {exc}") from exc


def require_dataset(handle: Any, name: str, path: PathLike, what: str) -> Any:
    """``handle[name]`` if it exists and is a dataset stored in this file, else ``ValueError`` naming the file and
    the expected layout.

    A dataset (or a group on its path) that is an external link, or whose data live in external files or other files
    (virtual dataset), is refused: a data file never makes spikelib read other files.
    """
    h5py = _h5py()
    parts = [p for p in name.split("/") if p]
    for k in range(1, len(parts) + 1):
        link = handle.get("/".join(parts[:k]), getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise ValueError(f"{path}: '{'/'.join(parts[:k])}' is an external link to {link.filename}; datasets must "
                             f"be stored in the file itself (expected layout: {what})")
    obj = handle.get(name)
    if obj is None or not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{path}: missing HDF5 dataset '{name}' (expected layout: {what})")
    return obj


def check_stored(ds: Any, path: PathLike, name: str) -> None:
    """Raise ``ValueError`` unless dataset ``ds`` stores all the data its shape declares, in this file.

    HDF5 returns the fill value (zeros, or empty arrays for variable-length data) for parts of a dataset that were
    never written, so a tiny file can declare millions of samples that read as zeros (silently wrong labels, and a
    huge allocation before any other check). Checked without reading data: a contiguous dataset must have its storage
    allocated, a chunked one every chunk; external and virtual storage is refused.
    """
    h5py = _h5py()
    if ds.size == 0:
        return
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL or plist.get_external_count() > 0:
        raise ValueError(f"{path}: dataset '{name}' keeps its data in other files (virtual or external storage); "
                         "it must be stored in the file itself")
    if layout == h5py.h5d.CHUNKED:
        needed = 1
        for extent, chunk in zip(ds.shape, ds.chunks):
            needed *= -(-extent // chunk)
        stored = ds.id.get_num_chunks()
        if stored < needed:
            raise ValueError(f"{path}: dataset '{name}' declares shape {ds.shape} but only {stored} of its {needed} "
                             "chunks were ever written (the rest would read as fill values): truncated or crafted "
                             "file")
    elif layout == h5py.h5d.CONTIGUOUS and ds.id.get_storage_size() < ds.size * ds.id.get_type().get_size():
        raise ValueError(f"{path}: dataset '{name}' declares shape {ds.shape} but its data were never written (the "
                         "file stores none of it): truncated or crafted file")


class LazyH5:
    """A read-only HDF5 handle opened lazily once per process; picklable (the handle is not pickled).

    Args:
        path: the HDF5 file.
        check: called with the freshly opened ``h5py.File`` the first time it is opened in a process (layout checks).
    """

    def __init__(self, path: PathLike, check: Optional[Callable[[Any], None]] = None) -> None:
        self.path = Path(path)
        self._check = check
        self._handle: Any = None
        self._pid: Optional[int] = None

    @property
    def file(self) -> Any:
        """The open ``h5py.File`` for this process (opened on first access)."""
        if self._handle is None or self._pid != os.getpid():
            # A handle inherited through fork belongs to the parent: forget it without closing it here.
            self._handle = None
            handle = open_h5(self.path)
            if self._check is not None:
                ok = False
                try:
                    self._check(handle)
                    ok = True
                finally:
                    if not ok:
                        handle.close()
            self._handle, self._pid = handle, os.getpid()
        return self._handle

    @property
    def is_open(self) -> bool:
        """Whether this process holds an open handle."""
        return self._handle is not None and self._pid == os.getpid() and bool(self._handle.id.valid)

    def close(self) -> None:
        """Close this process's handle (no-op if none is open)."""
        if self._handle is not None and self._pid == os.getpid():
            try:
                self._handle.close()
            except Exception:  # closing an already-invalid handle at interpreter exit
                pass
        self._handle, self._pid = None, None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"] = None, None
        return state

    def __del__(self) -> None:
        self.close()
