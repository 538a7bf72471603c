"""Benchmark: the SNN-delays SHD recipe, spikelib against the authors' code (Thvnvtos/SNN-delays on DCLS +
spikingjelly), same configuration and same weights, on CPU.

The reference is the authors' ``SnnDelays`` built from their ``best_config_SHD.Config`` (140-256-256-20, a 25-tap
DCLS ``Dcls1d`` "gauss" kernel per layer, BatchNorm, LIF tau 1.005 steps, ATan(5), dropout 0.4, readout membrane,
loss CE of the summed softmax), imported from a checkout at a pinned commit (:mod:`refcode`; spikingjelly 2.0 and
DCLS from the project environment). spikelib's ``SNNDelays`` gets the reference's initial weights, positions and
BatchNorm parameters (``spikelib.models.load_reference_checkpoint``). Input ``x: [T=100, B=64, 140]``: binned SHD-like
counts, ``Binomial(5, --rate)`` per bin (700 channels summed in groups of 5; about 10% nonzero at the default).
Cases, both implementations interleaved round by round (README.md):

* ``train_sigma_start`` / ``train_sigma_end``: one training step as the reference's ``train_model`` runs it
  (``zero_grad`` of both optimisers, forward, loss, backward, both Adam steps (weights; positions at 100x the
  learning rate), then the reference's ``reset_model`` / spikelib's ``clamp_delays_``) at the first and last width of
  the sigma schedule;
* ``inference_rounded``: evaluation with rounded positions, as the reference's ``eval_model`` does (sigma 0,
  DCLS ``version='max'``: its dense rounded convolution) against spikelib's integer-delay path, under
  ``torch.no_grad()``.

Before timing, outputs, loss and every gradient (dropout off in both, batch statistics) and the rounded inference are
compared, and for each hidden layer the input currents and spikes of the neurons, with a replay: spikelib's neuron
fed the reference's current must give the reference's spikes exactly (then what differs comes from the float32
summation order of the synapses, a current one rounding step from the threshold flipping a spike). Peak memory of one call of each comes from fresh subprocesses (``--probe memory``, as every benchmark).

    python benchmarks/bench_delays_ref.py                      # full sizes (a quiet machine; a few minutes)
    python benchmarks/bench_delays_ref.py --quick              # smoke test
    python benchmarks/bench_delays_ref.py --git-url '/mirrors/{owner}+{name}/repo'   # clone from a local mirror

Writes ``results/delays_ref_cpu.json``; targets of the issue: training step at least 4x the reference, rounded
inference at least 10x, peak memory no more than the reference's.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import refcode  # noqa: E402

NAME = "delays_ref_cpu"
SCRIPT = Path(__file__).resolve()
FULL = {"T": 100, "B": 64, "warmup": 2, "repeats": 11}
QUICK = {"T": 20, "B": 4, "warmup": 1, "repeats": 3}
CASES = {
    "train_sigma_start": "training step (both optimisers), sigma at the schedule's start (12.27)",
    "train_sigma_end": "training step (both optimisers), sigma at the schedule's end (0.5)",
    "inference_rounded": "evaluation with rounded delays, torch.no_grad()",
}
TARGETS = {"train_sigma_start": 4.0, "train_sigma_end": 4.0, "inference_rounded": 10.0}
IMPLS = ("spikelib", "reference")
_CLASH = ("model", "config", "utils", "snn_delays", "best_config_SHD", "datasets")


def reference_module(args: argparse.Namespace) -> Tuple[Any, Any]:
    """The authors' ``SnnDelays`` class and ``best_config_SHD.Config`` (stand-ins for wandb and their data module,
    which the model never uses)."""
    folder = refcode.checkout("SNN-delays", args)
    refcode.stand_in("wandb")
    refcode.stand_in("datasets", Augs=None)
    for key in list(sys.modules):
        if key.split(".")[0] in _CLASH and key != "datasets":
            del sys.modules[key]
    sys.path.insert(0, str(folder))
    try:
        config = importlib.import_module("best_config_SHD").Config
        snn_delays = importlib.import_module("snn_delays")
    except Exception as exc:  # their imports may fail on other versions of their dependencies
        raise refcode.RefUnavailable(f"cannot import SNN-delays ({type(exc).__name__}: {exc})") from exc
    finally:
        sys.path.remove(str(folder))
    return snn_delays.SnnDelays, config


class Pair:
    """The reference model and spikelib's with the same weights, their optimisers, and the batch."""

    def __init__(self, args: argparse.Namespace, dropout: float = 0.4) -> None:
        from spikelib.layers.delay_schedule import clamp_delays_
        from spikelib.models import load_reference_checkpoint
        from spikelib.models.snn_delays import SNNDelays

        SnnDelays, Config = reference_module(args)
        cfg = Config()
        cfg.seed = 0
        cfg.dropout_p = dropout
        self.cfg = cfg
        self.ref = SnnDelays(cfg)
        self.ours = SNNDelays(in_features=cfg.n_inputs, hidden=(cfg.n_hidden_neurons,) * cfg.n_hidden_layers,
                              out_features=cfg.n_outputs, max_delay=cfg.max_delay - 1, dropout=dropout,
                              right_padding=cfg.right_padding)
        load_reference_checkpoint(self.ours, self.ref.state_dict())
        self.clamp = clamp_delays_
        self.ref_opts = self.ref.optimizers()
        # spikelib: the same two optimisers and groups (weights with weight decay, BatchNorm without; positions)
        from spikelib.layers.delay_schedule import delay_layers

        layers = delay_layers(self.ours)
        weights = [l.weight for l in layers]
        delays = [l.delay for l in layers]
        norms = [p for n in self.ours.norms for p in n.parameters()]
        self.our_opts = [torch.optim.Adam([{"params": weights, "lr": cfg.lr_w, "weight_decay": cfg.weight_decay},
                                           {"params": norms, "lr": cfg.lr_w, "weight_decay": 0}]),
                         torch.optim.Adam(delays, lr=cfg.lr_pos, weight_decay=0)]
        g = torch.Generator().manual_seed(0)
        self.x = torch.binomial(torch.full((args.T, args.B, cfg.n_inputs), 5.0),
                                torch.full((args.T, args.B, cfg.n_inputs), args.rate), generator=g)
        self.y = torch.randint(0, cfg.n_outputs, (args.B,), generator=g)
        self.y_onehot = F.one_hot(self.y, cfg.n_outputs).float()

    def set_sigma(self, sigma: float) -> None:
        from spikelib.layers.delay_schedule import set_sigma_

        with torch.no_grad():
            for block in self.ref.blocks:
                block[0][0].SIG.fill_(sigma - 0.27)
        set_sigma_(self.ours, sigma)

    # ---------------------------------------------------------------- training step
    def ref_forward_loss(self) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.ref.forward(self.x)
        return out, self.ref.calc_loss(out, self.y_onehot)

    def ours_forward_loss(self) -> Tuple[torch.Tensor, torch.Tensor]:
        m = self.ours(self.x)
        return m, F.cross_entropy(m, self.y)

    def ref_step(self) -> None:
        self.ref.train()
        for opt in self.ref_opts:
            opt.zero_grad()
        _, loss = self.ref_forward_loss()
        loss.backward()
        for opt in self.ref_opts:
            opt.step()
        self.ref.reset_model(train=True)

    def ours_step(self) -> None:
        self.ours.train()
        for opt in self.our_opts:
            opt.zero_grad(set_to_none=True)
        _, loss = self.ours_forward_loss()
        loss.backward()
        for opt in self.our_opts:
            opt.step()
        self.clamp(self.ours)

    # ---------------------------------------------------------------- rounded inference
    def round_both(self) -> None:
        """The reference's eval_model set-up (sigma 0, version 'max', rounded positions) and spikelib's integer path."""
        from spikelib.layers.delay_schedule import delay_layers

        self.ref.eval()
        with torch.no_grad():
            for block in self.ref.blocks:
                block[0][0].SIG *= 0
                block[0][0].version = "max"
                block[0][0].DCK.version = "max"
            self.ref.round_pos()
        self.ours.eval()
        for layer in delay_layers(self.ours):
            layer.round_delays()

    def ref_infer(self) -> torch.Tensor:
        with torch.no_grad():
            out = self.ref.forward(self.x)
            self.ref.reset_model(train=False)
        return out

    def ours_infer(self) -> torch.Tensor:
        with torch.no_grad():
            return self.ours.membrane(self.x)


def checks(args: argparse.Namespace) -> Dict[str, Any]:
    """Same outputs, loss and gradients (dropout off, float32) and the same rounded inference."""
    pair = Pair(args, dropout=0.0)
    pair.set_sigma(3.0)
    pair.ref.train()
    pair.ours.train()
    seen: Dict[str, list] = {"reference": [], "spikelib": []}
    hooks = [n.register_forward_hook(lambda m, i, o, k=k: seen[k].append((i[0].detach(), o.detach())))
             for k, neurons in (("reference", [b[1][0] for b in pair.ref.blocks[:-1]]),
                                ("spikelib", list(pair.ours.neurons))) for n in neurons]
    try:
        out_ref, loss_ref = pair.ref_forward_loss()
        loss_ref.backward()
        pair.ref.reset_model(train=False)
        u = pair.ours.membrane(pair.x)
        loss = F.cross_entropy(pair.ours.reduce(u), pair.y)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    from spikelib.layers.delay_schedule import delay_layers

    ref_convs = [b[0][0] for b in pair.ref.blocks]
    res: Dict[str, Any] = {
        "membrane_max_abs_diff": float((u - out_ref).abs().max()),
        "membrane_max_abs": float(out_ref.detach().abs().max()),
        "loss_diff": float((loss - loss_ref).abs()),
        "grad_weight_max_abs_diff": max(float((l.weight.grad - c.weight.grad[:, :, 0]).abs().max())
                                        for l, c in zip(delay_layers(pair.ours), ref_convs)),
        "grad_weight_max_abs": max(float(c.weight.grad.abs().max()) for c in ref_convs),
        "grad_delay_max_abs_diff": max(float((l.delay.grad + c.P.grad[0, :, :, 0]).abs().max())
                                       for l, c in zip(delay_layers(pair.ours), ref_convs)),
        "grad_delay_max_abs": max(float(c.P.grad.abs().max()) for c in ref_convs),
    }
    res.update(hidden_layer_checks(pair, seen))
    pair.round_both()
    a, b = pair.ours_infer(), pair.ref_infer()
    res["rounded_membrane_max_abs_diff"] = float((a - b).abs().max())
    res["rounded_membrane_max_abs"] = float(b.abs().max())
    return res


def hidden_layer_checks(pair: Pair, seen: Mapping[str, list]) -> Dict[str, float]:
    """Per hidden layer ``hidden<i>_...``: the largest difference of the input currents, spikes that differ, and whether spikelib's
    neuron fed the reference's current gives the reference's spikes exactly (then every difference comes from the
    float32 summation order of the synapses, a current a rounding step away from the threshold flipping a spike)."""
    out: Dict[str, float] = {}
    with torch.no_grad():
        for i, (neuron, (i_ref, s_ref), (i_ours, s_ours)) in enumerate(
                zip(pair.ours.neurons, seen["reference"], seen["spikelib"]), 1):
            replay = neuron(i_ref)
            out.update({f"hidden{i}_current_max_abs_diff": float((i_ours - i_ref).abs().max()),
                        f"hidden{i}_current_max_abs": float(i_ref.abs().max()),
                        f"hidden{i}_spikes": int(s_ref.sum()),
                        f"hidden{i}_spikes_differing": int((s_ours != s_ref).sum()),
                        f"hidden{i}_replay_spikes_differing": int((replay != s_ref).sum())})
    return out


def case_calls(args: argparse.Namespace, case: str) -> Dict[str, Callable[[], Any]]:
    pair = Pair(args)
    if case == "inference_rounded":
        pair.round_both()
        return {"spikelib": pair.ours_infer, "reference": pair.ref_infer}
    pair.set_sigma(refcode_sigma(pair, case))
    return {"spikelib": pair.ours_step, "reference": pair.ref_step}


def refcode_sigma(pair: Pair, case: str) -> float:
    return pair.cfg.sigInit + 0.27 if case == "train_sigma_start" else 0.5


def probe(args: argparse.Namespace) -> None:
    """A fresh process: peak memory of one call of ``args.impl`` in ``args.case``."""
    call = case_calls(args, args.case)[args.impl]
    call()
    call()
    common.emit_probe({"calls": {args.case: common.peak_rss_delta_mib(call)}})


def run(args: argparse.Namespace) -> Dict[str, Any]:
    print(f"== SNN-delays SHD recipe vs Thvnvtos/SNN-delays, T={args.T} B={args.B}"
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
        print(f"  spikelib {speedup:.2f}x the reference (target {TARGETS[case]:g}x)" if speedup else "")
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
    out = ["--T", str(args.T), "--B", str(args.B), "--rate", str(args.rate), "--refs", str(args.refs),
           "--git-url", args.git_url]
    return out + (["--quick"] if args.quick else [])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test, not a result)")
    for key, value in FULL.items():
        p.add_argument(f"--{key}", type=int, default=None, help=f"override {key} (full: {value}, quick: {QUICK[key]})")
    p.add_argument("--rate", type=float, default=0.02, help="per-channel spike probability in a bin (default 0.02)")
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
    base = {"benchmark": NAME, "title": "SNN-delays recipe (CPU): spikelib vs the authors' code, same weights",
            "quick": bool(args.quick), "command": command or common.command_line(),
            "machine": common.machine_info(not args.no_malloc_tuning),
            "config": {"T": args.T, "B": args.B, "rate": args.rate, "warmup": args.warmup, "repeats": args.repeats,
                       "reference": f"Thvnvtos/SNN-delays@{refcode.REPOS['SNN-delays'][1][:12]}"}}
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
