"""numba kernel of the depth-wise convolution's weight gradient (imported lazily by :mod:`.depthwise_numba`).

Layout: channel-major. ``xp[c]`` holds the ``N`` images of channel ``c`` one after another, each zero-padded to
``Hp x Wp`` (row stride ``Wp``) and followed by a zero tail, a block of ``P`` values per image; ``gp[c]`` holds the
output gradients ``Ho x Wo`` of the same images with the same row stride and block length (zero elsewhere). The
weight gradient of tap ``(p, q)`` (dilation ``dh, dw``) is then one dot product over all images::

    gw[c, p, q] = sum_j xp[c, j + p dh Wp + q dw] gp[c, j],     j < (N - 1) P + Ho Wp

(wherever a read runs past a row or an image, the gradient it meets is a zero: exact for finite inputs). The dot is
a contiguous reduction LLVM vectorises (``fastmath`` reassociation: the sum is taken in vector lanes), taken in
segments of :data:`SEGMENT` products so that every tap reads a segment from L1. The kernel is
serial (``nogil=True``) over the channels ``[c_begin chunk, c_end chunk)``;
:func:`spikelib.kernels.cpu.threads.run_chunked` runs disjoint ranges on several threads.
"""

from __future__ import annotations

import numba

SEGMENT = 2048  # products per segment: 8 KiB of g and a bit more of x in float32


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"}, inline="always")
def _dot(x, offset, g, length, zero):  # pragma: no cover - compiled
    xs = x[offset:]
    s = zero
    for j in range(length):
        s += xs[j] * g[j]
    return s


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def weight_grad(xp, gp, gw, length, wp, dh, dw, zero, chunk, c_begin, c_end):  # pragma: no cover - compiled
    channels, kh_size, kw_size = gw.shape
    for c in range(c_begin * chunk, min(channels, c_end * chunk)):
        for p in range(kh_size):
            for q in range(kw_size):
                gw[c, p, q] = zero
        # segments of SEGMENT products: their x and g values stay in L1 while every tap reads them
        for j0 in range(0, length, SEGMENT):
            n = min(SEGMENT, length - j0)
            x = xp[c, j0:]
            g = gp[c, j0:]
            for p in range(kh_size):
                for q in range(kw_size):
                    gw[c, p, q] += _dot(x, p * dh * wp + q * dw, g, n, zero)
