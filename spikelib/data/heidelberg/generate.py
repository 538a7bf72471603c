"""Synthetic Heidelberg Digits: spoken digits (eSpeak NG) -> cochlea model -> SHD-format HDF5 files.

``generate_heidelberg(out_dir, speakers, repeats, seed)`` makes ``speakers`` synthetic speakers
(:mod:`~spikelib.data.heidelberg.tts`), has each say every digit of every language ``repeats`` times, passes each
clip through the cochlea model (:mod:`~spikelib.data.heidelberg.cochlea`, 700 channels as in SHD) and writes
``shd_train.h5`` and ``shd_test.h5`` in the layout of the Spiking Heidelberg Digits (Cramer et al., IEEE TNNLS 2020):

    spikes/times      (n,) variable-length float16, seconds, sorted
    spikes/units      (n,) variable-length uint16, 0 = highest frequency (~22.5 kHz) .. 699 (~110 Hz)
    labels            (n,) uint16, 0..9 English 'zero'..'nine', 10..19 German 'null'..'neun'
    extra/keys        (20,) bytes, the digit names per label ('english-zero', ..., 'german-neun')
    extra/speaker     (n,) uint16, speaker index (disjoint between train and test)
    extra/meta_info/  per-speaker gender (bytes), age and body_height (NaN: synthetic speakers have none)

The split is by speaker: the last ``test_speakers`` speakers (default a quarter, at least one) form the test set, so
test accuracy measures generalisation to unheard voices. Clips have one of a few fixed lengths (so the cochlea's
transfer function is computed once per length); a word is placed after 50-250 ms of silence in the shortest length
that fits it with at least 50 ms after it. Audio and spikes are cached under ``cache_dir`` (default
``<out_dir>/.cache``), keyed by everything that determines them, so a second run is instant and a larger run reuses
the samples of a smaller one with the same seed. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from spikelib._atomic import atomic_path
from spikelib.data.heidelberg import tts
from spikelib.data.heidelberg.cochlea import Cochlea, CochleaParams

__all__ = ["generate_heidelberg", "CLIP_LENGTHS", "LABEL_KEYS", "plot_raster"]

log = logging.getLogger(__name__)

# Clip lengths in samples at 22050 Hz (0.74, 0.93, 1.11, 1.49 s): N//2 + 1 is 8192, 10240, 12288, 16384.
CLIP_LENGTHS = (16382, 20478, 24574, 32766)
LANGUAGE_OFFSET = {"en": 0, "de": 10}
LABEL_KEYS = tuple(f"{tts.LANGUAGE_NAMES[lang]}-{word}" for lang in ("en", "de") for word in tts.DIGITS[lang])
FORMAT_VERSION = 1


@dataclass(frozen=True)
class _Sample:
    speaker: tts.Speaker
    language: str
    digit: int
    repeat: int

    @property
    def label(self) -> int:
        return LANGUAGE_OFFSET[self.language] + self.digit


def _check_int(value: object, name: str, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}{hint}")
    return int(value)


def _writable_dir(path: Path, name: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PermissionError(f"{name} {str(path)!r} is not a writable directory ({err.strerror or err}); "
                               f"choose another --out/{name}") from err
    return path


def _atomic_write(path: Path, write) -> None:  # noqa: ANN001 - callable(tmp_path)
    with atomic_path(path, create_parent=False) as tmp:
        write(str(tmp))


def _refuse_foreign(out: Path) -> None:
    import h5py

    for split in ("train", "test"):
        path = out / f"shd_{split}.h5"
        if path.exists():
            try:
                with h5py.File(path, "r") as f:
                    ours = f.attrs.get("generator") == "spikelib synth-heidelberg"
            except OSError:
                ours = False
            if not ours:
                raise FileExistsError(f"{path} exists and was not written by synth-heidelberg (the real SHD?); "
                                      "choose another out_dir or pass overwrite=True (--force)")


def _clip_length(n_word: int, sample_rate: int) -> int:
    need = n_word + 2 * int(round(0.05 * sample_rate))
    for n in CLIP_LENGTHS:
        if n >= need:
            return n
    raise ValueError(f"a spoken word of {n_word / sample_rate:.2f} s is too long for the longest clip "
                     f"({CLIP_LENGTHS[-1] / sample_rate:.2f} s); use a faster speaking rate")


def _spike_key(request: tts.TTSRequest, render_seed: Tuple[int, ...], channels: int, params: CochleaParams) -> str:
    blob = json.dumps([request.key(), list(render_seed), channels, asdict(params), CLIP_LENGTHS, FORMAT_VERSION])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _spike_path(sample: _Sample, request: tts.TTSRequest, seed: int, cochlea: Cochlea, cache: Path) -> Path:
    ids = (int(seed), sample.speaker.index, sample.label, sample.repeat)
    return cache / f"{_spike_key(request, ids, cochlea.channels, cochlea.params)}.npz"


def _sample_spikes(sample: _Sample, request: tts.TTSRequest, pcm: np.ndarray, seed: int, cochlea: Cochlea,
                   cache: Path) -> Tuple[np.ndarray, np.ndarray]:
    ids = (int(seed), sample.speaker.index, sample.label, sample.repeat)
    path = _spike_path(sample, request, seed, cochlea, cache)
    if path.is_file():
        with np.load(path) as data:
            return data["times"], data["units"]
    rng = np.random.default_rng([*ids, 1])
    n_total = _clip_length(tts.trim_silence(pcm).size, tts.SAMPLE_RATE)
    clip, _ = tts.render(pcm, n_total, rng)
    times, units = cochlea(clip, tts.SAMPLE_RATE, seed=int(rng.integers(2 ** 63)))
    times, units = times.astype(np.float64), units.astype(np.uint16)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, times=times, units=units)

    _atomic_write(path, write)
    return times, units


_WORKER: Dict[str, object] = {}


#: Seconds between a worker's checks that the generating process still exists.
PARENT_POLL_S = 0.5


def exit_with_parent(parent: int, poll_s: float = PARENT_POLL_S) -> threading.Thread:
    """Start a daemon thread that ends this process once its parent ``parent`` is gone.

    A pool's workers outlive a generating process that is killed (``kill``, a job scheduler's SIGTERM: no clean-up
    runs) and would go on through every task already queued to them, for many minutes at full CPU; with this they
    stop within ``poll_s``."""

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    thread = threading.Thread(target=watch, name="spikelib-exit-with-parent", daemon=True)
    thread.start()
    return thread


def _worker_init(channels: int, params: CochleaParams, transfer_dir: str, parent: int) -> None:
    import numba

    exit_with_parent(parent)
    numba.set_num_threads(1)
    _WORKER["cochlea"] = Cochlea(channels, params, cache_dir=transfer_dir, workers=1)


def _worker_task(task: tuple) -> Tuple[np.ndarray, np.ndarray]:
    sample, request, pcm, seed, cache = task
    return _sample_spikes(sample, request, pcm, seed, _WORKER["cochlea"], cache)


def _all_spikes(samples: List[_Sample], requests: List[tts.TTSRequest], audio: List[np.ndarray], seed: int,
                cochlea: Cochlea, cache: Path, workers: int, progress: bool) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Spikes of every sample, in order; uncached ones in ``workers`` single-threaded processes (spawned) when
    there are enough of them, else in this process (numba threads). Results do not depend on ``workers``."""
    from tqdm import tqdm

    tasks = [(s, r, pcm, seed, cache) for s, r, pcm in zip(samples, requests, audio)]
    todo = [i for i, (s, r, *_rest) in enumerate(tasks) if not _spike_path(s, r, seed, cochlea, cache).is_file()]
    bar = tqdm(total=len(tasks), desc="synth-heidelberg", unit="sample", disable=not progress)
    if workers > 1 and len(todo) >= 4 * workers:
        import multiprocessing

        for n in sorted({_clip_length(tts.trim_silence(tasks[i][2]).size, tts.SAMPLE_RATE) for i in todo}):
            cochlea.transfer(n, tts.SAMPLE_RATE)  # computed once here and saved for the workers
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe after numba/torch threads have started
        with ctx.Pool(workers, initializer=_worker_init,
                      initargs=(cochlea.channels, cochlea.params, str(cochlea.cache_dir), os.getpid())) as pool:
            for _ in pool.imap_unordered(_worker_task, [tasks[i] for i in todo], chunksize=2):
                bar.update()
    out = []
    for task in tasks:  # cached ones (all of them after the pool) are read back
        out.append(_sample_spikes(*task[:4], cochlea, task[4]))
        if workers <= 1 or len(todo) < 4 * workers:
            bar.update()
    bar.close()
    return out


def _write_h5(path: Path, samples: List[_Sample], spikes: List[Tuple[np.ndarray, np.ndarray]],
              speakers: Sequence[tts.Speaker], attrs: Dict[str, object]) -> None:
    import h5py

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            n = len(samples)
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            for i, (t, u) in enumerate(spikes):
                times[i] = t.astype(np.float16)
                units[i] = u.astype(np.uint16)
            f.create_dataset("labels", data=np.array([s.label for s in samples], dtype=np.uint16))
            f.create_dataset("extra/speaker", data=np.array([s.speaker.index for s in samples], dtype=np.uint16))
            f.create_dataset("extra/keys", data=np.array([k.encode() for k in LABEL_KEYS]))
            f.create_dataset("extra/meta_info/gender", data=np.array([s.gender.encode() for s in speakers]))
            f.create_dataset("extra/meta_info/age", data=np.full(len(speakers), np.nan))
            f.create_dataset("extra/meta_info/body_height", data=np.full(len(speakers), np.nan))
            f.create_dataset("extra/meta_info/voice", data=np.array(
                [";".join(s.voice(lang) for lang, _ in s.accents).encode() for s in speakers]))
            for key, value in attrs.items():
                f.attrs[key] = value

    _atomic_write(path, write)


def generate_heidelberg(out_dir: os.PathLike | str, speakers: int = 12, repeats: int = 4, seed: int = 0, *,
                        test_speakers: Optional[int] = None, languages: Sequence[str] = ("en", "de"),
                        channels: int = 700, cache_dir: Optional[os.PathLike | str] = None, plot: bool = False,
                        progress: bool = True, variants: Optional[Sequence[str]] = None,
                        accents: Optional[Dict[str, Sequence[str]]] = None,
                        overwrite: bool = False, workers: Optional[int] = None) -> Dict[str, object]:
    """Write ``shd_train.h5``/``shd_test.h5`` (SHD layout) into ``out_dir``; returns a summary dict.

    Args:
        out_dir: output folder (created).
        speakers: number of synthetic speakers (>= 2: at least one for training and one for testing).
        repeats: repetitions of every word per speaker (jittered delivery, padding and noise).
        seed: fixes speakers, delivery, noise and spikes.
        test_speakers: speakers held out for ``shd_test.h5`` (default ``max(1, speakers // 4)``).
        languages: subset of ``('en', 'de')``; labels keep SHD's numbering either way.
        channels: cochlea channels (700 in SHD).
        cache_dir: audio/spike cache (default ``<out_dir>/.cache``).
        plot: also write ``shd_raster.png`` (one training sample per class).
        progress: show a tqdm progress bar.
        variants, accents: override the eSpeak voice variants / accents per language speakers are drawn from.
        overwrite: replace ``shd_*.h5`` files in ``out_dir`` that were not written by this generator (e.g. the
            real SHD); files it wrote itself are always replaced.
        workers: processes for the cochlea (default: the number of CPUs); the output does not depend on it.
    """
    speakers = _check_int(speakers, "speakers", 2, " (train and test are split by speaker, so at least 2)")
    repeats = _check_int(repeats, "repeats", 1)
    seed = _check_int(seed, "seed", 0)
    channels = _check_int(channels, "channels", 2)
    workers = (os.cpu_count() or 1) if workers is None else _check_int(workers, "workers", 1)
    n_test = max(1, speakers // 4) if test_speakers is None else _check_int(test_speakers, "test_speakers", 1)
    if n_test >= speakers:
        raise ValueError(f"test_speakers ({n_test}) must be smaller than speakers ({speakers})")
    people = tts.make_speakers(speakers, seed, languages, variants, accents)
    tts.find_espeak()
    out = _writable_dir(Path(out_dir), "out_dir")
    if not overwrite:
        _refuse_foreign(out)
    cache = _writable_dir(Path(cache_dir) if cache_dir is not None else out / ".cache", "cache_dir")
    spike_cache = _writable_dir(cache / "spikes", "cache_dir")
    tts.check_voices(sorted({p.voice(lang) for p in people for lang, _ in p.accents}))
    samples = [_Sample(p, lang, d, r) for p in people for lang, _ in p.accents for d in range(10)
               for r in range(repeats)]
    requests = [tts.utterance_request(s.speaker, s.language, s.digit,
                                      np.random.default_rng([seed, s.speaker.index, s.label, s.repeat, 0]))
                for s in samples]
    t0 = time.perf_counter()
    audio = tts.synthesize(requests, cache)
    t_tts = time.perf_counter() - t0
    cochlea = Cochlea(channels, cache_dir=cache / "transfer")
    t0 = time.perf_counter()
    spikes = _all_spikes(samples, requests, audio, seed, cochlea, spike_cache, workers, progress)
    t_cochlea = time.perf_counter() - t0
    test_ids = {p.index for p in people[speakers - n_test:]}
    attrs = {"generator": "spikelib synth-heidelberg", "format_version": FORMAT_VERSION, "seed": seed,
             "speakers": speakers, "repeats": repeats, "channels": channels, "languages": ",".join(languages)}
    files = {}
    for split, held_out in (("train", False), ("test", True)):
        idx = [i for i, s in enumerate(samples) if (s.speaker.index in test_ids) == held_out]
        files[split] = out / f"shd_{split}.h5"
        _write_h5(files[split], [samples[i] for i in idx], [spikes[i] for i in idx], people, attrs)
    summary = {"train": str(files["train"]), "test": str(files["test"]), "samples": len(samples),
               "train_samples": sum(s.speaker.index not in test_ids for s in samples),
               "test_samples": sum(s.speaker.index in test_ids for s in samples),
               "test_speakers": sorted(test_ids), "tts_seconds": t_tts, "cochlea_seconds": t_cochlea,
               "mean_spikes": float(np.mean([t.size for t, _ in spikes]))}
    if plot:
        summary["plot"] = str(plot_raster(files["train"], out / "shd_raster.png"))
    return summary


def plot_raster(h5_path: os.PathLike | str, png_path: os.PathLike | str) -> Path:
    """PNG raster of the first sample of every class in an SHD-layout file (atomic write)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: install spikelib's `report` extra") from err
    import h5py

    with h5py.File(h5_path, "r") as f:
        labels = f["labels"][()]
        keys = [k.decode() for k in f["extra/keys"][()]]
        classes = sorted(set(int(v) for v in labels))
        picks = {c: int(np.flatnonzero(labels == c)[0]) for c in classes}
        data = {c: (f["spikes/times"][i].astype(np.float64), f["spikes/units"][i]) for c, i in picks.items()}
    cols = 5
    rows = (len(classes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for ax, c in zip(axes.ravel(), classes):
        t, u = data[c]
        ax.set_visible(True)
        ax.scatter(t, u, s=0.3, c="k", marker=".", linewidths=0)
        ax.set_title(f"{c}: {keys[c]}", fontsize=9)
        ax.set_ylim(0, 700)
    for ax in axes[-1]:
        ax.set_xlabel("time [s]")
    for ax in axes[:, 0]:
        ax.set_ylabel("unit")
    fig.tight_layout()
    png = Path(png_path)

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=90)

    _atomic_write(png, write)
    plt.close(fig)
    return png
