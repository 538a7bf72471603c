"""Spoken digits from eSpeak NG, run in a separate process, with speakers that differ in voice, accent and delivery.

The English digits 'zero'..'nine' and the German 'null'..'neun' are synthesised with eSpeak NG from the
``espeakng-loader`` wheel (libespeak-ng 1.52 and its voice data, GPL-3.0-or-later). eSpeak NG is never loaded into
this process: :func:`synthesize` starts ``_tts_worker.py`` (standard library only) as a child process, which writes
16-bit mono WAV files into the audio cache; spikelib reads the files.

A speaker (:class:`Speaker`) is a voice variant (eSpeak's ``+variant`` files: formant and pitch envelope), an
accent per language (``en-us``, ``en-gb-scotland``, ... for English; ``de`` for German), a base pitch, pitch range
and speaking rate. Every repetition jitters pitch (+-8), range (+-12) and rate (+-8 %), since eSpeak itself is
deterministic. :func:`render` then places the word after 50-250 ms of silence in a clip of fixed length and adds
white noise at a random SNR of 30-50 dB. Everything is drawn from ``numpy.random.default_rng`` with seeds derived from
(seed, speaker, label, repetition), so a seed always gives the same audio.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import subprocess
import sys
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DIGITS", "ACCENTS", "VARIANTS", "Speaker", "TTSRequest", "EspeakNotFoundError", "find_espeak",
           "make_speakers", "check_voices", "synthesize", "render", "utterance_request"]

log = logging.getLogger(__name__)

DIGITS: Dict[str, Tuple[str, ...]] = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
}
LANGUAGE_NAMES = {"en": "english", "de": "german"}
ACCENTS: Dict[str, Tuple[str, ...]] = {
    "en": ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc", "en-029"),
    "de": ("de",),
}
# eSpeak NG '+variant' voices that sound like people (no robots, whispers or effects). f* and the female names
# give SHD-style meta data 'female'.
VARIANTS: Tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "Alex", "Andy", "Annie", "adam", "anika", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed",
    "edward", "grandma", "grandpa", "gustave", "ian", "iven", "john", "linda", "max", "michel", "norbert", "paul",
    "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
)
FEMALE = frozenset({"f1", "f2", "f3", "f4", "f5", "Annie", "anika", "aunty", "belinda", "grandma", "linda", "steph"})
SAMPLE_RATE = 22050
WORKER = Path(__file__).with_name("_tts_worker.py")
INSTALL_HINT = "install it with `bash scripts/install_speech.sh <python>` (or `pip install espeakng-loader==0.2.4`)"


class EspeakNotFoundError(ImportError):
    """eSpeak NG (the ``espeakng-loader`` wheel) is not installed or incomplete."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: voice variant, accent per language, base pitch/range (0-99) and rate (words/min)."""

    index: int
    variant: str
    accents: Tuple[Tuple[str, str], ...]
    pitch: int
    pitch_range: int
    rate: int

    @property
    def gender(self) -> str:
        return "female" if self.variant in FEMALE else "male"

    def voice(self, language: str) -> str:
        accent = dict(self.accents).get(language)
        if accent is None:
            raise ValueError(f"speaker {self.index} has no accent for language {language!r}")
        return f"{accent}+{self.variant}"


@dataclass(frozen=True)
class TTSRequest:
    """One eSpeak call; its hash names the cached WAV."""

    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    volume: int = 60

    def key(self) -> str:
        blob = json.dumps([asdict(self), _espeak_version(), "seeded"], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _espeak_version() -> str:
    try:
        return importlib.metadata.version("espeakng-loader")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def find_espeak() -> Path:
    """Folder of the installed ``espeakng-loader`` package (not imported); raises :class:`EspeakNotFoundError`."""
    spec = importlib.util.find_spec("espeakng_loader")
    if spec is None or not spec.submodule_search_locations:
        raise EspeakNotFoundError(f"eSpeak NG is needed to synthesise the spoken digits; {INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "espeak-ng-data").is_dir():
        raise EspeakNotFoundError(f"espeakng-loader at {root} has no espeak-ng-data folder; reinstall: {INSTALL_HINT}")
    return root


def _check_languages(languages: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(languages, str) or not languages:
        raise ValueError(f"languages must be a non-empty sequence such as ('en', 'de'), got {languages!r}")
    bad = [lang for lang in languages if lang not in DIGITS]
    if bad:
        raise ValueError(f"unknown language(s) {bad}; supported: {sorted(DIGITS)}")
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages must not repeat, got {list(languages)}")
    return tuple(languages)


def make_speakers(n: int, seed: int, languages: Sequence[str] = ("en", "de"),
                  variants: Optional[Sequence[str]] = None,
                  accents: Optional[Dict[str, Sequence[str]]] = None) -> List[Speaker]:
    """``n`` distinct speakers drawn from ``seed``: variants cycle through a shuffled list, accents are random."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of speakers must be an int >= 1, got {n!r}")
    languages = _check_languages(languages)
    variants = tuple(VARIANTS if variants is None else variants)
    if not variants:
        raise ValueError("variants must not be empty")
    accents = {lang: tuple((accents or {}).get(lang, ACCENTS[lang])) for lang in languages}
    for lang, options in accents.items():
        if not options:
            raise ValueError(f"accents for language {lang!r} must not be empty")
    rng = np.random.default_rng([int(seed), 0x5EA4])
    order = rng.permutation(len(variants))
    speakers = []
    for i in range(n):
        variant = variants[order[i % len(variants)]]
        choice = tuple((lang, accents[lang][rng.integers(len(accents[lang]))]) for lang in languages)
        speakers.append(Speaker(index=i, variant=variant, accents=choice, pitch=int(rng.integers(25, 76)),
                                pitch_range=int(rng.integers(20, 81)), rate=int(rng.integers(130, 191))))
    return speakers


def utterance_request(speaker: Speaker, language: str, digit: int, rng: np.random.Generator) -> TTSRequest:
    """The eSpeak call for one repetition: the speaker's delivery with per-repetition jitter."""
    return TTSRequest(
        text=DIGITS[language][digit], voice=speaker.voice(language),
        rate=int(np.clip(round(speaker.rate * rng.uniform(0.92, 1.08)), 80, 450)),
        pitch=int(np.clip(speaker.pitch + rng.integers(-8, 9), 0, 99)),
        pitch_range=int(np.clip(speaker.pitch_range + rng.integers(-12, 13), 0, 99)))


def _run_worker(request: dict, timeout: float) -> dict:
    find_espeak()
    proc = subprocess.run([sys.executable, str(WORKER)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode == 3:
        raise EspeakNotFoundError(f"eSpeak NG could not be loaded ({proc.stderr.strip()}); {INSTALL_HINT}")
    if proc.returncode != 0:
        raise RuntimeError(f"the eSpeak worker failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def check_voices(voices: Sequence[str], timeout: float = 60.0) -> None:
    """Raise ValueError naming every voice eSpeak NG rejects (e.g. ``'en-gb'`` or an unknown ``+variant``)."""
    result = _run_worker({"check_voices": list(voices)}, timeout)
    if result["bad_voices"]:
        raise ValueError(f"eSpeak NG does not know voice(s) {result['bad_voices']}; use '<accent>+<variant>' with "
                         f"accents from {dict(ACCENTS)} and variants from espeak-ng-data/voices/!v "
                         f"(e.g. {list(VARIANTS[:5])})")


def synthesize(requests: Sequence[TTSRequest], cache_dir: Path, timeout: float = 600.0) -> List[np.ndarray]:
    """int16 audio at 22050 Hz for each request; missing ones are synthesised in one worker run and cached."""
    audio_dir = Path(cache_dir) / "audio"
    paths = [audio_dir / f"{r.key()}.wav" for r in requests]
    todo = {}
    for req, path in zip(requests, paths):
        if not path.is_file():
            todo[str(path)] = req
    if todo:
        log.info("synthesising %d words with eSpeak NG", len(todo))
        jobs = [{"text": r.text, "voice": r.voice, "rate": r.rate, "pitch": r.pitch, "range": r.pitch_range,
                 "volume": r.volume, "seed": int(r.key()[:8], 16), "out": out} for out, r in todo.items()]
        _run_worker({"jobs": jobs}, timeout)
    out = []
    for path in paths:
        with wave.open(str(path), "rb") as wav:
            if wav.getframerate() != SAMPLE_RATE or wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise RuntimeError(f"unexpected WAV format in cache file {path}; delete the cache and rerun")
            out.append(np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy())
    return out


def trim_silence(pcm: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Drop leading/trailing samples below ``threshold`` of full scale (eSpeak pads words with silence)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.float64)) > threshold * 32768.0)
    if loud.size == 0:
        raise RuntimeError("eSpeak NG produced a silent word")
    return pcm[loud[0]: loud[-1] + 1]


def render(pcm: np.ndarray, n_total: int, rng: np.random.Generator, min_pad: float = 0.05, max_pad: float = 0.25,
           snr_db: Tuple[float, float] = (30.0, 50.0), sample_rate: int = SAMPLE_RATE) -> Tuple[np.ndarray, dict]:
    """Word after 50-250 ms of silence (at least ``min_pad`` after it too) in a clip of ``n_total`` samples, plus
    white noise at a random SNR; returns the clip (float, full scale 1) and what was drawn."""
    word = trim_silence(pcm).astype(np.float64) / 32768.0
    lo = int(round(min_pad * sample_rate))
    room = n_total - word.size - 2 * lo
    if room < 0:
        raise ValueError(f"a word of {word.size} samples does not fit into a clip of {n_total} samples")
    start = lo + int(rng.integers(0, min(room, int(round((max_pad - min_pad) * sample_rate))) + 1))
    clip = np.zeros(n_total)
    clip[start: start + word.size] = word
    snr = float(rng.uniform(*snr_db))
    noise_rms = np.sqrt(np.mean(word ** 2)) * 10.0 ** (-snr / 20.0)
    clip += rng.standard_normal(n_total) * noise_rms
    return clip, {"start": start, "length": int(word.size), "snr_db": snr}
