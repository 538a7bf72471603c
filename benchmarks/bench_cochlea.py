"""Benchmark: synthetic Heidelberg Digits generation speed on CPU (eSpeak NG + the 700-channel cochlea model).

Measured, all in one process:

* ``transfer_s``: computing the basilar-membrane transfer function for the commonest clip length (0.74 s at
  22050 Hz, 700 channels) once; the generator then keeps it in its cache folder.
* per stage, over ``clips`` rendered words (warm: numba kernels compiled, transfer function in memory):
  pre-processing + basilar membrane, Meddis hair cells, refractory fibres, bushy LIF cells; the median per clip.
* ``samples_per_s``: ``generate_heidelberg`` end to end in a fresh folder (eSpeak worker, rendering, cochlea,
  HDF5 writing) for ``speakers x 20 x repeats`` samples, with the transfer functions already on disk, and the time a
  full-size set (8,000 train + 2,000 test samples, about SHD's size) would take at that speed.
* ``second_run_s``: the same call again (everything from the cache).
* ``cpu_s_per_sample``: CPU seconds (all threads plus the eSpeak worker) per generated sample: on a shared machine
  the load-independent part; ``2 / cpu_s_per_sample`` bounds the samples/s of a quiet 2-core machine.

The machine load (``/proc/loadavg``) and this process's CPU time over wall time are recorded: on a shared machine the
figures are pessimistic. Run ``python benchmarks/bench_cochlea.py`` (or ``--quick``); writes
``results/cochlea_cpu.json``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common

import numpy as np  # noqa: E402

NAME = "cochlea_cpu"
FULL = {"clips": 16, "speakers": 4, "repeats": 2, "channels": 700}
QUICK = {"clips": 3, "speakers": 2, "repeats": 1, "channels": 700}
FULL_SIZE_SAMPLES = 10_000  # ~8,000 train + ~2,000 test, as SHD (8,156 / 2,264)


def _cpu_s() -> float:
    """CPU seconds of this process (all threads) and its finished children (the eSpeak worker)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few clips and samples (smoke test, not a result)")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    from spikelib.data.heidelberg import cochlea as C
    from spikelib.data.heidelberg import generate as G
    from spikelib.data.heidelberg import tts

    load_before = common.loadavg()
    wall0, cpu0 = time.perf_counter(), _cpu_s()
    work = Path(tempfile.mkdtemp(prefix="bench-cochlea-"))
    speakers = tts.make_speakers(4, seed=0)
    picks = [(speakers[i % 4], ("en", "de")[i % 2], i % 10) for i in range(sizes["clips"])]
    reqs = [tts.utterance_request(s, lang, d, np.random.default_rng(i)) for i, (s, lang, d) in enumerate(picks)]
    t = time.perf_counter()
    pcms = tts.synthesize(reqs, work / "cache")
    tts_s = (time.perf_counter() - t) / len(reqs)
    rng = np.random.default_rng(0)
    clips = [tts.render(pcm, G.CLIP_LENGTHS[0], rng)[0] for pcm in pcms
             if G._clip_length(tts.trim_silence(pcm).size, tts.SAMPLE_RATE) == G.CLIP_LENGTHS[0]]
    fs, channels = tts.SAMPLE_RATE, sizes["channels"]
    cochlea = C.Cochlea(channels, cache_dir=work / "cache" / "transfer")
    t = time.perf_counter()
    cochlea.transfer(G.CLIP_LENGTHS[0], fs)
    transfer_s = time.perf_counter() - t
    cochlea(clips[0], fs, seed=0)  # compile / load the numba kernels
    stages = {"basilar_membrane": [], "hair_cell": [], "fibres": [], "bushy_lif": [], "total": []}
    spikes = []
    for i, clip in enumerate(clips):
        t0 = time.perf_counter()
        velocity, rate = C.basilar_membrane(C.preprocess(clip), fs, channels,
                                            folded=cochlea.transfer(clip.size, fs))
        t1 = time.perf_counter()
        prob = C.hair_cell(velocity, rate)
        t2 = time.perf_counter()
        counts = C.fibre_counts(prob, rate, seed=i)
        t3 = time.perf_counter()
        dense = C.bushy_lif(counts, rate)
        t4 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            stages[key].append(value)
        spikes.append(int(dense.sum()))
    per_clip = {k: statistics.median(v) for k, v in stages.items()}

    out = work / "set"
    kw = dict(speakers=sizes["speakers"], repeats=sizes["repeats"], seed=0, channels=channels, progress=False,
              cache_dir=work / "cache")
    t, c = time.perf_counter(), _cpu_s()
    summary = G.generate_heidelberg(out, **kw)
    gen_s, gen_cpu = time.perf_counter() - t, _cpu_s() - c
    t = time.perf_counter()
    G.generate_heidelberg(out, **kw)
    second_s = time.perf_counter() - t
    samples_per_s = summary["samples"] / gen_s
    wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
    payload = {
        "benchmark": NAME,
        "command": common.command_line(),
        "quick": args.quick,
        "sizes": dict(sizes),
        "machine": {**common.machine_info(False), "loadavg_before": load_before, "loadavg_after": common.loadavg(),
                    "process_cpu_over_wall": round(cpu / wall, 2)},
        "clip_seconds": G.CLIP_LENGTHS[0] / fs,
        "tts_s_per_word": tts_s,
        "transfer_s": transfer_s,
        "per_clip_s": per_clip,
        "cochlea_clips_per_s": 1.0 / per_clip["total"],
        "spikes_per_clip_median": statistics.median(spikes),
        "generate": {"samples": summary["samples"], "seconds": gen_s, "samples_per_s": samples_per_s,
                     "cpu_s_per_sample": gen_cpu / summary["samples"],
                     "tts_seconds": summary["tts_seconds"], "cochlea_seconds": summary["cochlea_seconds"],
                     "second_run_s": second_s},
        "full_size_estimate": {"samples": FULL_SIZE_SAMPLES, "minutes": FULL_SIZE_SAMPLES / samples_per_s / 60},
    }
    path = common.write_json(NAME, payload)
    shutil.rmtree(work, ignore_errors=True)
    print(f"cochlea per 0.74 s clip ({channels} channels): " +
          ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in per_clip.items()))
    print(f"transfer function (once per clip length): {transfer_s:.1f} s; eSpeak: {tts_s * 1e3:.1f} ms/word")
    print(f"generate_heidelberg: {summary['samples']} samples in {gen_s:.1f} s = {samples_per_s:.2f} samples/s; "
          f"second run {second_s:.2f} s; full size ({FULL_SIZE_SAMPLES}) ~"
          f"{payload['full_size_estimate']['minutes']:.0f} min; CPU {gen_cpu / summary['samples']:.2f} s/sample "
          f"(all threads and the eSpeak worker)")
    print(f"load {load_before} -> {common.loadavg()}, process CPU/wall {cpu / wall:.2f}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
