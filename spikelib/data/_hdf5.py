"""Small HDF5/file helpers shared by the data readers and generators: atomic writes, per-process handles, checks.

Atomic write: :func:`spikelib._atomic.atomic_path` (re-exported here): the file is written under a temporary name in
the destination folder, flushed and ``fsync``-ed, then ``os.replace``-d onto the final name (and the folder is
``fsync``-ed), so a reader never sees a half-written file.

Per-process handle: an ``h5py.File`` must not be shared across ``fork`` (DataLoader workers). :class:`LazyH5` opens
the file on first use in each process (keyed by ``os.getpid()``), drops the handle when pickled, and closes it in
:meth:`LazyH5.close` / ``__del__``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np

from spikelib._atomic import atomic_path  # re-exported: the data writers use it from here

__all__ = ["atomic_path", "atomic_save_npy", "LazyH5", "VlenGuard", "check_stored", "file_sha256", "h5_errors",
           "open_h5", "require_dataset"]

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


@contextlib.contextmanager
def h5_errors(path: PathLike) -> Iterator[None]:
    """Give every error raised while reading ``path`` the file's name: h5py reports damaged metadata as
    ``RuntimeError``/``KeyError``/``OSError`` without it (these become ``OSError``; a ``ValueError`` gets the name)."""
    try:
        yield
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        if str(path) in str(exc):
            raise
        if isinstance(exc, ValueError):
            raise ValueError(f"{path}: {exc}") from exc
        raise OSError(f"{path}: cannot read it (damaged HDF5 file?): {type(exc).__name__}: {exc}") from exc


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


class VlenGuard:
    """Checks the storage of a variable-length dataset (spike times, units) before HDF5 reads an element of it.

    HDF5 keeps variable-length data in "global heap collections" and parses a whole collection when it reads one
    element. A damaged collection can make that parse loop forever (HDF5 1.14.6: 64 zeroed bytes inside a collection
    hang ``dataset[i]``, found by tests/test_fuzz_readers.py) or read past its end. So this class reads the element
    pointers (length, collection address, object index) from the file's bytes when the dataset is opened, and before
    element ``i`` is read, walks the collection it points to as HDF5 would, strictly: every object inside the
    collection and the file, none of size 0, and the object of element ``i`` holding exactly ``length`` values. A
    collection is checked once per process. Compressed or compact variable-length datasets cannot be checked this way
    and are refused.
    """

    def __init__(self, handle: Any, ds: Any, path: PathLike, name: str) -> None:
        h5py = _h5py()
        self.path, self.name = str(path), name
        self.file_size = os.path.getsize(path)
        self.base = int(handle.userblock_size)
        self.sizeof_addr, self.sizeof_size = handle.id.get_create_plist().get_sizes()
        self.elem = ds.id.get_type().get_super().get_size()
        plist = ds.id.get_create_plist()
        layout = plist.get_layout()
        n = ds.shape[0]
        ptr = np.dtype([("length", "<u4"), ("addr", f"<u{self.sizeof_addr}"), ("index", "<u4")])
        if ptr.itemsize != ds.id.get_type().get_size():
            raise ValueError(f"{path}: '{name}' has variable-length elements of {ds.id.get_type().get_size()} bytes, "
                             f"expected {ptr.itemsize}")
        if plist.get_nfilters() > 0 or layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
            raise ValueError(f"{path}: '{name}' is a compressed or compact variable-length dataset, which cannot be "
                             "checked before reading; rewrite it uncompressed (h5py's default)")
        pointers = np.zeros(n, dtype=ptr)
        if n and layout == h5py.h5d.CONTIGUOUS:
            pointers[:] = self._array(ds.id.get_offset(), n, ptr)
        elif n:
            chunk = ds.chunks[0]
            for k in range(ds.id.get_num_chunks()):
                info = ds.id.get_chunk_info(k)
                start = info.chunk_offset[0]
                count = min(chunk, n - start)
                if info.filter_mask or info.size < count * ptr.itemsize or count <= 0:
                    raise ValueError(f"{path}: '{name}' has a damaged chunk at element {start}")
                pointers[start:start + count] = self._array(info.byte_offset, count, ptr)
        self.lengths = pointers["length"].astype(np.int64)
        self.addrs = pointers["addr"].astype(np.uint64)
        self.indices = pointers["index"].astype(np.int64)
        too_long = self.lengths * self.elem > self.file_size
        if too_long.any():
            i = int(np.flatnonzero(too_long)[0])
            raise ValueError(f"{path}: '{name}' element {i} declares {self.lengths[i]} values, more than the file "
                             f"holds ({self.file_size} bytes)")
        self._collections: Dict[int, Dict[int, int]] = {}
        self._pid = os.getpid()

    def _array(self, offset: Optional[int], count: int, dtype: np.dtype) -> np.ndarray:
        nbytes = count * dtype.itemsize
        if offset is None or offset < 0 or self.base + offset + nbytes > self.file_size:
            raise ValueError(f"{self.path}: '{self.name}' points outside the file (truncated?)")
        with open(self.path, "rb") as fh:
            fh.seek(self.base + offset)
            data = fh.read(nbytes)
        if len(data) != nbytes:
            raise ValueError(f"{self.path}: '{self.name}' points outside the file (truncated?)")
        return np.frombuffer(data, dtype=dtype)

    def _collection(self, addr: int) -> Dict[int, int]:
        """Object sizes by index of the collection at ``addr`` (checked as described in the class docstring)."""
        if self._pid != os.getpid():  # a forked worker checks again with its own reads
            self._collections, self._pid = {}, os.getpid()
        if addr in self._collections:
            return self._collections[addr]
        bad = f"{self.path}: '{self.name}' has a damaged global heap collection at address {addr}"
        head = 8 + self.sizeof_size
        if self.base + addr + head > self.file_size:
            raise ValueError(f"{bad} (outside the file: truncated?)")
        with open(self.path, "rb") as fh:
            fh.seek(self.base + addr)
            header = fh.read(head)
            size = int.from_bytes(header[8:head], "little")
            if header[:5] != b"GCOL\x01" or size < head or self.base + addr + size > self.file_size:
                raise ValueError(f"{bad} (bad header or size)")
            data = fh.read(size - head)
        objects: Dict[int, int] = {}
        obj_head = 8 + self.sizeof_size
        p, end = head, size
        while p < end:
            if p + obj_head > end:  # a tail too small for an object header is free space
                break
            q = p - head
            index = int.from_bytes(data[q:q + 2], "little")
            osize = int.from_bytes(data[q + 8:q + obj_head], "little")
            need = osize if index == 0 else obj_head + ((osize + 7) & ~7)
            if need < obj_head or p + need > end or (index and index in objects):
                raise ValueError(f"{bad} (object {index} of {osize} bytes at offset {p})")
            if index:
                objects[index] = osize
            p += need
        self._collections[addr] = objects
        return objects

    def check(self, i: int) -> None:
        """Raise ``ValueError`` unless element ``i`` and its collection are intact."""
        length = int(self.lengths[i])
        if length == 0:
            return
        objects = self._collection(int(self.addrs[i]))
        if objects.get(int(self.indices[i])) != length * self.elem:
            raise ValueError(f"{self.path}: '{self.name}' element {i} does not match its heap object (damaged file)")
