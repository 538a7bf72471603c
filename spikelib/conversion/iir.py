"""IIR-SNN end to end: train the ANN, convert it, retrain the SNN at ``T = 5, 3, 2, 1`` (each stage from the
previous stage's best weights), report accuracy and energy per inference at every ``T`` beside the ANN.

Chowdhury, Rathi, Roy, "One Timestep is All You Need: Training Spiking Neural Networks with Ultra Low Latency"
(reference code SayeedChowdhury/IIR-SNN: ``ann_bn.py`` trains the ANN, ``absorb_bn.py`` folds batch norm,
``snncifar_bnfused.py`` balances thresholds and retrains at one ``T`` per run, the next run starting from the previous
checkpoint). Here one recipe file drives the whole pipeline in one run folder::

    spikelib iir configs/iir/digits.yaml --run-dir runs/iir-digits   [--resume]
    python -m spikelib.conversion.iir configs/iir/digits.yaml --run-dir runs/iir-digits   (the same)

Recipe sections (YAML; see configs/iir/*.yaml):

``data``        the trainer's ``data`` section (shared by every part).
``train``       the trainer's ``train`` section shared by every part (seed, device, ...).
``ann``         ``model``, ``optim``, ``schedule``, ``loss``, ``train`` (epochs, ...) of the ANN run.
``conversion``  ``percentile`` (90), ``method`` (percentile | max), ``steps`` (500), ``batch_size`` (512, drawn from
                the images the ANN trained on, without the validation split, with a seeded choice), ``scale`` (1), ``per_neuron`` (false), ``leak`` (1),
                ``eval_timesteps`` (the ``T`` at which the converted network is evaluated before retraining).
``snn``         ``model`` (the spiking twin's registry entry: its structure must equal the converted network's; only
                the scratch baseline uses its initial weights), ``optim``, ``schedule``, ``loss``, ``train`` and
                ``stages`` (e.g. ``{timesteps: [5, 3, 2, 1], epochs: 10}``) of the IIR retraining.
``scratch``     (optional) the baseline: the same SNN trained directly at ``timesteps`` from its initialisation, with
                ``epochs`` and optionally its own ``model`` arguments (merged over ``snn.model``'s, e.g. the initial
                ``v_threshold``), ``optim`` / ``schedule`` (default: those of ``snn``).
``energy``      ``batches`` (test batches measured per ``T``), ``model`` (energy data, default horowitz45).

Run folder: ``ann/``, ``snn/`` and ``scratch/`` are trainer runs (resumable each: a run killed anywhere, also in the
middle of a stage, continues with ``--resume`` to the result of an uninterrupted run), ``conversion.json`` (thresholds,
accuracy of the converted network at every ``eval_timesteps``), ``converted.pt``, ``result.json`` and ``summary.md``
(the table).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from spikelib._atomic import atomic_write_text
from spikelib.conversion.convert import convert
from spikelib.conversion.thresholds import neuron_thresholds
from spikelib.training import (CheckpointError, ConfigError, DatasetBundle, RunLockedError, Trainer,
                               TrainingDivergedError, TrainingInterrupted, build_datasets, parse_config)
from spikelib.training.build import DEFAULT_VAL_FRACTION, seed_everything, split_train_val
from spikelib.training.checkpoint import load_checkpoint, save_checkpoint
from spikelib.training.config import read_yaml
from spikelib.training.evaluation import evaluate_loader
from spikelib.training.losses import build_loss
from spikelib.training.metrics import METRICS

logger = logging.getLogger(__name__)

__all__ = ["run_iir", "load_recipe", "main", "RECIPE_SECTIONS"]

RECIPE_SECTIONS = ("data", "train", "ann", "conversion", "snn", "scratch", "energy")
_CONVERSION = {"percentile": 90.0, "method": "percentile", "steps": 500, "batch_size": 512, "scale": 1.0,
               "per_neuron": False, "leak": 1.0, "eval_timesteps": [1, 2, 3, 5, 10, 20, 50, 100]}
_ENERGY = {"batches": 4, "model": "horowitz45"}
_RUN_KEYS = ("model", "optim", "schedule", "loss", "train", "stages")


def _section(raw: Mapping[str, Any], name: str, allowed: Sequence[str]) -> Dict[str, Any]:
    body = raw.get(name) or {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {type(body).__name__}")
    for key in body:
        if key not in allowed:
            raise ConfigError(f"{name}.{key}: unknown key; known: {', '.join(allowed)}")
    return dict(body)


def _run_config(raw: Mapping[str, Any], part: Mapping[str, Any], where: str, model: bool = True):
    train = {**(raw.get("train") or {}), **(part.get("train") or {})}
    doc = {"data": copy.deepcopy(dict(raw["data"])), "train": train,
           **{k: copy.deepcopy(part[k]) for k in ("model", "optim", "schedule", "loss", "stages") if k in part}}
    if not model:
        doc.pop("model", None)
    try:
        return parse_config(doc, require=("data", "model") if model else ("data",))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_recipe(source: Union[str, Path, Mapping[str, Any]]) -> Dict[str, Any]:
    """Read and check a recipe (a YAML file or a mapping); returns the parsed parts (module docstring)."""
    raw = read_yaml(source) if isinstance(source, (str, Path)) else copy.deepcopy(dict(source))
    for key in raw:
        if key not in RECIPE_SECTIONS:
            raise ConfigError(f"{key}: unknown section; a recipe has {', '.join(RECIPE_SECTIONS)}")
    for key in ("data", "ann", "snn"):
        if key not in raw:
            raise ConfigError(f"{key}: required section is missing")
    ann = _section(raw, "ann", ("model", "optim", "schedule", "loss", "train"))
    snn = _section(raw, "snn", _RUN_KEYS)
    if "stages" not in snn:
        raise ConfigError("snn.stages: required (e.g. {timesteps: [5, 3, 2, 1], epochs: 10})")
    conversion = {**_CONVERSION, **_section(raw, "conversion", tuple(_CONVERSION))}
    energy = {**_ENERGY, **_section(raw, "energy", tuple(_ENERGY))}
    recipe = {"raw": raw, "ann": _run_config(raw, ann, "ann"), "snn": _run_config(raw, snn, "snn"),
              "conversion": conversion, "energy": energy, "scratch": None}
    stages = recipe["snn"].stages or []
    if not stages or any(s.timesteps is None for s in stages):
        raise ConfigError("snn.stages: every stage needs its timesteps")
    if "scratch" in raw and raw["scratch"] is not None:
        sc = _section(raw, "scratch", ("timesteps", "epochs", "model", "optim", "schedule", "loss", "train"))
        for key in ("timesteps", "epochs"):
            v = sc.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"scratch.{key}: expected an integer >= 1, got {v!r}")
        part = {"model": {**snn["model"], **(sc.get("model") or {})}, "optim": sc.get("optim", snn.get("optim")),
                "schedule": sc.get("schedule", snn.get("schedule")), "loss": sc.get("loss", snn.get("loss")),
                "train": {**(snn.get("train") or {}), **(sc.get("train") or {}), "epochs": sc["epochs"]}}
        recipe["scratch"] = (_run_config(raw, {k: v for k, v in part.items() if v is not None}, "scratch"),
                             sc["timesteps"])
    return recipe


def _snn_model(run, timesteps: int) -> nn.Module:
    from spikelib.models import get_model

    args = dict(run.model.args)
    args["timesteps"] = timesteps
    try:
        return get_model(run.model.name, **args)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"snn.model: {run.model.name!r} rejected its arguments: {exc}") from exc


def _trainer(run, folder: Path, bundle: DatasetBundle, model: nn.Module, resume: bool, progress: Optional[bool],
             callbacks: Sequence[Any] = ()) -> Trainer:
    again = resume and (folder / "last.pt").is_file()
    return Trainer(run, folder, resume=again, model=model, datasets=bundle, progress=progress, callbacks=callbacks)


def _finished(folder: Path) -> Optional[Dict[str, Any]]:
    path = folder / "result.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _load_best(model: nn.Module, path: Path) -> nn.Module:
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def _calibration_batch(bundle: DatasetBundle, run, size: int, seed: int) -> torch.Tensor:
    """``size`` images of the training split the trainer uses (never validation images), a seeded choice."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"conversion.batch_size: expected an integer >= 1, got {size!r}")
    fraction = run.data.val_fraction
    if fraction is None and bundle.val is not None:
        train = bundle.train
    else:
        train, _ = split_train_val(bundle.train, DEFAULT_VAL_FRACTION if fraction is None else fraction,
                                   run.train.seed)
    n = len(train)
    gen = torch.Generator().manual_seed(seed + 104729)
    idx = torch.randperm(n, generator=gen)[:min(size, n)].tolist()
    state = torch.get_rng_state()
    torch.manual_seed(seed + 1)  # augmentations draw from the global generator: a fixed batch for a fixed seed
    try:
        return torch.stack([train[i][0] for i in idx])
    finally:
        torch.set_rng_state(state)


def _accuracy(model: nn.Module, loader: Any, device: torch.device) -> float:
    metrics = evaluate_loader(model, loader, loss=build_loss("cross_entropy", {}), metrics={"acc": METRICS["acc"]},
                              device=device, layout="static")
    return float(metrics["acc"])


def _energy(model: nn.Module, loader: Any, batches: int, energy_model: str, device: torch.device) -> Dict[str, float]:
    from spikelib.hardware.energy import ann_baseline, estimate_energy, measure

    counts = measure(model, ((x.to(device), y) for x, y in loader), max_batches=batches)
    n = counts.samples
    snn = estimate_energy(counts, energy_model).total_pj * 1e-6 / n
    ann = ann_baseline(counts).total_pj * 1e-6 / n
    return {"samples": n, "sops_per_inference": counts.total("sops") / n,
            "macs_per_inference": counts.total("macs") / n,
            "spikes_per_inference": counts.total("out_spikes") / n,
            # the same layers run densely at every step (T times the ANN: see ann_per_inference)
            "ann_macs_per_inference": counts.total("dense_macs") / n, "energy_uj_per_inference": snn,
            "ann_energy_uj_per_inference": ann}


def ann_per_inference(result: Mapping[str, Any]) -> Tuple[float, float]:
    """(MACs, energy in uJ) of one inference of the ANN: the dense equivalent the energy counter reports for an SNN
    stage (``ann_macs_per_inference``: its layers run densely at every one of its ``T`` steps), divided by ``T``."""
    first = result["iir"][0] if result.get("iir") else {}
    t = max(1, int(first.get("timesteps", 1)))
    return first.get("ann_macs_per_inference", 0.0) / t, first.get("ann_energy_uj_per_inference", 0.0) / t


def run_iir(source: Union[str, Path, Mapping[str, Any]], run_dir: Union[str, Path], *, resume: bool = False,
            progress: Optional[bool] = None, snn_callbacks: Sequence[Any] = ()) -> Dict[str, Any]:
    """Run the recipe ``source`` into ``run_dir`` (module docstring); returns the result (also ``result.json``).

    Args:
        resume: continue an interrupted run (each part resumes from its ``last.pt``; finished parts are read back).
        progress: show progress bars (default: the recipe's ``train.progress``, on a terminal only).
        snn_callbacks: extra trainer callbacks of the IIR retraining (tests use them to interrupt a stage).
    """
    recipe = load_recipe(source)
    run_dir = Path(run_dir)
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run folder {run_dir} is not empty; pass --resume to continue it or choose a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    ann_run, snn_run, conv = recipe["ann"], recipe["snn"], recipe["conversion"]
    seed = ann_run.train.seed
    bundle = build_datasets(ann_run.data.dataset, seed, **ann_run.data.args)
    if bundle.info.get("layout") != "static":
        raise ConfigError(f"data.dataset {ann_run.data.dataset!r}: the IIR recipe needs static images "
                          f"(info['layout'] == 'static')")

    # 1. the ANN
    seed_everything(seed)
    from spikelib.models import get_model

    ann = get_model(ann_run.model.name, **ann_run.model.args)
    ann_folder = run_dir / "ann"
    done = _finished(ann_folder) if resume else None
    if done is None:
        trainer = _trainer(ann_run, ann_folder, bundle, ann, resume, progress)
        ann_result = trainer.fit()
        ann = trainer.model
        device = trainer.device
    else:
        ann_result = done
        device = torch.device("cuda" if ann_run.train.device != "cpu" and torch.cuda.is_available() else "cpu")
        ann = _load_best(ann, ann_folder / "best.pt").to(device)
    ann.eval()

    # 2. conversion (deterministic given the ANN and the seed; kept in converted.pt)
    first_t = snn_run.stages[0].timesteps
    converted_path = run_dir / "converted.pt"
    test_loader = torch.utils.data.DataLoader(bundle.test, batch_size=ann_run.data.eval_batch_size)
    if converted_path.is_file():
        snn = _snn_model(snn_run, first_t).to(device)
        _load_best(snn, converted_path)
        conversion = json.loads((run_dir / "conversion.json").read_text(encoding="utf-8"))
    else:
        x = _calibration_batch(bundle, ann_run, conv["batch_size"], seed).to(device)
        snn = convert(ann, x, timesteps=first_t, percentile=conv["percentile"], method=conv["method"],
                      steps=conv["steps"], scale=conv["scale"], per_neuron=conv["per_neuron"], leak=conv["leak"])
        twin = _snn_model(snn_run, first_t)
        if {k: v.shape for k, v in twin.state_dict().items()} != {k: v.shape for k, v in snn.state_dict().items()}:
            raise ConfigError(f"snn.model: {snn_run.model.name!r} does not have the structure of the converted "
                              f"{ann_run.model.name!r} (same layers, names and shapes)")
        accuracy = {}
        for T in conv["eval_timesteps"]:
            snn.set_timesteps(int(T))
            accuracy[str(T)] = _accuracy(snn, test_loader, device)
            logger.info("converted SNN, T = %d: test accuracy %.4f", T, accuracy[str(T)])
        snn.set_timesteps(first_t)
        conversion = {**{k: v for k, v in conv.items()}, "calibration_samples": int(x.shape[0]),
                      "thresholds": neuron_thresholds(snn), "test_acc_by_T": accuracy}
        atomic_write_text(run_dir / "conversion.json", json.dumps(conversion, indent=2) + "\n")
        save_checkpoint(converted_path, {"model": snn.state_dict(), "model_name": snn_run.model.name,
                                         "config": snn_run.to_dict(), "conversion": conversion})

    # 3. IIR retraining, T = 5 -> 3 -> 2 -> 1 (the trainer's stages)
    snn_folder = run_dir / "snn"
    done = _finished(snn_folder) if resume else None
    snn_result = done if done is not None else _trainer(snn_run, snn_folder, bundle, snn, resume, progress,
                                                         snn_callbacks).fit()
    rows: List[Dict[str, Any]] = []
    energy = recipe["energy"]
    for stage in snn_result["stages"]:
        model = _load_best(_snn_model(snn_run, stage["timesteps"]).to(device), snn_folder / f"best_{stage['name']}.pt")
        rows.append({"timesteps": stage["timesteps"], "test_acc": stage["test"]["acc"],
                     "val_acc": stage.get("val", {}).get("acc"),
                     **_energy(model, test_loader, energy["batches"], energy["model"], device)})

    # 4. the baseline: the same SNN at T directly from scratch
    scratch = None
    if recipe["scratch"] is not None:
        sc_run, sc_t = recipe["scratch"]
        sc_folder = run_dir / "scratch"
        seed_everything(sc_run.train.seed)
        model = _snn_model(sc_run, sc_t)
        done = _finished(sc_folder) if resume else None
        sc_result = done if done is not None else _trainer(sc_run, sc_folder, bundle, model, resume, progress).fit()
        model = _load_best(_snn_model(sc_run, sc_t).to(device), sc_folder / "best.pt")
        scratch = {"timesteps": sc_t, "epochs": sc_run.train.epochs, "test_acc": sc_result["test"]["acc"],
                   **_energy(model, test_loader, energy["batches"], energy["model"], device)}

    result = {"ann": {"test_acc": ann_result["test"]["acc"], "val_acc": ann_result.get("val", {}).get("acc"),
                      "model": ann_run.model.name}, "conversion": conversion, "iir": rows, "scratch": scratch,
              "seed": seed, "dataset": ann_run.data.dataset}
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(run_dir / "summary.md", summary_table(result))
    return result


def summary_table(result: Mapping[str, Any]) -> str:
    """The Markdown table of a result: ANN, converted SNN, IIR stages and the scratch baseline."""
    conv = result["conversion"]["test_acc_by_T"]
    lines = [f"IIR-SNN on {result['dataset']} (seed {result['seed']}): test accuracy and energy per inference",
             "",
             "| network | T | test acc. | converted, no retraining | SOPs / inf. | MACs / inf. | energy / inf. (uJ) |",
             "|---|---|---|---|---|---|---|"]
    ann = result["ann"]
    macs, energy = ann_per_inference(result)
    lines.append(f"| ANN ({ann['model']}) | - | {100 * ann['test_acc']:.2f}% | - | 0 | {macs:.3g} | {energy:.3g} |")
    for row in result["iir"]:
        c = conv.get(str(row["timesteps"]))
        lines.append(f"| IIR SNN | {row['timesteps']} | {100 * row['test_acc']:.2f}% | "
                     f"{'-' if c is None else f'{100 * c:.2f}%'} | {row['sops_per_inference']:.3g} | "
                     f"{row['macs_per_inference']:.3g} | {row['energy_uj_per_inference']:.3g} |")
    sc = result.get("scratch")
    if sc:
        lines.append(f"| SNN from scratch ({sc['epochs']} epochs) | {sc['timesteps']} | {100 * sc['test_acc']:.2f}% | "
                     f"- | {sc['sops_per_inference']:.3g} | {sc['macs_per_inference']:.3g} | "
                     f"{sc['energy_uj_per_inference']:.3g} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m spikelib.conversion.iir RECIPE --run-dir DIR [--resume]``: run and print the table."""
    parser = argparse.ArgumentParser(prog="python -m spikelib.conversion.iir",
                                     description="IIR-SNN: ANN -> conversion -> SNN retrained at T = 5, 3, 2, 1")
    parser.add_argument("recipe", help="recipe YAML (configs/iir/*.yaml)")
    parser.add_argument("--run-dir", required=True, help="run folder (new, or an interrupted run with --resume)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = run_iir(args.recipe, args.run_dir, resume=args.resume,
                         progress=False if args.no_progress else None)
    except (ConfigError, CheckpointError, RunLockedError, TrainingDivergedError, FileNotFoundError,
            ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        print(f"error: {exc} (continue with --resume)", file=sys.stderr)
        return 2
    print(summary_table(result), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
