// spikelib CuPy kernels: shared prelude (storage conversions, the per-neuron loop). Self-contained: it includes no
// header, so NVRTC (what CuPy uses) compiles it without include paths. Compiled as host C++ when SLK_HOST is defined
// (tests: host_harness.h defines the CUDA built-ins and the launch coordinates).
#ifndef SLK_PRELUDE
#define SLK_PRELUDE

// Storage types: float32 is `float`; float16 and bfloat16 are their 16-bit patterns (`unsigned short`), converted to
// float in registers. All arithmetic is float32.
__device__ __forceinline__ float slk_f32_load(float v) { return v; }
__device__ __forceinline__ float slk_f32_store(float v) { return v; }

// bfloat16 = the upper 16 bits of a float32; rounding to nearest even, NaN kept quiet.
__device__ __forceinline__ float slk_bf16_load(unsigned short b) {
    return __uint_as_float(((unsigned int)b) << 16);
}
__device__ __forceinline__ unsigned short slk_bf16_store(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

#ifdef SLK_HOST
// IEEE binary16 in software (host tests only; the device uses the cvt instructions below).
__device__ __forceinline__ float slk_f16_load(unsigned short h) {
    const unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
    const unsigned int exp = ((unsigned int)h >> 10) & 0x1fu;
    unsigned int man = (unsigned int)h & 0x3ffu;
    if (exp == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return __uint_as_float(sign);
        int e = -1;
        do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
        return __uint_as_float(sign | ((unsigned int)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13));
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}
__device__ __forceinline__ unsigned short slk_f16_store(float f) {
    const unsigned int u = __float_as_uint(f);
    const unsigned int sign = (u >> 16) & 0x8000u;
    const unsigned int a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds to >= 65520: infinity
    if (a < 0x38800000u) {                                           // below 2^-14: subnormal half (or zero)
        if (a < 0x33000000u) return (unsigned short)sign;            // below 2^-25: rounds to zero
        const unsigned int e = a >> 23;
        const unsigned int m = (a & 0x7fffffu) | 0x800000u;
        const unsigned int shift = 126u - e;                         // 14..24
        unsigned int r = m >> shift;
        const unsigned int rem = m & ((1u << shift) - 1u);
        const unsigned int half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (unsigned short)(sign | r);
    }
    unsigned int r = ((a - 0x38000000u) >> 13);
    const unsigned int rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return (unsigned short)(sign | r);
}
#else
__device__ __forceinline__ float slk_f16_load(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short slk_f16_store(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

// Unroll the time loops (more loads in flight per thread; x[t] does not depend on the state).
#ifdef SLK_HOST
#define SLK_UNROLL
#else
#define SLK_UNROLL _Pragma("unroll 4")
#endif

// Neuron index of this thread: a grid-stride loop (the host harness runs it for each emulated block and thread).
#define SLK_FOR_EACH_NEURON(m, M)                                                                    \
    for (long long m = (long long)blockIdx.x * blockDim.x + threadIdx.x; m < (M);                    \
         m += (long long)blockDim.x * gridDim.x)

#endif  // SLK_PRELUDE
