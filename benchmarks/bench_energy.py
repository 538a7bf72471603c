"""Benchmark: the overhead of energy counting over a plain evaluation pass on CPU (target: at most 10%).

Models, each in eval mode under ``torch.no_grad()``:

* ``spiking_mlp``: the demo network (50 -> 128 LIF -> 10, membrane readout), ``T_mlp`` steps, batch ``B``.
* ``snn_delays``: SNN-delays at SHD size (140 -> 256 -> 256 -> 20, max delay 24, integer delays as at inference),
  ``T_delays`` steps, batch ``B``, spikes at 5% density.
* ``meta_spikeformer_tiny_test``, ``maxformer_tiny_test``: the tiny spiking transformers (T = 2), batch ``B_img``,
  at ``img_small`` and ``img`` pixels square (``<model>@<pixels>``). The counting cost has a fixed part per counted
  layer (a forward hook and a few small reductions, tens of microseconds), so these many-small-layer networks on
  small images are the worst case; the overhead ratio falls as the layers grow.

An evaluation pass is ``batches`` forward passes. Cases per model: ``plain`` (the pass: ``model(x)`` per batch),
``counted`` (the same pass inside one ``EnergyCounter``, as :func:`spikelib.hardware.energy.measure` runs it: the model
is checked and hooks attached once, every layer of every batch counted exactly, hooks removed) and
``counted_per_batch`` (a new ``EnergyCounter`` around every batch: the worst case, paying the model check and the hook
registration per batch), timed interleaved as in every spikelib benchmark (disturbed rounds dropped);
``overhead = counted median / plain median - 1`` (and ``overhead_per_batch`` likewise). Run ``python benchmarks/bench_energy.py`` (``--quick``
for a smoke test); writes ``results/energy_cpu.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402

from spikelib.hardware.energy.counting import EnergyCounter  # noqa: E402
from spikelib.models import SNNDelays, SpikingMLP, get_model  # noqa: E402

NAME = "energy_cpu"
FULL = {"B": 64, "T_mlp": 80, "T_delays": 100, "B_img": 8, "img_small": 32, "img": 64, "batches": 8, "warmup": 2,
        "repeats": 11}
QUICK = {"B": 8, "T_mlp": 20, "T_delays": 20, "B_img": 2, "img_small": 16, "img": 32, "batches": 2, "warmup": 1,
         "repeats": 2}


def _models(args: argparse.Namespace) -> Dict[str, Tuple[torch.nn.Module, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mlp = SpikingMLP(50, (128,), 10, tau=4.0, init_gain=4.0)
    x_mlp = (torch.rand(args.T_mlp, args.B, 50, generator=g) < 0.1).float()
    delays = SNNDelays(140, (256, 256), 20, max_delay=24)
    for layer in list(delays.synapses) + [delays.readout]:
        layer.round_delays()
    x_del = (torch.rand(args.T_delays, args.B, 140, generator=g) < 0.05).float()
    out = {"spiking_mlp": (mlp, x_mlp), "snn_delays": (delays, x_del)}
    for name in ("meta_spikeformer_tiny_test", "maxformer_tiny_test"):
        net = get_model(name)
        for px in (args.img_small, args.img):
            out[f"{name}@{px}"] = (net, torch.rand(args.B_img, net.in_channels, px, px, generator=g))
    return out


def _calls(model: torch.nn.Module, x: torch.Tensor, batches: int) -> Dict[str, Callable[[], Any]]:
    model.eval()

    def plain() -> None:
        with torch.no_grad():
            for _ in range(batches):
                model(x)

    def counted() -> None:
        with EnergyCounter(model, raster_neurons=0), torch.no_grad():
            for _ in range(batches):
                model(x)

    def counted_per_batch() -> None:
        with torch.no_grad():
            for _ in range(batches):
                with EnergyCounter(model, raster_neurons=0):
                    model(x)

    return {"plain": plain, "counted": counted, "counted_per_batch": counted_per_batch}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    monitor = common.Monitor()
    cases: Dict[str, Any] = {}
    for name, (model, x) in _models(args).items():
        series = common.measure_interleaved(_calls(model, x, args.batches), monitor, args.warmup, args.repeats, label=f"{name}: ")
        rows = {impl: common.summarize(s) for impl, s in series.items()}
        plain = rows["plain"].get("median_s")

        def ratio(key: str) -> Optional[float]:
            other = rows[key].get("median_s")
            return (other / plain - 1.0) if plain and other else None

        overhead, per_batch = ratio("counted"), ratio("counted_per_batch")
        cases[name] = {"rows": rows, "overhead": overhead, "overhead_per_batch": per_batch,
                       "input_shape": list(x.shape), "batches": args.batches}
        pct = (lambda v: "-" if v is None else f"{100 * v:+.1f}%")
        print(f"{name:32s} plain {common.fmt_median(rows['plain'])} ms  counted {common.fmt_median(rows['counted'])}"
              f" ms  overhead {pct(overhead)}  (new counter per batch: {pct(per_batch)})", flush=True)
    return cases


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = common.parse_bench_args(__doc__.split("\n\n")[0], FULL, QUICK, argv)
    payload = {
        "benchmark": NAME,
        "title": "Energy counting overhead vs a plain evaluation pass (CPU)",
        "command": common.command_line(),
        "quick": args.quick,
        "target": "overhead <= 10%",
        "sizes": {k: getattr(args, k) for k in FULL},
        "machine": common.machine_info(not args.no_malloc_tuning),
        "cases": run(args),
    }
    path = common.write_json(NAME, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
