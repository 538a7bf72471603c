"""Benchmark: E-3DSNN forward, spikelib against the authors' code (bollossom/E-3DSNN, ``SNN_3dv``) on spconv 2.3.8's
CPU build, same configuration and same weights.

The reference is ``SNN_3dv`` of ``classify_seg/pointcept/models/sparse_unet/E_3DSNN.py`` with the ModelNet40
E-3DSNN-T configuration (``configs/modelnet40/cls-E3DSNN-v1m1-0-T.py``: 6 input features, 40 classes, embed 16, stages
16/32/64/128 of depth 1), imported from a checkout at a pinned commit with the stand-ins of
``tests/fixtures/reference/generate.py`` for the parts of Pointcept and torch_geometric it imports. spikelib's
``e3dsnn_t`` gets the reference's weights (``load_reference_checkpoint``), randomised as the reference fixtures do
(``randomise`` of ``tests/fixtures/reference/generate.py``) so that spikes reach the head. Input: ``B`` synthetic point clouds of
``points`` points each (surfaces of random ellipsoids, normals from the surface), voxelised once by spikelib's spike
voxel coding (grid 0.01, coordinates and normals as features, as the reference's data pipeline) and handed to both as
the same sparse tensor. One timed round is a forward pass in eval mode under ``torch.no_grad()`` (spconv's CPU build
has no backward). Both run single-threaded: spconv 2.3.8's CPU stride-2 convolution gives wrong, run-to-run varying
results with more than one thread (REFERENCES.md).

spconv is not in the project environment: the script runs itself again under the python of a scratch environment
(:mod:`refcode`: ``<refs>/venv`` with spconv 2.3.8, seeing the project's packages; or ``--ref-python``). Before timing,
the logits are compared. Peak memory of one call comes from fresh subprocesses.

    python benchmarks/bench_e3dsnn_ref.py            # a quiet machine (a few minutes)
    python benchmarks/bench_e3dsnn_ref.py --quick    # smoke test

Writes ``results/e3dsnn_ref_cpu.json``. Target of the issue: the forward pass at least as fast as the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import common

if __name__ == "__main__" and "--in-ref-env" in sys.argv:
    common.ensure_malloc_env()

import refcode  # noqa: E402

NAME = "e3dsnn_ref_cpu"
SCRIPT = Path(__file__).resolve()
FULL = {"B": 4, "points": 10000, "warmup": 2, "repeats": 9}
QUICK = {"B": 2, "points": 1000, "warmup": 1, "repeats": 2}
IMPLS = ("spikelib", "reference")
CASE = "forward"
CONFIG_T = dict(in_channels=6, num_classes=40, embed_channels=16, enc_channels=[16, 32, 64, 128],
                enc_depth=[1, 1, 1, 1])


def clouds(B: int, points: int):
    """``B`` point clouds ``[points, 6]`` (xyz on a random ellipsoid's surface, unit normals)."""
    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(B):
        axes = 0.3 + torch.rand(3, generator=g)
        d = torch.randn(points, 3, generator=g)
        d = d / d.norm(dim=1, keepdim=True)
        xyz = d * axes
        normal = d / axes ** 2
        normal = normal / normal.norm(dim=1, keepdim=True)
        out.append(torch.cat([xyz, normal], 1))
    return out


def build(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from spikelib.models import get_model, load_reference_checkpoint

    torch.set_num_threads(1)
    gen = refcode.generate_helpers()
    refcode.torchvision_stand_in()
    try:
        mod = gen._e3dsnn_modules(refcode.checkout("E-3DSNN", args).parent)
    except ImportError as exc:
        raise refcode.RefUnavailable(f"cannot import E-3DSNN (needs spconv's CPU build: {exc})") from exc
    torch.manual_seed(0)
    ref = mod.SNN_3dv(**CONFIG_T).eval()
    # An active network (the reference fixtures' weights: fan-in scaled, random BatchNorm statistics): with the
    # initial weights no spike reaches the head and both give all-zero logits, which proves nothing.
    gen.randomise(ref, torch.Generator().manual_seed(0), gain=1.5)
    ours = get_model("e3dsnn_t", num_classes=40).eval()
    sd = {f"module.backbone.{k}": v for k, v in ref.state_dict().items()}
    load_reference_checkpoint(ours, {"epoch": 0, "state_dict": sd})
    x = ours.voxelize(clouds(args.B, args.points))
    counts = torch.bincount(x.coords[:, 0].long(), minlength=args.B)
    order = torch.argsort(x.coords[:, 0], stable=True)
    assert bool((order == torch.arange(len(order))).all()), "voxels must be grouped by sample"
    ref_input = {"grid_coord": x.coords[:, 1:].long(), "feat": x.features.float(),
                 "offset": counts.cumsum(0)}
    return {"reference": ref, "spikelib": ours, "x": x, "ref_input": ref_input, "voxels": int(len(x.coords))}


def calls(b: Dict[str, Any]) -> Dict[str, Callable[[], Any]]:
    import torch

    def ref() -> Any:
        with torch.no_grad():
            return b["reference"](b["ref_input"])

    def ours() -> Any:
        with torch.no_grad():
            return b["spikelib"](b["x"])
    return {"spikelib": ours, "reference": ref}


def probe(args: argparse.Namespace) -> None:
    call = calls(build(args))[args.impl]
    call()
    call()
    common.emit_probe({"calls": {CASE: common.peak_rss_delta_mib(call)}})


def run(args: argparse.Namespace) -> Dict[str, Any]:
    print(f"== E-3DSNN-T forward vs bollossom/E-3DSNN on spconv's CPU build, B={args.B} x {args.points} points"
          f"{'  [QUICK: smoke test sizes, not a result]' if args.quick else ''}; loadavg {common.loadavg()}")
    common.torch_warmup()
    b = build(args)
    c = calls(b)
    a, r = c["spikelib"](), c["reference"]()
    check = {"logits_max_abs_diff": float((a - r).abs().max()), "logits_max_abs": float(r.abs().max()),
             "voxels": b["voxels"]}
    print(f"checks: {check}")
    monitor = common.Monitor()
    series = common.measure_interleaved(c, monitor, args.warmup, args.repeats, label=f"{CASE}: ")
    rows = {n: common.summarize(s) for n, s in series.items()}
    ours, ref = rows["spikelib"].get("median_s"), rows["reference"].get("median_s")
    speedup = ref / ours if ours and ref else None
    common.print_table(f"{CASE}: eval forward, torch.no_grad(), one thread", rows)
    if speedup:
        print(f"  spikelib {speedup:.2f}x the reference (target 1x)")
    if not args.no_probes:
        for impl in IMPLS:
            mem = common.run_probe(SCRIPT, [*size_args(args), "--in-ref-env", "--probe", "memory", "--impl", impl],
                                   common.MALLOC_MEMORY_PROBE)
            rows[impl]["peak_mib"] = ((mem.get("calls") or {}).get(CASE) or {}).get("peak_mib")
            if "error" in mem:
                rows[impl]["probe_errors"] = [mem["error"]]
    return {"checks": check, "cases": {CASE: {"title": "eval forward, torch.no_grad(), one thread", "rows": rows,
                                               "speedup": speedup, "target": 1.0}}}


def size_args(args: argparse.Namespace) -> list:
    return ["--B", str(args.B), "--points", str(args.points), "--refs", str(args.refs), "--git-url",
            args.git_url] + (["--quick"] if args.quick else [])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test, not a result)")
    for key, value in FULL.items():
        p.add_argument(f"--{key}", type=int, default=None, help=f"override {key} (full: {value}, quick: {QUICK[key]})")
    p.add_argument("--no-probes", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc settings as they are")
    p.add_argument("--only", action="append", default=[], help="accepted for run_all.py (always both)")
    p.add_argument("--in-ref-env", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe", choices=("memory",), help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    refcode.add_arguments(p)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Optional[Sequence[str]] = None, command: Optional[str] = None) -> int:
    args = parse_args(argv)
    if not args.in_ref_env:
        try:
            refcode.checkout("E-3DSNN", args)
            python = refcode.reference_python(args, ["spconv"])
        except refcode.RefUnavailable as exc:
            print(f"reference unavailable: {exc}")
            common.write_json(NAME, {"benchmark": NAME, "quick": bool(args.quick), "skipped": {"reference": str(exc)},
                                     "command": command or common.command_line(), "cases": {},
                                     "machine": common.machine_info(not args.no_malloc_tuning)})
            return 0
        return refcode.rerun_under(python, [str(SCRIPT), *(sys.argv[1:] if argv is None else list(argv))])
    if args.probe:
        probe(args)
        return 0
    base = {"benchmark": NAME, "title": "E-3DSNN-T forward (CPU, one thread): spikelib vs the authors' code on spconv",
            "quick": bool(args.quick),
            "command": command or common.command_line([a for a in sys.argv if a != "--in-ref-env"]),
            "machine": common.machine_info(not args.no_malloc_tuning),
            "config": {"B": args.B, "points": args.points, "model": CONFIG_T, "threads": 1,
                       "reference": f"bollossom/E-3DSNN@{refcode.REPOS['E-3DSNN'][1][:12]}",
                       "spconv": common.package_version("spconv")}}
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
