"""Benchmark: images/s of the spiking transformers on CPU, forward (inference) and one training step.

Models (from ``spikelib.models.get_model``): the tiny CI configurations ``meta_spikeformer_tiny_test`` and
``maxformer_tiny_test`` (``T = 2``, ``img_tiny`` x ``img_tiny`` images, batch ``B_tiny``) and the smallest reference
sizes ``meta_spikeformer_8_384`` and ``maxformer_10_384`` (the references' default ``T = 1``, 1000 classes, images
``img_small`` x ``img_small``, not 224: a CPU budget; batch ``B_small``). Cases, per model:

* ``<model>/forward``: eval mode, ``torch.no_grad()``.
* ``<model>/train_step``: train mode, forward + cross-entropy + backward + Adam step.

Each row has the median/min/max seconds per call (interleaved rounds, disturbed rounds dropped, as in every spikelib
benchmark) and ``images_per_s = batch / median_s``. Run ``python benchmarks/bench_transformers.py`` (``--quick``
for a smoke test); writes ``results/transformers_cpu.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, Optional, Sequence

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import torch  # noqa: E402

from spikelib.models import get_model  # noqa: E402

NAME = "transformers_cpu"
FULL = {"B_tiny": 8, "img_tiny": 32, "B_small": 2, "img_small": 64, "warmup": 2, "repeats": 11}
QUICK = {"B_tiny": 2, "img_tiny": 32, "B_small": 1, "img_small": 32, "warmup": 1, "repeats": 2}
MODELS = {"meta_spikeformer_tiny_test": "tiny", "maxformer_tiny_test": "tiny",
          "meta_spikeformer_8_384": "small", "maxformer_10_384": "small"}


def _calls(args: argparse.Namespace, name: str) -> tuple[Dict[str, Callable[[], Any]], Dict[str, Any]]:
    size = MODELS[name]
    B, img = (args.B_tiny, args.img_tiny) if size == "tiny" else (args.B_small, args.img_small)
    torch.manual_seed(0)
    model = get_model(name)
    x = torch.rand(B, model.in_channels, img, img, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, model.num_classes, (B,), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    info = {"batch": B, "image": [img, img], "T": model.T, "parameters": sum(p.numel() for p in model.parameters())}
    return {"forward": forward, "train_step": train_step}, info


def run(args: argparse.Namespace) -> Dict[str, Any]:
    monitor = common.Monitor()
    cases: Dict[str, Any] = {}
    for name in MODELS:
        calls, info = _calls(args, name)
        for kind, fn in calls.items():
            case = f"{name}/{kind}"
            series = common.measure_interleaved({"spikelib": fn}, monitor, args.warmup, args.repeats,
                                                label=f"{case}: ")
            rows = {impl: common.summarize(s) for impl, s in series.items()}
            for r in rows.values():
                if r.get("median_s"):
                    r["images_per_s"] = info["batch"] / r["median_s"]
            cases[case] = {"rows": rows, "model": info}
            r = rows["spikelib"]
            print(f"{case:40s} median {common.fmt_median(r)} ms  "
                  f"({r.get('images_per_s', float('nan')):.1f} images/s, B={info['batch']}, "
                  f"{info['image'][0]}x{info['image'][1]}, T={info['T']})", flush=True)
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
