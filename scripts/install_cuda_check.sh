#!/usr/bin/env bash
# Install NVRTC (no GPU needed) so that CI compile-checks every generated CuPy kernel variant with the compiler CuPy
# uses at run time (tests/test_cupy_compile.py; nvcc, when present, builds them too). Usage: install_cuda_check.sh PYTHON
set -euo pipefail
PY="${1:?usage: install_cuda_check.sh PYTHON}"
"$PY" -m pip install -q --no-deps "nvidia-cuda-nvrtc-cu12==12.9.86"
"$PY" -c "from spikelib.kernels.cupy.toolchain import find_nvrtc; p = find_nvrtc(); assert p, 'libnvrtc not loadable'; print('NVRTC:', p)"
