"""Benchmark: the bare LIF layer as a user's process meets it, in many fresh processes with the default allocator.

``bench_lif.py`` runs with glibc malloc variables that keep freed memory resident; a user's process has none of them.
This script starts ``--processes`` fresh interpreters (default 10) one after another, each with an environment
without any ``MALLOC_*``, ``SPIKELIB_*``, ``NUMBA_*``, ``OMP_*``/``MKL_*`` variable and without ``LD_PRELOAD`` (the
variables removed are recorded), and in each one times spikelib (``backend='auto'``) and spikingjelly 2.0 on the
``bench_lif.py`` input (``[T=100, B=32, N=1024]`` float32, same dynamics) side by side, interleaved round by round
with the usual interference detection (README.md), for both cases:

* ``forward``: spikes under ``torch.no_grad()``;
* ``forward_backward``: ``x`` requires grad, ``loss = spikes.sum()``, ``loss.backward()``.

Per process it records the medians, the ratio spikingjelly / spikelib, the minor page faults per call (from
``getrusage``: what glibc's placement of the large tensors costs), the kept and dropped rounds and the load. The
summary gives the smallest ratio over the processes (the issue's target: at least 5x in every process).

    python benchmarks/bench_fresh.py                  # 10 processes, full sizes (a quiet machine; about 2 minutes)
    python benchmarks/bench_fresh.py --quick          # 2 processes, tiny sizes (smoke test)

Writes ``results/lif_fresh_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import common

NAME = "lif_fresh_cpu"
SCRIPT = Path(__file__).resolve()
FULL = {"T": 100, "B": 32, "N": 1024, "warmup": 5, "repeats": 20, "processes": 10}
QUICK = {"T": 20, "B": 4, "N": 256, "warmup": 2, "repeats": 5, "processes": 2}
IMPLS = ("spikelib", "spikingjelly")
CASES = ("forward", "forward_backward")
TARGET_RATIO = 5.0
_STRIP_PREFIXES = ("MALLOC_", "SPIKELIB_", "NUMBA_", "OMP_", "MKL_", "KMP_", "GOMP_")
_STRIP_NAMES = ("LD_PRELOAD", common._REEXEC_MARK)


def clean_environment() -> tuple[Dict[str, str], List[str]]:
    """The parent's environment without the variables that tune allocation or threading, and their names."""
    removed = sorted(k for k in os.environ if k.startswith(_STRIP_PREFIXES) or k in _STRIP_NAMES)
    return {k: v for k, v in os.environ.items() if k not in removed}, removed


def _modules() -> Dict[str, Any]:
    import peers
    import spikelib

    mods: Dict[str, Any] = {"spikelib": spikelib.LIF(tau=peers.TAU, v_threshold=peers.V_TH, v_reset=0.0, reset="hard",
                                                     decay_input=True, detach_reset=True, surrogate="atan")}
    if peers.import_problem("spikingjelly") is None:
        mods["spikingjelly"] = peers.by_name("spikingjelly").build()
    return mods


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def child(args: argparse.Namespace) -> Dict[str, Any]:
    """One fresh process: time both implementations in both cases; returns the per-process record."""
    import torch

    import bench_lif

    common.torch_warmup()
    monitor = common.Monitor()
    mods = _modules()
    x_nograd = bench_lif.make_input(args.T, args.B, args.N, False)
    x_grad = bench_lif.make_input(args.T, args.B, args.N, True)
    faults: Dict[str, Dict[str, List[int]]] = {c: {n: [] for n in mods} for c in CASES}

    def counted(case: str, name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            f0 = _faults()
            out = fn()
            faults[case][name].append(_faults() - f0)
            return out
        return call

    record: Dict[str, Any] = {"pid": os.getpid(), "loadavg_start": common.loadavg(),
                              "malloc_env": common.malloc_env_state(), "cases": {}}
    for case in CASES:
        calls = bench_lif.case_calls(case, mods, x_nograd, x_grad)
        calls = {n: counted(case, n, fn) for n, fn in calls.items()}
        series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats,
                                            max_rounds_factor=2 if args.quick else 3, label=f"{case}: ")
        rows = {n: common.summarize(s) for n, s in series.items()}
        for n, row in rows.items():
            row.pop("samples_s", None)
            row.pop("foreign_cpu_share", None)
            measured = faults[case][n][args.warmup:]
            row["minor_faults_per_call_median"] = statistics.median(measured) if measured else None
        sl, sj = rows.get("spikelib", {}).get("median_s"), rows.get("spikingjelly", {}).get("median_s")
        record["cases"][case] = {"rows": rows, "ratio": (sj / sl) if sl and sj else None}
    from spikelib.kernels import backend_calls

    record["spikelib_backends"] = backend_calls("lif")
    record["loadavg_end"] = common.loadavg()
    record["torch_threads"] = torch.get_num_threads()
    return record


def parent(args: argparse.Namespace) -> Dict[str, Any]:
    env, removed = clean_environment()
    print(f"== bare LIF in {args.processes} fresh processes, default allocator, T={args.T} B={args.B} N={args.N}"
          f"{'  [QUICK: smoke test sizes, not a result]' if args.quick else ''}")
    print(f"environment variables removed for the children: {removed or 'none'}; loadavg {common.loadavg()}")
    sizes = ["--T", str(args.T), "--B", str(args.B), "--N", str(args.N), "--warmup", str(args.warmup),
             "--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
    processes: List[Dict[str, Any]] = []
    for i in range(args.processes):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(SCRIPT), "--child", *sizes], env=env, capture_output=True,
                              text=True, timeout=1800)
        line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith(common.PROBE_PREFIX)), None)
        if line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            rec: Dict[str, Any] = {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
        else:
            rec = json.loads(line[len(common.PROBE_PREFIX):])
        rec["wall_s"] = time.perf_counter() - t0
        processes.append(rec)
        print(f"  process {i + 1}: " + _process_line(rec), flush=True)
    summary = summarize(processes)
    for case, s in summary.items():
        print(f"{case}: ratio spikingjelly/spikelib min {_r(s['min_ratio'])}, median {_r(s['median_ratio'])}, max "
              f"{_r(s['max_ratio'])} over {s['processes']} processes; target >= {TARGET_RATIO:g}x in every process: "
              f"{'met' if s['target_met'] else 'NOT met'}")
    return {
        "benchmark": NAME,
        "title": "Bare LIF layer (CPU) in fresh processes with the default allocator",
        "quick": bool(args.quick),
        "command": common.command_line(),
        "machine": common.machine_info(False),
        "config": {"T": args.T, "B": args.B, "N": args.N, "dtype": "float32", "warmup": args.warmup,
                   "repeats": args.repeats, "processes": args.processes, "target_ratio": TARGET_RATIO},
        "environment_removed": removed,
        "processes": processes,
        "summary": summary,
    }


def _r(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _process_line(rec: Dict[str, Any]) -> str:
    if "error" in rec:
        return f"ERROR {rec['error']}"
    parts = []
    for case, block in rec["cases"].items():
        rows = block["rows"]
        ms = ", ".join(f"{n} {common.fmt_median(r)} ms ({r.get('minor_faults_per_call_median')} faults, "
                       f"{r.get('kept')}/{r.get('dropped')} kept/dropped)" for n, r in rows.items())
        parts.append(f"{case}: {ms}, ratio {_r(block['ratio'])}")
    return "; ".join(parts) + f"; load {rec.get('loadavg_start')}"


def summarize(processes: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per case: smallest, median and largest ratio over the processes and whether every one met the target."""
    out: Dict[str, Dict[str, Any]] = {}
    for case in CASES:
        ratios = [p["cases"][case]["ratio"] for p in processes if "cases" in p and p["cases"][case]["ratio"]]
        disturbed = sum(1 for p in processes if "cases" in p and any(r.get("disturbed") for r in
                                                                     p["cases"][case]["rows"].values()))
        out[case] = {
            "processes": len(ratios), "failed_processes": len(processes) - len(ratios),
            "min_ratio": min(ratios) if ratios else None,
            "median_ratio": statistics.median(ratios) if ratios else None,
            "max_ratio": max(ratios) if ratios else None,
            "disturbed_processes": disturbed,
            "target_met": bool(ratios) and len(ratios) == len(processes) and min(ratios) >= TARGET_RATIO,
        }
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 processes (smoke test, not a result)")
    for key, value in FULL.items():
        p.add_argument(f"--{key}", type=int, default=None, help=f"override {key} (full: {value}, quick: {QUICK[key]})")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-malloc-tuning", action="store_true", help="accepted for run_all.py; this script never "
                   "tunes malloc")
    p.add_argument("--no-probes", action="store_true", help="accepted for run_all.py (no probes here)")
    p.add_argument("--only", action="append", default=[], help="accepted for run_all.py (always both)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Optional[Sequence[str]] = None, command: Optional[str] = None) -> int:
    args = parse_args(argv)
    if args.child:
        common.emit_probe(child(args))
        return 0
    payload = parent(args)
    if command:
        payload["command"] = command
    path = common.write_json(NAME, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
