"""Compile the generated kernels without a GPU: nvcc (``--ptx``) or NVRTC (the compiler CuPy uses) through ctypes.

Used by the CI compile check (tests/test_cupy_compile.py), which builds every variant so that a syntax or type error in
any of them fails CI on a machine without a GPU. nvcc is looked up on ``PATH`` and in ``/usr/local/cuda*/bin``; NVRTC
is ``libnvrtc`` from the ``nvidia-cuda-nvrtc-cu12`` wheel (``scripts/install_cuda_check.sh`` installs it when no
nvcc exists), from ``$CUDA_HOME`` or from ``/usr/local/cuda*``. Neither needs a driver or a device.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from spikelib.kernels.cupy.codegen import COMPILE_OPTIONS

__all__ = ["CompileError", "find_nvcc", "find_nvrtc", "compile_nvcc", "compile_nvrtc"]


class CompileError(RuntimeError):
    """A kernel translation unit did not compile; the message holds the compiler's log."""


def find_nvcc() -> Optional[str]:
    """Path of nvcc (``PATH``, ``$CUDA_HOME/bin``, ``/usr/local/cuda*/bin``) or None."""
    found = shutil.which("nvcc")
    if found:
        return found
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    candidates += sorted(glob.glob("/usr/local/cuda*/bin/nvcc"), reverse=True)
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def find_nvrtc() -> Optional[str]:
    """Path of a loadable libnvrtc (the nvidia-cuda-nvrtc wheel, ``$CUDA_HOME``, ``/usr/local/cuda*``) or None."""
    candidates: List[str] = []
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates += sorted(glob.glob(os.path.join(root, "cuda_nvrtc", "lib", "libnvrtc.so*")))
    for root in filter(None, [os.environ.get("CUDA_HOME")] + sorted(glob.glob("/usr/local/cuda*"), reverse=True)):
        candidates += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    for path in candidates:
        if "builtins" in os.path.basename(path) or ".alt." in os.path.basename(path):
            continue
        try:
            ctypes.CDLL(path)
        except OSError:
            continue
        return path
    return None


def compile_nvcc(source: str, arch: str = "sm_80", nvcc: Optional[str] = None,
                 options: Sequence[str] = COMPILE_OPTIONS) -> str:
    """Compile ``source`` to PTX with nvcc and return the PTX (raises :class:`CompileError` with the log)."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda*/bin)")
    with tempfile.TemporaryDirectory(prefix="slk_nvcc_") as tmp:
        src = Path(tmp) / "kernels.cu"
        out = Path(tmp) / "kernels.ptx"
        src.write_text(source)
        cmd = [nvcc, "--ptx", f"-arch={arch}", *options, "-Werror", "all-warnings", "-o", str(out), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(f"nvcc failed ({' '.join(cmd)}):\n{done.stderr[-6000:]}")
        return out.read_text()


def compile_nvrtc(source: str, arch: str = "compute_80", library: Optional[str] = None,
                  options: Sequence[str] = COMPILE_OPTIONS) -> str:
    """Compile ``source`` to PTX with NVRTC (as CuPy does) and return the PTX."""
    library = library or find_nvrtc()
    if library is None:
        raise FileNotFoundError("libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")
    lib = ctypes.CDLL(library)
    prog = ctypes.c_void_p()

    def check(status: int, what: str) -> None:
        if status != 0:
            lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            raise CompileError(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(status).decode()}")

    check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernels.cu", 0, None, None), "create")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        status = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if status != 0:
            raise CompileError(f"NVRTC compile failed:\n{log.value.decode(errors='replace')[-6000:]}")
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetPTX(prog, ptx), "get PTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
