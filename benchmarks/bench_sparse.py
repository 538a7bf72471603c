"""Benchmark: submanifold sparse conv (spikelib.sparse.SubMConv3d) vs dense Conv3d on the same grid, on CPU.

Input: ``B = 1`` grid of ``G^3`` voxels (``G = 64``), ``C`` channels in and out (``C = 16``), kernel 3x3x3, float32,
random active sites at 0.1%, 1% and 10% occupancy (seeded). Cases, per occupancy:

* ``occ=<p>/forward``: under ``torch.no_grad()``.
* ``occ=<p>/forward_backward``: forward, ``(y * r).sum().backward()`` with a fixed random ``r``, gradients of the
  input and the weight.

Implementations: ``sparse`` (SubMConv3d, kernel map cached on the tensor, as every layer after the first at one
resolution sees it), ``sparse+map`` (the kernel map rebuilt in every call), ``dense`` (``F.conv3d`` with padding 1 on
the zero-filled ``[1, C, G, G, G]`` grid; the dense result equals the sparse one at the active sites, which the run
checks). Rows hold median/min/max seconds (interleaved rounds, disturbed rounds dropped as in every spikelib
benchmark) and ``speedup_vs_dense`` (dense median / this median).

Scaling: ``scaling/<case>`` times the sparse forward (cached map), forward+backward and the kernel-map build at a
fixed 1% density while the number of active sites grows (batch items of the same density, ``B = 1, 2, 4, ...,
max_batch``: 2.6k to 168k sites at full size); a least-squares fit ``t = a + b N`` (with R^2) and the log-log slope
(1 = linear) are stored. Peak memory of one call of every case is measured in a fresh subprocess (``--probe memory``,
as the other scripts do).

Run ``python benchmarks/bench_sparse.py`` (``--quick`` for a smoke test, ``--threads 1`` on a busy machine); writes
``results/sparse_cpu.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from spikelib.sparse import (SparseSpikeTensor, SubMConv3d, build_kernel_map, sparse_conv3d,  # noqa: E402
                             weight_to_dense)

NAME = "sparse_cpu"
SCRIPT = Path(__file__).resolve()
# threads: torch intra-op threads for every implementation (0: torch's default). On a shared machine a second OpenMP
# thread that is descheduled stalls every parallel region of the small sparse ops (seen here: 100x slower), so a busy
# machine needs --threads 1 for meaningful figures; a quiet one can keep the default.
FULL = {"G": 64, "C": 16, "warmup": 2, "repeats": 7, "max_batch": 64, "threads": 0}
QUICK = {"G": 24, "C": 8, "warmup": 1, "repeats": 2, "max_batch": 4, "threads": 0}
OCCUPANCIES = (0.001, 0.01, 0.1)
SPARSE, SPARSE_MAP, DENSE = "spikelib-sparse", "spikelib-sparse+map", "dense-conv3d"
IMPLS = (SPARSE, SPARSE_MAP, DENSE)


def size_args(args: argparse.Namespace) -> List[str]:
    return ["--G", str(args.G), "--C", str(args.C), "--max_batch", str(args.max_batch), "--threads", str(args.threads)]


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (0 keeps torch's default)."""
    if args.threads < 0:
        raise SystemExit(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)


def make_sparse(G: int, C: int, occupancy: float, batch: int = 1, seed: int = 0) -> SparseSpikeTensor:
    """``batch`` items of ``G^3`` with ``round(occupancy G^3)`` random active sites each, features ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    n = max(1, round(occupancy * G ** 3))
    coords = []
    for b in range(batch):
        flat = torch.randperm(G ** 3, generator=g)[:n]
        coords.append(torch.stack([torch.full_like(flat, b), flat // (G * G), (flat // G) % G, flat % G], 1))
    c = torch.cat(coords)
    return SparseSpikeTensor(torch.randn(c.shape[0], C, generator=g), c, (G, G, G), batch)


def case_calls(x: SparseSpikeTensor, conv: SubMConv3d, backward: bool) -> Dict[str, Callable[[], Any]]:
    """The three implementations of one case (fresh leaf tensors; gradients cleared in every call)."""
    w_dense = weight_to_dense(conv.weight.detach(), 3).contiguous().requires_grad_(True)
    dense_in = x.dense().detach().requires_grad_(backward)
    feats = x.features.detach().clone().requires_grad_(backward)
    xs = x.replace_features(feats)
    kmap = conv.kernel_map(xs)
    r_sparse = torch.randn(x.num_sites, conv.out_channels, generator=torch.Generator().manual_seed(1))
    r_dense = torch.zeros(x.batch_size, conv.out_channels, *x.spatial_shape)
    c = x.coords
    r_dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = r_sparse

    def run_sparse(fresh_map: bool) -> Callable[[], Any]:
        def call() -> Any:
            m = build_kernel_map(xs, 3, subm=True) if fresh_map else kmap
            if not backward:
                with torch.no_grad():
                    return sparse_conv3d(xs, conv.weight, None, m).features
            feats.grad = None
            conv.weight.grad = None
            (sparse_conv3d(xs, conv.weight, None, m).features * r_sparse).sum().backward()
            return feats.grad
        return call

    def dense() -> Any:
        if not backward:
            with torch.no_grad():
                return F.conv3d(dense_in, w_dense, padding=1)
        dense_in.grad = None
        w_dense.grad = None
        (F.conv3d(dense_in, w_dense, padding=1) * r_dense).sum().backward()
        return dense_in.grad

    return {SPARSE: run_sparse(False), SPARSE_MAP: run_sparse(True), DENSE: dense}


def check(x: SparseSpikeTensor, conv: SubMConv3d) -> Dict[str, float]:
    """Max |sparse - dense at the active sites| of the forward pass and of the input gradient."""
    calls_f = case_calls(x, conv, False)
    ys, yd = calls_f[SPARSE](), calls_f[DENSE]()
    c = x.coords
    fwd = float((ys - yd[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]).abs().max())
    calls_b = case_calls(x, conv, True)
    gs, gd = calls_b[SPARSE](), calls_b[DENSE]()
    bwd = float((gs - gd[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]).abs().max())
    return {"forward_max_abs_diff": fwd, "input_grad_max_abs_diff": bwd}


def fit_linear(n: Sequence[float], t: Sequence[float]) -> Dict[str, float]:
    """Least squares ``t = a + b n`` with R^2, and the slope of ``log t`` against ``log n``."""
    k = len(n)
    mn, mt = sum(n) / k, sum(t) / k
    sxx = sum((v - mn) ** 2 for v in n)
    b = sum((v - mn) * (w - mt) for v, w in zip(n, t)) / sxx
    a = mt - b * mn
    ss_res = sum((w - a - b * v) ** 2 for v, w in zip(n, t))
    ss_tot = sum((w - mt) ** 2 for w in t) or 1e-30
    ln, lt = [math.log(v) for v in n], [math.log(w) for w in t]
    mln, mlt = sum(ln) / k, sum(lt) / k
    slope = sum((u - mln) * (w - mlt) for u, w in zip(ln, lt)) / sum((u - mln) ** 2 for u in ln)
    return {"intercept_s": a, "seconds_per_site": b, "r2": 1 - ss_res / ss_tot, "loglog_slope": slope}


def all_calls(args: argparse.Namespace) -> Dict[str, Dict[str, Callable[[], Any]]]:
    """Every case's calls, by case name (the probes and the timed run share them)."""
    torch.manual_seed(0)
    conv = SubMConv3d(args.C, args.C, 3)
    out: Dict[str, Dict[str, Callable[[], Any]]] = {}
    for occ in OCCUPANCIES:
        x = make_sparse(args.G, args.C, occ)
        for kind, backward in (("forward", False), ("forward_backward", True)):
            out[f"occ={occ:g}/{kind}"] = case_calls(x, conv, backward)
    return out


def probe(args: argparse.Namespace) -> None:
    """Entry point of a probe subprocess: peak memory of one call of ``args.impl`` in every case."""
    common.torch_warmup()
    results: Dict[str, Any] = {}
    for case, calls in all_calls(args).items():
        call = calls[args.impl]
        call()
        call()
        results[case] = common.peak_rss_delta_mib(call)
    common.emit_probe({"import_and_build_s": 0.0, "calls": results})


def run(args: argparse.Namespace) -> Dict[str, Any]:
    tuning = not args.no_malloc_tuning
    print(f"== SubMConv3d vs dense Conv3d, grid {args.G}^3, C={args.C}, k=3, float32"
          f"{'  [QUICK: smoke test sizes, not a result]' if args.quick else ''}")
    print(common.describe_malloc(tuning))
    machine = common.machine_info(tuning)
    print(f"machine: {machine['cpu_model']}, {machine['cpus_usable']} CPUs, torch {machine['versions']['torch']} "
          f"({machine['torch_threads']} threads); loadavg {common.loadavg()}")
    common.torch_warmup()
    monitor = common.Monitor()
    torch.manual_seed(0)
    conv = SubMConv3d(args.C, args.C, 3)
    agreement = {f"occ={occ:g}": check(make_sparse(args.G, args.C, occ, seed=5), conv) for occ in OCCUPANCIES}
    print(f"sparse vs dense at the active sites: {agreement}")
    cases: Dict[str, Any] = {}
    for case, calls in all_calls(args).items():
        series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats,
                                            max_rounds_factor=2 if args.quick else 3, label=f"{case}: ")
        rows = {name: common.summarize(s) for name, s in series.items()}
        dense_med = rows[DENSE].get("median_s")
        for row in rows.values():
            med = row.get("median_s")
            row["speedup_vs_dense"] = dense_med / med if med and dense_med else None
        occ = float(case.split("=")[1].split("/")[0])
        n_sites = max(1, round(occ * args.G ** 3))
        cases[case] = {"title": f"{n_sites} active sites of {args.G}^3 ({occ:.1%}), C={args.C}, k=3", "rows": rows,
                       "active_sites": n_sites, "checks": agreement[f"occ={occ:g}"]}
        print(f"{case:28s} " + "  ".join(
            f"{n} {common.fmt_median(r)} ms ({r['speedup_vs_dense'] or float('nan'):.1f}x)" for n, r in rows.items()),
            flush=True)
    scaling = run_scaling(args, monitor, conv)
    if not args.no_probes:
        print("\nmemory probes (fresh subprocesses):")
        for impl in IMPLS:
            mem = common.memory_probe(SCRIPT, impl, size_args(args))
            for case, block in cases.items():
                block["rows"][impl]["peak_mib"] = ((mem.get("calls") or {}).get(case) or {}).get("peak_mib")
                if "error" in mem:
                    block["rows"][impl]["probe_errors"] = [mem["error"]]
        for case, block in cases.items():
            print(f"{case:28s} peak MiB " + "  ".join(
                f"{n} {common.fmt_mib(r.get('peak_mib'))}" for n, r in block["rows"].items()))
    add_scaling_cases(cases, scaling, args)
    return {
        "benchmark": NAME,
        "title": "Sparse 3D convolution (SubMConv3d vs dense Conv3d, CPU)",
        "quick": bool(args.quick),
        "command": common.command_line(),
        "machine": machine,
        "config": {"G": args.G, "C": args.C, "kernel": 3, "dtype": "float32", "occupancies": list(OCCUPANCIES),
                   "threads": torch.get_num_threads(),
                   "warmup": args.warmup, "repeats": args.repeats, "drop_factor": common.DROP_FACTOR,
                   "foreign_cpu_limit": common.FOREIGN_CPU_LIMIT},
        "calibration": {"best_s": monitor.best, "count": len(monitor.calibrations)},
        "agreement_with_dense": agreement,
        "cases": cases,
        "scaling": scaling,
    }


def run_scaling(args: argparse.Namespace, monitor: common.Monitor, conv: SubMConv3d) -> Dict[str, Any]:
    """Sparse cost against the number of active sites at a fixed 1% density (module docstring)."""
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b <= args.max_batch]
    out: Dict[str, Any] = {}
    per: Dict[str, List[float]] = {"forward": [], "forward_backward": [], "kernel_map": []}
    sites: List[int] = []
    for b in batches:
        x = make_sparse(args.G, args.C, 0.01, batch=b, seed=7)
        sites.append(x.num_sites)
        fwd, fb = case_calls(x, conv, False), case_calls(x, conv, True)
        calls = {"forward": fwd[SPARSE], "forward_backward": fb[SPARSE],
                 "kernel_map": lambda x=x: build_kernel_map(x, 3, subm=True)}
        series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats,
                                            max_rounds_factor=2 if args.quick else 3, label=f"scaling B={b}: ")
        rows = {name: common.summarize(s) for name, s in series.items()}
        out[f"B={b}"] = {"active_sites": x.num_sites, "rows": rows}
        for name, row in rows.items():
            per[name].append(row.get("median_s", float("nan")))
        print(f"scaling N={x.num_sites:7d}  " + "  ".join(f"{n} {common.fmt_median(r)} ms" for n, r in rows.items()),
              flush=True)
    fits = {}
    if len(sites) >= 3:
        fits = {name: fit_linear(sites, t) for name, t in per.items() if all(v == v and v > 0 for v in t)}
        for name, f in fits.items():
            print(f"fit {name:17s} t = {f['intercept_s'] * 1e3:.3g} ms + {f['seconds_per_site'] * 1e6:.3g} us/site "
                  f"(R^2 {f['r2']:.4f}, log-log slope {f['loglog_slope']:.2f})")
    return {"density": 0.01, "points": out, "fits": fits}


def add_scaling_cases(cases: Dict[str, Any], scaling: Dict[str, Any], args: argparse.Namespace) -> None:
    """The scaling points as cases (rows named spikelib-<what>) for RESULTS.md; the fits go with the last one."""
    keys = list(scaling["points"])
    for key in keys:
        pt = scaling["points"][key]
        block: Dict[str, Any] = {
            "title": f"spikelib-sparse cost at {pt['active_sites']} active sites (1% of {args.G}^3 per batch item, "
                     f"{key}), C={args.C}, k=3",
            "rows": {f"spikelib-{n}": r for n, r in pt["rows"].items()}, "active_sites": pt["active_sites"]}
        if key == keys[-1] and scaling["fits"]:
            block["checks"] = {f"fit {n}": f"t = {f['intercept_s'] * 1e3:.3g} ms + {f['seconds_per_site'] * 1e9:.3g} "
                                           f"ns/site (R^2 {f['r2']:.4f}, log-log slope {f['loglog_slope']:.2f})"
                               for n, f in scaling["fits"].items()}
        cases[f"scaling/{key}"] = block


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = common.parse_bench_args(__doc__.split("\n\n")[0], FULL, QUICK, argv)
    set_threads(args)
    if args.probe:
        probe(args)
        return 0
    payload = run(args)
    path = common.write_json(NAME, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
