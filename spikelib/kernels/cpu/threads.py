"""Running the generated CPU kernels on several threads.

The kernels are compiled serial (``nogil=True``) and take a range of neuron chunks ``[c_begin, c_end)``;
:func:`run_chunked` splits the chunks into contiguous ranges and runs them on a small pool of plain Python threads
(the calling thread takes the first range). We do not use numba's ``parallel=True``: its OpenMP layer starts a second
OpenMP runtime beside torch's, whose idle threads spin, and when another process wants the cores the two spinning
pools starve each other. Measured on a 2-core machine with one busy-looping process beside it, ``spikelib demo
--epochs 4`` took 22-32 s with numba's OpenMP pool and 2.7-5.3 s with the kernels on one thread; idle pool threads
here sleep on a lock instead. Serial kernels also compile about twice as fast (no parfor passes).

:func:`run_dynamic` hands the chunks out one at a time instead, for kernels whose threads may run at unequal speed:
torch's OpenMP worker threads spin for several milliseconds after each parallel torch operation (measured: 3-10 ms
on the 2-core machine, after any operation on more than 32768 elements), and a kernel thread sharing a core with one
runs at half speed; with fixed ranges the whole kernel then waits for it.

The number of threads follows ``torch.get_num_threads()`` (so ``torch.set_num_threads`` and ``OMP_NUM_THREADS``
govern both), with one thread for small work, where handing work to a thread costs more than it saves.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence

import torch

#: Below this many neuron-steps a kernel runs on the calling thread only.
SERIAL_WORK = 1 << 17

_LOCK = threading.Lock()
_POOL: Optional[ThreadPoolExecutor] = None


def _reset_pool_after_fork() -> None:
    global _POOL, _LOCK
    _POOL = None  # the parent's threads do not exist in a forked child (e.g. DataLoader workers)
    _LOCK = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1),
                                       thread_name_prefix="spikelib-kernel")
        return _POOL


def kernel_threads(work: int) -> int:
    """Threads to use for a kernel over ``work`` neuron-steps (``SPIKELIB_NUM_THREADS`` overrides)."""
    override = os.environ.get("SPIKELIB_NUM_THREADS")
    if override:
        try:
            n = int(override)
        except ValueError:
            raise ValueError(f"SPIKELIB_NUM_THREADS must be an integer >= 1, got {override!r}") from None
        if n < 1:
            raise ValueError(f"SPIKELIB_NUM_THREADS must be an integer >= 1, got {override!r}")
        return n
    if work < SERIAL_WORK:
        return 1
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def chunk_size(m: int, threads: int, per_thread: int = 2) -> int:
    """Units per chunk: ``per_thread`` chunks per thread, 16-aligned, at most 4096 (a chunk's state stays in L2)."""
    per = -(-m // max(1, per_thread * threads))
    per = ((per + 15) // 16) * 16
    return int(max(16, min(4096, per)))


def run_chunked(kernel: Callable[..., None], args: Sequence[object], m: int, chunk: int, threads: int) -> None:
    """Run ``kernel(*args, chunk, c_begin, c_end)`` over all chunks of ``m`` neurons on ``threads`` threads."""
    n_chunks = -(-m // chunk)
    threads = max(1, min(threads, n_chunks))
    if threads == 1:
        kernel(*args, chunk, 0, n_chunks)
        return
    bounds = [round(i * n_chunks / threads) for i in range(threads + 1)]
    pool = _pool()
    futures: List[Future] = [
        pool.submit(kernel, *args, chunk, bounds[i], bounds[i + 1]) for i in range(1, threads)
    ]
    try:
        kernel(*args, chunk, bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()  # waits, and re-raises a worker's exception


def run_dynamic(kernel: Callable[..., None], args: Sequence[object], m: int, chunk: int, threads: int) -> None:
    """Run ``kernel(*args, chunk, c, c + 1)`` for every chunk ``c`` of ``m`` units on ``threads`` threads, each
    taking the next chunk when it is done with one (a slowed-down thread takes fewer chunks)."""
    n_chunks = -(-m // chunk)
    threads = max(1, min(threads, n_chunks))
    if threads == 1:
        kernel(*args, chunk, 0, n_chunks)
        return
    lock = threading.Lock()
    state = [0]

    def work() -> None:
        while True:
            with lock:
                c = state[0]
                state[0] = c + 1
            if c >= n_chunks:
                return
            kernel(*args, chunk, c, c + 1)

    pool = _pool()
    futures: List[Future] = [pool.submit(work) for _ in range(1, threads)]
    try:
        work()
    finally:
        for f in futures:
            f.result()  # waits, and re-raises a worker's exception
