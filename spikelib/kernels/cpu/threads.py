"""Running the generated CPU kernels on several threads.

The kernels are compiled serial (``nogil=True``) and take a range of neuron chunks ``[c_begin, c_end)``;
:func:`run_chunked` splits the chunks into one contiguous range per thread, :func:`run_dynamic` hands the chunks out
one at a time (for kernels whose threads may run at unequal speed). Each thread takes the next unit of work when it is
done with one, so every unit runs exactly once whatever number of threads actually joins.

Which threads: **torch's own OpenMP team** where torch runs on OpenMP (its Linux and macOS builds): the work is started
with the runtime's ``GOMP_parallel`` entry point (exported by GNU libgomp, LLVM libomp and Intel libiomp5), found
among the libraries already loaded into the process (never a second copy), and each team thread calls back into
Python to run its units (the kernels release the GIL). Otherwise, and in a process forked from one that used the
team (GNU OpenMP cannot start a team there: torch's own parallel operations hang in such a child too), a small pool of
plain Python threads. ``SPIKELIB_KERNEL_THREADS=pool`` forces the pool, ``openmp`` requires the team.

Why torch's team: after each parallel torch operation its OpenMP worker threads spin for several milliseconds
(measured 3-10 ms on the 2-core machine, after any operation on more than 32768 elements) waiting for the next one. A
kernel thread of our own that shares a core with a spinning worker runs at half speed, and a training step alternates
torch operations (matrix products, the optimiser) with our kernels, so most kernels started beside a spinning team.
Handing the kernel to that team instead puts the spinning threads to work: one Adam step of the SHD-style network
700-256-256-20 (T=100, B=64) took 45-48 ms (median of 40) with the pool and 32 ms with the team, in alternating fresh
processes. We still do not use numba's ``parallel=True``: its OpenMP layer starts a second runtime beside torch's,
and when another process wants the cores the two spinning pools starve each other (``spikelib demo --epochs 4``
beside a busy-looping process: 22-32 s, against 2.7-5.3 s with the kernels on one thread). Serial kernels also compile
about twice as fast (no parfor passes).

The number of threads follows ``torch.get_num_threads()`` (so ``torch.set_num_threads`` and ``OMP_NUM_THREADS``
govern both), with one thread for small work, where handing work to a thread costs more than it saves.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

logger = logging.getLogger(__name__)

#: Below this many neuron-steps a kernel runs on the calling thread only.
SERIAL_WORK = 1 << 17

#: Least work (neuron-steps) of one chunk handed to a thread. Each chunk is one call into a compiled kernel from Python
#: (argument unboxing under the GIL, ~10 us) and a several-thread run costs 65-150 us to start, so with the earlier
#: rule (8 chunks per thread, whatever their size) mid-sized kernels ran slower on 2 threads than on 1. Measured on 2
#: cores, LIF ``[100, M]``, medians of 200 (forward) / 100 (forward + backward) in two runs, earlier rule / this one /
#: one thread: forward 174K neuron-steps 0.44 / 0.19-0.22 / 0.18 ms, 819K 0.67-0.69 / 0.59 / 0.50 ms, 1.6M
#: 0.88-0.94 / 0.76-0.83 / 0.91 ms, 3.3M 1.08-1.25 / 1.07-1.14 / 1.55 ms; forward + backward 174K 1.38-1.64 /
#: 0.75-1.05 / 0.70 ms, 819K 1.99 / 1.69-1.71 / 1.76 ms, 1.6M 2.73 / 2.51-2.61 / 2.98 ms, 3.3M 4.79-4.93 /
#: 4.82-4.89 / 7.86 ms. Twice this (2**18) split the LIF benchmark ``[100, 32768]`` into 12 chunks instead of 16 and
#: made it ~10% slower in fresh processes (forward 3.15 against 2.8 ms).
MIN_CHUNK_WORK = 1 << 17

#: A neuron's own loads and stores (initial state, parameters, final state) in a neuron kernel, in time steps' worth
#: of work: a chunk of ``m`` neurons over ``T`` steps counts ``m (T + NEURON_OVERHEAD_STEPS)`` (forward LIF at T=1:
#: 2.9 ns per neuron, against 1 ns per neuron-step at T=100; the backward pass reads and writes more per neuron).
NEURON_OVERHEAD_STEPS = 4

_LOCK = threading.Lock()
_POOL: Optional[ThreadPoolExecutor] = None


#: ``os.cpu_count()`` read once (it asks the system each time: ~2 us, and several times that between the large
#: operations of a training step).
_CPU_COUNT = os.cpu_count() or 1

_FORKED = False  # this process is a fork: the OpenMP team cannot be used (see the module docstring)
_CALLS: Counter = Counter()  # runs of several threads by the team that ran them: "openmp" / "pool"
_MODES = ("auto", "openmp", "pool")


def _reset_pool_after_fork() -> None:
    global _POOL, _LOCK, _FORKED
    _POOL = None  # the parent's threads do not exist in a forked child (e.g. DataLoader workers)
    _LOCK = threading.Lock()  # another thread may have held it at the fork
    _FORKED = True


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
    return max(1, min(torch.get_num_threads(), _CPU_COUNT))


def chunk_size(m: int, threads: int, per_thread: int = 2, unit_work: int = 1) -> int:
    """Units per chunk for ``m`` units of ``unit_work`` neuron-steps each (e.g. ``T``) on ``threads`` threads.

    ``per_thread`` chunks per thread, fewer where a chunk would do less than ``MIN_CHUNK_WORK`` neuron-steps; more
    (of about 4096 units, or that least work if more) where a chunk would exceed both (a chunk's state stays in L2).
    Several chunks come in a multiple of ``threads``, so the threads get equal shares; below twice the least work it
    is one chunk, which :func:`run_dynamic` runs on the calling thread. 16-aligned."""
    threads = max(1, threads)
    least = -(-MIN_CHUNK_WORK // max(1, unit_work))  # units in a chunk of the least work
    n_chunks = min(per_thread * threads, m // least)
    if n_chunks >= threads:
        n_chunks -= n_chunks % threads
    n_chunks = max(1, n_chunks)
    most = max(4096, least)
    if -(-m // n_chunks) > most:  # more chunks, none below ``most`` units
        n_chunks = m // most
        if n_chunks >= threads:
            n_chunks -= n_chunks % threads
    per = -(-m // n_chunks)
    return int(max(16, ((per + 15) // 16) * 16))


class _OpenMPTeam:
    """``GOMP_parallel(fn, data, num_threads, flags)`` of the OpenMP runtime torch loaded.

    One C callback is made once per team; ``data`` carries the id of the work to run, looked up in ``_work`` (a
    callback made per call would cost a libffi closure each time)."""

    _CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    def __init__(self, library: ctypes.CDLL, path: str) -> None:
        self.path = path
        self._parallel = library.GOMP_parallel
        self._parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self._parallel.restype = None
        self._work: Dict[int, Callable[[], None]] = {}
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()
        self._callback = self._CALLBACK(self._enter)
        self._address = ctypes.cast(self._callback, ctypes.c_void_p)

    def _enter(self, key: Optional[int]) -> None:
        self._work[key or 0]()

    def run(self, work: Callable[[], None], threads: int) -> None:
        """Call ``work()`` on ``threads`` team threads (the calling thread is one of them); ctypes releases the GIL
        for the call and takes it again in each thread's callback."""
        with self._lock:
            key = next(self._ids)
        self._work[key] = work
        try:
            self._parallel(self._address, key, threads, 0)
        finally:
            del self._work[key]


_RUNTIME_NAME = re.compile(r"^lib(g|i|)omp[0-9]*(-[0-9a-f]+)?\.(so(\.[0-9]+)*|dylib)$")


def _loaded_openmp_libraries() -> List[str]:
    """Paths of the OpenMP runtimes mapped into this process (Linux: ``/proc/self/maps``; elsewhere torch's ``lib``
    folder, opened below only if already loaded)."""
    paths: List[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip() if line.count(" ") >= 5 else ""
                if path.startswith("/") and _RUNTIME_NAME.match(os.path.basename(path)) and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    paths += [str(p) for p in sorted(torch_lib.glob("lib*omp*")) if _RUNTIME_NAME.match(p.name)
              and str(p) not in paths]
    torch_first = sorted(paths, key=lambda p: not p.startswith(str(torch_lib)))
    return torch_first


@functools.lru_cache(maxsize=None)
def _find_team() -> Optional[_OpenMPTeam]:
    """torch's OpenMP runtime, if torch runs on OpenMP and the runtime is loaded and exports ``GOMP_parallel``."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    no_load = getattr(os, "RTLD_NOLOAD", None)
    if no_load is None:  # cannot open a library without possibly loading a second runtime
        return None
    for path in _loaded_openmp_libraries():
        try:
            library = ctypes.CDLL(path, mode=no_load | getattr(os, "RTLD_LOCAL", 0))
            team = _OpenMPTeam(library, path)
        except (OSError, AttributeError):  # not loaded, or no GOMP_parallel
            continue
        logger.debug("kernel threads: the OpenMP team of %s", path)
        return team
    return None


def _mode() -> str:
    mode = os.environ.get("SPIKELIB_KERNEL_THREADS", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"SPIKELIB_KERNEL_THREADS must be one of {', '.join(_MODES)}, got {mode!r}")
    return mode


def openmp_team() -> Optional[str]:
    """The path of the OpenMP runtime whose team runs the kernels, or None where they run on the thread pool."""
    mode = _mode()
    if mode == "pool" or _FORKED:
        if mode == "openmp":
            raise RuntimeError("SPIKELIB_KERNEL_THREADS=openmp: a forked process cannot use the OpenMP team")
        return None
    team = _find_team()
    if team is None and mode == "openmp":
        raise RuntimeError("SPIKELIB_KERNEL_THREADS=openmp: torch does not run on an OpenMP runtime exporting "
                           "GOMP_parallel in this process")
    return None if team is None else team.path


def team_calls() -> Dict[str, int]:
    """How many multi-threaded kernel runs each kind of thread ran: ``{"openmp": n, "pool": m}``."""
    return dict(_CALLS)


def _run_units(run_unit: Callable[[int], None], n_units: int, threads: int) -> None:
    """Run ``run_unit(u)`` for ``u`` in ``range(n_units)`` on ``threads`` threads, each taking the next unit when
    done with one; the first exception stops the hand-out and is re-raised."""
    lock = threading.Lock()
    state = [0]
    errors: List[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    u = state[0]
                    state[0] = u + 1
                if u >= n_units or errors:
                    return
                run_unit(u)
        except BaseException as exc:  # noqa: B902 - re-raised in the caller's thread below
            errors.append(exc)

    team_path = openmp_team()
    if team_path is not None:
        _CALLS["openmp"] += 1
        _find_team().run(work, threads)  # type: ignore[union-attr]
    else:
        _CALLS["pool"] += 1
        pool = _pool()
        futures: List[Future] = [pool.submit(work) for _ in range(1, threads)]
        try:
            work()
        finally:
            for f in futures:
                f.result()
    if errors:
        raise errors[0]


def run_chunked(kernel: Callable[..., None], args: Sequence[object], m: int, chunk: int, threads: int) -> None:
    """Run ``kernel(*args, chunk, c_begin, c_end)`` over all chunks of ``m`` neurons on ``threads`` threads, one
    contiguous range of chunks per thread."""
    n_chunks = -(-m // chunk)
    threads = max(1, min(threads, n_chunks))
    if threads == 1:
        kernel(*args, chunk, 0, n_chunks)
        return
    bounds = [round(i * n_chunks / threads) for i in range(threads + 1)]
    _run_units(lambda i: kernel(*args, chunk, bounds[i], bounds[i + 1]), threads, threads)


def run_dynamic(kernel: Callable[..., None], args: Sequence[object], m: int, chunk: int, threads: int) -> None:
    """Run ``kernel(*args, chunk, c, c + 1)`` for every chunk ``c`` of ``m`` units on ``threads`` threads, each
    taking the next chunk when it is done with one (a slowed-down thread takes fewer chunks)."""
    n_chunks = -(-m // chunk)
    threads = max(1, min(threads, n_chunks))
    if threads == 1:
        kernel(*args, chunk, 0, n_chunks)
        return
    _run_units(lambda c: kernel(*args, chunk, c, c + 1), n_chunks, threads)
