"""Benchmark: delayed synapses on CPU, spikelib ``DelayedLinear`` against the DCLS package (``Dcls1d``, gauss).

The SHD-sized layer of SNN-delays: ``x: [T=100, B=64, 140]`` spikes (``--density_pct``, default 5%) -> 256 outputs, a 25-tap kernel (delays
0..24, the reference's ``max_delay = 25`` at 10 ms). Cases, all in one process, interleaved round by round:

* ``train_sigma_start`` / ``train_sigma_end``: forward + backward (``x``, weights and positions get gradients) with
  the Gaussian kernel at the first (12.27) and last (0.5) width of the sigma schedule. DCLS runs as SNN-delays uses
  it (``[T, B, C] -> [B, C, T]``, left padding ``K - 1``, ``Dcls1d``, back to ``[T, B, C]``); outputs and gradients
  are compared with spikelib's before timing.
* ``inference``: rounded integer delays under ``torch.no_grad()``: spikelib's integer path (numba backend: on the
  sparse spikes event-driven, one scattered multiply-add per input spike and synapse; the dense shifted multiply-adds
  above 10% nonzero) against the dense rounded convolution (``F.conv1d`` with the one-hot 25-tap
  kernel, what the reference evaluates). Also the state each needs (weights + int64 delays vs the dense kernel).
* ``inference_scaling``: the same two at ``max_delay`` 8, 24 and 64: the integer path's cost does not grow.

Run ``python benchmarks/bench_delays.py`` (full sizes, only on a quiet machine) or ``--quick``; writes
``results/delays_cpu.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, Optional, Sequence

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from spikelib.kernels import backend_calls, reset_backend_calls  # noqa: E402
from spikelib.layers import DelayedLinear  # noqa: E402

NAME = "delays_cpu"
FULL = {"T": 100, "B": 64, "C_in": 140, "C_out": 256, "max_delay": 24, "density_pct": 5, "warmup": 3, "repeats": 15}
QUICK = {"T": 20, "B": 4, "C_in": 16, "C_out": 24, "max_delay": 8, "density_pct": 5, "warmup": 1, "repeats": 3}
SIGMAS = {"train_sigma_start": None, "train_sigma_end": 0.5}  # None: the schedule's start, K // 2 + 0.27


def _dcls_layer(ours: DelayedLinear) -> Any:
    """A DCLS Dcls1d holding the same weights and delays (P = K // 2 - D, SIG = sigma - 0.27); None if missing."""
    try:
        from DCLS.construct.modules import Dcls1d
    except ImportError:
        return None
    K = ours.max_delay + 1
    ref = Dcls1d(ours.in_features, ours.out_features, kernel_count=1, dilated_kernel_size=K, bias=False,
                 version="gauss")
    with torch.no_grad():
        ref.weight.copy_(ours.weight[:, :, None])
        ref.P.copy_((K // 2 - ours.delay)[None, :, :, None])
        ref.SIG.fill_(float(ours.sigma) - 0.27)
    return ref


def _dcls_forward(ref: Any, x: torch.Tensor, max_delay: int) -> torch.Tensor:
    return ref(F.pad(x.permute(1, 2, 0), (max_delay, 0))).permute(2, 0, 1)


def _dense_rounded(x: torch.Tensor, kernel: torch.Tensor, max_delay: int) -> torch.Tensor:
    return F.conv1d(F.pad(x.permute(1, 2, 0), (max_delay, 0)), kernel).permute(2, 0, 1)


def _one_hot_kernel(layer: DelayedLinear) -> torch.Tensor:
    d = layer.integer_delays()
    k = torch.zeros(tuple(layer.weight.shape) + (layer.max_delay + 1,))
    return k.scatter(2, (layer.max_delay - d)[..., None], layer.weight.detach()[..., None]).contiguous()


def _spikes(args: argparse.Namespace, c_in: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(args.T, args.B, c_in, generator=g) < args.density_pct / 100).float()


def train_case(args: argparse.Namespace, sigma: Optional[float]) -> tuple[Dict[str, Callable[[], Any]], Dict]:
    torch.manual_seed(0)
    ours = DelayedLinear(args.C_in, args.C_out, args.max_delay)
    if sigma is not None:
        ours.set_sigma(sigma)
    ref = _dcls_layer(ours)
    x = _spikes(args, args.C_in).requires_grad_(True)
    grad = torch.randn(args.T, args.B, args.C_out, generator=torch.Generator().manual_seed(1))

    def run_ours() -> None:
        ours.zero_grad(set_to_none=True)
        x.grad = None
        ours(x).backward(grad)

    calls: Dict[str, Callable[[], Any]] = {"spikelib": run_ours}
    checks: Dict[str, Any] = {"sigma": float(ours.sigma)}
    if ref is not None:
        def run_ref() -> None:
            ref.zero_grad(set_to_none=True)
            x.grad = None
            _dcls_forward(ref, x, args.max_delay).backward(grad)

        run_ours()
        y, gx, gw, gd = ours(x).detach(), x.grad.clone(), ours.weight.grad.clone(), ours.delay.grad.clone()
        run_ref()
        y_ref = _dcls_forward(ref, x, args.max_delay).detach()
        checks.update(
            max_abs_diff_output=float((y - y_ref).abs().max()), max_abs_output=float(y_ref.abs().max()),
            max_abs_diff_grad_x=float((gx - x.grad).abs().max()),
            max_abs_diff_grad_weight=float((gw - ref.weight.grad[:, :, 0]).abs().max()),
            max_abs_diff_grad_delay=float((gd + ref.P.grad[0, :, :, 0]).abs().max()),
            max_abs_grad_delay=float(gd.abs().max()),
        )
        calls["dcls"] = run_ref
    else:
        checks["dcls"] = "not installed (pip install --no-deps dcls==0.1.1)"
    return calls, checks


def inference_case(args: argparse.Namespace, max_delay: int) -> tuple[Dict[str, Callable[[], Any]], Dict]:
    torch.manual_seed(0)
    layer = DelayedLinear(args.C_in, args.C_out, max_delay).round_delays()
    kernel = _one_hot_kernel(layer)
    x = _spikes(args, args.C_in)
    with torch.no_grad():
        diff = float((layer(x) - _dense_rounded(x, kernel, max_delay)).abs().max())

    def run_ours() -> None:
        with torch.no_grad():
            layer(x)

    def run_dense() -> None:
        with torch.no_grad():
            _dense_rounded(x, kernel, max_delay)

    synapses = args.C_in * args.C_out
    checks = {"max_delay": max_delay, "max_abs_diff_output": diff,
              "state_bytes_spikelib": synapses * (4 + 8), "state_bytes_dense": kernel.numel() * 4}
    return {"spikelib-int": run_ours, "dense-rounded-conv": run_dense}, checks


def run(args: argparse.Namespace) -> Dict[str, Any]:
    monitor = common.Monitor()
    cases: Dict[str, Any] = {}

    def measure(name: str, calls: Dict[str, Callable[[], Any]], checks: Dict[str, Any]) -> None:
        reset_backend_calls()
        calls[next(iter(calls))]()
        checks["spikelib_backends"] = backend_calls()  # which implementations spikelib's call really ran
        series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats, label=f"{name}: ")
        rows = {impl: common.summarize(s) for impl, s in series.items()}
        medians = {impl: r.get("median_s") for impl, r in rows.items()}
        base = [m for impl, m in medians.items() if impl != next(iter(calls)) and m]
        speedup = base[0] / medians[next(iter(calls))] if base and medians[next(iter(calls))] else None
        cases[name] = {"rows": rows, "checks": checks, "speedup_spikelib": speedup}
        print(f"\n{name}: " + ", ".join(f"{impl} {common.fmt_ms(m)} ms" for impl, m in medians.items())
              + (f"; spikelib {speedup:.2f}x faster" if speedup else "") + f"\n  checks: {checks}")

    for name, sigma in SIGMAS.items():
        measure(name, *train_case(args, sigma))
    measure("inference", *inference_case(args, args.max_delay))
    for md in (8, 24, 64) if not args.quick else (4, 8):
        measure(f"inference_scaling_max_delay_{md}", *inference_case(args, md))
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
