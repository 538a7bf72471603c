"""Benchmark: the overhead of energy counting over a plain evaluation pass on CPU (target: at most 10%).

Models, each in eval mode under ``torch.no_grad()``, with random weights (the counting cost does not depend on the
weights: each counted tensor is read the same way whatever it holds):

* Demo and reference sizes (what an evaluation is run on):

  * ``demo_eval_pass``: the evaluation pass of ``spikelib demo``'s energy stage, data included: the demo network
    (SNN-delays 140 -> 64 -> 20, max delay 10, integer delays) over the synthetic SHD test split (500 samples, 20 ms
    bins, 1 s, 700 -> 140 channels) through its ``DataLoader`` (batch 64, ``pad_collate``, then ``[B, T, C]`` ->
    ``[T, B, C]`` as ``spikelib energy`` does); ``plain`` loads and runs every batch, ``counted`` is
    :func:`spikelib.hardware.energy.measure` over the same loader.
  * ``demo_snn_delays``: the same network on one in-memory batch (``B``, 50 steps, spikes at 5%), model only.
  * ``spiking_mlp``: a small LIF MLP (50 -> 128 LIF -> 10, membrane readout; the first demo's network), ``T_mlp``
    steps, batch ``B``.
  * ``snn_delays``: SNN-delays at SHD size (140 -> 256 -> 256 -> 20, max delay 24, integer delays as at inference),
    ``T_delays`` steps, batch ``B``, spikes at 5% density.
  * ``meta_spikeformer_8_384``, ``maxformer_10_384``: the smallest reference-size spiking transformers (31.3 M and
    16.2 M parameters, T = 1), batch ``B_ref`` at ``img_ref`` pixels square (224 in the papers; smaller to fit a CPU
    run).
  * ``e3dsnn_t``: E-3DSNN-T on ``B_pc`` point clouds of ``points`` points (unit sphere with normals), spike voxel
    coding included in the pass.

* CI-size worst case: ``meta_spikeformer_tiny_test``, ``maxformer_tiny_test`` (T = 2), batch ``B_img``, at
  ``img_small`` and ``img`` pixels square (``<model>@<pixels>``). Counting has a fixed cost per counted layer and
  call (a forward hook, a reduction of a few microseconds), so networks of many tiny layers pay the most.

An evaluation pass is ``batches`` forward passes (``batches_mlp`` for the demo network, whose batch takes about 2 ms,
so that a timed pass is long enough to time on a shared machine; ``batches_ref`` for the reference-size transformers
and E-3DSNN).
Cases per model: ``plain`` (the pass: ``model(x)`` per batch), ``counted`` (the same pass inside one
``EnergyCounter``, as :func:`spikelib.hardware.energy.measure` runs it: the model is checked and hooks attached once,
every layer of every batch counted exactly, hooks removed) and ``counted_per_batch`` (a new ``EnergyCounter`` around
every batch: the worst case, paying the model check and the hook registration per batch), timed interleaved as in
every spikelib benchmark (disturbed rounds dropped). ``overhead = counted median / plain median - 1``;
``overhead_paired`` is the median over rounds of ``counted / plain - 1`` within the same round;
``overhead_per_batch`` like ``overhead``.

On this shared 2-core machine whole passes drift by 10-50% between rounds, more than the overhead being measured, so
every model case is also measured by per-batch alternation (``overhead_alternating``, the headline figure): a
hook-free copy of the model and the counted model run each batch back to back, the order swapped every batch, in
rounds of at least 0.3 s; the figure is the median over rounds of ``counted / plain - 1``. The same measurement with
the model not counted (``alternating_control``, an A/A test of two hook-free copies) shows the method's noise floor
and bias.

Counting harnesses side by side (``harnesses``): one evaluation pass of an SHD-size network whose neurons all three
tools know (spikingjelly multi-step ``LIFNode``: 140 -> 256 -> 256 -> 20, ``T_delays`` steps, ``batches`` batches of
``B`` samples at 5% input density, from a ``DataLoader``), timed interleaved: ``plain`` (the pass), ``spikelib``
(:func:`spikelib.hardware.energy.measure`), ``spikelib_neurobench`` (the same with ``neurobench=True``: NeuroBench's
membrane rule as well), ``neurobench`` (NeuroBench 2.3.0's ``Benchmark.run`` with its static metrics and
``SynapticOperations`` + ``ActivationSparsity``, the LIF class added as an activation module) and ``syops`` (syops
0.0.5's ``get_model_complexity_info`` over the same loader; it imports spikingjelly's pre-2.0 ``MultiStep*`` classes
and ``progress``, which are given stand-ins when absent, recorded in the result). Each figure is
``median / plain median - 1``. Run ``python benchmarks/bench_energy.py`` (``--quick`` for a smoke test); writes
``results/energy_cpu.json`` (with ``--only``: ``results/energy_cpu_<names>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402

from torch.utils.data import DataLoader  # noqa: E402

from spikelib.data import SHDDataset, pad_collate, write_synthetic_shd  # noqa: E402
from spikelib.hardware.energy.counting import EnergyCounter, measure  # noqa: E402
from spikelib.models import SNNDelays, SpikingMLP, get_model  # noqa: E402

NAME = "energy_cpu"
FULL = {"B": 64, "T_mlp": 80, "T_delays": 100, "B_ref": 2, "img_ref": 128, "B_pc": 8, "points": 1024,
        "B_img": 8, "img_small": 32, "img": 64, "batches": 8, "batches_mlp": 32, "batches_ref": 4, "warmup": 2,
        "repeats": 11}
QUICK = {"B": 8, "T_mlp": 20, "T_delays": 20, "B_ref": 1, "img_ref": 32, "B_pc": 2, "points": 256,
         "B_img": 2, "img_small": 16, "img": 32, "batches": 2, "batches_mlp": 2, "batches_ref": 1, "warmup": 1,
         "repeats": 2}
WORST_CASE = ("meta_spikeformer_tiny_test", "maxformer_tiny_test")
ROUND_S = 0.3  # least plain work per round of the alternating measurement, seconds


def _syops_import() -> Tuple[Any, List[str]]:
    """syops' ``get_model_complexity_info`` and the stand-ins it needed (syops 0.0.5 predates spikingjelly 2.0)."""
    import types

    import torch.nn as nn
    from spikingjelly.activation_based import neuron

    shims = []
    for name in ("MultiStepIFNode", "MultiStepLIFNode", "MultiStepParametricLIFNode"):
        if not hasattr(neuron, name):
            setattr(neuron, name, type(name, (nn.Module,), {}))  # never instantiated: only a key of syops' table
            shims.append(f"spikingjelly.activation_based.neuron.{name}")
    try:
        import progress.bar  # noqa: F401
    except ImportError:
        bar = types.ModuleType("progress.bar")
        bar.Bar = type("Bar", (), {"__init__": lambda self, *a, **k: None, "next": lambda self: None,
                                   "finish": lambda self: None, "suffix": ""})
        sys.modules.setdefault("progress", types.ModuleType("progress"))
        sys.modules["progress.bar"] = bar
        shims.append("progress.bar.Bar (a no-op progress bar)")
    from syops import get_model_complexity_info

    return get_model_complexity_info, shims


class _TimeFirst:
    """A loader's batches made time first (syops feeds the model its batches as they are)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.transpose(0, 1).contiguous(), y


def _harnesses(args: argparse.Namespace, monitor: Any) -> Dict[str, Any]:
    """spikelib vs NeuroBench's harness vs syops on the same evaluation pass (see the module docstring)."""
    import io

    from spikingjelly.activation_based import functional, neuron

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(140, 256), neuron.LIFNode(tau=2.0, step_mode="m"),
                              torch.nn.Linear(256, 256), neuron.LIFNode(tau=2.0, step_mode="m"),
                              torch.nn.Linear(256, 20)).eval()
    x = (torch.rand(args.batches * args.B, args.T_delays, 140, generator=g) < 0.05).float()  # [N, T, C]
    data = torch.utils.data.TensorDataset(x, torch.zeros(x.shape[0], dtype=torch.long))
    loader = DataLoader(data, batch_size=args.B)
    calls: Dict[str, Callable[[], Any]] = {}
    notes: Dict[str, Any] = {}

    def plain() -> None:
        with torch.no_grad():
            for xb, _ in loader:
                net(xb.transpose(0, 1).contiguous())
                functional.reset_net(net)

    calls["plain"] = plain
    calls["spikelib"] = lambda: measure(net, loader, raster_neurons=0)
    calls["spikelib_neurobench"] = lambda: measure(net, loader, raster_neurons=0, neurobench=True)
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
        from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
        from neurobench.models import TorchModel

        def neurobench() -> None:
            model = TorchModel(net)
            model.add_activation_module(neuron.LIFNode)
            bench = Benchmark(model, loader, [lambda d: (d[0].transpose(0, 1).contiguous(), d[1])], [],
                              [[Footprint, ParameterCount, ConnectionSparsity], [SynapticOperations,
                                                                                  ActivationSparsity]])
            bench.run(quiet=True)
            model.cleanup_hooks()
            functional.reset_net(net)

        calls["neurobench"] = neurobench
    except ImportError as exc:
        notes["neurobench"] = f"not run: {exc}"
    try:
        get_info, shims = _syops_import()
        notes["syops_stand_ins"] = shims
        time_first = _TimeFirst(loader)

        def syops() -> None:
            get_info(net, (args.T_delays, 140), dataloader=time_first, as_strings=False, print_per_layer_stat=False,
                     ost=io.StringIO(), verbose=False)
            functional.reset_net(net)

        calls["syops"] = syops
    except ImportError as exc:
        notes["syops"] = f"not run: {exc}"
    series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats, label="harnesses: ")
    rows = {impl: common.summarize(s) for impl, s in series.items()}
    plain_s = rows["plain"].get("median_s")
    overhead = {k: (rows[k]["median_s"] / plain_s - 1.0) if plain_s and rows[k].get("median_s") else None
                for k in rows if k != "plain"}
    pct = (lambda v: "-" if v is None else f"{100 * v:+.0f}%")
    print("harnesses (same evaluation pass): plain " + common.fmt_median(rows["plain"]) + " ms; " +
          ", ".join(f"{k} {pct(v)}" for k, v in overhead.items()), flush=True)
    return {"network": "spikingjelly LIFNode MLP 140-256-256-20", "input_shape": [args.T_delays, args.B, 140],
            "batches": args.batches, "rows": rows, "overhead": overhead, "notes": notes}


def _sphere_clouds(points: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """``[points, batch, 6]``: points on the unit sphere with their normals (xyz + normal)."""
    p = torch.randn(points, batch, 3, generator=g)
    p = p / p.norm(dim=2, keepdim=True)
    return torch.cat([p, p], dim=2)


def _models(args: argparse.Namespace) -> Dict[str, Tuple[torch.nn.Module, torch.Tensor, int, str]]:
    """``name -> (model, input, batches per pass, group)``."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mlp = SpikingMLP(50, (128,), 10, tau=4.0, init_gain=4.0)
    x_mlp = (torch.rand(args.T_mlp, args.B, 50, generator=g) < 0.1).float()
    delays = SNNDelays(140, (256, 256), 20, max_delay=24)
    for layer in list(delays.synapses) + [delays.readout]:
        layer.round_delays()
    x_del = (torch.rand(args.T_delays, args.B, 140, generator=g) < 0.05).float()
    ref = "demo and reference sizes"
    demo = SNNDelays(140, (64,), 20, max_delay=10, dropout=0.1)
    for layer in list(demo.synapses) + [demo.readout]:
        layer.round_delays()
    x_demo = (torch.rand(50, args.B, 140, generator=g) < 0.05).float()
    out = {"demo_snn_delays": (demo, x_demo, args.batches, ref),
           "spiking_mlp": (mlp, x_mlp, args.batches_mlp, ref), "snn_delays": (delays, x_del, args.batches, ref)}
    for name in ("meta_spikeformer_8_384", "maxformer_10_384"):
        net = get_model(name)
        x = torch.rand(args.B_ref, net.in_channels, args.img_ref, args.img_ref, generator=g)
        out[name] = (net, x, args.batches_ref, ref)
    out["e3dsnn_t"] = (get_model("e3dsnn_t"), _sphere_clouds(args.points, args.B_pc, g), args.batches_ref, ref)
    for name in WORST_CASE:
        net = get_model(name)
        for px in (args.img_small, args.img):
            x = torch.rand(args.B_img, net.in_channels, px, px, generator=g)
            out[f"{name}@{px}"] = (net, x, args.batches, "CI-size worst case")
    return out


def _demo_loader(folder: Path, quick: bool) -> DataLoader:
    """The demo's synthetic SHD test split (written into ``folder``) as the demo's energy stage reads it."""
    write_synthetic_shd(folder, n_train=20, n_test=64 if quick else 500, seed=0)
    test = SHDDataset(folder, "test", bin_ms=20.0, max_time=1.0, channels_out=140)
    return DataLoader(test, batch_size=64, shuffle=False, collate_fn=pad_collate)


def _time_first(batch: Any) -> torch.Tensor:
    """``[B, T, C] -> [T, B, C]`` as the layout contract of ``measure`` reads this loader."""
    return batch[0].transpose(0, 1).contiguous()


def _eval_pass_calls(model: torch.nn.Module, loader: DataLoader) -> Dict[str, Callable[[], Any]]:
    model.eval()

    def plain() -> None:
        with torch.no_grad():
            for batch in loader:
                model(_time_first(batch))

    def counted() -> None:
        measure(model, loader, raster_neurons=0)  # pad_collate declares batch-first batches

    def counted_per_batch() -> None:
        with torch.no_grad():
            for batch in loader:
                with EnergyCounter(model, raster_neurons=0):
                    model(_time_first(batch))

    return {"plain": plain, "counted": counted, "counted_per_batch": counted_per_batch}


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


def _paired_overhead(series: Dict[str, Any], key: str) -> Optional[float]:
    """Median over rounds of ``key / plain - 1``, pairing the i-th kept round of each (they ran back to back)."""
    plain = [x for x in series["plain"].samples if x.reason is None]
    other = [x for x in series[key].samples if x.reason is None]
    ratios = [o.seconds / p.seconds - 1.0 for p, o in zip(plain, other)]
    return statistics.median(ratios) if ratios else None


def run(args: argparse.Namespace) -> Dict[str, Any]:
    monitor = common.Monitor()
    cases: Dict[str, Any] = {}
    models = _models(args)
    with tempfile.TemporaryDirectory(prefix="spikelib-bench-energy-") as tmp:
        loader = _demo_loader(Path(tmp), args.quick)
        first = _time_first(next(iter(loader)))
        demo = models["demo_snn_delays"][0]
        todo = {"demo_eval_pass": (demo, first, len(loader), "demo and reference sizes", loader)}
        todo.update({name: spec + (None,) for name, spec in models.items()})
        for name, (model, x, batches, group, data) in todo.items():
            calls = _calls(model, x, batches) if data is None else _eval_pass_calls(model, data)
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            cases[name] = _case(name, model, x, batches, group, calls, monitor, args, alternate=data is None)
    if not args.only or "harnesses" in args.only:
        cases["harnesses"] = _harnesses(args, monitor)
    return cases


def _alternating(model: torch.nn.Module, x: torch.Tensor, batches: int, rounds: int,
                 counted: bool = True) -> Dict[str, Any]:
    """Per-batch alternation: a hook-free copy of the model and the model itself run the same batch back to back
    (the order swapped every batch); the model is counted by one ``EnergyCounter`` (``counted=False``: not counted,
    an A/A control that shows the noise floor and any bias of the method). The machine's drifts and bursts of other
    work (this is a shared 2-core machine) then hit both sides alike, which a comparison of whole passes cannot
    ensure. A round is at least ``batches`` pairs and at least ``ROUND_S`` seconds of plain work (sized in a warm-up
    round). Returns the per-round overheads and their median."""
    plain_model = copy.deepcopy(model).eval()
    model.eval()

    def one_round(n: int) -> Tuple[float, float]:
        gc.collect()
        tp = tc = 0.0
        for i in range(n):
            for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                t0 = time.perf_counter()
                (plain_model if which == 0 else model)(x)
                dt = time.perf_counter() - t0
                if which == 0:
                    tp += dt
                else:
                    tc += dt
        return tp, tc

    ratios, plain_s, counted_s = [], [], []
    context = EnergyCounter(model, raster_neurons=0) if counted else contextlib.nullcontext()
    with context, torch.no_grad():
        tp, _ = one_round(batches)  # warm-up, and the size of a round
        n = max(batches, min(512, math.ceil(ROUND_S * batches / max(tp, 1e-9))))
        n += n % 2  # as many plain-first as counted-first pairs
        for _ in range(rounds):
            tp, tc = one_round(n)
            ratios.append(tc / tp - 1.0)
            plain_s.append(tp / n)
            counted_s.append(tc / n)
    return {"overhead": statistics.median(ratios), "round_overheads": [round(r, 4) for r in ratios],
            "batches_per_round": n, "plain_s_per_batch": statistics.median(plain_s),
            "counted_s_per_batch": statistics.median(counted_s)}


def _case(name: str, model: torch.nn.Module, x: torch.Tensor, batches: int, group: str,
          calls: Dict[str, Callable[[], Any]], monitor: Any, args: argparse.Namespace,
          alternate: bool = True) -> Dict[str, Any]:
    series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats, label=f"{name}: ")
    rows = {impl: common.summarize(s) for impl, s in series.items()}
    plain = rows["plain"].get("median_s")

    def ratio(key: str) -> Optional[float]:
        other = rows[key].get("median_s")
        return (other / plain - 1.0) if plain and other else None

    overhead, per_batch = ratio("counted"), ratio("counted_per_batch")
    paired = _paired_overhead(series, "counted")
    alternating = control = None
    if alternate:
        alternating = _alternating(model, x, batches, args.repeats)
        control = _alternating(model, x, batches, args.repeats, counted=False)
    pct = (lambda v: "-" if v is None else f"{100 * v:+.1f}%")
    print(f"{name:32s} plain {common.fmt_median(rows['plain'])} ms  counted {common.fmt_median(rows['counted'])}"
          f" ms  overhead {pct(overhead)} (paired {pct(paired)}, alternating "
          f"{pct(alternating and alternating['overhead'])}, A/A control {pct(control and control['overhead'])})  "
          f"(new counter per batch: {pct(per_batch)})", flush=True)
    return {"group": group, "rows": rows, "overhead": overhead, "overhead_paired": paired,
            "overhead_alternating": alternating and alternating["overhead"], "alternating": alternating,
            "alternating_control": control,
            "overhead_per_batch": per_batch, "input_shape": list(x.shape), "batches": batches,
            "parameters": sum(p.numel() for p in model.parameters())}


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
    path = common.write_json(NAME if not args.only else f"{NAME}_{'_'.join(args.only)}", payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
