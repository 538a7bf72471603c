"""IIR-SNN on scikit-learn's digits, end to end, for one or more seeds: ``results/iir_digits.json``.

    python benchmarks/bench_iir_digits.py                  # seed 0 (about 10 minutes on 2 cores)
    python benchmarks/bench_iir_digits.py --seeds 0 1 2    # the spread over seeds (IIR at T = 1 vs from scratch)

Each seed runs ``configs/iir/digits.yaml`` (:func:`spikelib.conversion.iir.run_iir`) with ``train.seed`` set: the ANN,
its conversion, retraining at T = 5, 3, 2, 1 (each stage from the previous stage's best) and the same SNN trained
directly at T = 1 from scratch for as many epochs as all stages together. The result file keeps the first seed's
full result (the table of README.md) and every seed's test accuracies, with mean and spread, so that the comparison
of IIR at T = 1 with the from-scratch baseline is read against the seed-to-seed noise.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import common

RECIPE = common.REPO_ROOT / "configs" / "iir" / "digits.yaml"


def _accuracies(result: Dict[str, Any]) -> Dict[str, float]:
    out = {"ann": result["ann"]["test_acc"]}
    for block in result["iir"]:
        out[f"iir_T{block['timesteps']}"] = block["test_acc"]
    if result.get("scratch"):
        out[f"scratch_T{result['scratch']['timesteps']}"] = result["scratch"]["test_acc"]
    return out


def _spread(per_seed: List[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    keys = per_seed[0].keys()
    return {k: {"mean": statistics.fmean(s[k] for s in per_seed),
                "stdev": statistics.stdev(s[k] for s in per_seed) if len(per_seed) > 1 else 0.0,
                "min": min(s[k] for s in per_seed), "max": max(s[k] for s in per_seed)} for k in keys}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed of each run (default 0)")
    p.add_argument("--recipe", type=Path, default=RECIPE, help=f"IIR recipe (default {RECIPE.name})")
    p.add_argument("--run-root", type=Path, default=None, help="where the run folders go (default: a temporary one)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from spikelib.conversion.iir import run_iir
    from spikelib.training.config import read_yaml

    machine = common.machine_info(tuning_requested=False)
    root = args.run_root or Path(tempfile.mkdtemp(prefix="spikelib-iir-digits-"))
    results: List[Dict[str, Any]] = []
    for seed in args.seeds:
        raw = read_yaml(args.recipe)
        raw.setdefault("train", {})["seed"] = seed
        print(f"seed {seed}: {args.recipe} -> {root / f'seed{seed}'} (load {common.loadavg()})", flush=True)
        result = run_iir(raw, root / f"seed{seed}", progress=False)
        results.append(result)
        print(f"  {_accuracies(result)}", flush=True)
    per_seed = [dict(seed=s, **_accuracies(r)) for s, r in zip(args.seeds, results)]
    payload = {
        "benchmark": "iir_digits",
        "command": common.command_line(argv),
        "what": ("IIR-SNN on scikit-learn's digits (1,347 train incl. 135 validation, 450 test, 8x8): ANN "
                 "(vgg_tiny_ann, 60 epochs), conversion (90th percentile, 500 steps, 512 training images), retraining "
                 "at T = 5, 3, 2, 1 (10 epochs each, each stage from the previous stage's best by validation loss), "
                 "and the same SNN trained directly at T = 1 for 40 epochs (initial threshold 0.4, the reference's "
                 "default for training from scratch). Test accuracy of the best model of every part; energy per "
                 "inference: Horowitz 45 nm, common method, whole test split."),
        "seed": args.seeds[0],
        "seeds": list(args.seeds),
        "machine": machine,
        "result": results[0],
        "per_seed": per_seed,
        "spread": _spread([{k: v for k, v in s.items() if k != "seed"} for s in per_seed]),
        "date_utc": machine["date_utc"],
    }
    print(f"wrote {common.write_json('iir_digits', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
