"""A synthetic SHD-like data set written in the official Spiking Heidelberg Digits HDF5 layout.

The files ``shd_train.h5`` / ``shd_test.h5`` have exactly the layout of the official SHD files (Cramer et al., IEEE
TNNLS 2020; https://zenkelab.org/datasets/), so :class:`spikelib.data.SHDDataset` (and tonic's ``SHD``) read them::

    spikes/times       vlen float16  [N]   spike times of each sample in seconds, ascending
    spikes/units       vlen uint16   [N]   channel (unit) of each spike, 0..699
    labels             uint16        [N]   class 0..19
    extra/keys         bytes         [20]  class names: English 'zero'..'nine', then German 'null'..'neun'
    extra/speaker      uint16        [N]   speaker id of each sample
    extra/meta_info/{age uint8, gender bytes, body_height float32}  [n_speakers], indexed by speaker id

plus one extra attribute ``spikelib_synthetic`` (JSON: seed, task seed, configuration) on the root group.

Generative recipe (``C = 700`` channels split into ``G = n_bands`` contiguous bands ``[e_g, e_{g+1})``).
A class ``y`` (fixed by ``task_seed``, shared by train and test) is a sequence of ``G`` frequency sweeps: the band
order ``pi_y`` (a permutation, chosen farthest-apart by :func:`~spikelib.data.synthetic.make_class_orders`), a sweep
direction ``d_{y,k} in {+1, -1}``, a duration ``L_{y,k} ~ U(sweep_duration)`` and the gaps ``D_{y,k}`` (from
``gaps``) between consecutive onsets. A speaker ``s`` has a channel shift ``sigma_s ~ U{-speaker_shift..}``, a tempo
``r_s ~ U(speaker_tempo)``, a gain ``log a_s ~ N(0, speaker_gain_sd^2)`` and a ridge-width factor
``w_s ~ U(speaker_width)``. For sample ``n`` (label ``y``, speaker ``s``)::

    onset        o_k = o_0 + sum_{j<k} D_{y,j} + N(0, onset_jitter^2),    o_0 ~ U(onset)
    count        N_k ~ Poisson(spikes_per_sweep * a_s * g_n * h_k),   log g_n ~ N(0, rate_noise^2),
                                                                         log h_k ~ N(0, sweep_rate_noise^2)
    spike        u ~ U(0, 1);   t = o_k + u L_{y,k}
                 c = round(lo_g + (hi_g - lo_g) * (u if d = +1 else 1 - u) + sigma_s + w_s ridge_width N(0, 1))
                 where g = pi_y[k], lo_g = e_g + m, hi_g = e_{g+1} - 1 - m, m = 2 ridge_width
    background   Poisson(background_rate * C * t_bg) spikes, t ~ U(0, t_bg), c ~ U{0..C-1}, over the same
                 window for every class: t_bg = onset_hi + (G-1) max(gaps) + sweep_duration_hi + 0.05 s
    time warp    t' = r_s r_n (t + kappa_n t^2 / 1 s),   r_n ~ U(tempo), kappa_n ~ U(-warp, warp)
    jitter       t'' = |t' + N(0, jitter^2)|;   spikes with c outside [0, C) are dropped;
                 times are stored as float16 and sorted (stable) by their float16 value.

Why counts do not give the class away: a sweep spends the same time at every channel of its band whichever its
direction, the number of spikes per sweep does not depend on its duration or position in the sequence, every
class sweeps every band once, and the background covers the same window for every class. So the per-channel count law is the same for all classes (up to the ridge's spill at
the outermost channels); the class is only visible in *when* and in *which direction* bands are swept (a logistic
regression on counts stays near chance, see ``tests/test_synthetic_shd.py``; one on time-binned inputs or a small SNN
learns it). Samples are balanced over classes; train and test use disjoint speakers (the last ``n_test_speakers``
ids are test speakers), as held-out speakers make SHD's test set harder. Everything is drawn from
``numpy.random.default_rng`` seeded by ``(seed, stream)``, so ``(seed, task_seed, config)`` fixes the files bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from spikelib.data._hdf5 import atomic_path
from spikelib.data.synthetic import make_class_orders

__all__ = ["SHD_KEYS", "SyntheticSHDConfig", "class_templates", "generate_synthetic_shd", "write_synthetic_shd"]

logger = logging.getLogger(__name__)

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_UINT16_IDS = 1 << 16  # labels, speaker ids and units are stored as uint16

SHD_KEYS: Tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun",
)


@dataclasses.dataclass(frozen=True)
class SyntheticSHDConfig:
    """Parameters of the generator (times in seconds, widths in channels); see the module docstring."""

    n_channels: int = 700
    n_classes: int = 20
    n_bands: int = 5
    spikes_per_sweep: float = 250.0
    sweep_duration: Tuple[float, float] = (0.10, 0.20)
    gaps: Tuple[float, ...] = (0.05, 0.09, 0.13)
    ridge_width: float = 5.0
    onset: Tuple[float, float] = (0.02, 0.25)
    onset_jitter: float = 0.01
    jitter: float = 0.002
    rate_noise: float = 0.25
    sweep_rate_noise: float = 0.3
    tempo: Tuple[float, float] = (0.88, 1.12)
    warp: float = 0.15
    background_rate: float = 2.0
    speaker_shift: int = 10
    speaker_tempo: Tuple[float, float] = (0.85, 1.15)
    speaker_gain_sd: float = 0.2
    speaker_width: Tuple[float, float] = (0.8, 1.25)

    def __post_init__(self) -> None:
        for name in ("n_channels", "n_classes", "n_bands", "speaker_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.n_bands < 2 or self.n_classes < 2:
            raise ValueError(f"n_bands and n_classes must be >= 2, got {self.n_bands}, {self.n_classes}")
        if self.n_channels > 65535:
            raise ValueError(f"n_channels must fit uint16 units (<= 65535), got {self.n_channels}")
        if self.n_channels // self.n_bands <= 4 * self.ridge_width + 1:
            raise ValueError(
                f"bands of {self.n_channels // self.n_bands} channels are too narrow for ridge_width "
                f"{self.ridge_width} (need > 4*ridge_width + 1)"
            )
        for name in ("spikes_per_sweep", "ridge_width"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("onset_jitter", "jitter", "rate_noise", "sweep_rate_noise", "warp", "background_rate",
                     "speaker_gain_sd"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.warp >= 0.5:
            raise ValueError(f"warp must be < 0.5 (the time warp must stay monotone), got {self.warp}")
        for name in ("sweep_duration", "onset", "tempo", "speaker_tempo", "speaker_width"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi and math.isfinite(hi)):
                raise ValueError(f"{name} must be a range (lo, hi) with 0 <= lo <= hi, got {(lo, hi)!r}")
        if not self.gaps or any(not (isinstance(g, numbers.Real) and 0 < g < math.inf) for g in self.gaps):
            raise ValueError(f"gaps must be a non-empty tuple of finite numbers > 0, got {self.gaps!r}")

    def to_json(self) -> str:
        """The configuration as JSON (stored in the files)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _directions(n_classes: int, n_bands: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_classes, n_bands]`` of +-1: farthest-point selection in Hamming distance among all sign patterns."""
    codes = ((np.arange(2 ** n_bands)[:, None] >> np.arange(n_bands)) & 1).astype(np.int64)
    rng.shuffle(codes)
    chosen = [0]
    dist = np.abs(codes - codes[0]).sum(1)
    while len(chosen) < n_classes:
        if len(chosen) >= len(codes):  # more classes than sign patterns: repeat patterns (orders still differ)
            chosen.append(chosen[len(chosen) % len(codes)])
            continue
        best = int(np.argmax(dist))
        chosen.append(best)
        dist = np.minimum(dist, np.abs(codes - codes[best]).sum(1))
    return 1 - 2 * codes[chosen]


def class_templates(config: SyntheticSHDConfig, task_seed: int = 0) -> List[Dict[str, np.ndarray]]:
    """The class vocabulary: per class ``order`` [G], ``direction`` [G] (+-1), ``duration`` [G] s, ``gap`` [G-1] s."""
    rng = np.random.default_rng([int(task_seed), 7])
    orders = make_class_orders(config.n_classes, config.n_bands, int(task_seed))
    directions = _directions(config.n_classes, config.n_bands, rng)
    out = []
    for y in range(config.n_classes):
        out.append({
            "order": np.asarray(orders[y], dtype=np.int64),
            "direction": directions[y].astype(np.int64),
            "duration": rng.uniform(*config.sweep_duration, size=config.n_bands),
            "gap": rng.choice(np.asarray(config.gaps, dtype=np.float64), size=config.n_bands - 1),
        })
    return out


def _speakers(n_speakers: int, config: SyntheticSHDConfig, seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    return {
        "shift": rng.integers(-config.speaker_shift, config.speaker_shift, size=n_speakers, endpoint=True),
        "tempo": rng.uniform(*config.speaker_tempo, size=n_speakers),
        "gain": np.exp(rng.normal(0.0, config.speaker_gain_sd, size=n_speakers)),
        "width": rng.uniform(*config.speaker_width, size=n_speakers),
        "age": rng.integers(20, 60, size=n_speakers).astype(np.uint8),
        "gender": rng.choice(np.array([b"female", b"male"]), size=n_speakers),
        "body_height": rng.uniform(155.0, 195.0, size=n_speakers).astype(np.float32),
    }


def _one_sample(rng: np.random.Generator, tpl: Dict[str, np.ndarray], spk: Dict[str, float],
                config: SyntheticSHDConfig, edges: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    C, G = config.n_channels, config.n_bands
    margin = 2.0 * config.ridge_width
    onsets = rng.uniform(*config.onset) + np.concatenate([[0.0], np.cumsum(tpl["gap"])])
    onsets = onsets + rng.normal(0.0, config.onset_jitter, size=G)
    gain = spk["gain"] * math.exp(rng.normal(0.0, config.rate_noise))
    counts = rng.poisson(config.spikes_per_sweep * gain * np.exp(rng.normal(0.0, config.sweep_rate_noise, size=G)))
    times, units = [], []
    for k in range(G):
        band = tpl["order"][k]
        lo, hi = edges[band] + margin, edges[band + 1] - 1 - margin
        u = rng.random(counts[k])
        frac = u if tpl["direction"][k] > 0 else 1.0 - u
        pos = lo + (hi - lo) * frac + spk["shift"] + spk["width"] * config.ridge_width * rng.standard_normal(counts[k])
        times.append(onsets[k] + u * tpl["duration"][k])
        units.append(np.rint(pos))
    t_bg = config.onset[1] + (G - 1) * max(config.gaps) + config.sweep_duration[1] + 0.05  # same for all classes
    n_bg = rng.poisson(config.background_rate * C * t_bg)
    times.append(rng.uniform(0.0, t_bg, size=n_bg))
    units.append(rng.integers(0, C, size=n_bg).astype(np.float64))
    t = np.concatenate(times)
    c = np.concatenate(units)
    tempo = spk["tempo"] * rng.uniform(*config.tempo)
    kappa = rng.uniform(-config.warp, config.warp)
    t = tempo * (t + kappa * t * t)
    t = np.abs(t + rng.normal(0.0, config.jitter, size=t.shape))
    keep = (c >= 0) & (c < C)
    if keep.any() and not t[keep].max() <= _FLOAT16_MAX:
        raise ValueError(f"a spike time of {t[keep].max():g} s is beyond float16 (the SHD time type, at most "
                         f"{_FLOAT16_MAX:g} s); reduce onset, gaps, sweep_duration or the tempo ranges")
    t16 = t[keep].astype(np.float16)
    c16 = c[keep].astype(np.uint16)
    order = np.argsort(t16, kind="stable")
    return t16[order], c16[order]


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def generate_synthetic_shd(
    n_samples: int,
    seed: int = 0,
    split: str = "train",
    *,
    n_speakers: int = 12,
    n_test_speakers: int = 2,
    task_seed: int = 0,
    config: Optional[SyntheticSHDConfig] = None,
    progress: bool = False,
) -> Dict[str, object]:
    """Generate one split in memory (see the module docstring).

    Returns:
        dict with ``times`` and ``units`` (lists of float16 / uint16 arrays), ``labels`` and ``speaker``
        (uint16 ``[N]``), ``speakers`` (the per-speaker table) and ``config``.
    """
    config = config if config is not None else SyntheticSHDConfig()
    if not isinstance(config, SyntheticSHDConfig):
        raise TypeError(f"config must be a SyntheticSHDConfig, got {type(config).__name__}")
    n_samples = _check_count(n_samples, "n_samples", 0)
    seed = _check_count(seed, "seed", 0)
    task_seed = _check_count(task_seed, "task_seed", 0)
    n_speakers = _check_count(n_speakers, "n_speakers", 2)
    n_test_speakers = _check_count(n_test_speakers, "n_test_speakers", 1)
    if n_test_speakers >= n_speakers:
        raise ValueError(f"n_test_speakers must be < n_speakers ({n_speakers}), got {n_test_speakers}")
    if n_speakers > _UINT16_IDS:
        raise ValueError(f"n_speakers must be <= {_UINT16_IDS} (speaker ids are stored as uint16), got {n_speakers}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    templates = class_templates(config, task_seed)
    table = _speakers(n_speakers, config, seed)
    pool = (np.arange(n_speakers - n_test_speakers) if split == "train"
            else np.arange(n_speakers - n_test_speakers, n_speakers))
    rng = np.random.default_rng([seed, 2 if split == "train" else 3])
    labels = rng.permutation(np.arange(n_samples) % config.n_classes).astype(np.uint16)
    speaker = rng.choice(pool, size=n_samples).astype(np.uint16)
    edges = np.rint(np.linspace(0, config.n_channels, config.n_bands + 1)).astype(np.int64)
    times: List[np.ndarray] = []
    units: List[np.ndarray] = []
    iterator: Sequence[int] = range(n_samples)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"synthetic SHD {split}", dynamic_ncols=True)
    for i in iterator:
        s = int(speaker[i])
        spk = {key: table[key][s] for key in ("shift", "tempo", "gain", "width")}
        t, c = _one_sample(rng, templates[int(labels[i])], spk, config, edges)
        times.append(t)
        units.append(c)
    return {"times": times, "units": units, "labels": labels, "speaker": speaker, "speakers": table,
            "config": config}


def _write_h5(path: Path, data: Dict[str, object], keys: Sequence[str], attrs: Dict[str, str]) -> None:
    import h5py

    n = len(data["labels"])  # type: ignore[arg-type]
    times = np.empty(n, dtype=object)
    units = np.empty(n, dtype=object)
    for i in range(n):
        times[i] = data["times"][i]  # type: ignore[index]
        units[i] = data["units"][i]  # type: ignore[index]
    table = data["speakers"]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            spikes = f.create_group("spikes")
            spikes.create_dataset("times", shape=(n,), dtype=h5py.vlen_dtype(np.dtype(np.float16)), data=times)
            spikes.create_dataset("units", shape=(n,), dtype=h5py.vlen_dtype(np.dtype(np.uint16)), data=units)
            f.create_dataset("labels", data=np.asarray(data["labels"], dtype=np.uint16))
            extra = f.create_group("extra")
            extra.create_dataset("keys", data=np.array([k.encode("ascii") for k in keys]))
            extra.create_dataset("speaker", data=np.asarray(data["speaker"], dtype=np.uint16))
            meta = extra.create_group("meta_info")
            meta.create_dataset("age", data=table["age"])  # type: ignore[index]
            meta.create_dataset("gender", data=table["gender"])  # type: ignore[index]
            meta.create_dataset("body_height", data=table["body_height"])  # type: ignore[index]
            for key, value in attrs.items():
                f.attrs[key] = value


def _refuse_foreign(path: Path) -> None:
    """Raise ``FileExistsError`` if ``path`` exists and is not a file written by this generator."""
    if not path.exists():
        return
    import h5py

    try:
        with h5py.File(path, "r") as f:
            synthetic = "spikelib_synthetic" in f.attrs
    except OSError:
        synthetic = False
    if not synthetic:
        raise FileExistsError(f"{path} exists and was not written by the synthetic generator (real SHD data?); "
                              f"choose another folder or pass overwrite=True (--force)")


def write_synthetic_shd(
    out_dir: Union[str, Path],
    n_train: int = 2000,
    n_test: int = 500,
    seed: int = 0,
    *,
    n_speakers: int = 12,
    n_test_speakers: int = 2,
    task_seed: int = 0,
    config: Optional[SyntheticSHDConfig] = None,
    progress: bool = False,
    overwrite: bool = False,
) -> Dict[str, Path]:
    """Write ``out_dir/shd_train.h5`` and ``out_dir/shd_test.h5`` (official SHD layout), each atomically.

    Args:
        out_dir: destination folder (created).
        n_train, n_test: number of samples per split (balanced over the 20 classes).
        seed: fixes speakers and samples; ``task_seed`` fixes the class vocabulary (keep it equal across sets).
        n_speakers, n_test_speakers: speaker ids ``0..n_speakers-1``; the last ``n_test_speakers`` are test-only.
        config: generator parameters (:class:`SyntheticSHDConfig`); the file layout needs its default 20 classes
            and 700 channels.
        progress: show a tqdm bar per split.
        overwrite: replace existing files that were not written by this generator (e.g. the real SHD files);
            earlier synthetic files are always replaced.

    Returns:
        ``{"train": path, "test": path}``.
    """
    config = config if config is not None else SyntheticSHDConfig()
    if not isinstance(config, SyntheticSHDConfig):
        raise TypeError(f"config must be a SyntheticSHDConfig, got {type(config).__name__}")
    if config.n_classes != len(SHD_KEYS) or config.n_channels != 700:
        raise ValueError(f"the SHD file layout has 20 classes and 700 channels; got config.n_classes="
                         f"{config.n_classes}, config.n_channels={config.n_channels} (generate_synthetic_shd "
                         f"makes other sizes in memory)")
    n_train = _check_count(n_train, "n_train", 1)
    n_test = _check_count(n_test, "n_test", 1)
    keys = list(SHD_KEYS)
    out = Path(out_dir)
    if not overwrite:
        for split in ("train", "test"):
            _refuse_foreign(out / f"shd_{split}.h5")
    out.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, Path] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = generate_synthetic_shd(n, seed, split, n_speakers=n_speakers, n_test_speakers=n_test_speakers,
                                      task_seed=task_seed, config=config, progress=progress)
        attrs = {"spikelib_synthetic": json.dumps({
            "generator": "spikelib.data.synthetic_shd", "split": split, "seed": seed, "task_seed": task_seed,
            "n_speakers": n_speakers, "n_test_speakers": n_test_speakers, "config": json.loads(config.to_json()),
        }, sort_keys=True)}
        path = out / f"shd_{split}.h5"
        _write_h5(path, data, keys, attrs)
        n_spikes = sum(len(t) for t in data["times"])  # type: ignore[union-attr]
        logger.info("wrote %s: %d samples, %.0f spikes per sample", path, n, n_spikes / n)
        paths[split] = path
    return paths
