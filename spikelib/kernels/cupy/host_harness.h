// Host emulation of the CUDA built-ins the spikelib kernels use, so that the very same rendered .cu source compiles
// as C++ with g++ and runs on the CPU (tests/test_cupy_emulation.py). Threads are emulated one after another: the
// caller sets the launch coordinates with slk_emu_set() and calls the kernel once per (block, thread). This is exact
// for these kernels because each thread owns its neurons (no shared memory, no synchronisation, no atomics).
#ifndef SLK_HOST_HARNESS
#define SLK_HOST_HARNESS
#define SLK_HOST 1
#include <math.h>
#include <cstring>
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict

struct slk_dim3 { unsigned int x, y, z; };
static slk_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

extern "C" void slk_emu_set(unsigned int thread, unsigned int block, unsigned int block_dim, unsigned int grid_dim) {
    threadIdx.x = thread;
    blockIdx.x = block;
    blockDim.x = block_dim;
    gridDim.x = grid_dim;
}

static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, sizeof u); return u; }
static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, sizeof f); return f; }
#endif  // SLK_HOST_HARNESS
