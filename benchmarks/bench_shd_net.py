"""Benchmark (b): one Adam training step of an SHD-style network 700-256-256-20 of Linear+LIF layers on CPU.

Each layer applies its dense synapses to all ``T*B`` rows at once, then the LIF of the implementation under test over
``[T, B, features]`` (default T=100, B=64). The peers use ``nn.Linear``; spikelib's entries use
``spikelib.layers.Linear`` (an ``nn.Linear`` whose map runs through spikelib's backends: ``spikelib-numba`` gets the
event-driven synapses on spike inputs, ``spikelib-torch`` ``F.linear``), and ``spikelib-nn.Linear`` is
spikelib's LIF with torch's ``nn.Linear``, to show what each part contributes. Loss: cross-entropy of the output spike
counts summed over time. One timed round is a full step: ``zero_grad``, forward, backward, ``step``. Every
implementation starts from the same weights and the same seeded input spikes and labels; all run in this one process,
interleaved round by round; first-call time and peak memory come from fresh subprocesses. ``python benchmarks/bench_shd_net.py --help``; see README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import peers  # noqa: E402
import report  # noqa: E402

NAME = "shd_net_cpu"
SCRIPT = Path(__file__).resolve()
FULL = {"T": 100, "B": 64, "hidden": 256, "warmup": 5, "repeats": 10}
QUICK = {"T": 20, "B": 8, "hidden": 64, "warmup": 1, "repeats": 3}
N_IN, N_OUT = 700, 20
INPUT_RATE = 0.05   # probability of an input spike per channel and step
# Weights ~ N(0, (gain / sqrt(fan_in))^2): every layer fires about 5% (a default init leaves layers 2-3 silent).
WEIGHT_GAIN = 5.0
LR = 1e-3
CASE = "train_step"
CASE_TITLE = "one Adam training step (zero_grad, forward, backward, step)"


class SHDNet(nn.Module):
    """Linear+LIF layers; the output is the spike count of the last layer summed over time, ``[B, n_out]``."""

    def __init__(self, sizes: Sequence[int], make_lif: Callable[[], nn.Module],
                 make_linear: Callable[[int, int], nn.Module] = nn.Linear) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(make_linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.lifs = nn.ModuleList(make_lif() for _ in self.fcs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        for fc, lif in zip(self.fcs, self.lifs):
            x = lif(fc(x.flatten(0, 1)).view(T, B, -1))
        return x.sum(0)


DENSE_VARIANT = "spikelib-nn.Linear"


def linear_factory(name: str) -> Callable[[int, int], nn.Module]:
    """The dense synapses an implementation's network uses (see the module docstring)."""
    if name in ("spikelib-numba", "spikelib-torch"):
        from spikelib.layers import Linear

        backend = "auto" if name == "spikelib-numba" else "torch"
        return lambda a, b: Linear(a, b, backend=backend)
    return nn.Linear


def implementations(only: Sequence[str]) -> Tuple[List[peers.Impl], Dict[str, str]]:
    """The LIF implementations of peers.py (filtered by ``only``) plus spikelib's LIF with torch's nn.Linear
    (``DENSE_VARIANT``, selected by its name or a prefix of it)."""
    rest = [o for o in only if o != DENSE_VARIANT]
    impls, skipped = peers.select(rest) if rest or not only else ([], {})
    if not only or any(DENSE_VARIANT.startswith(o) for o in only):
        if peers.import_problem("spikelib") is None:
            impls.append(impl_by_name(DENSE_VARIANT))
    return impls, skipped


def impl_by_name(name: str) -> peers.Impl:
    if name == DENSE_VARIANT:
        base = peers.by_name("spikelib-numba")
        return peers.Impl(DENSE_VARIANT, "spikelib", False, base.config, base.build)
    return peers.by_name(name)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options (sizes default to the full benchmark; --quick shrinks them)."""
    return common.parse_bench_args(__doc__.split("\n\n")[0], FULL, QUICK, argv)


def size_args(args: argparse.Namespace) -> List[str]:
    """The size options to hand to a probe subprocess."""
    return ["--T", str(args.T), "--B", str(args.B), "--hidden", str(args.hidden)]


def layer_sizes(args: argparse.Namespace) -> Tuple[int, ...]:
    return (N_IN, args.hidden, args.hidden, N_OUT)


def initial_weights(sizes: Sequence[int]) -> Dict[str, torch.Tensor]:
    """The seeded initial weights every implementation starts from."""
    g = torch.Generator().manual_seed(1)
    state = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        state[f"fcs.{i}.weight"] = torch.randn(b, a, generator=g) * (WEIGHT_GAIN / a ** 0.5)
        state[f"fcs.{i}.bias"] = torch.zeros(b)
    return state


def make_batch(T: int, B: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Seeded input spikes ``[T, B, 700]`` (float32) and labels ``[B]``."""
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(T, B, N_IN, generator=g) < INPUT_RATE).float()
    y = torch.randint(0, N_OUT, (B,), generator=g)
    return x, y


class Trainer:
    """A network of one implementation with its own Adam optimiser; ``step()`` is one timed round."""

    def __init__(self, impl: peers.Impl, sizes: Sequence[int], weights: Mapping[str, torch.Tensor],
                 batch: Tuple[torch.Tensor, torch.Tensor]) -> None:
        self.net = SHDNet(sizes, impl.build, linear_factory(impl.name))
        missing = self.net.load_state_dict(weights, strict=False).missing_keys
        if any(k.startswith("fcs.") for k in missing):
            raise RuntimeError(f"initial weights missing for {missing}")
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR)
        self.x, self.y = batch

    def layer_rates(self) -> List[float]:
        """Firing rate of every LIF layer on the batch (forward only)."""
        rates: List[float] = []
        hooks = [lif.register_forward_hook(lambda m, i, o: rates.append(float(o.mean()))) for lif in self.net.lifs]
        try:
            with torch.no_grad():
                self.net(self.x)
        finally:
            for h in hooks:
                h.remove()
        return rates

    def loss(self) -> torch.Tensor:
        return F.cross_entropy(self.net(self.x), self.y)

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def check_against_reference(trainers: Dict[str, Trainer]) -> Dict[str, Dict[str, Any]]:
    """Output counts, loss and weight gradients at the initial weights compared with spikelib-torch."""
    outputs: Dict[str, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    results: Dict[str, Dict[str, Any]] = {}
    for name, tr in trainers.items():
        try:
            tr.opt.zero_grad(set_to_none=True)
            counts = tr.net(tr.x)
            loss = F.cross_entropy(counts, tr.y)
            loss.backward()
            grads = torch.cat([p.grad.flatten() for p in tr.net.parameters()])
            tr.opt.zero_grad(set_to_none=True)
            outputs[name] = (counts.detach(), loss.detach(), grads)
            results[name] = {"layer_rates": tr.layer_rates()}
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    ref_name = peers.SPIKELIB_REFERENCE if peers.SPIKELIB_REFERENCE in outputs else next(iter(outputs), None)
    if ref_name is None:
        return results
    ref_c, ref_l, ref_g = outputs[ref_name]
    T = next(iter(trainers.values())).x.shape[0]
    for name, (c, l, g) in outputs.items():
        results[name].update({
            "reference": ref_name,
            "spike_rate": float(c.mean() / T),
            "spike_mismatches": int((c != ref_c).sum()),
            "loss_diff": float((l - ref_l).abs()),
            "grad_max_abs_diff": float((g - ref_g).abs().max()),
        })
    return results


def spikelib_linear_paths(trainers: Mapping[str, "Trainer"]) -> Dict[str, Dict[str, int]]:
    """Which paths spikelib's dense synapses ran in one training step of each spikelib network (backend_calls)."""
    out: Dict[str, Dict[str, int]] = {}
    try:
        from spikelib.kernels import backend_calls, reset_backend_calls
    except ImportError:
        return out
    for name, tr in trainers.items():
        if not name.startswith("spikelib"):
            continue
        reset_backend_calls()
        tr.opt.zero_grad(set_to_none=True)
        tr.loss().backward()
        tr.opt.zero_grad(set_to_none=True)
        out[name] = {k: v for k, v in backend_calls().items() if k.startswith("linear")}
        print(f"  {name}: dense synapse paths in one step: {out[name] or 'nn.Linear (torch)'}")
    return out


def probe(args: argparse.Namespace) -> None:
    """Entry point of a probe subprocess: first training step time, or peak memory of a steady-state step."""
    impl = impl_by_name(args.impl)
    sizes = layer_sizes(args)
    common.torch_warmup()
    weights = initial_weights(sizes)
    batch = make_batch(args.T, args.B)
    t0 = time.perf_counter()
    trainer = Trainer(impl, sizes, weights, batch)
    build_s = time.perf_counter() - t0
    if args.probe == "first":
        common.emit_probe({"import_and_build_s": build_s, "calls": {CASE: common.timed_call(trainer.step)}})
    else:
        trainer.step()
        trainer.step()
        trainer.opt.zero_grad(set_to_none=True)  # the step frees them first: not part of the "before"
        common.emit_probe({"calls": {CASE: common.peak_rss_delta_mib(trainer.step)}})


def run(args: argparse.Namespace, command: str) -> Dict[str, Any]:
    """Run the whole benchmark and return the JSON payload."""
    tuning = not args.no_malloc_tuning
    sizes = layer_sizes(args)
    print(f"== SHD-style network {'-'.join(map(str, sizes))}, T={args.T} B={args.B} float32, Adam training step"
          f"{'  [QUICK: smoke test sizes, not a result]' if args.quick else ''}")
    print(common.describe_malloc(tuning))
    machine = common.machine_info(tuning)
    print(f"machine: {machine['cpu_model']}, {machine['cpus_usable']} CPUs, torch {machine['versions']['torch']} "
          f"({machine['torch_threads']} threads); loadavg {common.loadavg()}")
    common.torch_warmup()
    monitor = common.Monitor()
    print(f"best calibration {monitor.best * 1e3:.2f} ms")
    impls, skipped = implementations(args.only)
    weights = initial_weights(sizes)
    batch = make_batch(args.T, args.B)
    trainers = peers.build_all(impls, skipped, lambda impl: Trainer(impl, sizes, weights, batch))
    for name, reason in skipped.items():
        print(f"  skipped {name}: {reason}")
    checks = check_against_reference(trainers)
    report.print_checks(checks)
    linear_paths = spikelib_linear_paths(trainers)
    series = common.measure_interleaved({n: tr.step for n, tr in trainers.items()}, monitor, args.warmup,
                                        args.repeats, max_rounds_factor=2 if args.quick else 3, label=f"{CASE}: ")
    rows = {name: common.summarize(s) for name, s in series.items()}
    common.add_ratios(rows, [i.name for i in impls if i.is_peer])
    cases = {CASE: {"title": CASE_TITLE, "rows": rows, "floor": None}}
    common.print_table(f"{CASE}: {CASE_TITLE}", rows)
    if not args.no_probes:
        print("\nfirst-call and memory probes (fresh subprocesses):")
        common.attach_probes(SCRIPT, size_args(args), cases, attempts=1 if args.quick else 3, names=list(trainers))
    return {
        "benchmark": NAME,
        "title": "SHD-style network training step (CPU)",
        "quick": bool(args.quick),
        "only": args.only,
        "command": command,
        "machine": machine,
        "config": {"layers": "-".join(map(str, sizes)), "T": args.T, "B": args.B, "dtype": "float32",
                   "input_rate": INPUT_RATE, "weight_gain": WEIGHT_GAIN, "optimizer": f"Adam(lr={LR})",
                   "loss": "cross_entropy(spike counts summed over T)", "warmup": args.warmup,
                   "repeats": args.repeats, "drop_factor": common.DROP_FACTOR,
                   "foreign_cpu_limit": common.FOREIGN_CPU_LIMIT},
        "calibration": {"best_s": monitor.best, "count": len(monitor.calibrations)},
        "spikelib_auto_backend": peers.auto_backend_on_cpu(),
        "spikelib_linear_paths": linear_paths,
        "numba_threading_layer": common.numba_threading_layer(),
        "openmp_runtimes": common.loaded_openmp_runtimes(),
        "implementations": {i.name: i.config for i in impls if i.name in trainers},
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
