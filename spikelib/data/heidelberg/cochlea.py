"""Cochlea model turning audio into 700-channel spike trains: the pipeline the Spiking Heidelberg Digits were made with.

Sources (our implementation of their equations; the parameter values are those of the SHD pipeline):

- SHD: B. Cramer, Y. Stradmann, J. Schemmel, F. Zenke, "The Heidelberg spiking data sets for the systematic
  evaluation of spiking neural networks", IEEE TNNLS 33(7), 2020 (section III: RMS-normalised audio, Hann window,
  hydrodynamic basilar membrane, Meddis hair cells, bushy cells with 40-fold convergence).
- Basilar membrane: N. Sieroka, H. G. Dosch, A. Rupp, "Semirealistic models of the cochlea", JASA 120(1), 297, 2006
  (long-wave shallow-water transmission line, WKB solution in Hankel functions).
- Inner hair cell: R. Meddis, JASA 79(3), 702, 1986 and JASA 83(3), 1056, 1988 (transmitter reservoir model).
- Bushy cells: LIF neurons each driven by 40 refractory auditory-nerve fibres, as described in Cramer et al. 2020.

Reference implementation, used only as a test-time comparison: PyPI ``lauscher`` 1.0.1 (electronicvisions/lauscher,
``lauscher/transformations/*.py``, LGPL-2.1). No code is taken from it; tests check stage-by-stage agreement
(tests/test_heidelberg_cochlea.py).

Equations (x = place in [0, L], L = 3.5, channel k at x_k = k L / (K - 1); omega = angular frequency)::

    pre-processing   a <- a * 0.3 / rms(a);   a <- a * hann(2 floor(N/2))   (ramps over each half of the clip)
    stiffness        s(x) = c0 e^{-alpha x} - A          damping  r(x) = delta sqrt(c0 m) e^{-alpha x / 2}
    impedance        xi(w, x) = s(x) - m w^2 - i w r(x)
    wave number      g(w, x) = w sqrt(rho / (h xi))
    phase            q(w) = sqrt(A + m w^2),  B(w, x) = e^{alpha x / 2} (i (q^2 + i w r(x) / 2) / q - sqrt(xi))
                     G(w, x) = 2 g(w, 0) / alpha - 2 i w / (alpha q sqrt(h)) log(B(w, 0) / B(w, x))
    pressure         P(w, x) = sqrt(G / g(w, x)) H0^(1)(G)
    stapes input     beta = 2 w / alpha sqrt(2 / (h c0)),
                     Z(w) = sqrt(2 c0 / h) (i J0(beta) + Y0(beta)) / (J1(beta) - i Y1(beta))
    velocity         V(w, x) = 2 w / xi(w, x) P(w, x) / P(w, 0) Z(w)

  With N audio samples at rate fs, the SHD pipeline evaluates V on M = floor(N/2) + 1 frequencies
  w_j = 2 pi (1 + j (fs'-1)/(M-1)), fs' = floor(fs/2), multiplies the first M FFT bins of the audio, and takes the real
  part of a length-M inverse FFT: a membrane velocity u[k, n] at rate fs'. (This discretisation, and with it the exact
  numbers of SHD, is kept as is.)

    hair cell (per channel, dt = 1/fs'; k(t) = g dt (u + A) / (u + A + B) if u + A > 0 else 0)
        q' = max(q + [y dt (M - q) if q < M else 0] - k q + x dt w, 0)
        c' = max(c + k q - (l + r) dt c, 0)
        w' = max(w + r dt c - x dt w, 0)
        p[n] = h dt c'                                   (release probability per step)
      starting from the steady state at rest: c = M y k0 / (l k0 + y (l + r)), q = c (l + r) / k0, w = c r / x,
      k0 = g A / (A + B).

    fibres: 40 per channel, each fires with probability p[n] unless it fired less than tau_ref fs' steps before.
      Fibres of one channel are exchangeable, so the number firing is drawn as
      n_fire[n] ~ Binomial(40 - sum_{d=1}^{R} n_fire[n - d], p[n]),  R = ceil(tau_ref fs') - 1
      (the same distribution as simulating the 40 fibres).

    bushy LIF (dt = 1/fs', I = synaptic current summed over fibres, w = 13000 / 40):
        I[n] = I[n-1] e^{-dt / tau_syn} + n_fire[n]
        if not refractory: v[n] = v[n-1] e^{-dt / tau_mem} (or, if v[n-1] >= 1: spike at n-1, v[n] = 0,
                           refractory for tau_ref), then v[n] += I[n] w dt;  v[n] = min(v[n], 1)
        while refractory:  v[n] = 0 (the counter starts at tau_ref fs' and drops by 1 per step)

Channel 0 is the base (about 22.5 kHz), channel K-1 the apex (about 110 Hz), as in SHD's ``units``.
Speed: the transfer function V depends only on (N, fs, channels, parameters) and is cached; per clip the work is one
FFT, K inverse FFTs of length M and two numba loops over channels (parallel).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from spikelib._atomic import atomic_write

__all__ = ["CochleaParams", "Cochlea", "basilar_membrane", "hair_cell", "bushy_cells", "bushy_lif", "fibre_counts",
           "folded_transfer", "preprocess", "transfer_function"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CochleaParams:
    """Model constants (SI-like units of the SHD pipeline). Defaults reproduce SHD."""

    # basilar membrane (Sieroka et al. 2006)
    length: float = 3.5
    stiffness_a: float = 3500.0
    alpha: float = 3.0
    rho: float = 1.0
    c0: float = 1e9
    damping: float = 0.15
    height: float = 0.1
    mass: float = 0.05
    # Meddis hair cell
    hc_y: float = 5.05
    hc_g: float = 2000.0
    hc_l: float = 2500.0
    hc_r: float = 6580.0
    hc_x: float = 66.3
    hc_a: float = 5.0
    hc_b: float = 300.0
    hc_h: float = 50000.0
    hc_m: float = 1.0
    # bushy cells
    n_convergence: int = 40
    tau_mem: float = 1e-3
    tau_syn: float = 5e-4
    tau_ref: float = 1e-3
    weight: float = 13e3
    # pre-processing
    rms_level: float = 0.3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"CochleaParams.{f.name} must be a positive finite number, got {value!r}")
        if int(self.n_convergence) != self.n_convergence:
            raise ValueError(f"CochleaParams.n_convergence must be an integer, got {self.n_convergence!r}")


def _scipy_special():
    try:
        from scipy import special
    except ImportError as err:  # pragma: no cover - exercised only without scipy
        raise ImportError("the cochlea model needs scipy (Bessel/Hankel functions): "
                          "run `bash scripts/install_speech.sh <python>` or `pip install scipy`") from err
    return special


def _numba():
    try:
        import numba
    except ImportError as err:  # pragma: no cover - exercised only without numba
        raise ImportError("the cochlea model needs numba: install spikelib's `fast` extra "
                          "(`pip install -e .[fast]`, done by `make`)") from err
    return numba


def preprocess(audio: np.ndarray, rms_level: float = 0.3) -> np.ndarray:
    """RMS-normalise to ``rms_level`` and apply the Hann ramps over each half of the clip (float64 copy)."""
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim != 1 or a.size < 4:
        raise ValueError(f"audio must be a 1-D array of at least 4 samples, got shape {a.shape}")
    rms = float(np.sqrt(np.mean(a * a)))
    if not math.isfinite(rms) or rms == 0.0:
        raise ValueError("audio is silent or not finite; cannot RMS-normalise it")
    a = a * (rms_level / rms)
    half = a.size // 2
    ramp = np.hanning(2 * half)[:half]
    a[:half] *= ramp
    a[a.size - half:] *= ramp[::-1]
    return a


def frequencies(n_samples: int, sample_rate: int) -> Tuple[np.ndarray, int]:
    """Angular frequencies of the M = N//2 + 1 evaluated bins and the output rate floor(fs/2)."""
    out_rate = int(sample_rate) // 2
    return 2.0 * np.pi * np.linspace(1.0, out_rate, n_samples // 2 + 1), out_rate


def transfer_function(n_samples: int, sample_rate: int, channels: int = 700,
                      params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Complex velocity transfer function V[j, k] ((N//2 + 1) frequencies x channels), cached per arguments."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
        raise ValueError(f"channels must be an int >= 2, got {channels!r}")
    return _transfer_cached(int(n_samples), int(sample_rate), channels, params)


def _compute_transfer(n_samples: int, sample_rate: int, channels: int, p: CochleaParams) -> np.ndarray:
    w_all, _ = frequencies(n_samples, sample_rate)
    chunks = np.array_split(np.arange(w_all.size), max(1, min(8, w_all.size // 256)))
    # scipy's special functions and numpy's ufuncs release the GIL: the frequency chunks run in parallel
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        parts = list(pool.map(lambda idx: _transfer_rows(w_all[idx], channels, p), chunks))
    v = np.ascontiguousarray(np.concatenate(parts, axis=0))
    v.setflags(write=False)
    return v


def _transfer_rows(w: np.ndarray, channels: int, p: CochleaParams) -> np.ndarray:
    special = _scipy_special()
    w = w[:, None]
    x = np.linspace(0.0, p.length, channels)[None, :]
    r0 = p.damping * np.sqrt(p.c0 * p.mass)

    def xi(pos):
        return (p.c0 * np.exp(-p.alpha * pos) - p.stiffness_a) - p.mass * w ** 2 - 1j * w * (
            r0 * np.exp(-p.alpha * pos / 2.0))

    def wave_number(pos):
        return w * np.sqrt(p.rho / (p.height * xi(pos)))

    q = np.sqrt(p.stiffness_a + p.mass * w ** 2)

    def phase_base(pos):
        return np.exp(p.alpha * pos / 2.0) * (
            1j * (q ** 2 + 0.5j * w * r0 * np.exp(-p.alpha * pos / 2.0)) / q - np.sqrt(xi(pos)))

    g0 = wave_number(0.0)
    b0 = phase_base(0.0)

    def pressure(pos):
        big_g = 2.0 * g0 / p.alpha - 2j * w / (p.alpha * q * np.sqrt(p.height)) * np.log(b0 / phase_base(pos))
        return np.sqrt(big_g / wave_number(pos)) * special.hankel1(0, big_g)

    beta = 2.0 * w / p.alpha * np.sqrt(2.0 / (p.height * p.c0))
    z = np.sqrt(2.0 * p.c0 / p.height) * (1j * special.j0(beta) + special.y0(beta)) / (
        special.j1(beta) - 1j * special.y1(beta))
    return 2.0 * w / xi(x) * pressure(x) / pressure(0.0) * z


_transfer_cached = lru_cache(maxsize=2)(_compute_transfer)


def folded_transfer(n_samples: int, sample_rate: int, channels: int = 700,
                    params: CochleaParams = CochleaParams()) -> Tuple[np.ndarray, np.ndarray]:
    """The transfer function as the two halves the real inverse FFT needs (see :func:`_folded`); not cached."""
    v = _compute_transfer(int(n_samples), int(sample_rate), int(channels), params)
    m = v.shape[0]
    rev = (-np.arange(m // 2 + 1)) % m
    return 0.5 * v[: m // 2 + 1], 0.5 * np.conj(v[rev])


@lru_cache(maxsize=2)
def _folded(n_samples: int, sample_rate: int, channels: int, p: CochleaParams) -> Tuple[np.ndarray, np.ndarray]:
    """Halves of V for the real inverse transform: Re(ifft_M(Y))[n] = irfft_M(S)[n] with
    S_j = (Y_j + conj(Y_{-j mod M})) / 2, j = 0..M//2, Y = V X."""
    return folded_transfer(n_samples, sample_rate, channels, p)


def basilar_membrane(audio: np.ndarray, sample_rate: int, channels: int = 700,
                     params: CochleaParams = CochleaParams(), workers: int = -1,
                     folded: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Tuple[np.ndarray, int]:
    """Membrane velocity ``[N//2 + 1, channels]`` (float64, time-major) at rate ``floor(fs/2)``.

    ``audio`` is the pre-processed clip (:func:`preprocess`); ``workers`` threads run the FFTs; ``folded`` is the
    transfer function in the form :func:`folded_transfer` returns (computed and cached in memory when omitted).
    """
    from scipy import fft as sfft

    a = np.asarray(audio, dtype=np.float64)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
        raise ValueError(f"channels must be an int >= 2, got {channels!r}")
    v_low, v_high = folded if folded is not None else _folded(a.size, int(sample_rate), channels, params)
    if v_low.shape != ((a.size // 2 + 1) // 2 + 1, channels):
        raise ValueError(f"folded transfer function of shape {v_low.shape} does not fit {a.size} samples and "
                         f"{channels} channels")
    m = a.size // 2 + 1
    spectrum = sfft.fft(a, workers=workers)[:m]
    rev = (-np.arange(m // 2 + 1)) % m
    folded = _kernels().fold(v_low, v_high, np.ascontiguousarray(spectrum), rev)
    return sfft.irfft(folded, n=m, axis=0, workers=workers, overwrite_x=True), int(sample_rate) // 2


def hair_cell(velocity: np.ndarray, out_rate: int, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Release probability per step ``[T, channels]`` of the Meddis hair cells driven by the membrane velocity."""
    p = params
    u = np.ascontiguousarray(velocity, dtype=np.float64)
    return _kernels().meddis(u, float(out_rate), p.hc_y, p.hc_g, p.hc_l, p.hc_r, p.hc_x, p.hc_a, p.hc_b, p.hc_h,
                             p.hc_m)


def fibre_counts(probability: np.ndarray, out_rate: int, seed: int,
                 params: CochleaParams = CochleaParams()) -> np.ndarray:
    """How many of each channel's ``n_convergence`` refractory fibres fire per step, ``[T, channels]`` int16."""
    prob = np.ascontiguousarray(probability, dtype=np.float64)
    seeds = np.random.SeedSequence(int(seed)).generate_state(prob.shape[1], dtype=np.uint64)
    return _kernels().fibres(prob, float(out_rate), int(params.n_convergence), params.tau_ref, seeds)


def bushy_lif(counts: np.ndarray, out_rate: int, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Dense spikes ``[T, channels]`` (uint8) of the bushy LIF cells driven by fibre counts ``[T, channels]``."""
    p = params
    c = np.ascontiguousarray(counts, dtype=np.int16)
    return _kernels().lif(c, float(out_rate), int(p.n_convergence), p.tau_mem, p.tau_syn, p.tau_ref, p.weight)


def bushy_cells(probability: np.ndarray, out_rate: int, seed: int,
                params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Dense spikes ``[T, channels]`` (uint8) of the bushy cells; deterministic for a given ``seed``."""
    return bushy_lif(fibre_counts(probability, out_rate, seed, params), out_rate, params)


def _kernels():
    _numba()
    from spikelib.kernels.cpu.cache import import_kernel_module  # numba's cache in the verified store

    return import_kernel_module("spikelib.data.heidelberg._cochlea_kernels")


class Cochlea:
    """Audio -> spikes with the SHD pipeline; ``channels`` (700 in SHD) and ``params`` fixed per instance.

    ``cache_dir``: where transfer functions (one per clip length, ~90 MB for 0.74 s at 700 channels) are kept
    between runs; without it they are kept in memory only (computing one takes several seconds).
    """

    def __init__(self, channels: int = 700, params: CochleaParams = CochleaParams(),
                 cache_dir: Optional[os.PathLike] = None, workers: int = -1) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
            raise ValueError(f"channels must be an int >= 2, got {channels!r}")
        if not isinstance(params, CochleaParams):
            raise TypeError(f"params must be a CochleaParams, got {type(params).__name__}")
        self.channels = channels
        self.params = params
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.workers = workers
        self._transfer: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    def transfer(self, n_samples: int, sample_rate: int) -> Tuple[np.ndarray, np.ndarray]:
        """Folded transfer function for clips of ``n_samples`` at ``sample_rate`` (memory, disk, or computed)."""
        key = (int(n_samples), int(sample_rate))
        if key in self._transfer:
            return self._transfer[key]
        path = None
        if self.cache_dir is not None:
            tag = hashlib.sha256(repr((key, self.channels, self.params)).encode()).hexdigest()[:16]
            path = self.cache_dir / f"transfer-{key[0]}-{key[1]}-{self.channels}-{tag}.npz"
        if path is not None and path.is_file():
            with np.load(path) as data:
                pair = (data["low"], data["high"])
        else:
            log.info("computing the basilar-membrane transfer function for %d samples at %d Hz", *key)
            pair = folded_transfer(key[0], key[1], self.channels, self.params)
            if path is not None:
                atomic_write(path, lambda handle: np.savez(handle, low=pair[0], high=pair[1]), create_parent=True)
        self._transfer[key] = pair
        return pair

    def __call__(self, audio: np.ndarray, sample_rate: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
        """Return ``(times [s] float64, units int64)`` sorted by time, then unit, like SHD's samples."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1000:
            raise ValueError(f"sample_rate must be an int >= 1000 Hz, got {sample_rate!r}")
        a = preprocess(audio, self.params.rms_level)
        folded = self.transfer(a.size, int(sample_rate))
        velocity, rate = basilar_membrane(a, int(sample_rate), self.channels, self.params, self.workers, folded)
        prob = hair_cell(velocity, rate, self.params)
        dense = bushy_cells(prob, rate, seed, self.params)
        steps, units = np.nonzero(dense)
        return steps / float(rate), units.astype(np.int64)
