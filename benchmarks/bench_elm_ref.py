"""Benchmark: the ELM SHD recipe, spikelib against the authors' code (AaronSpieler/elmneuron), same configuration and
same weights, on CPU.

The reference is the authors' ``ELM`` (``src/expressive_leaky_memory_neuron.py``, a TorchScript module) configured as
their ``notebooks/train_elm_on_shd.ipynb`` does (700 inputs, 20 classes, ``num_memory=100``, one MLP layer,
``memory_tau_max=500``, ``lambda_value=5``, ``delta_t=10``), imported from a checkout at a pinned commit
(:mod:`refcode`; their ``neuronio`` data module, which needs matplotlib and seaborn, is replaced by a stand-in with
the one constant the model reads). spikelib's ``ELMClassifier`` (version 1, the notebook's unscaled input dropout)
gets the reference's initial weights. One timed round is the notebook's training step: input dropout (p 0.5, zeroing
bins), forward, cross-entropy of the last step's output, backward, ``Adamax`` step, cosine schedule step; the input is
``[B=64, T=100, 700]`` 0/1 spikes (``--density_pct``, default 5%; the reference reads batch first, spikelib time
first). Also ``inference``: the forward pass under ``torch.no_grad()`` (no dropout).

Before timing, outputs and every gradient are compared (dropout off). Peak memory of one call comes from fresh
subprocesses. ``python benchmarks/bench_elm_ref.py`` (a quiet machine) or ``--quick``; writes
``results/elm_ref_cpu.json``. Target of the issue: the training step at least 4x the reference, peak memory no more
than the reference's.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import refcode  # noqa: E402

NAME = "elm_ref_cpu"
SCRIPT = Path(__file__).resolve()
FULL = {"T": 100, "B": 64, "density_pct": 5, "warmup": 2, "repeats": 11}
QUICK = {"T": 20, "B": 4, "density_pct": 5, "warmup": 1, "repeats": 3}
CASES = {"train_step": "the notebook's training step (input dropout, forward, CE of the last step, backward, "
                       "Adamax, cosine schedule)",
         "inference": "forward under torch.no_grad()"}
TARGETS = {"train_step": 4.0, "inference": None}
IMPLS = ("spikelib", "reference")
NOTEBOOK = dict(num_input=700, num_output=20, num_memory=100, mlp_num_layers=1, memory_tau_min=1.0,
                memory_tau_max=500.0, learn_memory_tau=False, lambda_value=5.0, delta_t=10.0)
LEARNING_RATE, DROPOUT, EPOCH_STEPS = 5e-3, 0.5, 1000


def reference_class(args: argparse.Namespace) -> Any:
    """The authors' ``ELM`` class, imported from the checkout's ``src`` package."""
    folder = refcode.checkout("elmneuron", args)
    for key in list(sys.modules):
        if key == "src" or key.startswith("src."):
            del sys.modules[key]
    refcode.stand_in("src.neuronio")
    refcode.stand_in("src.neuronio.neuronio_data_utils", DEFAULT_Y_TRAIN_SOMA_SCALE=1.0)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("src.expressive_leaky_memory_neuron").ELM
    except Exception as exc:  # their imports may fail on other versions of their dependencies
        raise refcode.RefUnavailable(f"cannot import elmneuron ({type(exc).__name__}: {exc})") from exc
    finally:
        sys.path.remove(str(folder))


def copy_weights(ref: Any, ours: Any) -> None:
    """The reference's parameters into spikelib's ELM (names differ, layouts are the same)."""
    ref_mlp = [m for m in ref.mlp.network if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for a, b in zip(ours.elm.mlp, ref_mlp):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        ours.elm.w_syn_raw.copy_(ref._proto_w_s)
        ours.elm.readout.weight.copy_(ref.w_y.weight)
        ours.elm.readout.bias.copy_(ref.w_y.bias)
        ours.elm.proto_tau_mem.copy_(ref._proto_tau_m)
        ours.elm.tau_syn.copy_(ref.tau_s)


class Pair:
    def __init__(self, args: argparse.Namespace, dropout: float = DROPOUT) -> None:
        from spikelib.models.elm_net import ELMClassifier

        ELM = reference_class(args)
        torch.manual_seed(0)
        self.ref = ELM(**NOTEBOOK)
        self.ours = ELMClassifier(num_input=700, num_classes=20, version=1, input_dropout=dropout,
                                  dropout_rescale=False, num_memory=100, mlp_num_layers=1, tau_mem_min=1.0,
                                  tau_mem_max=500.0, lambda_value=5.0, dt=10.0)
        copy_weights(self.ref, self.ours)
        self.dropout = dropout
        g = torch.Generator().manual_seed(0)
        self.x = (torch.rand(args.T, args.B, 700, generator=g) < args.density_pct / 100).float()  # [T, B, C]
        self.x_bt = self.x.transpose(0, 1).contiguous()  # the reference's [B, T, C]
        self.y = torch.randint(0, 20, (args.B,), generator=g)
        self.opts = {}
        for name, model in (("reference", self.ref), ("spikelib", self.ours)):
            opt = torch.optim.Adamax(model.parameters(), lr=LEARNING_RATE)
            self.opts[name] = (opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCH_STEPS))

    def ref_step(self) -> None:
        opt, sched = self.opts["reference"]
        inputs = self.x_bt.clone()
        inputs[torch.rand_like(inputs) < self.dropout] = 0  # the notebook's dropout
        opt.zero_grad()
        out = self.ref(inputs)[:, -1, :]
        F.cross_entropy(out, self.y).backward()
        opt.step()
        sched.step()

    def ours_step(self) -> None:
        opt, sched = self.opts["spikelib"]
        self.ours.train()
        opt.zero_grad()
        F.cross_entropy(self.ours(self.x), self.y).backward()
        opt.step()
        sched.step()

    def ref_infer(self) -> torch.Tensor:
        with torch.no_grad():
            return self.ref(self.x_bt)[:, -1, :]

    def ours_infer(self) -> torch.Tensor:
        self.ours.eval()
        with torch.no_grad():
            return self.ours(self.x)


def checks(args: argparse.Namespace) -> Dict[str, Any]:
    """Outputs and every gradient with dropout off."""
    pair = Pair(args, dropout=0.0)
    out_ref = pair.ref(pair.x_bt)
    F.cross_entropy(out_ref[:, -1, :], pair.y).backward()
    pair.ours.train()
    y = pair.ours.elm(pair.x)
    F.cross_entropy(y[-1], pair.y).backward()
    ref_mlp = [m for m in pair.ref.mlp.network if isinstance(m, torch.nn.Linear)]
    pairs = [(a.weight.grad, b.weight.grad) for a, b in zip(pair.ours.elm.mlp, ref_mlp)]
    pairs += [(pair.ours.elm.w_syn_raw.grad, pair.ref._proto_w_s.grad),
              (pair.ours.elm.readout.weight.grad, pair.ref.w_y.weight.grad)]
    return {"output_max_abs_diff": float((y.detach().transpose(0, 1) - out_ref.detach()).abs().max()),
            "output_max_abs": float(out_ref.detach().abs().max()),
            "grad_max_abs_diff": max(float((a - b).abs().max()) for a, b in pairs),
            "grad_max_abs": max(float(b.abs().max()) for _, b in pairs)}


def case_calls(args: argparse.Namespace, case: str) -> Dict[str, Callable[[], Any]]:
    pair = Pair(args)
    if case == "inference":
        return {"spikelib": pair.ours_infer, "reference": pair.ref_infer}
    return {"spikelib": pair.ours_step, "reference": pair.ref_step}


def probe(args: argparse.Namespace) -> None:
    call = case_calls(args, args.case)[args.impl]
    call()
    call()
    common.emit_probe({"calls": {args.case: common.peak_rss_delta_mib(call)}})


def run(args: argparse.Namespace) -> Dict[str, Any]:
    print(f"== ELM SHD recipe vs AaronSpieler/elmneuron, T={args.T} B={args.B}"
          f"{'  [QUICK: smoke test sizes, not a result]' if args.quick else ''}; loadavg {common.loadavg()}")
    common.torch_warmup()
    monitor = common.Monitor()
    payload: Dict[str, Any] = {"checks": checks(args), "cases": {}}
    print(f"checks: {payload['checks']}")
    from spikelib.kernels import backend_calls, reset_backend_calls

    for case, title in CASES.items():
        calls = case_calls(args, case)
        reset_backend_calls()
        calls["spikelib"]()
        paths = backend_calls()
        series = common.measure_interleaved(calls, monitor, args.warmup, args.repeats, label=f"{case}: ")
        rows = {n: common.summarize(s) for n, s in series.items()}
        ours, ref = rows["spikelib"].get("median_s"), rows["reference"].get("median_s")
        speedup = ref / ours if ours and ref else None
        payload["cases"][case] = {"title": title, "rows": rows, "spikelib_backends": paths, "speedup": speedup,
                                  "target": TARGETS[case]}
        common.print_table(f"{case}: {title}", rows)
        if speedup:
            print(f"  spikelib {speedup:.2f}x the reference" + (f" (target {TARGETS[case]:g}x)" if TARGETS[case]
                                                                else ""))
        if not args.no_probes:
            for impl in IMPLS:
                mem = common.run_probe(SCRIPT, [*size_args(args), "--probe", "memory", "--impl", impl, "--case",
                                                case], common.MALLOC_MEMORY_PROBE)
                rows[impl]["peak_mib"] = ((mem.get("calls") or {}).get(case) or {}).get("peak_mib")
                if "error" in mem:
                    rows[impl]["probe_errors"] = [mem["error"]]
            print(f"  peak MiB: spikelib {common.fmt_mib(rows['spikelib'].get('peak_mib'))}, reference "
                  f"{common.fmt_mib(rows['reference'].get('peak_mib'))}")
    return payload


def size_args(args: argparse.Namespace) -> list:
    return ["--T", str(args.T), "--B", str(args.B), "--density_pct", str(args.density_pct), "--refs", str(args.refs),
            "--git-url", args.git_url] + (["--quick"] if args.quick else [])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test, not a result)")
    for key, value in FULL.items():
        p.add_argument(f"--{key}", type=int, default=None, help=f"override {key} (full: {value}, quick: {QUICK[key]})")
    p.add_argument("--no-probes", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc settings as they are")
    p.add_argument("--only", action="append", default=[], help="accepted for run_all.py (always both)")
    p.add_argument("--probe", choices=("memory",), help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--case", choices=tuple(CASES), help=argparse.SUPPRESS)
    refcode.add_arguments(p)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Optional[Sequence[str]] = None, command: Optional[str] = None) -> int:
    args = parse_args(argv)
    if args.probe:
        probe(args)
        return 0
    base = {"benchmark": NAME, "title": "ELM SHD recipe (CPU): spikelib vs the authors' code, same weights",
            "quick": bool(args.quick), "command": command or common.command_line(),
            "machine": common.machine_info(not args.no_malloc_tuning),
            "config": {"T": args.T, "B": args.B, "density_pct": args.density_pct, "warmup": args.warmup,
                       "repeats": args.repeats, "model": NOTEBOOK,
                       "reference": f"AaronSpieler/elmneuron@{refcode.REPOS['elmneuron'][1][:12]}"}}
    try:
        payload = {**base, **run(args)}
    except refcode.RefUnavailable as exc:
        print(f"reference unavailable: {exc}")
        payload = {**base, "skipped": {"reference": str(exc)}, "cases": {}}
    path = common.write_json(NAME, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
