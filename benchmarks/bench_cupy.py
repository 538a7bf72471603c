"""GPU benchmark of the multi-step LIF: spikelib's CuPy kernels vs the torch reference loop on CUDA, spikingjelly 2.0 on
CUDA (its Triton/native path) and spikingjelly 0.0.0.0.14 with ``backend='cupy'`` (run in a subprocess from its own
install directory, ``--sj014-path``, because it has the same import name as 2.0).

    python benchmarks/bench_cupy.py                         # full grid (GPU machine; a few minutes)
    python benchmarks/bench_cupy.py --quick                 # smoke test: small sizes, results labelled QUICK
    python benchmarks/bench_cupy.py --sj014-path /tmp/sj014 # add spikingjelly 0.0.0.0.14 (pip install --no-deps
                                                            #   --target /tmp/sj014 spikingjelly==0.0.0.0.14)
    python benchmarks/bench_cupy.py --dry-run-cpu --out /tmp/x.json   # exercise this script on a CPU (no figures)

Every implementation runs the same dynamics as bench_lif.py (``H = V + (X - V)/tau``, tau 2, threshold 1, hard reset
to 0, detach_reset, ATan surrogate, from rest on every call) on ``x: [T, B, N]`` with ``B = 16``, for T in
{4, 16, 100, 500}, ``B*N`` in {2^16, 2^20, 2^24} (cases whose tensors would not fit in 60% of free GPU memory are
skipped and listed), float32 and float16, **forward** (``torch.no_grad()``) and **forward+backward**
(``loss = spikes.sum()``, ``torch.autograd.grad(loss, x)``). Times are CUDA-event medians over ``--repeats`` calls after
``--warmup`` calls. Bandwidth is the *useful* traffic of a fused kernel divided by the time, the same formula for every
implementation: forward ``2 T M s`` bytes (read x, write spikes), forward+backward ``5 T M s`` (also write and read
H, write grad x; the spike gradient of a sum is one scalar), ``M = B*N``, ``s`` the element size; it is given as a
percentage of the device's peak memory bandwidth (table below, by device name) and of the measured device-to-device
copy bandwidth. Activation memory (peak allocated during forward+backward minus the input) is recorded against T.
Before timing, every implementation's spikes are compared with spikelib-torch on the benchmark input. Without a CUDA
device (and without ``--dry-run-cpu``) the script says so and exits 0. Results: ``results/cupy_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import common

import torch

TAU, V_TH, BATCH = 2.0, 1.0, 16
# Peak DRAM bandwidth in bytes/s by device-name pattern (vendor data sheets), first match wins.
PEAK_BANDWIDTH = [
    (r"H200", 4.8e12),
    (r"H100.*NVL", 3.9e12),
    (r"H100.*PCIe", 2.0e12),
    (r"H100", 3.35e12),            # H100 SXM5 80 GB (HBM3)
    (r"A100.*80GB", 2.039e12),     # A100 SXM4 80 GB
    (r"A100", 1.555e12),           # A100 40 GB
    (r"L40S", 0.864e12),
    (r"A10\b", 0.6e12),
]
SJ014_VERSION = "0.0.0.0.14"


def peak_bandwidth(name: str) -> Optional[float]:
    for pattern, bw in PEAK_BANDWIDTH:
        if re.search(pattern, name):
            return bw
    return None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, nargs="+", default=None, help="time steps (default 4 16 100 500)")
    p.add_argument("--log2-bn", type=int, nargs="+", default=None, help="log2 of B*N (default 16 20 24)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16", "bfloat16"])
    p.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--only", action="append", default=[], help="implementations (names or prefixes)")
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke test, not a result)")
    p.add_argument("--sj014-path", default=os.environ.get("SPIKELIB_SJ014_PATH"),
                   help="directory holding spikingjelly 0.0.0.0.14 (pip install --no-deps --target DIR ...)")
    p.add_argument("--dry-run-cpu", action="store_true", help="run the machinery on the CPU (no cupy, no figures)")
    p.add_argument("--out", default=None, help="write the JSON here instead of results/cupy_<device>.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    small = args.quick or args.dry_run_cpu
    args.T = args.T or ([4, 16] if small else [4, 16, 100, 500])
    args.log2_bn = args.log2_bn or ([10, 12] if args.dry_run_cpu else [16, 20] if args.quick else [16, 20, 24])
    args.warmup = args.warmup if args.warmup is not None else (2 if small else 10)
    args.repeats = args.repeats if args.repeats is not None else (5 if small else 30)
    args.only = [o for item in args.only for o in item.split(",") if o]
    return args


# ---------------------------------------------------------------------------------------------------------------
# implementations: each is a builder returning fn(x) -> spikes
# ---------------------------------------------------------------------------------------------------------------

def _spikelib(backend: str) -> Callable[[], Callable[[torch.Tensor], torch.Tensor]]:
    def build():
        from spikelib.functional import lif

        return lambda x: lif(x, tau=TAU, v_threshold=V_TH, v_reset=0.0, reset="hard", decay_input=True,
                             detach_reset=True, surrogate="atan", backend=backend).spikes
    return build


def _spikingjelly(backend: Optional[str]) -> Callable[[], Callable[[torch.Tensor], torch.Tensor]]:
    def build():
        from spikingjelly.activation_based import neuron, surrogate

        kw = {} if backend is None else {"backend": backend}
        node = neuron.LIFNode(tau=TAU, decay_input=True, v_threshold=V_TH, v_reset=0.0, detach_reset=True,
                              surrogate_function=surrogate.ATan(), step_mode="m", **kw)

        def run(x):
            s = node(x)
            node.reset()
            return s
        return run
    return build


def implementations(dry_run: bool, worker: Optional[str]) -> Dict[str, Callable[[], Any]]:
    if worker == "sj014":  # spikelib-torch only as the reference of the spike check (not timed)
        return {"spikelib-torch": _spikelib("torch"),
                "spikingjelly-0.0.0.0.14-cupy": _spikingjelly("cupy" if not dry_run else "torch")}
    impls = {"spikelib-cupy": _spikelib("cupy"), "spikelib-torch": _spikelib("torch")}
    if dry_run:
        impls["spikelib-cupy"] = _spikelib("auto")  # the CPU path stands in: machinery only
    impls["spikingjelly-2.0"] = _spikingjelly(None)
    return impls


# ---------------------------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------------------------

def _timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    if device.type == "cuda":
        def cuda_time(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return cuda_time

    def cpu_time(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return cpu_time


def _step(run, x: torch.Tensor, mode: str) -> Callable[[], Any]:
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                run(x)
        return fwd
    xg = x.detach().requires_grad_(True)

    def fwdbwd():
        s = run(xg)
        torch.autograd.grad(s.sum(), xg)
    return fwdbwd


def _useful_bytes(T: int, M: int, itemsize: int, mode: str) -> int:
    return (2 if mode == "fwd" else 5) * T * M * itemsize


def measure(args: argparse.Namespace, device: torch.device, impl_names: Sequence[str],
            untimed: Sequence[str] = ()) -> Dict[str, Any]:
    impls = {n: b for n, b in implementations(args.dry_run_cpu, args.worker).items() if n in impl_names}
    built, errors = {}, {}
    for name, build in impls.items():
        try:
            built[name] = build()
        except Exception as exc:  # a missing or broken peer is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"
    timer = _timer(device)
    rows: List[Dict[str, Any]] = []
    skipped: List[str] = []
    checks: Dict[str, Any] = {}
    memory: List[Dict[str, Any]] = []
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 8 * 2**30
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        itemsize = torch.empty((), dtype=dtype).element_size()
        for log2_bn in args.log2_bn:
            M = 2**log2_bn
            for T in args.T:
                need = 7 * T * M * itemsize  # x, spikes, saved tensors, grads (conservative for the reference)
                if need > 0.6 * free:
                    skipped.append(f"{dtype_name} T={T} B*N=2^{log2_bn}: needs ~{need / 2**30:.1f} GiB")
                    continue
                x = torch.rand(T, BATCH, M // BATCH, device=device, dtype=dtype) * 2 * TAU * V_TH
                ref = None
                if "spikelib-torch" in built:
                    with torch.no_grad():
                        ref = built["spikelib-torch"](x)
                for name, run in built.items():
                    try:
                        if ref is not None and name != "spikelib-torch":
                            with torch.no_grad():
                                s = run(x)
                            checks[f"{name} {dtype_name} T={T} 2^{log2_bn}"] = dict(
                                equal=bool(torch.equal(s, ref)), mismatch_fraction=float((s != ref).float().mean()))
                            del s
                        if name in untimed:
                            continue
                        for mode in args.modes:
                            step = _step(run, x, mode)
                            for _ in range(args.warmup):
                                step()
                            if device.type == "cuda":
                                torch.cuda.synchronize(device)
                            times = [timer(step) for _ in range(args.repeats)]
                            med = statistics.median(times)
                            bw = _useful_bytes(T, M, itemsize, mode) / med
                            rows.append(dict(impl=name, dtype=dtype_name, T=T, log2_bn=log2_bn, mode=mode,
                                             median_ms=med * 1e3, min_ms=min(times) * 1e3, max_ms=max(times) * 1e3,
                                             useful_GBps=bw / 1e9))
                            if mode == "fwdbwd" and device.type == "cuda" and log2_bn == min(args.log2_bn[-1], 20):
                                torch.cuda.synchronize(device)
                                torch.cuda.reset_peak_memory_stats(device)
                                base = torch.cuda.memory_allocated(device)
                                step()
                                torch.cuda.synchronize(device)
                                memory.append(dict(impl=name, dtype=dtype_name, T=T, log2_bn=log2_bn,
                                                   activation_MiB=(torch.cuda.max_memory_allocated(device) - base)
                                                   / 2**20, input_MiB=T * M * itemsize / 2**20))
                    except Exception as exc:
                        errors[f"{name} {dtype_name} T={T} 2^{log2_bn}"] = f"{type(exc).__name__}: {exc}"
                del x, ref
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return dict(rows=rows, skipped=skipped, errors=errors, checks=checks, memory=memory)


def copy_bandwidth(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    a = torch.empty(2**28, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    timer = _timer(device)
    for _ in range(3):
        b.copy_(a)
    t = statistics.median(timer(lambda: b.copy_(a)) for _ in range(10))
    return 2 * a.numel() / t


def run_sj014(args: argparse.Namespace, argv: Sequence[str]) -> Dict[str, Any]:
    """spikingjelly 0.0.0.0.14 in a subprocess with its install directory first on sys.path."""
    if not args.sj014_path:
        return dict(rows=[], errors={"spikingjelly-0.0.0.0.14-cupy": "not run: give --sj014-path DIR (see --help)"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([args.sj014_path, str(common.REPO_ROOT)]))
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", "sj014"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(common.PROBE_PREFIX):
            return json.loads(line[len(common.PROBE_PREFIX):])
    return dict(rows=[], errors={"spikingjelly-0.0.0.0.14-cupy": f"worker failed: {done.stderr[-2000:]}"})


def summarize(rows: List[Dict[str, Any]], peak: Optional[float], copy_bw: Optional[float]) -> None:
    """Add %-of-peak and the speed-up over the fastest peer to each spikelib-cupy row (in place)."""
    by_case: Dict[tuple, Dict[str, Dict[str, Any]]] = {}
    for r in rows:
        if peak:
            r["pct_peak"] = 100 * r["useful_GBps"] * 1e9 / peak
        if copy_bw:
            r["pct_copy"] = 100 * r["useful_GBps"] * 1e9 / copy_bw
        by_case.setdefault((r["dtype"], r["T"], r["log2_bn"], r["mode"]), {})[r["impl"]] = r
    for case in by_case.values():
        peers = [r["median_ms"] for n, r in case.items() if not n.startswith("spikelib")]
        mine = case.get("spikelib-cupy")
        if mine and peers:
            mine["x_fastest_peer"] = min(peers) / mine["median_ms"]
        if mine and "spikelib-torch" in case:
            mine["x_spikelib_torch"] = case["spikelib-torch"]["median_ms"] / mine["median_ms"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.dry_run_cpu:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("bench_cupy: no CUDA device here; nothing to measure (run it on a GPU machine, see benchmarks/README.md)")
        return 0
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    if args.worker == "sj014":
        from importlib import metadata

        version = metadata.version("spikingjelly")
        if version != SJ014_VERSION:
            raise SystemExit(f"--sj014-path holds spikingjelly {version}, not {SJ014_VERSION}")
        result = measure(args, device, ["spikelib-torch", "spikingjelly-0.0.0.0.14-cupy"], untimed=["spikelib-torch"])
        print(common.PROBE_PREFIX + json.dumps(result))
        return 0
    names = [n for n in implementations(args.dry_run_cpu, None)
             if not args.only or any(n.startswith(o) for o in args.only)]
    result = measure(args, device, names)
    if not args.only or any("0.0.0.0.14".startswith(o) or o.startswith("spikingjelly-0") for o in args.only):
        sub = run_sj014(args, [a for a in argv if a != "--worker"])
        result["rows"] += sub.get("rows", [])
        result["errors"].update(sub.get("errors", {}))
        result["memory"] += sub.get("memory", [])
        result["checks"].update(sub.get("checks", {}))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    peak = peak_bandwidth(name) if device.type == "cuda" else None
    copy_bw = copy_bandwidth(device)
    summarize(result["rows"], peak, copy_bw)
    payload = dict(
        title="CuPy LIF kernels on GPU" + (" (QUICK)" if args.quick else "") + (" (DRY RUN, CPU)" if args.dry_run_cpu
                                                                                else ""),
        command=common.command_line(argv), device=name,
        capability=list(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None,
        peak_bandwidth_GBps=peak / 1e9 if peak else None, copy_bandwidth_GBps=copy_bw / 1e9 if copy_bw else None,
        versions={p: common.package_version(p) for p in ("torch", "cupy-cuda12x", "cupy-cuda13x", "spikingjelly")},
        cuda=torch.version.cuda, batch=BATCH, warmup=args.warmup, repeats=args.repeats, **result,
    )
    print(f"device: {name}; peak {payload['peak_bandwidth_GBps']} GB/s; copy {payload['copy_bandwidth_GBps']} GB/s")
    for r in result["rows"]:
        extra = "".join(f" {k}={r[k]:.2f}" for k in ("pct_peak", "x_fastest_peer") if k in r)
        print(f"  {r['impl']:30s} {r['dtype']:8s} T={r['T']:<4d} BN=2^{r['log2_bn']:<3d} {r['mode']:7s} "
              f"{r['median_ms']:9.3f} ms {r['useful_GBps']:8.1f} GB/s{extra}")
    for k, v in result["errors"].items():
        print(f"  error {k}: {v}")
    for s in result["skipped"]:
        print(f"  skipped {s}")
    if args.out:
        out = Path(args.out)
        common.write_json(out.stem, payload, out.parent)
    elif not args.dry_run_cpu:
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        out = common.write_json(f"cupy_{slug}", payload)
    else:
        out = None
    print(f"wrote {out}" if out else "dry run: nothing written (give --out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
