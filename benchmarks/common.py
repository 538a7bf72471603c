"""Shared machinery of the benchmark scripts: malloc set-up, machine facts, interference-aware timing, probes, output.

Nothing here imports torch at module level, so that :func:`ensure_malloc_env` can re-execute the interpreter before
torch (and glibc's malloc) is initialised. See README.md in this folder for what is measured and why.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

# Benchmark this checkout's spikelib, whatever else is installed (an editable install made before the package had an
# __init__.py resolves to an empty namespace package when the current directory is not the repository root).
if (REPO_ROOT / "spikelib" / "__init__.py").is_file() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# glibc malloc settings used for timing: never return memory to the OS and never mmap, so that a steady-state call
# does not page-fault. Without them these figures move by up to 4x (see REFERENCES.md).
MALLOC_TUNING: Dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "1000000000000",
    "MALLOC_TRIM_THRESHOLD_": "1000000000000",
    "MALLOC_TOP_PAD_": "1073741824",
}
# glibc malloc settings for the memory probes: every block >= 4 KiB is its own mmap, unmapped when freed (and the
# heap is trimmed whenever it can be), so the resident set follows the live allocations and the peak resident set is
# the peak of live memory (torch's CPU allocator does not cache).
MALLOC_MEMORY_PROBE: Dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "4096",
    "MALLOC_TRIM_THRESHOLD_": "0",
    "MALLOC_TOP_PAD_": "0",
}
_REEXEC_MARK = "SPIKELIB_BENCH_REEXECED"
PROBE_PREFIX = "PROBE_RESULT "
DROP_FACTOR = 1.5          # a round is dropped when its calibration is slower than this times the best calibration
FOREIGN_CPU_LIMIT = 0.30   # ... or when other processes used more than this share of all cores during the round
# (/proc/stat counts CPU time in 10 ms ticks, so in a round shorter than a tick a single foreign tick, i.e. another
# process caught running on a core during the round, exceeds the limit: short rounds are judged conservatively.)


# ----------------------------------------------------------------------------------------------------------------
# malloc environment
# ----------------------------------------------------------------------------------------------------------------

def malloc_env_state() -> Dict[str, Optional[str]]:
    """The three glibc malloc variables as this process sees them (None when unset)."""
    return {k: os.environ.get(k) for k in MALLOC_TUNING}


def ensure_malloc_env(argv: Optional[Sequence[str]] = None) -> None:
    """Re-execute this interpreter with :data:`MALLOC_TUNING` set unless it is already set or ``--no-malloc-tuning``.

    glibc reads these variables once, when the process starts, so setting them in ``os.environ`` would be too late.
    """
    argv = list(sys.argv if argv is None else argv)
    if "--no-malloc-tuning" in argv:
        return
    if all(os.environ.get(k) == v for k, v in MALLOC_TUNING.items()):
        return
    if os.environ.get(_REEXEC_MARK):
        raise RuntimeError("re-executing with the malloc settings did not take effect; use --no-malloc-tuning")
    env = dict(os.environ, **MALLOC_TUNING, **{_REEXEC_MARK: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], env)


def describe_malloc(tuning_requested: bool) -> str:
    """One line saying which malloc settings this process runs with."""
    state = malloc_env_state()
    shown = " ".join(f"{k}={v}" for k, v in state.items() if v is not None) or "glibc defaults (none set)"
    if tuning_requested:
        how = "set by re-exec" if os.environ.get(_REEXEC_MARK) else "inherited from the environment"
        return f"malloc: {shown} ({how})"
    return f"malloc: {shown} (--no-malloc-tuning: not enforced)"


# ----------------------------------------------------------------------------------------------------------------
# machine facts
# ----------------------------------------------------------------------------------------------------------------

def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    for line in _read_text("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name: str) -> Optional[str]:
    """Installed version of a distribution, None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


#: What a figure cannot depend on: prose and the benchmarks' own outputs. Every other tracked file (the package, the
#: benchmark scripts, configs, install scripts and constraints, the reference stand-ins under tests/fixtures) is code.
_NOT_CODE_DIRS = ("docs/", "benchmarks/results/")


def affects_figures(path: str) -> bool:
    """Whether a tracked file (path relative to the repository root) is part of the code the figures measure:
    everything except Markdown files, ``docs/`` and ``benchmarks/results/``; of ``tests/`` only the reference
    fixtures (``tests/fixtures/``), which the reference benchmarks import."""
    if path.endswith(".md") or path.startswith(_NOT_CODE_DIRS):
        return False
    return not path.startswith("tests/") or path.startswith("tests/fixtures/")


def _git(*args: str, root: Path = REPO_ROOT) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                          check=True).stdout


def code_state_id(rev: str = "HEAD", root: Path = REPO_ROOT) -> Optional[str]:
    """A 12-hex digest of the code the figures measure at commit ``rev``: the modes, blob hashes and paths of the
    tracked files that :func:`affects_figures`, so two commits that differ only in documentation or result files
    share it. None outside a git checkout or for a commit the checkout lacks."""
    import hashlib

    try:
        listing = _git("ls-tree", "-r", "--full-tree", rev, root=root)
    except (OSError, subprocess.SubprocessError):
        return None
    digest = hashlib.sha256()
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        if affects_figures(path):
            digest.update(f"{meta}\t{path}\n".encode())
    return digest.hexdigest()[:12]


def uncommitted_code(root: Path = REPO_ROOT) -> List[str]:
    """Tracked or untracked files with uncommitted changes that :func:`affects_figures` (untracked files count only
    where git does not ignore them)."""
    try:
        status = _git("status", "--porcelain", "--untracked-files=all", root=root)
    except (OSError, subprocess.SubprocessError):
        return []
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line.strip()]
    return [p for p in paths if affects_figures(p)]


def _git_revision() -> Optional[str]:
    """The short commit, with ``+dirty`` where code the figures measure has uncommitted changes."""
    try:
        rev = _git("rev-parse", "--short", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("+dirty" if uncommitted_code() else "")) if rev else None


def machine_info(tuning_requested: bool) -> Dict[str, Any]:
    """Machine, software versions, thread counts, malloc settings and the date, for the JSON results."""
    import torch

    mem_kb = next((int(l.split()[1]) for l in _read_text("/proc/meminfo").splitlines() if l.startswith("MemTotal")), 0)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_usable": affinity,
        "memory_gib": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "numba_num_threads_env": os.environ.get("NUMBA_NUM_THREADS"),
        "versions": {name: package_version(name) for name in
                     ("torch", "numpy", "numba", "spikelib", "spikingjelly", "norse", "snntorch")},
        "spikelib_git": _git_revision(),
        "spikelib_code": code_state_id(),
        "spikelib_kernel_threads": spikelib_kernel_threads(),
        "malloc_env": malloc_env_state(),
        "malloc_tuning_enforced": tuning_requested,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
    }


def spikelib_kernel_threads() -> Optional[str]:
    """Which threads run spikelib's CPU kernels in this process: torch's OpenMP team or spikelib's thread pool."""
    try:
        from spikelib.kernels.cpu.threads import openmp_team
    except ImportError:
        return None
    try:
        team = openmp_team()
    except (RuntimeError, ValueError) as exc:  # SPIKELIB_KERNEL_THREADS set to something this process cannot do
        return f"error: {exc}"
    return f"torch's OpenMP team ({os.path.basename(team)})" if team else "spikelib's thread pool"


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """The command that produced a result, as a user would type it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        argv[0] = str(script.relative_to(REPO_ROOT))
    except ValueError:
        argv[0] = str(script)
    return "python " + " ".join(shlex.quote(a) for a in argv)


# ----------------------------------------------------------------------------------------------------------------
# interference detection and timing
# ----------------------------------------------------------------------------------------------------------------

def _cpu_ticks() -> tuple[int, int]:
    """(busy ticks of all CPUs from /proc/stat, this process's user+system ticks)."""
    fields = _read_text("/proc/stat").split("\n", 1)[0].split()[1:]
    busy = 0
    if fields:
        v = [int(f) for f in fields]
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)  # user nice system irq softirq steal
    stat = _read_text("/proc/self/stat")
    own = 0
    if stat:
        rest = stat.rsplit(")", 1)[1].split()
        own = int(rest[11]) + int(rest[12])  # utime, stime (fields 14 and 15)
    return busy, own


def _n_cpus_in_stat() -> int:
    return max(1, sum(1 for l in _read_text("/proc/stat").splitlines() if l.startswith("cpu") and l[3:4].isdigit()))


def loadavg() -> str:
    """The first four fields of /proc/loadavg (1, 5, 15 minute averages and runnable/total tasks)."""
    return " ".join(_read_text("/proc/loadavg").split()[:4])


class Monitor:
    """Measures interference: a small fixed calibration workload and the CPU time other processes use.

    The calibration runs torch's parallel kernels (a matmul and an elementwise op), which are the first to slow down
    when another process takes a core. ``best`` is the fastest calibration seen in this process.
    """

    def __init__(self) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self._a = torch.randn(256, 256, generator=g)
        self._b = torch.randn(256, 256, generator=g)
        self._c = torch.empty(256, 256)
        self._v = torch.randn(1 << 20, generator=g)
        self._w = torch.empty_like(self._v)
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._ncpu = _n_cpus_in_stat()
        self.best = float("inf")
        self.calibrations: List[float] = []
        for _ in range(15):
            self.calibrate()

    def _work(self) -> None:
        import torch

        for _ in range(2):
            torch.mm(self._a, self._b, out=self._c)
        torch.mul(self._v, 1.0001, out=self._w)
        torch.add(self._w, self._v, out=self._w)

    def calibrate(self) -> float:
        """Median of three runs of the calibration workload, in seconds (also updates ``best``)."""
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            self._work()
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        self.best = min(self.best, t)
        self.calibrations.append(t)
        return t

    def cpu_snapshot(self) -> tuple[float, int, int]:
        busy, own = _cpu_ticks()
        return time.perf_counter(), busy, own

    def foreign_share(self, snap: tuple[float, int, int]) -> float:
        """Share of all cores that other processes used since ``snap`` (0..1; steal time counts as foreign)."""
        t0, busy0, own0 = snap
        t1, busy1, own1 = self.cpu_snapshot()
        elapsed = max(t1 - t0, 1e-9)
        foreign = max(0, (busy1 - busy0) - (own1 - own0))
        return foreign / (self._hz * elapsed * self._ncpu)


@dataclass
class Sample:
    seconds: float
    cal_before: float
    cal_after: float = float("nan")
    foreign: float = 0.0
    reason: Optional[str] = None  # why the round was dropped (None: kept)


@dataclass
class Series:
    """The rounds of one implementation in one case."""

    samples: List[Sample] = field(default_factory=list)
    error: Optional[str] = None

    def kept(self) -> List[float]:
        return [s.seconds for s in self.samples if s.reason is None]

    def dropped(self) -> List[Sample]:
        return [s for s in self.samples if s.reason is not None]


def judge(sample: Sample, best_cal: float) -> Optional[str]:
    """Why a round must be dropped (None: keep it)."""
    cal = sample.cal_before if math.isnan(sample.cal_after) else max(sample.cal_before, sample.cal_after)
    if cal > DROP_FACTOR * best_cal:
        return f"calibration {cal / best_cal:.2f}x the best"
    if sample.foreign > FOREIGN_CPU_LIMIT:
        return f"other processes used {sample.foreign:.0%} of the CPUs"
    return None


def measure_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    monitor: Monitor,
    warmup: int,
    repeats: int,
    max_rounds_factor: int = 3,
    label: str = "",
) -> Dict[str, Series]:
    """Time every call ``repeats`` times, round-robin, dropping rounds disturbed by other processes.

    Each implementation first runs ``warmup`` untimed calls (one that raises is reported as an error, not a crash).
    Then rounds go round-robin over the implementations (the order rotates every round). Before every round a
    calibration runs; a round is judged by the calibrations before and after it (and by other processes' CPU time
    during it) and dropped when disturbed. Dropped rounds are replaced until ``repeats`` rounds are kept or
    ``max_rounds_factor * repeats`` rounds were run.
    """
    series: Dict[str, Series] = {name: Series() for name in calls}
    for name, fn in calls.items():
        try:
            for _ in range(warmup):
                fn()
        except Exception as exc:  # a broken peer is reported, not fatal
            series[name].error = f"{type(exc).__name__}: {exc}"
            print(f"  {label}{name}: failed during warm-up: {series[name].error}")
    active = [n for n in calls if series[n].error is None]
    last: Optional[Sample] = None
    for rnd in range(max_rounds_factor * repeats):
        todo = [n for n in active if _count_kept(series[n], monitor.best) < repeats]
        if not todo:
            break
        shift = rnd % len(todo)
        for name in todo[shift:] + todo[:shift]:
            gc.collect()
            cal = monitor.calibrate()
            if last is not None:
                last.cal_after = cal
            snap = monitor.cpu_snapshot()
            t0 = time.perf_counter()
            try:
                calls[name]()
            except Exception as exc:  # a peer failing later is reported too, not fatal
                series[name].error = f"{type(exc).__name__}: {exc}"
                active.remove(name)
                print(f"  {label}{name}: failed: {series[name].error}")
                continue
            seconds = time.perf_counter() - t0
            last = Sample(seconds, cal, foreign=monitor.foreign_share(snap))
            series[name].samples.append(last)
    if last is not None:
        last.cal_after = monitor.calibrate()
    for s in series.values():
        for sample in s.samples:
            sample.reason = judge(sample, monitor.best)
    return series


def _count_kept(s: Series, best_cal: float) -> int:
    return sum(1 for x in s.samples if judge(x, best_cal) is None)


def summarize(s: Series) -> Dict[str, Any]:
    """Median/min/max of the kept rounds plus what was dropped and why, as a JSON-able dict."""
    kept = s.kept()
    out: Dict[str, Any] = {
        "kept": len(kept),
        "dropped": len(s.dropped()),
        "drop_reasons": [d.reason for d in s.dropped()],
        "samples_s": [round(x.seconds, 6) for x in s.samples],
        "foreign_cpu_share": [round(x.foreign, 3) for x in s.samples],
    }
    if s.error:
        out["error"] = s.error
    if not kept and s.samples:
        # Every round was disturbed: report them all, flagged, rather than nothing (never in a quiet full run).
        kept = [x.seconds for x in s.samples]
        out["disturbed"] = True
    if kept:
        out.update(median_s=statistics.median(kept), min_s=min(kept), max_s=max(kept))
    return out


def add_ratios(rows: Dict[str, Dict[str, Any]], peers: Iterable[str], reference: str = "spikelib-torch") -> None:
    """Add ``ratio_to_fastest_peer`` and ``ratio_to_spikelib_torch`` (median over median) to every row."""
    peer_medians = {n: rows[n]["median_s"] for n in peers if n in rows and "median_s" in rows[n]}
    fastest = min(peer_medians, key=peer_medians.get) if peer_medians else None
    ref = rows.get(reference, {}).get("median_s")
    for row in rows.values():
        med = row.get("median_s")
        row["fastest_peer"] = fastest
        row["ratio_to_fastest_peer"] = med / peer_medians[fastest] if med and fastest else None
        row["ratio_to_spikelib_torch"] = med / ref if med and ref else None


def measure_bandwidth(megabytes: int = 256, repeats: int = 5) -> Dict[str, float]:
    """Copy bandwidth of this machine: best of ``repeats`` copies of a ``megabytes`` float32 tensor (read + write)."""
    import torch

    n = megabytes * 2**20 // 4
    src = torch.ones(n)
    dst = torch.zeros(n)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    nbytes = 2 * n * 4
    del src, dst
    return {"megabytes": megabytes, "best_copy_s": best, "bytes_per_s": nbytes / best}


def numba_threading_layer() -> Optional[str]:
    """The threading layer numba's parallel kernels used in this process (None if none ran or no numba)."""
    numba = sys.modules.get("numba")
    if numba is None:
        return None
    try:
        return str(numba.threading_layer())
    except ValueError:  # no parallel kernel has run
        return None


def loaded_openmp_runtimes() -> List[str]:
    """Paths of the OpenMP/TBB runtimes loaded in this process (torch bundles its own libgomp; numba's 'omp'
    threading layer may load another copy, and the two thread pools then compete for the cores)."""
    libs = set()
    for line in _read_text("/proc/self/maps").splitlines():
        path = line.split()[-1] if line.split() else ""
        name = os.path.basename(path)
        if name.startswith(("libgomp", "libiomp", "libomp", "libtbb")):
            libs.add(path)
    return sorted(libs)


def torch_warmup() -> None:
    """Run a little of everything the benchmarks use (matmul, autograd, Adam) so that no implementation's first call
    pays torch's own one-time initialisation."""
    import torch

    lin = torch.nn.Linear(8, 8)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(4, 3, 8, requires_grad=True)
        y = torch.stack([torch.sigmoid(t) for t in lin(x).unbind(0)])
        torch.nn.functional.cross_entropy(y.sum(0), torch.zeros(3, dtype=torch.long)).backward()
        opt.step()
    with torch.no_grad():
        lin(torch.randn(2, 8))


# ----------------------------------------------------------------------------------------------------------------
# probes: fresh subprocesses for first-call time and peak memory
# ----------------------------------------------------------------------------------------------------------------

def vm_status_kib() -> Dict[str, int]:
    """VmRSS and VmHWM of this process in KiB."""
    out = {}
    for line in _read_text("/proc/self/status").splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set (VmHWM) to the current one; False if the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_delta_mib(fn: Callable[[], Any]) -> Dict[str, Any]:
    """Peak resident memory that one call of ``fn`` adds, in MiB (VmHWM during the call minus VmRSS before it).

    Meant for a process started with :data:`MALLOC_MEMORY_PROBE`, where freed blocks go back to the OS. Free what
    the call would free itself first (e.g. the previous gradients), or it will be subtracted from the peak. spikelib's
    kernel workspace is emptied first, so the blocks it keeps between calls count in the call's peak.
    """
    gc.collect()
    clear_spikelib_workspace()
    exact = reset_peak_rss()
    before = vm_status_kib()["VmRSS"]
    result = fn()
    peak = vm_status_kib()["VmHWM"]
    del result
    # /proc counters are synced lazily (a few pages), so tiny deltas can come out slightly negative: clamp at 0.
    return {"peak_mib": max(0.0, (peak - before) / 1024), "hwm_reset": exact}


def emit_probe(result: Mapping[str, Any]) -> None:
    """Print a probe's result as one JSON line for the parent process."""
    print(PROBE_PREFIX + json.dumps(result), flush=True)


def run_probe(script: Path, args: Sequence[str], env_updates: Mapping[str, str],
              timeout: float = 900) -> Dict[str, Any]:
    """Run ``script --no-malloc-tuning *args`` in a fresh interpreter and return its probe result (or an error)."""
    env = dict(os.environ)
    env.pop(_REEXEC_MARK, None)
    env.update(env_updates)
    cmd = [sys.executable, str(script), "--no-malloc-tuning", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"probe timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(PROBE_PREFIX):
            return json.loads(line[len(PROBE_PREFIX):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"probe exited {proc.returncode}: " + " | ".join(tail)}


def timed_call(fn: Callable[[], Any]) -> Dict[str, float]:
    """Seconds of one call of ``fn`` and the share of the CPUs other processes used meanwhile (for probes)."""
    busy0, own0 = _cpu_ticks()
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    busy1, own1 = _cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    foreign = max(0, (busy1 - busy0) - (own1 - own0)) / (hz * max(seconds, 1e-9) * _n_cpus_in_stat())
    return {"s": seconds, "foreign": foreign}


def _probe_disturbed(result: Mapping[str, Any]) -> bool:
    return any(c.get("foreign", 0.0) > FOREIGN_CPU_LIMIT for c in (result.get("calls") or {}).values())


def first_call_probes(script: Path, impl: str, size_args: Sequence[str], attempts: int = 3) -> Dict[str, Any]:
    """First-call times of ``impl`` in fresh processes: with an empty spikelib kernel cache, then with it filled.

    A pair disturbed by other processes (see :func:`timed_call`) is repeated, up to ``attempts`` pairs; the first
    undisturbed pair is kept (else the fastest), and ``disturbed`` says whether the kept one was disturbed.
    """
    pairs: List[Dict[str, Any]] = []
    for _ in range(attempts):
        with tempfile.TemporaryDirectory(prefix="spikelib-bench-cache-") as cache:
            env = {**MALLOC_TUNING, "SPIKELIB_CACHE_DIR": cache}
            cold = run_probe(script, ["--probe", "first", "--impl", impl, *size_args], env)
            warm = run_probe(script, ["--probe", "first", "--impl", impl, *size_args], env)
        pairs.append({"cold": cold, "warm": warm, "disturbed": _probe_disturbed(cold) or _probe_disturbed(warm)})
        if not pairs[-1]["disturbed"] or "error" in cold or "error" in warm:
            break
    quiet = [p for p in pairs if not p["disturbed"]]
    best = quiet[0] if quiet else min(pairs, key=_probe_total_s)
    return {**best, "attempts": len(pairs)}


def _probe_total_s(pair: Mapping[str, Any]) -> float:
    return sum(c.get("s", 0.0) for side in ("cold", "warm") for c in ((pair[side].get("calls") or {}).values()))


def memory_probe(script: Path, impl: str, size_args: Sequence[str]) -> Dict[str, Any]:
    """Peak memory of one steady-state call of ``impl`` in a fresh process (see :func:`peak_rss_delta_mib`)."""
    return run_probe(script, ["--probe", "memory", "--impl", impl, *size_args], MALLOC_MEMORY_PROBE)


def attach_probes(script: Path, size_args: Sequence[str], cases: Dict[str, Dict[str, Any]], names: Sequence[str],
                  attempts: int = 3) -> None:
    """Run the first-call (cold and warm) and memory probes of every implementation and add them to the case rows.

    A probe prints ``{"import_and_build_s": ..., "calls": {case: result}}`` where a result is that of
    :func:`timed_call` (``--probe first``) or of :func:`peak_rss_delta_mib` (``--probe memory``).
    """
    for name in names:
        print(f"  probes: {name} ...", flush=True)
        first = first_call_probes(script, name, size_args, attempts)
        mem = memory_probe(script, name, size_args)
        errors = [p["error"] for p in (first["cold"], first["warm"], mem) if "error" in p]
        for case, block in cases.items():
            row = block["rows"].get(name)
            if row is None:
                continue
            row["first_call_cold_s"] = first_call_s(first, "cold", case)
            row["first_call_warm_s"] = first_call_s(first, "warm", case)
            row["first_call_disturbed"] = first["disturbed"]
            row["import_and_build_s"] = (first.get("cold") or {}).get("import_and_build_s")
            row["peak_mib"] = ((mem.get("calls") or {}).get(case) or {}).get("peak_mib")
            if errors:
                row["probe_errors"] = errors


# ----------------------------------------------------------------------------------------------------------------
# command line and output
# ----------------------------------------------------------------------------------------------------------------

def parse_bench_args(description: str, full: Mapping[str, int], quick: Mapping[str, int],
                     argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options every benchmark script takes; the integer sizes in ``full`` become ``--KEY`` overrides."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test, not a result)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only these implementations (name or prefix, e.g. norse; repeat or comma-separate)")
    for key, value in full.items():
        p.add_argument(f"--{key}", type=int, default=None, help=f"override {key} (full: {value}, quick: {quick[key]})")
    p.add_argument("--no-probes", action="store_true", help="skip the first-call and memory subprocesses")
    p.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc settings as they are")
    p.add_argument("--probe", choices=("first", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.only = [o for item in args.only for o in item.split(",") if o]
    return args


def write_json(name: str, payload: Mapping[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``results_dir/name.json`` atomically and return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(r: Optional[float]) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def fmt_mib(m: Optional[float]) -> str:
    return "n/a" if m is None else f"{m:.0f}" if abs(m) >= 10 else f"{m:.1f}"


def first_call_s(probe: Mapping[str, Any], which: str, case: str) -> Optional[float]:
    """Seconds of the first call of ``case`` in the ``which`` ("cold"/"warm") probe, None if it did not run."""
    return ((probe.get(which) or {}).get("calls") or {}).get(case, {}).get("s")


def fmt_median(row: Mapping[str, Any]) -> str:
    """The median in ms, with a star when every round was disturbed (see :func:`summarize`)."""
    return fmt_ms(row.get("median_s")) + ("*" if row.get("disturbed") else "")


def print_table(title: str, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Print the timing rows of one case to the terminal."""
    print(f"\n{title}")
    print(f"  {'implementation':20s} {'median ms':>10s} {'min':>8s} {'max':>8s} {'kept/drop':>9s} "
          f"{'x peer':>8s} {'x sl-torch':>10s}")
    for name, r in rows.items():
        if "median_s" not in r:
            print(f"  {name:20s} {r.get('error', 'no kept rounds')}")
            continue
        print(f"  {name:20s} {fmt_median(r):>10s} {fmt_ms(r['min_s']):>8s} {fmt_ms(r['max_s']):>8s} "
              f"{r['kept']:>4d}/{r['dropped']:<4d} {fmt_ratio(r.get('ratio_to_fastest_peer')):>8s} "
              f"{fmt_ratio(r.get('ratio_to_spikelib_torch')):>10s}")
    dropped = sum(r.get("dropped", 0) for r in rows.values())
    print(f"  rounds dropped for interference: {dropped} (calibration > {DROP_FACTOR}x the best, or other processes "
          f"> {FOREIGN_CPU_LIMIT:.0%} of the CPUs during the round)")
    if any(r.get("disturbed") for r in rows.values()):
        print("  * every round of this implementation was disturbed by other processes: not a valid figure")


def clear_spikelib_workspace() -> None:
    """Give spikelib's kernel workspace back to the system (its free blocks stay resident between calls, which a
    memory probe must not count as "before"); nothing when spikelib is not loaded."""
    module = sys.modules.get("spikelib.kernels.cpu.workspace")
    if module is not None:
        module.clear()
