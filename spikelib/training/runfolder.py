"""A run folder belongs to one run at a time: an exclusive lock while a run writes into it, and the temporary files
of interrupted atomic writes (``.<name>.<random>.tmp``, see :mod:`spikelib._atomic`) removed when a run starts.

:class:`StopSignals` turns SIGINT/SIGTERM into a request the trainer honours at the next batch boundary (with a
checkpoint of that point), so a cluster's pre-emption or a Ctrl-C never leaves a run without a resumable state; a
second SIGINT stops at once.

The lock is ``flock`` on the folder itself (released by the kernel when the process ends, however it ends, so a
killed run never leaves a stale lock behind). Where the file system cannot lock (some network file systems) the run
goes on with a warning.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from spikelib.training.errors import RunLockedError

logger = logging.getLogger(__name__)

__all__ = ["RunLock", "StopSignals", "remove_temporaries"]


class RunLock:
    """An exclusive lock on ``run_dir`` (:meth:`acquire` raises :class:`RunLockedError` if another process holds it)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            logger.warning("cannot lock %s on this platform: make sure no other run writes into it", self.run_dir)
            return self
        fd = os.open(self.run_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"run folder {self.run_dir} is in use by another process (a run is writing into "
                                 f"it); wait for it to end or choose another --out") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            logger.warning("the file system of %s cannot lock it (%s): make sure no other run writes into it",
                           self.run_dir, exc.strerror)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_temporaries(run_dir: Path) -> List[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``run_dir``; returns them."""
    removed = []
    for path in Path(run_dir).glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info("removed %d temporary file(s) of interrupted writes in %s", len(removed), run_dir)
    return removed


class StopSignals:
    """Within the block (only in the main thread, and only when ``active``), SIGINT and SIGTERM set
    :attr:`requested` (the signal number) instead of stopping the process; a second SIGINT raises
    ``KeyboardInterrupt``. The previous handlers are restored afterwards."""

    def __init__(self, active: bool = True) -> None:
        self.active = active
        self.requested: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self) -> "StopSignals":
        if self.active and threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}
