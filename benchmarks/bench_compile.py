"""Benchmark: torch.compile of a model with spikelib neurons (the fast kernels as custom operators).

Model: ``Linear(N, N) -> LIF -> Linear(N, N) -> CubaLIF`` on ``x: [T, B, N]`` (default T=50, B=16, N=256), forward +
backward of ``spikes.sum()``. Each row runs in a fresh subprocess (so nothing is cached in memory; numba's on-disk
kernel cache is warm after the first row, as on any machine after the first run) and reports:

* ``first_call_s``: wall time of the first compiled call (Dynamo tracing, AOTAutograd, the compiler) minus nothing;
* ``median_ms``: the median of ``--repeats`` later calls, eager and compiled side by side;
* the compiled outputs and input gradients against eager (``equal``).

``python benchmarks/bench_compile.py [--quick]``; prints one JSON object per row and the machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(mode: str, T: int, B: int, N: int, repeats: int) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    import spikelib

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(N, N), spikelib.LIF(), torch.nn.Linear(N, N),
                              spikelib.CubaLIF(current_decay=0.5, voltage_decay=0.25))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    x = torch.rand(T, B, N)

    def step(model):
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        out.sum().backward()
        return out.detach(), xg.grad

    ref = step(net)  # eager, also warms numba's kernel cache for this process
    model = net
    first = None
    if mode != "eager":
        model = torch.compile(net, backend=mode, fullgraph=True)
        t0 = time.perf_counter()
        out = step(model)
        first = time.perf_counter() - t0
        equal = bool(torch.equal(out[0], ref[0]) and torch.allclose(out[1], ref[1], rtol=1e-5, atol=1e-6))
    else:
        equal = True
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(model)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"mode": mode, "first_call_s": first, "median_ms": statistics.median(times) * 1e3,
                      "equal_to_eager": equal, "spike_rate": float(ref[0].mean())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", default=None)
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--N", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    if a.quick:
        a.T, a.B, a.N, a.repeats = 10, 4, 64, 5
    if a.child:
        child(a.child, a.T, a.B, a.N, a.repeats)
        return
    print(f"load before: {os.getloadavg()}")
    for mode in ("eager", "aot_eager", "inductor"):
        cmd = [sys.executable, __file__, "--child", mode, "--T", str(a.T), "--B", str(a.B), "--N", str(a.N),
               "--repeats", str(a.repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        print(lines[-1] if lines else f"{mode} failed:\n{done.stderr[-2000:]}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
