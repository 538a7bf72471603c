"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC) from the official HDF5 files.

Files (Cramer et al., IEEE TNNLS 2020; https://zenkelab.org/datasets/): ``shd_{train,test}.h5`` (20 classes) and
``ssc_{train,valid,test}.h5`` (35 classes), each with ``spikes/times`` (variable-length, seconds, ascending),
``spikes/units`` (variable-length, 0..699), ``labels`` ``[N]``, ``extra/keys`` (class names) and ``extra/speaker``
``[N]``. :func:`spikelib.data.write_synthetic_shd` writes files in the same layout.

Binning. With bin width ``dt`` (seconds) and channel pooling by ``p = 700 / channels_out`` (sum of ``p`` neighbouring
units, the SNN-delays recipe 700 -> 140), a sample with spikes ``(t_i, u_i)`` becomes::

    x[k, j] = #{ i : floor(t_i / dt) = k  and  floor(u_i / p) = j },   k = 0..T-1,  j = 0..channels_out-1

with ``T = ceil(max_time / dt)`` (spikes at ``t >= T dt`` are dropped) or, with ``max_time=None``, the per-sample
length ``T = floor(t_last / dt) + 1`` (batches then need :func:`pad_collate`). Times count from 0 as stored, or from
each sample's first spike with ``time_origin="first_spike"`` (spikingjelly's SHD frames, which SNN-delays used;
tested against spikingjelly's own integration). Items are ``(x: float32 [T, C], label:
int)``; a DataLoader gives ``[B, T, C]``.

Event transforms. ``event_transform`` is applied to each sample's events before binning, in tonic's event format
(a structured array with fields ``t`` in microseconds (float64), ``x`` the unit index and ``p = 1``, as tonic's SHD
reader gives them; ``sensor_size = (700, 1, 1)``), so tonic's event transforms (``DropEvent``, ``TimeJitter``,
``SpatialJitter``, ...) work as they do on tonic's own datasets. The events it returns are sorted by time and binned as
above (times ``t / 1e6`` seconds; with ``time_origin="first_spike"`` from the first transformed spike); negative times
and units outside ``0..699`` are errors. ``transform`` receives the binned tensor, so a tonic transform given there is
an error that says to use ``event_transform``. An event transform runs on every read (augmentation): it cannot be
combined with ``cache``. Times stored as float16/float32 (the official files) round-trip exactly through microseconds.

Files are opened lazily, once per process (safe with DataLoader workers; the dataset pickles without its handle) and
closed by :meth:`SHDDataset.close` / garbage collection. The layout is checked when the dataset is created, before
anything is read (missing datasets, external links or storage, empty file, dtypes, shapes, datasets that declare more
samples than the file stores), then the labels' range in their stored type; each sample when it is read (unit indices
that are not integers in 0..699, checked before any cast; negative, non-finite or unsorted times). Binning compares
``floor(t / dt)`` with ``T`` in float64, so no time overflows into another bin, and with ``max_time=None`` a sample
longer than ``max_steps`` bins is an error rather than a huge allocation. Binned samples can be cached in memory
(``cache="memory"``, per process) or on disk (``cache=<folder>``; one ``.npy`` per sample under a key made of the
file's SHA-256 and the binning arguments, written atomically; a cached file of the wrong shape or type is rebuilt).

Validation data come from the training file only (:func:`train_val_split`, by held-out speakers or a seeded
stratified fraction); the SSC files also have an official ``valid`` split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from spikelib.data._hdf5 import (LazyH5, VlenGuard, atomic_save_npy, check_stored, file_sha256, h5_errors,
                                 open_h5, require_dataset)

__all__ = ["SHDDataset", "SSCDataset", "EVENT_DTYPE", "bin_events", "pad_collate", "train_val_split", "expected_files",
           "DATASET_URL"]

logger = logging.getLogger(__name__)

DATASET_URL = "https://zenkelab.org/datasets/"
N_UNITS = 700
MAX_STEPS = 20_000  # bins of one variable-length sample (max_time=None): 20 s at 1 ms, 14 MB at 700 channels
_KINDS: Dict[str, Dict[str, Any]] = {
    "shd": {"splits": ("train", "test"), "n_classes": 20, "folder": "SHD"},
    "ssc": {"splits": ("train", "valid", "test"), "n_classes": 35, "folder": "SSC"},
}
EVENT_DTYPE = np.dtype([("t", np.float64), ("x", np.int64), ("p", np.int64)])  # tonic's event fields (t in us)
_LAYOUT = ("spikes/times (vlen float, seconds), spikes/units (vlen int, 0..699), labels [N], "
           "optional extra/keys and extra/speaker [N]")


def expected_files(kind: str = "shd") -> List[str]:
    """File names of a data set: ``['shd_train.h5', 'shd_test.h5']`` or the three SSC files."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    return [f"{kind}_{split}.h5" for split in _KINDS[kind]["splits"]]


def _unit_indices(units: Any, n_units: int, where: str) -> np.ndarray:
    """Unit indices as int64, checked in their stored type (no truncation of 699.9, no wrap of 2^64 - 1)."""
    raw = np.asarray(units)
    if raw.ndim != 1:
        raise ValueError(f"{where}: units must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{where}: units must be integers, got dtype {raw.dtype}")
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.floor(raw))
        if bad.any():
            raise ValueError(f"{where} has unit index {raw[bad][0]}, not an integer (expected 0..{n_units - 1})")
    bad = (raw < 0) | (raw >= n_units)
    if bad.any():
        raise ValueError(f"{where} has unit index {raw[bad][0]}, expected 0..{n_units - 1}")
    return raw.astype(np.int64)


def _spike_times(times: Any, where: str) -> np.ndarray:
    """Spike times as float64 seconds, checked: finite, >= 0, ascending; integers only where float64 is exact."""
    raw = np.asarray(times)
    if raw.ndim != 1:
        raise ValueError(f"{where}: times must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{where}: times must be numbers (seconds), got dtype {raw.dtype}")
    if raw.dtype.kind in "iu" and raw.size and (raw.max() > 2**53 or raw.min() < 0):
        raise ValueError(f"{where}: integer spike times must be in 0..2^53 (exact in float64), got "
                         f"{raw.min()}..{raw.max()}")
    t = raw.astype(np.float64)
    if t.size:
        if not np.all(np.isfinite(t)) or t.min() < 0:
            raise ValueError(f"{where} has negative or non-finite spike times (expected seconds >= 0)")
        if np.any(np.diff(t) < 0):
            raise ValueError(f"{where} has unsorted spike times (expected ascending)")
    return t


def bin_events(times: np.ndarray, units: np.ndarray, dt: float, n_steps: Optional[int] = None,
               n_units: int = N_UNITS, pool: int = 1, max_steps: int = MAX_STEPS) -> np.ndarray:
    """Spike counts ``[T, n_units // pool]`` (float32) of one sample; see the module docstring for the equation.

    ``times`` (seconds, finite, >= 0, ascending) and ``units`` (integers in ``0..n_units-1``; integral floats are
    accepted) are checked. With ``n_steps=None`` the length follows the last spike and may not exceed ``max_steps``
    bins. Raises ``ValueError`` for anything that cannot be binned exactly (a bin count above 2^24, which float32
    cannot hold).
    """
    if not (isinstance(dt, numbers.Real) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0 (seconds), got {dt!r}")
    for value, name in ((n_units, "n_units"), (pool, "pool"), (max_steps, "max_steps")):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if n_units % pool:
        raise ValueError(f"pool ({pool}) must divide n_units ({n_units})")
    t = _spike_times(times, "bin_events input")
    u = _unit_indices(units, n_units, "bin_events input")
    if t.shape != u.shape:
        raise ValueError(f"bin_events: {t.size} times but {u.size} units")
    steps = np.floor(t / float(dt))  # float64: compared with n_steps before any cast, so no int64 overflow
    if n_steps is None:
        last = float(steps[-1]) if steps.size else 0.0
        if last + 1 > max_steps:
            raise ValueError(f"the last spike at {t[-1]:g} s needs {last + 1:.0f} bins of {dt:g} s, more than "
                             f"max_steps={max_steps}; give a fixed length (max_time / n_steps) or a larger max_steps")
        n_steps = int(last) + 1
    elif isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be None or an int >= 1, got {n_steps!r}")
    n_out = n_units // pool
    keep = steps < n_steps
    flat = steps[keep].astype(np.int64) * n_out + u[keep] // pool
    counts = np.bincount(flat, minlength=int(n_steps) * n_out)
    if counts.size and counts.max() > 2**24:
        raise ValueError(f"a bin holds {counts.max()} spikes, more than float32 counts represent exactly (2^24)")
    return counts.reshape(int(n_steps), n_out).astype(np.float32)


def _is_tonic(fn: object) -> bool:
    module = type(fn).__module__ or ""
    return module == "tonic" or module.startswith("tonic.")


def _check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _decode(names: np.ndarray) -> List[str]:
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names.tolist()]


class SHDDataset(Dataset):
    """SHD (or SSC with ``kind="ssc"``) read lazily from the official HDF5 files and binned to ``[T, C]``.

    Args:
        root: a folder holding ``shd_train.h5`` / ``shd_test.h5`` (also found under ``root/SHD/``, tonic's layout),
            or the path of one ``.h5`` file.
        split: ``"train"`` (default) or ``"test"`` (SSC also ``"valid"``); for a file named ``shd_<split>.h5`` it is
            read from the name (a different ``split`` is an error), so a test file never passes as training data.
        kind: ``"shd"`` (20 classes) or ``"ssc"`` (35 classes).
        bin_ms: bin width in milliseconds (default 10 ms, the SNN-delays recipe).
        n_bins: alternatively the number of bins over ``max_time`` (bin width ``max_time / n_bins``).
        max_time: seconds kept per sample (fixed ``T``); ``None`` keeps every spike (variable ``T``; use
            :func:`pad_collate`).
        channels_out: channels after pooling (sums of ``700 / channels_out`` neighbouring units); must divide 700.
        transform: called on the binned ``float32 [T, C]`` tensor of every item (e.g. augmentations).
        event_transform: called on the events of every item before binning, in tonic's format (module docstring),
            e.g. ``tonic.transforms.DropEvent(p=0.1)``.
        cache: ``None``, ``"memory"`` (per process) or a folder for ``.npy`` caches of binned samples.
        download: when files are missing, download them through tonic (needs tonic and a network).
        time_origin: ``"zero"`` (times as in the file) or ``"first_spike"`` (each sample's times minus its first
            spike time, as spikingjelly's frame integration that SNN-delays used).
        max_steps: with ``max_time=None``, the most bins a sample may need (a longer one raises ``ValueError``
            instead of allocating ``T x channels`` counts for a stray late spike).
    """

    kind = "shd"

    def __init__(
        self,
        root: Union[str, Path],
        split: Optional[str] = None,
        *,
        kind: Optional[str] = None,
        bin_ms: Optional[float] = None,
        n_bins: Optional[int] = None,
        max_time: Optional[float] = 1.4,
        channels_out: int = N_UNITS,
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        event_transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
        cache: Union[None, str, Path] = None,
        download: bool = False,
        time_origin: str = "zero",
        max_steps: int = MAX_STEPS,
    ) -> None:
        kind = self.kind if kind is None else kind
        _check_choice(kind, "kind", sorted(_KINDS))
        self.kind = kind
        info = _KINDS[kind]
        split = self._split_of(Path(root), split, kind)
        _check_choice(split, "split", info["splits"])
        self.split = split
        self.n_classes: int = info["n_classes"]
        self.dt, self.n_steps = self._time_grid(bin_ms, n_bins, max_time)
        self.max_time = max_time
        if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) or max_steps < 1:
            raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
        self.max_steps = int(max_steps)
        _check_choice(time_origin, "time_origin", ("zero", "first_spike"))
        self.time_origin = time_origin
        if isinstance(channels_out, bool) or not isinstance(channels_out, numbers.Integral) or channels_out < 1:
            raise ValueError(f"channels_out must be an int >= 1, got {channels_out!r}")
        if N_UNITS % channels_out:
            raise ValueError(f"channels_out must divide {N_UNITS} (pooling sums equal groups), got {channels_out}")
        self.channels_out = int(channels_out)
        self.pool = N_UNITS // self.channels_out
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        if _is_tonic(transform):
            raise TypeError(f"transform receives the binned tensor [T, C], but {type(transform).__name__} is a tonic "
                            f"transform of events: pass it as event_transform= (applied to each sample's events before "
                            f"binning)")
        if event_transform is not None and not callable(event_transform):
            raise TypeError(f"event_transform must be callable, got {type(event_transform).__name__}")
        if event_transform is not None and cache is not None:
            raise ValueError("cache holds binned samples without transforms, but an event_transform runs on every "
                             "read (augmentation): use cache=None with event_transform")
        self.transform = transform
        self.event_transform = event_transform
        self.path = self._resolve(Path(root), download)
        self._h5 = LazyH5(self.path)
        self._read_header()
        self._memory: Optional[Dict[int, np.ndarray]] = None
        self._cache_dir: Optional[Path] = None
        if cache == "memory":
            self._memory = {}
        elif cache is not None:
            if not isinstance(cache, (str, Path)):
                raise TypeError(f"cache must be None, 'memory' or a folder path, got {type(cache).__name__}")
            self._cache_dir = Path(cache) / self._cache_key()
            self._cache_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _split_of(root: Path, split: Optional[str], kind: str) -> str:
        """The split: given, else read from a file name ``<kind>_<split>.h5``, else ``"train"``."""
        named = None
        if root.is_file():
            for candidate in _KINDS[kind]["splits"]:
                if root.name == f"{kind}_{candidate}.h5":
                    named = candidate
        if split is not None and named is not None and split != named:
            raise ValueError(f"split={split!r} but the file {root} is the {named!r} split")
        return split if split is not None else (named or "train")

    @staticmethod
    def _time_grid(bin_ms: Optional[float], n_bins: Optional[int],
                   max_time: Optional[float]) -> Tuple[float, Optional[int]]:
        if max_time is not None and not (isinstance(max_time, numbers.Real) and math.isfinite(max_time)
                                         and max_time > 0):
            raise ValueError(f"max_time must be None or a finite number of seconds > 0, got {max_time!r}")
        if n_bins is not None:
            if bin_ms is not None:
                raise ValueError("give either bin_ms or n_bins, not both")
            if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
                raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
            if max_time is None:
                raise ValueError("n_bins needs max_time (the bins divide [0, max_time))")
            return float(max_time) / int(n_bins), int(n_bins)
        bin_ms = 10.0 if bin_ms is None else bin_ms
        if isinstance(bin_ms, bool) or not (isinstance(bin_ms, numbers.Real) and math.isfinite(bin_ms)
                                            and bin_ms > 0):
            raise ValueError(f"bin_ms must be a finite number > 0, got {bin_ms!r}")
        dt = float(bin_ms) / 1000.0
        if max_time is None:
            return dt, None
        return dt, max(1, int(math.ceil(float(max_time) / dt - 1e-9)))

    def _resolve(self, root: Path, download: bool) -> Path:
        if root.is_file():
            return root
        name = f"{self.kind}_{self.split}.h5"
        folder = _KINDS[self.kind]["folder"]
        candidates = [root / name, root / folder / name]
        for path in candidates:
            if path.is_file():
                return path
        failure = ""
        if download:
            failure = self._download(root)
            for path in candidates:
                if path.is_file():
                    return path
        hint = (f" To work offline without the real data, write the synthetic stand-in: "
                f"`spikelib data synth-shd --out {root}`." if self.kind == "shd" else "")
        raise FileNotFoundError(
            f"{self.kind.upper()} {self.split} file not found: looked for "
            f"{', '.join(str(p) for p in candidates)}. Download {name}.zip from {DATASET_URL}, unzip it and put "
            f"{name} into {root} (all files of the set: {', '.join(expected_files(self.kind))}), or pass "
            f"download=True with tonic installed and a network.{failure}{hint}"
        )

    def _download(self, root: Path) -> str:
        """Try tonic's downloader; return '' on success or a sentence saying why it failed."""
        try:
            import tonic.datasets as tds  # GPL-3; optional, only used to fetch the files
        except ImportError:
            return " download=True was given but tonic is not installed (pip install tonic)."
        try:
            root.mkdir(parents=True, exist_ok=True)
            if self.kind == "shd":
                tds.SHD(save_to=str(root), train=self.split == "train")
            else:
                tds.SSC(save_to=str(root), split=self.split)
        except (OSError, RuntimeError, ValueError) as exc:  # no network (URLError is an OSError), bad archive
            logger.warning("download of %s %s through tonic failed: %s", self.kind, self.split, exc)
            return f" The download through tonic failed ({type(exc).__name__}: {exc})."
        return ""

    def _read_header(self) -> None:
        with open_h5(self.path) as f, h5_errors(self.path):
            where = str(self.path)
            times = require_dataset(f, "spikes/times", where, _LAYOUT)
            units = require_dataset(f, "spikes/units", where, _LAYOUT)
            labels_ds = require_dataset(f, "labels", where, _LAYOUT)
            import h5py

            for name, ds in (("spikes/times", times), ("spikes/units", units)):
                base = h5py.check_vlen_dtype(ds.dtype)
                if ds.ndim != 1 or base is None or base.kind not in "iuf":
                    raise ValueError(f"{where}: '{name}' must be a 1-D variable-length dataset of numbers, got "
                                     f"shape {ds.shape} dtype {base or ds.dtype} (expected layout: {_LAYOUT})")
            n = times.shape[0]
            if n == 0:
                raise ValueError(f"{where}: empty data set (0 samples)")
            if units.shape[0] != n or labels_ds.shape != (n,):
                raise ValueError(f"{where}: spikes/times has {n} samples but spikes/units has {units.shape[0]} and "
                                 f"labels has shape {labels_ds.shape} (expected [{n}])")
            if labels_ds.dtype.kind not in "iu":
                raise ValueError(f"{where}: labels must be integers, got dtype {labels_ds.dtype}")
            for name, ds in (("spikes/times", times), ("spikes/units", units), ("labels", labels_ds)):
                check_stored(ds, where, name)  # before reading: declared but unwritten data read as zeros
            self._guards = (VlenGuard(f, times, self.path, "spikes/times"),
                            VlenGuard(f, units, self.path, "spikes/units"))
            raw = labels_ds[()]
            bad = (raw < 0) | (raw >= self.n_classes)  # in the stored type: no wrap of large unsigned values
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{where}: label {raw[i].item()} of sample {i} is out of range "
                                 f"0..{self.n_classes - 1} for kind '{self.kind}'")
            labels = raw.astype(np.int64)
            self.class_names = [f"class{i}" for i in range(self.n_classes)]
            if "extra/keys" in f:
                keys = require_dataset(f, "extra/keys", where, _LAYOUT)
                if keys.shape != (self.n_classes,):
                    raise ValueError(f"{where}: extra/keys has {keys.size} class names (shape {keys.shape}), expected "
                                     f"{self.n_classes} for kind '{self.kind}'")
                if keys.dtype.kind not in "SUO":
                    raise ValueError(f"{where}: extra/keys must hold strings, got dtype {keys.dtype}")
                check_stored(keys, where, "extra/keys")
                self.class_names = _decode(keys[()])
            self.speakers: Optional[np.ndarray] = None
            if "extra/speaker" in f:
                speaker_ds = require_dataset(f, "extra/speaker", where, _LAYOUT)
                if speaker_ds.shape != (n,) or speaker_ds.dtype.kind not in "iu":
                    raise ValueError(f"{where}: extra/speaker must be integers of shape [{n}], got shape "
                                     f"{speaker_ds.shape} dtype {speaker_ds.dtype}")
                check_stored(speaker_ds, where, "extra/speaker")
                speakers = speaker_ds[()]
                if speakers.dtype.kind == "u" and speakers.max() > np.iinfo(np.int64).max:
                    raise ValueError(f"{where}: extra/speaker holds {speakers.max()}, beyond int64")
                self.speakers = speakers.astype(np.int64)
        self.labels = labels

    def _cache_key(self) -> str:
        args = {"dt": self.dt, "n_steps": self.n_steps, "pool": self.pool, "origin": self.time_origin, "v": 1}
        digest = hashlib.sha256((file_sha256(self.path) + json.dumps(args, sort_keys=True)).encode()).hexdigest()
        return f"{self.path.stem}-{digest[:20]}"

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _index(self, index: object) -> int:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        return int(index) % n

    def events(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Raw spikes of a sample: ``(times [n] float64 seconds, units [n] int64)``, checked in their stored types."""
        i = self._index(index)
        f = self._h5.file
        where = f"{self.path}: sample {i}"
        for guard in self._guards:  # HDF5 can hang on a damaged heap: check it before HDF5 parses it
            guard.check(i)
        with h5_errors(self.path):
            raw_times, raw_units = f["spikes/times"][i], f["spikes/units"][i]
        times = _spike_times(raw_times, where)
        units = _unit_indices(raw_units, N_UNITS, where)
        if times.shape != units.shape:
            raise ValueError(f"{where} has {times.size} times but {units.size} units")
        return times, units

    def binned(self, index: int) -> np.ndarray:
        """Binned counts ``float32 [T, channels_out]`` of a sample (through the cache when one is set)."""
        i = self._index(index)
        if self._memory is not None and i in self._memory:
            return self._memory[i]
        cached = self._cache_dir / f"{i}.npy" if self._cache_dir is not None else None
        x = self._load_cached(cached) if cached is not None else None
        if x is None:
            times, units = self.events(i)
            if self.time_origin == "first_spike" and times.size:
                times = times - times[0]
            try:
                x = bin_events(times, units, self.dt, self.n_steps, N_UNITS, self.pool, self.max_steps)
            except ValueError as exc:  # e.g. longer than max_steps: name the file and the sample
                raise ValueError(f"{self.path}: sample {i}: {exc}") from None
            if cached is not None:
                # A cache can be rebuilt: atomic rename without fsync (fsync per sample is ~10x slower).
                atomic_save_npy(cached, x.astype(np.uint16) if x.max(initial=0) < 65536 else x, fsync=False)
        if self._memory is not None:
            self._memory[i] = x
        return x

    def _load_cached(self, cached: Path) -> Optional[np.ndarray]:
        if not cached.is_file():
            return None
        try:
            x = np.load(cached, mmap_mode="r", allow_pickle=False)  # header first: nothing is read before the checks
        except (OSError, ValueError, EOFError) as exc:  # damaged by a crash: rebuild it
            logger.warning("ignoring unreadable cache file %s (%s); rebuilding it", cached, exc)
            return None
        expected = (self.n_steps, self.channels_out)
        if (x.ndim != 2 or x.shape[1] != self.channels_out or x.dtype not in (np.uint16, np.float32)
                or (self.n_steps is not None and x.shape != expected)
                or (self.n_steps is None and not 1 <= x.shape[0] <= self.max_steps)):
            logger.warning("ignoring cache file %s with shape %s dtype %s; rebuilding it", cached, x.shape, x.dtype)
            return None
        return np.array(x, dtype=np.float32)

    def transformed_events(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """The events of a sample after ``event_transform``: ``(times [n] float64 seconds, units [n] int64)``, sorted
        by time and checked (the transform runs again on every call)."""
        if self.event_transform is None:
            raise ValueError("this dataset has no event_transform; read the raw events with events()")
        i = self._index(index)
        times, units = self.events(i)
        events = np.empty(times.shape[0], dtype=EVENT_DTYPE)
        events["t"] = times * 1e6
        events["x"] = units
        events["p"] = 1
        out = self.event_transform(events)
        where = f"{self.path}: sample {i}: event_transform {type(self.event_transform).__name__}"
        if not isinstance(out, np.ndarray) or out.dtype.names is None or not {"t", "x"} <= set(out.dtype.names):
            what = out.dtype if isinstance(out, np.ndarray) else type(out).__name__
            raise TypeError(f"{where} must return a structured array of events with fields t (microseconds) and x "
                            f"(unit), got {what}")
        out = out.reshape(-1)
        t = out["t"].astype(np.float64) / 1e6
        u = np.asarray(out["x"])
        if t.size:
            if not np.all(np.isfinite(t)) or t.min() < 0:
                raise ValueError(f"{where} returned negative or non-finite times (min {t.min():g} s); a time jitter "
                                 f"needs to keep times >= 0 (tonic's TimeJitter: clip_negative=True)")
            if u.dtype.kind not in "iuf" or (u.dtype.kind == "f" and not np.all(u == np.floor(u))):
                raise ValueError(f"{where} returned non-integer units (dtype {u.dtype})")
            if u.min() < 0 or u.max() >= N_UNITS:
                raise ValueError(f"{where} returned unit indices in {u.min()}..{u.max()}, expected 0..{N_UNITS - 1}")
        order = np.argsort(t, kind="stable")
        return t[order], u[order].astype(np.int64)

    def _binned_transformed(self, i: int) -> np.ndarray:
        times, units = self.transformed_events(i)
        if self.time_origin == "first_spike" and times.size:
            times = times - times[0]
        return bin_events(times, units, self.dt, self.n_steps, N_UNITS, self.pool)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        i = self._index(index)
        if self.event_transform is not None:
            x = torch.from_numpy(self._binned_transformed(i))
        else:
            x = torch.from_numpy(np.array(self.binned(i), dtype=np.float32, copy=True))
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])

    def check_all(self) -> Dict[str, Any]:
        """Read and check every sample (raises on the first bad one); returns a summary of the file."""
        counts = np.empty(len(self), dtype=np.int64)
        t_max = 0.0
        for i in range(len(self)):
            times, _ = self.events(i)
            counts[i] = times.size
            t_max = max(t_max, float(times[-1]) if times.size else 0.0)
        return {"path": str(self.path), "kind": self.kind, "split": self.split, "samples": len(self),
                "classes_present": int(np.unique(self.labels).size), "n_classes": self.n_classes,
                "speakers": None if self.speakers is None else sorted(set(self.speakers.tolist())),
                "spikes_per_sample": {"mean": float(counts.mean()), "min": int(counts.min()),
                                      "max": int(counts.max())},
                "last_spike_s": t_max}

    @property
    def is_open(self) -> bool:
        """Whether this process holds an open file handle."""
        return self._h5.is_open

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next read)."""
        self._h5.close()

    def __enter__(self) -> "SHDDataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(path={str(self.path)!r}, kind={self.kind!r}, split={self.split!r}, "
                f"n={len(self)}, dt={self.dt * 1000:g} ms, n_steps={self.n_steps}, channels_out={self.channels_out})")


class SSCDataset(SHDDataset):
    """Spiking Speech Commands: :class:`SHDDataset` with ``kind="ssc"`` (35 classes; splits train/valid/test)."""

    kind = "ssc"


def pad_collate(batch: Sequence[Tuple[torch.Tensor, Any]], return_lengths: bool = False):
    """Stack ``(x [T_i, C], label)`` items into ``x [B, max T_i, C]`` (zeros after each sample's end) and ``y [B]``.

    With ``return_lengths=True`` also returns ``lengths [B]`` (int64).
    """
    if len(batch) == 0:
        raise ValueError("pad_collate got an empty batch")
    xs = [item[0] for item in batch]
    if any(not isinstance(x, torch.Tensor) or x.dim() != 2 for x in xs):
        raise ValueError("pad_collate expects items (x: tensor [T, C], label)")
    channels = {x.shape[1] for x in xs}
    if len(channels) != 1:
        raise ValueError(f"pad_collate: items have different channel counts {sorted(channels)}")
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
    out = xs[0].new_zeros((len(xs), int(lengths.max()), xs[0].shape[1]))
    for b, x in enumerate(xs):
        out[b, : x.shape[0]] = x
    y = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.int64)
    return (out, y, lengths) if return_lengths else (out, y)


def train_val_split(dataset: SHDDataset, val_fraction: float = 0.1, seed: int = 0, by: str = "speaker",
                    val_speakers: Optional[Sequence[int]] = None) -> Tuple[Subset, Subset]:
    """Split a *training* set into ``(train, validation)`` subsets; the test set is never used.

    ``by="speaker"`` holds out whole speakers (``val_speakers``, or speakers drawn at random with ``seed`` until at
    least ``val_fraction`` of the samples are held out); ``by="random"`` holds out a seeded, class-stratified
    fraction of the samples.
    """
    if getattr(dataset, "split", None) != "train":
        raise ValueError(f"train_val_split takes the training set (split='train'), got split="
                         f"{getattr(dataset, 'split', None)!r}: validation data must never come from the test set")
    if not (isinstance(val_fraction, numbers.Real) and 0 < val_fraction < 1):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    _check_choice(by, "by", ("speaker", "random"))
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    n = labels.shape[0]
    if by == "speaker":
        if dataset.speakers is None:
            raise ValueError(f"{dataset.path} has no extra/speaker dataset: use by='random'")
        speakers = np.asarray(dataset.speakers)
        present = np.unique(speakers)
        if val_speakers is None:
            if present.size < 2:
                raise ValueError(f"by='speaker' needs >= 2 speakers, the file has {present.size}: use by='random'")
            chosen: List[int] = []
            for s in rng.permutation(present):
                if np.isin(speakers, chosen).sum() >= val_fraction * n or len(chosen) == present.size - 1:
                    break
                chosen.append(int(s))
        else:
            chosen = [int(s) for s in val_speakers]
            missing = sorted(set(chosen) - set(present.tolist()))
            if missing or len(set(chosen)) >= present.size:
                raise ValueError(f"val_speakers must be a proper subset of the speakers {present.tolist()}, "
                                 f"got {list(val_speakers)}")
        is_val = np.isin(speakers, chosen)
    else:
        # Per-class quotas by largest remainder, so the classes keep their shares and the total is
        # round(val_fraction * n).
        classes, sizes = np.unique(labels, return_counts=True)
        exact = val_fraction * sizes
        quota = np.floor(exact).astype(np.int64)
        extra = int(round(val_fraction * n)) - int(quota.sum())
        if extra > 0:
            tie_break = rng.random(classes.size)
            quota[np.lexsort((tie_break, -(exact - quota)))[:extra]] += 1
        is_val = np.zeros(n, dtype=bool)
        for c, q in zip(classes, quota):
            members = rng.permutation(np.flatnonzero(labels == c))
            is_val[members[:q]] = True
        if is_val.all() or not is_val.any():
            raise ValueError(f"val_fraction {val_fraction} leaves an empty train or validation part of {n} samples")
    return Subset(dataset, np.flatnonzero(~is_val).tolist()), Subset(dataset, np.flatnonzero(is_val).tolist())
