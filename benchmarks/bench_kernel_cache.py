"""First-call times of the numba LIF kernels in fresh processes, with an empty (cold) and a filled (warm) kernel cache.

Each round starts a new empty cache folder and runs two fresh processes on it: *cold* (the kernels are compiled and
written) and *warm* (they are loaded from the cache). A process times: importing spikelib, importing numba, the first
``spikelib.lif`` forward under ``no_grad`` (forward kernel), then the first forward+backward (two more kernels), on
``x: [16, 4, 64]`` float32. ``--baseline DIR`` adds another spikelib checkout (e.g. ``git worktree add /tmp/base
main``) measured in the same rounds, alternating, so both see the same machine load.

    python benchmarks/bench_kernel_cache.py --rounds 5 [--baseline /tmp/base]

Prints medians (and min/max) per checkout and stage, and writes ``results/kernel_cache.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
STAGES = ("import_spikelib", "import_numba", "first_forward", "first_forward_backward")

PROBE = r"""
import json, time
t0 = time.perf_counter()
import torch, spikelib
t1 = time.perf_counter()
import numba
t2 = time.perf_counter()
with torch.no_grad():
    spikelib.lif(torch.rand(16, 4, 64), backend="numba")
t3 = time.perf_counter()
x = torch.rand(16, 4, 64, requires_grad=True)
spikelib.lif(x, backend="numba").spikes.sum().backward()
t4 = time.perf_counter()
print("PROBE " + json.dumps({"import_spikelib": t1 - t0, "import_numba": t2 - t1, "first_forward": t3 - t2,
                             "first_forward_backward": t4 - t3}))
"""


def run_probe(checkout: Path, cache: Path) -> Dict[str, float]:
    """One fresh process on ``checkout`` with ``SPIKELIB_CACHE_DIR=cache``; its stage times in seconds."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "SPIKELIB_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"probe failed on {checkout}:\n{done.stderr[-3000:]}")
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")][-1]
    return json.loads(line[len("PROBE "):])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--baseline", type=Path, help="another spikelib checkout measured in the same rounds")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "kernel_cache.json")
    args = p.parse_args(argv)
    checkouts = {"this": REPO_ROOT}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()
    times: Dict[str, Dict[str, List[Dict[str, float]]]] = {n: {"cold": [], "warm": []} for n in checkouts}
    with tempfile.TemporaryDirectory(prefix="bench-kernel-cache-") as tmp:
        for r in range(args.rounds):
            order = list(checkouts) if r % 2 == 0 else list(reversed(list(checkouts)))
            for name in order:
                cache = Path(tmp) / f"{name}-{r}"
                for kind in ("cold", "warm"):
                    times[name][kind].append(run_probe(checkouts[name], cache))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    summary = {}
    print(f"\nmedian [min, max] seconds over {args.rounds} rounds, fresh processes, os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'checkout':10s} {'cache':5s} " + " ".join(f"{s:>28s}" for s in STAGES))
    for name in checkouts:
        for kind in ("cold", "warm"):
            row = {}
            for stage in STAGES:
                values = [t[stage] for t in times[name][kind]]
                row[stage] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
            summary[f"{name}/{kind}"] = row
            print(f"{name:10s} {kind:5s} " + " ".join(
                f"{row[s]['median']:8.3f} [{row[s]['min']:.3f}, {row[s]['max']:.3f}]".rjust(28) for s in STAGES))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": sys.argv, "checkouts": {k: str(v) for k, v in checkouts.items()},
                                    "summary": summary, "rounds": times}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
