"""Atomic file writes, the one implementation every writer in spikelib uses.

A file is written under a temporary name in the destination folder, flushed and ``fsync``-ed, given the usual
permissions (``0o666`` minus the umask; ``mkstemp`` creates ``0o600``), ``os.replace``-d onto the final name, and the
folder is ``fsync``-ed. A reader never sees a half-written file; a crash leaves either the old file or the new one;
on any exception (KeyboardInterrupt included) the temporary file is removed and the target is left untouched.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Union

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "file_mode", "fsync_dir"]

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(folder: Path) -> None:
    """``fsync`` a folder (so a rename in it is durable); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_mode() -> int:
    """``0o666`` minus the process umask (what ``open`` would give), read without changing the umask (thread-safe)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


@contextlib.contextmanager
def atomic_path(path: PathLike, fsync: bool = True, create_parent: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception, move it onto ``path``.

    The caller writes the whole file to the yielded path (and closes it), e.g. with ``h5py.File(tmp, "w")``.
    ``fsync=False`` skips the fsyncs (for caches that can be rebuilt: the rename still keeps readers from seeing
    partial files while the system stays up). ``create_parent=False`` raises FileNotFoundError when the folder does
    not exist instead of creating it.
    """
    path = Path(path)
    if create_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist (writing {path.name})")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    done = False
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        if fsync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        done = True
        if fsync:
            fsync_dir(path.parent)
    finally:
        if not done:
            tmp_path.unlink(missing_ok=True)


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], Any], create_parent: bool = False) -> Path:
    """Call ``write(fh)`` on a binary file handle of a temporary file and move it atomically onto ``path``."""
    with atomic_path(path, create_parent=create_parent) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
    return Path(path)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
