"""Reused memory for the large tensors of the CPU kernels (outputs, saved activations, gradients).

Why: glibc's malloc serves a block of many megabytes either with a fresh ``mmap`` (returned to the system when freed)
or from the heap, whose top it gives back to the system once more than the trim threshold is free there. Which of
the two happens to a kernel's ``[T, B, N]`` tensors depends on the process's history (the dynamic mmap threshold
follows the largest block freed so far, and other live blocks decide what the heap can trim), so one process
re-faults every page of one, two or three such tensors on every call and another none: measured for a LIF
forward+backward at T=100, B=32, N=1024 in fresh processes under the default allocator, 0, 3184, 6368 and 9568 minor
page faults per call (one per 4 KiB page of 13 MB tensors) and 6.7-17.2 ms per call against 6.7-7.8 ms with the
malloc variables the benchmarks set. Page faults (and the kernel zeroing the page) cost more than the LIF kernel's
own work on the page.

What: :func:`empty` hands out tensors whose memory comes from a pool of blocks that stay resident. A tensor is a view
of a numpy array whose base is a small *lease* object; the tensor's storage keeps that array (and so the lease)
alive for as long as the tensor or any view of it exists, and when the last one goes the lease puts its block back in
the pool. No block is ever handed out twice while any tensor still uses it, whatever the caller keeps (outputs
stored in a list, gradients held by ``.grad``). Blocks under :data:`MIN_BYTES` come from ``torch.empty`` (the heap
serves those without faults). A request takes the smallest free block of at least its size and at most
:data:`FIT_SLACK` times it; the pool keeps at most :func:`max_free_bytes` of free blocks (least recently freed go
first), so memory held while no kernel runs stays bounded. New blocks are numpy arrays, so those of 4 MiB or more
get transparent huge pages where the system allows them (numpy advises the kernel so), and are 64-byte aligned.

:func:`scratch` is for the transient buffers of one kernel call, used and dropped before the call returns (the
Winograd convolution's tile buffers: several per call, of sizes that change from layer to layer). The pool would keep
one block of each size (measured: Meta-SpikeFormer 8-384's training step peaked 52 MiB higher with its Winograd tile
buffers in the pool than without the pool); :func:`scratch` hands each thread one block, the *arena*, which grows to
the largest request and serves every size, valid only inside the ``with`` block.

:func:`free_bytes` says what the pool and the idle arenas hold and :func:`clear` gives it back to the system (as
``torch.cuda.empty_cache`` does for CUDA memory); :func:`stats` counts hits and new blocks, so tests can prove that a
steady-state call reuses its memory.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import weakref
from typing import Deque, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch

__all__ = ["MIN_BYTES", "FIT_SLACK", "empty", "empty_like", "scratch", "free_bytes", "clear", "stats",
           "max_free_bytes"]

#: Tensors smaller than this come from ``torch.empty``.
MIN_BYTES = 1 << 18
#: A free block serves a request of ``n`` bytes when it has at most ``FIT_SLACK * n`` bytes.
FIT_SLACK = 1.25
_ALIGN = 64
_DEFAULT_MAX_FREE = 1 << 30  # 1 GiB, or an eighth of physical memory if that is less

_NUMPY_DTYPES: Dict[torch.dtype, np.dtype] = {
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
    torch.float16: np.dtype(np.float16),
    torch.int64: np.dtype(np.int64),
    torch.int32: np.dtype(np.int32),
    torch.int16: np.dtype(np.int16),
    torch.int8: np.dtype(np.int8),
    torch.uint8: np.dtype(np.uint8),
    torch.bool: np.dtype(np.bool_),
}


def max_free_bytes() -> int:
    """The most free memory the pool keeps: ``SPIKELIB_WORKSPACE_MB`` if set (0 disables the pool), else 1 GiB or an
    eighth of physical memory, whichever is less."""
    env = os.environ.get("SPIKELIB_WORKSPACE_MB")
    if env:
        try:
            mb = int(env)
        except ValueError:
            raise ValueError(f"SPIKELIB_WORKSPACE_MB must be an integer >= 0 (MiB), got {env!r}") from None
        if mb < 0:
            raise ValueError(f"SPIKELIB_WORKSPACE_MB must be an integer >= 0 (MiB), got {env!r}")
        return mb << 20
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        physical = 8 * _DEFAULT_MAX_FREE
    return int(min(_DEFAULT_MAX_FREE, physical // 8))


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free: "collections.OrderedDict[int, List[np.ndarray]]" = collections.OrderedDict()
        self.free_total = 0
        # Blocks whose last tensor died; appended by _Lease.__del__ without taking the lock (deque.append is atomic),
        # so a lease freed by the garbage collector inside a locked section cannot deadlock.
        self.returned: Deque[np.ndarray] = collections.deque()
        self.hits = 0
        self.new_blocks = 0
        self.bypassed = 0

    def _drain(self, cap: int) -> None:
        while self.returned:
            block = self.returned.popleft()
            self._keep(block, cap)

    def _keep(self, block: np.ndarray, cap: int) -> None:
        n = block.nbytes
        if n > cap:
            return
        while self.free_total + n > cap and self.free:
            size, blocks = next(iter(self.free.items()))
            blocks.pop(0)
            self.free_total -= size
            if not blocks:
                del self.free[size]
        self.free.setdefault(n, []).append(block)
        self.free.move_to_end(n)
        self.free_total += n

    def take(self, nbytes: int, cap: int) -> np.ndarray:
        with self.lock:
            self._drain(cap)
            best = None
            for size in self.free:
                if nbytes <= size <= FIT_SLACK * nbytes and (best is None or size < best):
                    best = size
            if best is not None:
                blocks = self.free[best]
                block = blocks.pop()
                if not blocks:
                    del self.free[best]
                self.free_total -= best
                self.hits += 1
                return block
            self.new_blocks += 1
        return _new_block(nbytes)

    def clear(self) -> None:
        with self.lock:
            self.returned.clear()
            self.free.clear()
            self.free_total = 0


def _new_block(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    offset = (-raw.ctypes.data) % _ALIGN
    return raw[offset:offset + nbytes]


_POOL = _Pool()


def _reset_after_fork() -> None:
    _POOL.lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _Lease:
    """Owns one pool block while any tensor uses it; gives it back when the last one is gone."""

    __slots__ = ("block", "__array_interface__", "__weakref__")

    def __init__(self, block: np.ndarray, shape: Tuple[int, ...], dtype: np.dtype) -> None:
        self.block = block
        self.__array_interface__ = {"shape": shape, "typestr": dtype.str, "data": (block.ctypes.data, False),
                                    "version": 3}

    def __del__(self) -> None:
        block = self.block
        if block is not None:
            self.block = None
            _POOL.returned.append(block)


def empty(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor of ``shape`` and ``dtype``, from the pool when it is large enough.

    Raises:
        ValueError: a negative size.
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have sizes >= 0, got {shape}")
    np_dtype = _NUMPY_DTYPES.get(dtype)
    numel = 1
    for s in shape:
        numel *= s
    nbytes = numel * (np_dtype.itemsize if np_dtype is not None else 0)
    if np_dtype is None or nbytes < MIN_BYTES:  # before max_free_bytes(): it reads the environment (~8 us)
        _POOL.bypassed += 1
        return torch.empty(shape, dtype=dtype)
    cap = max_free_bytes()
    if cap == 0:
        _POOL.bypassed += 1
        return torch.empty(shape, dtype=dtype)
    block = _POOL.take(nbytes, cap)
    array = np.asarray(_Lease(block, shape, np_dtype))
    return torch.from_numpy(array)


def empty_like(t: torch.Tensor) -> torch.Tensor:
    """:func:`empty` with the shape and dtype of ``t`` (a CPU tensor)."""
    if t.device.type != "cpu":
        raise ValueError(f"the workspace holds CPU memory, got a tensor on {t.device}")
    if t.numel() * t.element_size() < MIN_BYTES:  # the common small case without empty()'s bookkeeping
        _POOL.bypassed += 1
        return torch.empty(t.shape, dtype=t.dtype)
    return empty(tuple(t.shape), t.dtype)


class _Arena:
    """One thread's scratch block and whether a ``with scratch(...)`` block of that thread is using it."""

    __slots__ = ("block", "busy", "__weakref__")

    def __init__(self) -> None:
        self.block: np.ndarray = np.empty(0, dtype=np.uint8)
        self.busy = False


_THREAD = threading.local()  # .arena: the thread's _Arena (gone with the thread)
_ARENAS: "weakref.WeakSet[_Arena]" = weakref.WeakSet()  # every live thread's arena, for free_bytes() and clear()
_ARENA_GROWTH = 1 << 20  # an arena grows in whole MiB, so that slightly larger requests do not reallocate each time


@contextlib.contextmanager
def scratch(nbytes: int) -> Iterator[torch.Tensor]:
    """A ``uint8`` CPU tensor of ``nbytes`` bytes (64-byte aligned, uninitialised) for use inside the ``with`` block
    only: after it, the same memory serves the thread's next request, so no view of it may outlive the block.

    The memory is this thread's arena (grown to the largest request so far, in whole MiB; kept between calls and
    counted by :func:`free_bytes`). A nested request of the same thread, a request above :func:`max_free_bytes`, or a
    disabled pool (``SPIKELIB_WORKSPACE_MB=0``) gets memory of its own instead.

    Raises:
        ValueError: a negative size.
    """
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    cap = max_free_bytes()
    arena = getattr(_THREAD, "arena", None)
    if arena is None:
        arena = _THREAD.arena = _Arena()
        with _POOL.lock:
            _ARENAS.add(arena)
    with _POOL.lock:
        usable = not arena.busy and nbytes <= cap
        if usable:
            arena.busy = True
    if not usable:
        yield torch.empty(nbytes, dtype=torch.uint8)
        return
    try:
        if arena.block.nbytes < nbytes:
            arena.block = np.empty(0, dtype=np.uint8)  # the old block goes before the new one is made
            _POOL.new_blocks += 1
            arena.block = _new_block(-(-nbytes // _ARENA_GROWTH) * _ARENA_GROWTH)
        else:
            _POOL.hits += 1
        yield torch.from_numpy(arena.block[:nbytes])
    finally:
        with _POOL.lock:
            arena.busy = False


def _idle_arena_bytes() -> int:
    return sum(a.block.nbytes for a in list(_ARENAS) if not a.busy)


def free_bytes() -> int:
    """Bytes of free blocks the pool holds now and of the arenas no :func:`scratch` block is using (blocks of live
    tensors are not counted)."""
    with _POOL.lock:
        _POOL._drain(max_free_bytes())
        return _POOL.free_total + _idle_arena_bytes()


def clear() -> None:
    """Give every free block and every idle arena back to the system (blocks in use return to the pool later, as
    usual; an arena in use stays with its thread)."""
    _POOL.clear()
    with _POOL.lock:
        for arena in list(_ARENAS):
            if not arena.busy:
                arena.block = np.empty(0, dtype=np.uint8)


def stats() -> Dict[str, int]:
    """``hits`` (requests served by a free block), ``new_blocks``, ``bypassed`` (small: ``torch.empty``),
    ``free_bytes``."""
    return {"hits": _POOL.hits, "new_blocks": _POOL.new_blocks, "bypassed": _POOL.bypassed,
            "free_bytes": free_bytes()}
