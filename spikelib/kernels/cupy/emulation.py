"""Run the generated CUDA kernels on the CPU: the same rendered source compiled as host C++ (tests only).

``host_harness.h`` defines the CUDA built-ins the kernels use (``__global__``, ``threadIdx`` ...), so the translation
unit of :func:`spikelib.kernels.cupy.codegen.translation_unit` compiles with the system C++ compiler into a shared
library whose ``extern "C"`` kernels are called through ctypes on CPU tensors. :class:`HostLauncher` emulates a grid of
``blocks x threads`` threads one after another (each kernel thread owns its neurons through a grid-stride loop, so the
order does not matter), which exercises the index arithmetic with several blocks and a remainder. This proves the
kernel logic (forward, BPTT, storage conversions) without a GPU; timing and the CUDA launch itself need a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

import torch

from spikelib.kernels.cupy.codegen import VariantKey, translation_unit

__all__ = ["find_host_compiler", "HostLauncher"]

_P, _F, _I = ctypes.c_void_p, ctypes.c_float, ctypes.c_longlong
_FORWARD_ARGS = [_P, _P, _P, _P, _F, _I, _I, _I, _I, _I, _P, _P, _P, _P]
_BACKWARD_ARGS = [_P, _I, _I, _P, _P, _P, _P, _P, _P, _F, _F, _I, _I, _I, _I, _I, _P, _P, _P, _P]
# the multi-state kernels (spikelib.kernels.cupy.multistate)
_MFORWARD_ARGS = [_P, _P, _P, _P, _I, _I, _I, _P, _P, _P]
_MBACKWARD_ARGS = [_P, _I, _I, _P, _P, _P, _P, _P, _P, _P, _F, _I, _I, _I, _P, _P, _P]
_ARGTYPES = {"multistate": (_MFORWARD_ARGS, _MBACKWARD_ARGS)}
_LIBS: Dict[str, ctypes.CDLL] = {}
_LOCK = threading.Lock()


def find_host_compiler() -> Optional[str]:
    """Path of a C++ compiler (``$CXX``, g++, c++ or clang++), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name:
            path = shutil.which(name)
            if path:
                return path
    return None


def _build(source: str, build_dir: Path) -> ctypes.CDLL:
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    with _LOCK:
        if digest in _LIBS:
            return _LIBS[digest]
        cxx = find_host_compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler found (set $CXX or install g++) to emulate the CUDA kernels")
        build_dir.mkdir(parents=True, exist_ok=True)
        src = build_dir / f"slk_{digest}.cpp"
        lib = build_dir / f"slk_{digest}.so"
        if not lib.exists():
            src.write_text(source)
            fd, tmp = tempfile.mkstemp(dir=build_dir, suffix=".so")
            os.close(fd)
            cmd = [cxx, "-O1", "-std=c++14", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unused-function",
                   "-o", tmp, str(src)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                os.unlink(tmp)
                raise RuntimeError(f"host compile of the kernels failed:\n{done.stderr[-4000:]}")
            os.replace(tmp, lib)
        _LIBS[digest] = ctypes.CDLL(str(lib))
        return _LIBS[digest]


class HostLauncher:
    """A launcher for :func:`spikelib.kernels.cupy.backend.multistep` that runs the kernels on the CPU.

    Args:
        keys: the variants to build (one shared library holds them all).
        build_dir: where the source and library go.
        blocks, threads: the emulated grid (threads run one after another).
    """

    name = "host"

    def __init__(self, keys: Iterable[VariantKey], build_dir: Path, blocks: int = 3, threads: int = 5) -> None:
        self.keys = list(keys)
        self.lib = _build(translation_unit(self.keys, host=True), Path(build_dir))
        self.blocks = blocks
        self.threads = threads
        self._set = self.lib.slk_emu_set
        self._set.argtypes = [ctypes.c_uint] * 4
        for key in self.keys:
            fwd, bwd = _ARGTYPES.get(getattr(key, "kind", ""), (_FORWARD_ARGS, _BACKWARD_ARGS))
            getattr(self.lib, key.forward_name).argtypes = fwd
            getattr(self.lib, key.backward_name).argtypes = bwd

    def __call__(self, key: VariantKey, which: str, M: int, device: torch.device, args: Sequence[Any]) -> None:
        if device.type != "cpu":
            raise ValueError(f"the host emulation runs on CPU tensors, got {device}")
        fn = getattr(self.lib, key.forward_name if which == "forward" else key.backward_name)
        converted = []
        for a in args:
            if a is None:
                converted.append(None)
            elif isinstance(a, torch.Tensor):
                if not a.is_contiguous():
                    raise ValueError("kernel buffers must be contiguous")
                converted.append(a.data_ptr())
            else:
                converted.append(a)
        for b in range(self.blocks):
            for t in range(self.threads):
                self._set(t, b, self.threads, self.blocks)
                fn(*converted)
