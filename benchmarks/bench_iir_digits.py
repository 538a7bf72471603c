"""IIR-SNN on scikit-learn's digits, end to end, for one or more seeds: ``results/iir_digits.json``
(``results/iir_<stem>.json`` for another recipe).

    python benchmarks/bench_iir_digits.py                  # seed 0 (about 10 minutes on 2 cores)
    python benchmarks/bench_iir_digits.py --seeds 0 1 2    # the spread over seeds (IIR at T = 1 vs from scratch)
    python benchmarks/bench_iir_digits.py --recipe configs/iir/digits_deep.yaml --seeds 0 1 2   # 8 spiking layers

Each seed runs the recipe (default ``configs/iir/digits.yaml``; :func:`spikelib.conversion.iir.run_iir`) with
``train.seed`` set: the ANN, its conversion, retraining at T = 5, 3, 2, 1 (each stage from the previous stage's best)
and the same SNN trained directly at T = 1 from scratch for as many epochs as all stages together. The result file
keeps the first seed's full result (the table of README.md) and every seed's test accuracies, with mean and spread, so
that the comparison of IIR at T = 1 with the from-scratch baseline is read against the seed-to-seed noise.
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


def result_name(recipe: Path) -> str:
    """``iir_digits`` for the default recipe, ``iir_<stem>`` for another (``digits_deep.yaml``: ``iir_digits_deep``)."""
    return "iir_digits" if Path(recipe).resolve() == RECIPE.resolve() else f"iir_{Path(recipe).stem}"


def _model_text(model: Dict[str, Any]) -> str:
    cfg = model.get("cfg")
    if cfg is None:
        return str(model.get("name"))
    convs = sum(1 for c in cfg if c != "A")
    hidden = list(model.get("hidden", []))
    return (f"{model.get('name')} cfg {cfg} hidden {hidden}: {convs} convs + {len(hidden) + 1} linears, "
            f"{convs + len(hidden)} spiking layers")


def describe(raw: Dict[str, Any], recipe: Path) -> str:
    """What one run of ``recipe`` does, from the recipe's own values."""
    ann, conv, snn, sc = raw["ann"], raw.get("conversion", {}), raw["snn"], raw.get("scratch")
    stages = snn["stages"]
    text = (f"IIR-SNN on scikit-learn's digits (1,347 train incl. 135 validation, 450 test, 8x8), recipe "
            f"configs/iir/{Path(recipe).name}: ANN ({_model_text(ann['model'])}; {ann['train']['epochs']} epochs), "
            f"conversion ({conv.get('percentile', 90)}th percentile, {conv.get('steps', 500)} steps, "
            f"{conv.get('batch_size', 512)} training images), retraining at T = "
            f"{', '.join(str(t) for t in stages['timesteps'])} ({stages['epochs']} epochs each, Adam lr "
            f"{snn['optim']['lr']:g}, each stage from the previous stage's best by validation loss)")
    if sc:
        th = (sc.get("model") or {}).get("v_threshold", (snn.get("model") or {}).get("v_threshold", 1.0))
        text += (f", and the same SNN trained directly at T = {sc['timesteps']} for {sc['epochs']} epochs (initial "
                 f"threshold {th:g}, the reference's default for training from scratch)")
    return text + (". Test accuracy of the best model of every part; energy per inference: Horowitz 45 nm, common "
                   "method, whole test split.")


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
        "benchmark": result_name(args.recipe),
        "command": common.command_line(argv),
        "what": describe(read_yaml(args.recipe), args.recipe),
        "seed": args.seeds[0],
        "seeds": list(args.seeds),
        "machine": machine,
        "result": results[0],
        "per_seed": per_seed,
        "spread": _spread([{k: v for k, v in s.items() if k != "seed"} for s in per_seed]),
        "date_utc": machine["date_utc"],
    }
    print(f"wrote {common.write_json(payload['benchmark'], payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
