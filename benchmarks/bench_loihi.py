"""Benchmark: spikelib's bit-accurate Loihi simulator against Lava's own (``Loihi2SimCfg(select_tag='fixed_pt')``).

Network: 700 -> 256 -> 20 CUBA LIF layers with per-synapse delays 0..62 in both layers (netx ``DelayDense``), random
8-bit weights, 100 steps, one sample of input spikes (``--density_pct``, default 5%). Before timing, the two are
checked to give the same output spikes and the same ``u``/``v`` traces of both layers (bit for bit).

* ``lava``: build the netx network from the HDF5 file, connect a ``RingBuffer`` source and a ``RingBuffer`` sink for
  the output spikes, run 100 steps, read the sink, stop the runtime (what one inference costs in Lava). Lava runs its
  processes in child processes, so these rounds are timed plainly (the interference filter of ``common.py`` would
  count Lava's own children as foreign); the load average is recorded with them.
* ``spikelib``: :func:`spikelib.hardware.loihi.simulate` on the same sample, spikes only (``traces=False``) and with
  the ``u``/``v`` traces, with torch's default threads and with one thread (on a busy machine one thread is much
  faster: torch's parallel kernels wait for cores that other processes hold); also a batch of samples (per sample
  time reported), which Lava cannot do in one run.

Run ``python benchmarks/bench_loihi.py`` (full sizes, only on a quiet machine) or ``--quick``; writes
``results/loihi_cpu.json``. Needs Lava (``bash scripts/install_lava.sh <python>``) for the ``lava`` rows.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402

from spikelib.hardware.loihi import LoihiLayer, LoihiNetwork, export_netx, simulate  # noqa: E402

NAME = "loihi_cpu"
FULL = {"T": 100, "C_in": 700, "H": 256, "C_out": 20, "density_pct": 5, "batch": 16, "lava_repeats": 3,
        "warmup": 2, "repeats": 7}
QUICK = {"T": 20, "C_in": 40, "H": 16, "C_out": 4, "density_pct": 10, "batch": 4, "lava_repeats": 1,
         "warmup": 1, "repeats": 3}


def build(args) -> LoihiNetwork:
    g = torch.Generator().manual_seed(0)
    sizes = [args.C_in, args.H, args.C_out]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(LoihiLayer(weight=torch.randint(-128, 255, (b, a), generator=g) // 2 * 2, vth=400,
                                 i_decay=1024, v_decay=256, delay=torch.randint(0, 63, (b, a), generator=g),
                                 bias=torch.randint(-4, 5, (b,), generator=g), name=f"dense{i}"))
    return LoihiNetwork(args.C_in, layers)


def lava_inference(path: Path, x: torch.Tensor) -> torch.Tensor:
    """One Lava run: output spikes ``[T, C_out]`` (network built, run, read, stopped)."""
    from spikelib.hardware.loihi.lava_runner import import_lava

    lava = import_lava()
    from lava.proc.io.sink import RingBuffer as Sink

    T = x.shape[0]
    net = lava.netx.hdf5.Network(net_config=str(path))
    source = lava.RingBuffer(data=x[:, 0].t().numpy().astype("int32"))
    sink = Sink(shape=net.out.shape, buffer=T)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=lava.RunSteps(num_steps=T), run_cfg=lava.Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
    finally:
        net.stop()
    return torch.from_numpy(out.astype("float32")).t()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = common.parse_bench_args(__doc__.split("\n\n")[0], FULL, QUICK, argv)
    net = build(args)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.T, 1, args.C_in, generator=g) < args.density_pct / 100).float()
    xb = (torch.rand(args.T, args.batch, args.C_in, generator=g) < args.density_pct / 100).float()
    ref = simulate(net, x)
    result: Dict[str, Any] = {"config": vars(args), "spikes_per_layer": [int(s.sum()) for s in ref.spikes]}

    lava_row: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_netx(net, Path(tmp) / "bench.net")
        try:
            from spikelib.hardware.loihi.lava_runner import run_lava

            t_import = time.perf_counter()
            lava_full = run_lava(path, x)  # with monitors on every u/v: the bit-exactness check
            lava_row["first_run_with_monitors_s"] = time.perf_counter() - t_import
            same = all(torch.equal(a, b) for a, b in zip(ref.spikes + ref.u + ref.v,
                                                         lava_full.spikes + lava_full.u + lava_full.v))
            result["bit_exact_spikes_u_v"] = same
            print(f"bit-exact with Lava on spikes and u/v of both layers: {same}")
            times, loads = [], []
            for _ in range(args.lava_repeats):
                t0 = time.perf_counter()
                out = lava_inference(path, x)
                times.append(time.perf_counter() - t0)
                loads.append(common.loadavg())
                if not torch.equal(out, ref.spikes[-1][:, 0]):
                    raise AssertionError("Lava's output spikes differ from the simulator's")
            lava_row.update(samples_s=times, median_s=statistics.median(times), min_s=min(times), loadavg=loads)
            print(f"lava: median {statistics.median(times):.2f} s over {len(times)} runs")
        except ImportError as exc:
            lava_row["error"] = str(exc)
            print(f"lava: not run ({exc})")
    result["lava"] = lava_row

    monitor = common.Monitor()
    def one_thread():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return simulate(net, x, traces=False)
        finally:
            torch.set_num_threads(threads)

    calls = {
        "spikelib_spikes_only": lambda: simulate(net, x, traces=False),
        "spikelib_spikes_only_1thread": one_thread,
        "spikelib_with_traces": lambda: simulate(net, x),
        f"spikelib_batch{args.batch}": lambda: simulate(net, xb, traces=False),
    }
    series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats)
    rows = {name: common.summarize(s) for name, s in series.items()}
    rows[f"spikelib_batch{args.batch}"]["per_sample_median_s"] = \
        rows[f"spikelib_batch{args.batch}"].get("median_s", float("nan")) / args.batch
    lava_med = lava_row.get("median_s")
    for name, row in rows.items():
        med = row.get("per_sample_median_s", row.get("median_s"))
        row["speedup_vs_lava"] = lava_med / med if lava_med and med else None
        print(f"{name}: median {1e3 * row.get('median_s', float('nan')):.2f} ms"
              + (f", {row['speedup_vs_lava']:.0f}x faster than Lava" if row["speedup_vs_lava"] else ""))
    result["spikelib"] = rows
    payload = {"title": "Loihi bit-accurate simulation: spikelib vs Lava (700-256-20, per-synapse delays, 100 steps)",
               "benchmark": NAME, "quick": bool(args.quick), "command": common.command_line(),
               "machine": common.machine_info(not args.no_malloc_tuning), "results": result}
    path = common.write_json(NAME + ("_quick" if args.quick else ""), payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
