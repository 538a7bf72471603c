"""``vexp`` and ``vtanh``: an exponential and a hyperbolic tangent that LLVM can vectorise inside numba kernels.

numba calls libm's ``expf`` for ``np.exp`` one element at a time (its SVML path needs an SVML-patched LLVM, which the
pip builds of llvmlite are not), so a loop computing the Sigmoid surrogate ran scalar: the LIF backward at T=4,
M=393216 took 4.7 ms with the Sigmoid surrogate and 1.7 ms with ATan (no exponential). ``vexp`` is written from
operations LLVM vectorises (multiply-adds, a rounding by the ``1.5 * 2**23`` shift, integer shifts and a bit cast), so
the surrounding loop stays a SIMD loop.

float32 (Cephes ``expf``'s reduction and polynomial, written anew)::

    n = round(z / ln 2),   r = z - n ln2_hi - n ln2_lo          (|r| <= ln 2 / 2; ln2_hi has 9 significant bits,
                                                                so n ln2_hi is exact)
    exp(r) ~ 1 + r + r^2 (c2 + c3 r + c4 r^2 + c5 r^3 + c6 r^4 + c7 r^5)
    exp(z) = exp(r) 2^(n >> 1) 2^(n - (n >> 1))                 (power-of-two scalings for -151 <= n <= 128: the
                                                                first is exact, the second rounds once, also to a
                                                                subnormal result)

with ``exp(z) = +inf`` above ``log(FLT_MAX)`` and ``0`` below ``-104``. Over every float32 in [-104, 88.7] the result
is within 1 ulp of the exact exponential (measured; tests/test_vector_math.py checks a dense sample); NaN gives NaN. float64 arguments run ``np.exp`` (their kernels are the
reference checks, where libm's accuracy matters more than speed).

float32 ``tanh`` from that exponential, with ``a = |z|`` and the sign of ``z`` put back::

    tanh(a) = (1 - e) / (1 + e),  e = exp(-2 a)                        (a >= 0.25)
    tanh(a) ~ a + a^3 (-1/3 + a^2 (2/15 + a^2 (-17/315 + a^2 (62/2835   (a < 0.25: Taylor, the next term is below
                        + a^2 (-1382/155925)))))                        3e-10 relative; the quotient loses bits there)

within 3 ulp (tests/test_vector_math.py); NaN gives NaN, +-inf gives +-1. float64 runs ``np.tanh``. The quotient
vectorises only in a kernel compiled with ``error_model="numpy"`` (Python's error model adds a ZeroDivisionError
branch to every division).

The functions are compiled without numba's own cache: they are inlined into the generated kernels, whose compiled code
the verified kernel cache holds (:mod:`.cache`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["vexp", "exp32", "vtanh", "tanh32"]

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_ROUND_SHIFT = np.float32(12582912.0)  # 1.5 * 2**23: adding and subtracting it rounds |v| < 2**22 to an integer
_C7 = np.float32(1.9875691500e-4)
_C6 = np.float32(1.3981999507e-3)
_C5 = np.float32(8.3334519073e-3)
_C4 = np.float32(4.1665795894e-2)
_C3 = np.float32(1.6666665459e-1)
_C2 = np.float32(5.0000001201e-1)
_MAX_ARG = np.float32(88.72283)  # log(FLT_MAX) rounded down: above it exp overflows
_MIN_ARG = np.float32(-104.0)  # below it exp rounds to 0 (half the smallest subnormal is exp(-103.97))
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_INF = np.float32(np.inf)


@intrinsic
def _bits_as_float32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (LLVM ``trunc`` and ``bitcast``; vectorises)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@njit(inline="always")
def _power_of_two(n):
    """``2**n`` as float32 for ``-126 <= n <= 127`` (the exponent field set directly)."""
    return _bits_as_float32((n + np.int32(127)) << np.int32(23))


@njit(inline="always")
def exp32(z):
    """``exp(z)`` for a float32 ``z`` (module docstring: within 2 ulp, vectorisable)."""
    n_f = (z * _LOG2E + _ROUND_SHIFT) - _ROUND_SHIFT
    r = (z - n_f * _LN2_HI) - n_f * _LN2_LO
    p = _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    e = (p * r) * r + r + _ONE
    n = np.int32(max(min(n_f, np.float32(128.0)), np.float32(-151.0)))  # (NaN: any n; the product stays NaN)
    half = n >> np.int32(1)
    value = e * _power_of_two(half) * _power_of_two(n - half)
    if z > _MAX_ARG:
        return _INF
    if z < _MIN_ARG:
        return _ZERO
    return value


def vexp(z):
    """``exp(z)`` in generated kernels: :func:`exp32` for float32, ``np.exp`` otherwise."""
    return np.exp(z)


@overload(vexp, inline="always")
def _vexp_overload(z):
    if z == types.float32:
        return lambda z: exp32(z)
    return lambda z: np.exp(z)


_TANH_SMALL = np.float32(0.25)
_T3 = np.float32(-1.0 / 3.0)
_T5 = np.float32(2.0 / 15.0)
_T7 = np.float32(-17.0 / 315.0)
_T9 = np.float32(62.0 / 2835.0)
_T11 = np.float32(-1382.0 / 155925.0)
_TWO = np.float32(2.0)


@njit(inline="always")
def tanh32(z):
    """``tanh(z)`` for a float32 ``z`` (module docstring: within 3 ulp, vectorisable)."""
    a = abs(z)
    e = exp32(-_TWO * a)
    big = (_ONE - e) / (_ONE + e)
    a2 = a * a
    small = a + a * a2 * (_T3 + a2 * (_T5 + a2 * (_T7 + a2 * (_T9 + a2 * _T11))))
    t = small if a < _TANH_SMALL else big
    return -t if z < _ZERO else t


def vtanh(z):
    """``tanh(z)`` in numba kernels: :func:`tanh32` for float32, ``np.tanh`` otherwise."""
    return np.tanh(z)


@overload(vtanh, inline="always")
def _vtanh_overload(z):
    if z == types.float32:
        return lambda z: tanh32(z)
    return lambda z: np.tanh(z)
