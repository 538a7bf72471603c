"""Benchmark (a): a bare LIF layer on CPU, spikelib (torch reference and numba) against spikingjelly, norse, snnTorch.

Input ``x: [T, B, N]`` float32 (default T=100, B=32, N=1024); two cases:

* ``forward``: spikes under ``torch.no_grad()``;
* ``forward_backward``: ``x`` requires grad, ``loss = spikes.sum()``, ``loss.backward()``.

All implementations run in this one process, interleaved round by round; first-call time and peak memory are
measured in fresh subprocesses (``--probe first|memory``). Also prints the memory-bandwidth floor of an ideal fused
kernel. Run ``python benchmarks/bench_lif.py --help``; README.md explains the method.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402
from torch import nn  # noqa: E402

import peers  # noqa: E402
import report  # noqa: E402

NAME = "lif_cpu"
SCRIPT = Path(__file__).resolve()
FULL = {"T": 100, "B": 32, "N": 1024, "warmup": 5, "repeats": 20}
QUICK = {"T": 20, "B": 4, "N": 256, "warmup": 2, "repeats": 5}
CASES = {
    "forward": "forward only, under torch.no_grad()",
    "forward_backward": "forward + backward, x.requires_grad, loss = spikes.sum()",
}
# Minimal [T, B, N] float32 tensors an ideal fused kernel moves through memory:
# forward: read x, write spikes; with BPTT also write and read one saved tensor, read dL/dS, write dL/dx.
FLOOR_TENSORS = {"forward": 2, "forward_backward": 6}
# Minimal live [T, B, N] tensors at the peak: spikes; with BPTT also the saved tensor and dL/dx (dL/dS of a sum is
# an expanded scalar).
IDEAL_LIVE_TENSORS = {"forward": 1, "forward_backward": 3}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options (sizes default to the full benchmark; --quick shrinks them)."""
    return common.parse_bench_args(__doc__.split("\n\n")[0], FULL, QUICK, argv)


def size_args(args: argparse.Namespace) -> List[str]:
    """The size options to hand to a probe subprocess."""
    return ["--T", str(args.T), "--B", str(args.B), "--N", str(args.N)]


def make_input(T: int, B: int, N: int, requires_grad: bool) -> torch.Tensor:
    """Seeded input current; about 16% of the steps spike with tau = 2 and threshold 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, N, generator=g) * 0.8 + 0.8
    return x.requires_grad_(requires_grad)


def forward_call(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A call running the forward pass without autograd."""
    def call() -> torch.Tensor:
        with torch.no_grad():
            return module(x)
    return call


def forward_backward_call(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A call running forward and backward of ``spikes.sum()`` (``x.grad`` cleared first)."""
    def call() -> torch.Tensor:
        x.grad = None
        spikes = module(x)
        spikes.sum().backward()
        return x.grad
    return call


def case_calls(case: str, modules: Dict[str, nn.Module], x_nograd: torch.Tensor,
               x_grad: torch.Tensor) -> Dict[str, Callable[[], Any]]:
    if case == "forward":
        return {n: forward_call(m, x_nograd) for n, m in modules.items()}
    return {n: forward_backward_call(m, x_grad) for n, m in modules.items()}


def check_against_reference(modules: Dict[str, nn.Module], x: torch.Tensor) -> Dict[str, Dict[str, Any]]:
    """Spikes and input gradients of every implementation compared with spikelib-torch (or the first one)."""
    results: Dict[str, Dict[str, Any]] = {}
    outputs = {}
    for name, module in modules.items():
        try:
            grad = forward_backward_call(module, x)()
            with torch.no_grad():
                spikes = module(x)
            outputs[name] = (spikes.detach().clone(), grad.detach().clone())
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    ref_name = peers.SPIKELIB_REFERENCE if peers.SPIKELIB_REFERENCE in outputs else next(iter(outputs), None)
    if ref_name is None:
        return results
    ref_s, ref_g = outputs[ref_name]
    for name, (s, g) in outputs.items():
        results[name] = {
            "reference": ref_name,
            "spike_rate": float(s.mean()),
            "spike_mismatches": int((s != ref_s).sum()),
            "grad_max_abs_diff": float((g - ref_g).abs().max()),
        }
    return results


# ----------------------------------------------------------------------------------------------------------------
# probes (run in a fresh interpreter by the parent)
# ----------------------------------------------------------------------------------------------------------------

def probe(args: argparse.Namespace) -> None:
    """Entry point of a probe subprocess: print first-call times or peak memory of ``args.impl`` as JSON."""
    impl = peers.by_name(args.impl)
    common.torch_warmup()
    t0 = time.perf_counter()
    module = impl.build()
    build_s = time.perf_counter() - t0
    x_nograd = make_input(args.T, args.B, args.N, False)
    x_grad = make_input(args.T, args.B, args.N, True)
    calls = {case: case_calls(case, {"m": module}, x_nograd, x_grad)["m"] for case in CASES}
    results: Dict[str, Any] = {}
    if args.probe == "first":
        for case in ("forward_backward", "forward"):  # a training call first: what a user meets first
            results[case] = common.timed_call(calls[case])
    else:
        for case, call in calls.items():
            call()
            call()
            x_grad.grad = None  # the call frees it first: not part of the "before"
            results[case] = common.peak_rss_delta_mib(call)
    common.emit_probe({"import_and_build_s": build_s, "calls": results})


# ----------------------------------------------------------------------------------------------------------------
# the benchmark
# ----------------------------------------------------------------------------------------------------------------

def floor_block(args: argparse.Namespace, case: str, bandwidth: Dict[str, float]) -> Dict[str, Any]:
    nbytes = FLOOR_TENSORS[case] * args.T * args.B * args.N * 4
    return {"bytes": nbytes, "tensors": FLOOR_TENSORS[case], "seconds": nbytes / bandwidth["bytes_per_s"],
            "ideal_live_mib": IDEAL_LIVE_TENSORS[case] * args.T * args.B * args.N * 4 / 2**20}


def run(args: argparse.Namespace, command: str) -> Dict[str, Any]:
    """Run the whole benchmark and return the JSON payload."""
    tuning = not args.no_malloc_tuning
    print(f"== bare LIF, T={args.T} B={args.B} N={args.N} float32"
          f"{'  [QUICK: smoke test sizes, not a result]' if args.quick else ''}")
    print(common.describe_malloc(tuning))
    machine = common.machine_info(tuning)
    print(f"machine: {machine['cpu_model']}, {machine['cpus_usable']} CPUs, torch {machine['versions']['torch']} "
          f"({machine['torch_threads']} threads); loadavg {common.loadavg()}")
    common.torch_warmup()
    monitor = common.Monitor()
    bandwidth = common.measure_bandwidth(64 if args.quick else 256, 3 if args.quick else 5)
    print(f"copy bandwidth {bandwidth['bytes_per_s'] / 1e9:.1f} GB/s; best calibration {monitor.best * 1e3:.2f} ms")
    impls, skipped = peers.select(args.only)
    modules = peers.build_all(impls, skipped)
    for name, reason in skipped.items():
        print(f"  skipped {name}: {reason}")
    x_nograd = make_input(args.T, args.B, args.N, False)
    x_grad = make_input(args.T, args.B, args.N, True)
    checks = check_against_reference(modules, x_grad)
    report.print_checks(checks)
    cases: Dict[str, Dict[str, Any]] = {}
    peer_names = [i.name for i in impls if i.is_peer]
    for case, title in CASES.items():
        series = common.measure_interleaved(case_calls(case, modules, x_nograd, x_grad), monitor, args.warmup,
                                            args.repeats, max_rounds_factor=2 if args.quick else 3, label=f"{case}: ")
        rows = {name: common.summarize(s) for name, s in series.items()}
        common.add_ratios(rows, peer_names)
        floor = floor_block(args, case, bandwidth)
        for row in rows.values():
            row["ratio_to_floor"] = row["median_s"] / floor["seconds"] if "median_s" in row else None
        cases[case] = {"title": title, "rows": rows, "floor": floor}
        common.print_table(f"{case}: {title}", rows)
        report.print_floor(floor, rows)
    if not args.no_probes:
        print("\nfirst-call and memory probes (fresh subprocesses):")
        common.attach_probes(SCRIPT, size_args(args), cases, attempts=1 if args.quick else 3, names=list(modules))
    return {
        "benchmark": NAME,
        "title": "Bare LIF layer (CPU)",
        "quick": bool(args.quick),
        "only": args.only,
        "command": command,
        "machine": machine,
        "config": {"T": args.T, "B": args.B, "N": args.N, "dtype": "float32", "warmup": args.warmup,
                   "repeats": args.repeats, "tau": peers.TAU, "v_threshold": peers.V_TH,
                   "drop_factor": common.DROP_FACTOR, "foreign_cpu_limit": common.FOREIGN_CPU_LIMIT},
        "bandwidth": bandwidth,
        "calibration": {"best_s": monitor.best, "count": len(monitor.calibrations)},
        "spikelib_auto_backend": peers.auto_backend_on_cpu(),
        "numba_threading_layer": common.numba_threading_layer(),
        "openmp_runtimes": common.loaded_openmp_runtimes(),
        "implementations": {i.name: i.config for i in impls if i.name in modules},
        "skipped": skipped,
        "checks": checks,
        "cases": cases,
    }


def main(argv: Optional[Sequence[str]] = None, command: Optional[str] = None) -> int:
    args = parse_args(argv)
    if args.probe:
        probe(args)
        return 0
    payload = run(args, command or common.command_line())
    path = common.write_json(NAME, payload)
    md = report.write_results_md()
    report.print_first_calls(payload)
    print(f"\nwrote {path} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
