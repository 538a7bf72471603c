"""CPU kernels generated from templates and compiled with numba (optional dependency, imported lazily)."""
