"""Separate-process eSpeak NG runner: text in, 16-bit mono WAV files out.

This file is run as a script (``python _tts_worker.py``) by :mod:`spikelib.data.heidelberg.tts`; spikelib never loads
eSpeak NG into its own process. eSpeak NG (GPL-3.0-or-later) comes from the ``espeakng-loader`` wheel (libespeak-ng
1.52 and its voice data), loaded here through ctypes. The worker uses the standard library only.

Protocol: one JSON object on stdin::

    {"check_voices": ["en-us+m3", ...],            # optional: report which of these eSpeak rejects
     "jobs": [{"text": "seven", "voice": "en-us+m3", "rate": 160, "pitch": 50, "range": 50,
               "volume": 60, "seed": 123, "out": "/abs/path/file.wav"}, ...]}

It writes each job's WAV atomically (temporary file in the same folder, fsync, os.replace) and prints one JSON object
on stdout: ``{"sample_rate": 22050, "bad_voices": [...], "written": N}``. Exit status 3 means the eSpeak library or its
data is missing, 4 a synthesis failure; the message is on stderr.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import sys
import tempfile
import wave
from pathlib import Path

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_CHARS_UTF8 = 1
PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
EXIT_MISSING = 3
EXIT_FAILED = 4


def locate() -> tuple[Path, Path]:
    """Return (shared library, folder containing ``espeak-ng-data``) of the installed espeakng-loader wheel."""
    spec = importlib.util.find_spec("espeakng_loader")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Python package espeakng-loader is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    names = {"win32": "espeak-ng.dll", "darwin": "libespeak-ng.dylib"}
    lib = root / names.get(sys.platform, "libespeak-ng.so")
    if not lib.is_file():
        raise FileNotFoundError(f"espeakng-loader has no eSpeak NG library at {lib}")
    if not (root / "espeak-ng-data").is_dir():
        raise FileNotFoundError(f"espeakng-loader has no voice data at {root / 'espeak-ng-data'}")
    return lib, root


class Engine:
    """A loaded eSpeak NG in synchronous mode; :meth:`say` returns raw int16 little-endian bytes."""

    def __init__(self) -> None:
        lib_path, self.data_root = locate()
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.variants = self.data_root / "espeak-ng-data" / "voices" / "!v"
        self.chunks: list[bytes] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(self._collect)  # kept alive as long as the engine
        self.sample_rate = 0
        self.reset(terminate=False)

    def reset(self, terminate: bool = True) -> None:
        """(Re)initialise eSpeak NG: a fresh state, so a word's audio does not depend on the words before it."""
        if terminate:
            self.lib.espeak_Terminate()
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_root).encode(), 0)
        if self.sample_rate <= 0:
            raise FileNotFoundError(f"espeak_Initialize failed ({self.sample_rate}) with data in {self.data_root}")
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

    def _collect(self, wav, num_samples, events) -> int:  # noqa: ANN001 - ctypes callback
        if num_samples > 0:
            self.chunks.append(ctypes.string_at(wav, 2 * num_samples))
        return 0

    def set_voice(self, name: str) -> bool:
        # eSpeak NG silently ignores an unknown '+variant': check that its file exists
        _, _, variant = name.partition("+")
        if variant and not (self.variants / variant).is_file():
            return False
        return self.lib.espeak_SetVoiceByName(name.encode()) == 0

    def say(self, text: str, voice: str, seed: int = 0, **params: int) -> bytes:
        # eSpeak NG adds noise (e.g. aspiration) from its own generator, seeded from the clock unless set: seeding it
        # per word makes every word's audio independent of time and of the words synthesised before it
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(int(seed)))
        if not self.set_voice(voice):
            raise ValueError(f"eSpeak NG rejected voice {voice!r}")
        for key, value in params.items():
            if self.lib.espeak_SetParameter(PARAMS[key], int(value), 0) != 0:
                raise ValueError(f"eSpeak NG rejected {key}={value}")
        self.chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, 0, 0, ESPEAK_CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r} in voice {voice!r}")
        return b"".join(self.chunks)


def write_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    """Write int16 mono PCM to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    replaced = False
    try:
        with os.fdopen(fd, "wb") as handle:
            with wave.open(handle, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(sample_rate)
                out.writeframes(pcm)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        replaced = True
    finally:
        if not replaced:
            Path(tmp).unlink(missing_ok=True)


def _synthesize_one(engine: Engine, job: dict) -> None:
    params = {k: job[k] for k in PARAMS if k in job}
    pcm = engine.say(job["text"], job["voice"], seed=int(job.get("seed", 0)), **params)
    if not pcm:
        raise RuntimeError(f"eSpeak NG produced no audio for {job['text']!r} in voice {job['voice']!r}")
    write_wav(Path(job["out"]), pcm, engine.sample_rate)


def _run_job(engine: Engine, job: dict) -> None:
    """Synthesise one word from eSpeak's freshly initialised state.

    eSpeak NG keeps state between utterances that neither its random seed nor espeak_Terminate/espeak_Initialize
    reset, so a word's samples depend on the words synthesised before it. Where fork() exists each word is made in a
    forked child of the initialised engine (~1 ms), so its audio depends only on the job.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: order-dependent (documented)
        _synthesize_one(engine, job)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = EXIT_FAILED  # the child must always end in os._exit, whatever happens
        try:
            _synthesize_one(engine, job)
            code = 0
        except Exception as err:  # noqa: BLE001 - reported through the exit status and stderr
            sys.stderr.write(f"{err}\n")
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"synthesising {job['text']!r} in voice {job['voice']!r} failed")


def main() -> int:
    request = json.load(sys.stdin)
    try:
        engine = Engine()
    except (FileNotFoundError, OSError) as err:
        sys.stderr.write(f"{err}\n")
        return EXIT_MISSING
    bad = [v for v in request.get("check_voices", []) if not engine.set_voice(v)]
    written = 0
    try:
        for job in request.get("jobs", []):
            _run_job(engine, job)
            written += 1
    except (ValueError, RuntimeError) as err:
        sys.stderr.write(f"{err}\n")
        return EXIT_FAILED
    json.dump({"sample_rate": engine.sample_rate, "bad_voices": bad, "written": written}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
