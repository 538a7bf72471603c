"""Benchmark: an SHD-sized ELM layer on CPU, spikelib's ``numba`` and ``fast`` backends against its reference loop.

The layer of the elmneuron SHD notebook: ``x: [T=100, B=64, 700]`` spikes (``--density_pct``, default 5%), one ELM
neuron with ``d_m = 100`` memory units (MLP 800 -> 200 -> 100, relu), 20 outputs, ``dt = 10``, tau_m in [1, 500].
Cases, all in one process, interleaved round by round:

* ``train_v1`` / ``train_v2``: forward + backward (a gradient on every output step; all weights and ``x`` get
  gradients) of ``ELM`` / ``ELMv2``. Before timing, the outputs and gradients of ``numba`` and ``fast`` are compared
  with the loop's (``torch_loop``).
* ``train_v1_input_layer``: as ``train_v1`` but ``x`` needs no gradient (the input layer of the SHD recipe).
* ``inference_v1``: forward only under ``torch.no_grad()``.

Run ``python benchmarks/bench_elm.py`` (full sizes, only on a quiet machine) or ``--quick``; writes
``results/elm_cpu.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, Optional, Sequence

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402

from spikelib.kernels import backend_calls, reset_backend_calls  # noqa: E402
from spikelib.neurons.elm import ELM, ELMv2  # noqa: E402

NAME = "elm_cpu"
FULL = {"T": 100, "B": 64, "C_in": 700, "d_m": 100, "C_out": 20, "density_pct": 5, "warmup": 2, "repeats": 11}
QUICK = {"T": 20, "B": 4, "C_in": 32, "d_m": 8, "C_out": 4, "density_pct": 5, "warmup": 1, "repeats": 3}
BACKENDS = ("numba", "fast", "torch_loop")
FAST = BACKENDS[:-1]


def _layer(args: argparse.Namespace, version: int) -> ELM:
    torch.manual_seed(0)
    cls = ELM if version == 1 else ELMv2
    return cls(args.C_in, args.C_out, num_memory=args.d_m, tau_mem_max=500.0, dt=10.0)


def _spikes(args: argparse.Namespace) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(args.T, args.B, args.C_in, generator=g) < args.density_pct / 100).float()


def train_case(args: argparse.Namespace, version: int, x_grad: bool = True
               ) -> tuple[Dict[str, Callable[[], Any]], Dict]:
    layer = _layer(args, version)
    x = _spikes(args).requires_grad_(x_grad)
    grad = torch.randn(args.T, args.B, args.C_out, generator=torch.Generator().manual_seed(1))

    def runner(backend: str) -> Callable[[], None]:
        def run() -> None:
            layer.backend = backend
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x).backward(grad)
        return run

    calls = {f"spikelib-{b}": runner(b) for b in BACKENDS}
    results = {}
    for b in BACKENDS:
        calls[f"spikelib-{b}"]()
        layer.backend = b
        with torch.no_grad():
            y = layer(x)
        gx = x.grad.clone() if x_grad else torch.zeros(())
        results[b] = (y, gx, [p.grad.clone() for p in layer.parameters() if p.grad is not None])
    y_l, gx_l, gp_l = results["torch_loop"]
    checks: Dict[str, Any] = {"max_abs_output": float(y_l.abs().max()), "max_abs_grad_x": float(gx_l.abs().max()),
                              "max_abs_grad_params": max(float(b.abs().max()) for b in gp_l)}
    for b in FAST:
        y_f, gx_f, gp_f = results[b]
        checks[b] = {"max_abs_diff_output": float((y_f - y_l).abs().max()),
                     "max_abs_diff_grad_x": float((gx_f - gx_l).abs().max()),
                     "max_abs_diff_grad_params": max(float((a - b).abs().max()) for a, b in zip(gp_f, gp_l))}
    return calls, checks


def inference_case(args: argparse.Namespace, version: int) -> tuple[Dict[str, Callable[[], Any]], Dict]:
    layer = _layer(args, version)
    x = _spikes(args)

    def runner(backend: str) -> Callable[[], None]:
        def run() -> None:
            layer.backend = backend
            with torch.no_grad():
                layer(x)
        return run

    outputs = {}
    with torch.no_grad():
        for b in BACKENDS:
            layer.backend = b
            outputs[b] = layer(x)
    y_l = outputs["torch_loop"]
    checks: Dict[str, Any] = {"max_abs_output": float(y_l.abs().max())}
    checks.update({b: {"max_abs_diff_output": float((outputs[b] - y_l).abs().max())} for b in FAST})
    return {f"spikelib-{b}": runner(b) for b in BACKENDS}, checks


def run(args: argparse.Namespace) -> Dict[str, Any]:
    monitor = common.Monitor()
    cases: Dict[str, Any] = {}

    def measure(name: str, calls: Dict[str, Callable[[], Any]], checks: Dict[str, Any]) -> None:
        reset_backend_calls()
        for fn in calls.values():
            fn()
        checks["spikelib_backends"] = backend_calls("elm")  # every backend really ran
        series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats, label=f"{name}: ")
        rows = {impl: common.summarize(s) for impl, s in series.items()}
        loop = rows["spikelib-torch_loop"].get("median_s")
        cases[name] = {"rows": rows, "checks": checks}
        notes = []
        for b in FAST:
            t = rows[f"spikelib-{b}"].get("median_s")
            cases[name][f"speedup_{b}_vs_loop"] = speedup = loop / t if t and loop else None
            if speedup:
                notes.append(f"{b} {speedup:.2f}x faster")
        print(f"\n{name}: " + ", ".join(f"{impl} {common.fmt_ms(r.get('median_s'))} ms" for impl, r in rows.items())
              + (f"; {', '.join(notes)} than the loop" if notes else "") + f"\n  checks: {checks}")

    measure("train_v1", *train_case(args, 1))
    measure("train_v2", *train_case(args, 2))
    measure("train_v1_input_layer", *train_case(args, 1, x_grad=False))
    measure("inference_v1", *inference_case(args, 1))
    return cases


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = common.parse_bench_args(__doc__.split("\n\n")[0], FULL, QUICK, argv)
    payload = {
        "benchmark": NAME,
        "command": common.command_line(),
        "quick": args.quick,
        "sizes": {k: getattr(args, k) for k in FULL},
        "machine": common.machine_info(not args.no_malloc_tuning),
        "cases": run(args),
    }
    path = common.write_json(NAME, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
