"""``spikelib energy CHECKPOINT --data ... --model horowitz45|loihi|FILE --out DIR`` and the demo's energy stage.

The command loads a training checkpoint (:mod:`spikelib.training.checkpoint`: ``model_name``, ``config``, ``model``),
rebuilds the network from the checkpoint's configuration, runs an evaluation pass over the data while counting
operations (:func:`spikelib.hardware.energy.counting.measure`), and writes the report (:mod:`.report`) with the SNN
estimate of the chosen model and method, the other method, and the equivalent ANN in fp32 and int8 (horowitz45)
under both methods.

``--data``: ``checkpoint`` (default: the dataset of the checkpoint's configuration), a dataset name of
``spikelib.training.datasets``, or a ``.pt`` file holding a tensor ``x`` ``[N, T, C]`` or a dict with ``x`` (and
optionally ``y``), loaded with ``weights_only=True``; the network is built from the checkpoint's configuration and
its saved data facts (``info``: channels, classes). Loader batches are batch first and become time first for the
model (``[B, T, C] -> [T, B, C]``, ``[B, T, C, H, W] -> [T, B, C, H, W]``; a static image batch ``[B, C, H, W]`` is
passed as it is, and the ANN baseline then counts one pass instead of the model's ``T``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from spikelib.cli_common import positive_int
from spikelib.hardware.energy.accounting import METHODS, EnergyEstimate, ann_baseline, estimate_energy
from spikelib.hardware.energy.counters import UnsupportedLayerError
from spikelib.hardware.energy.counting import measure
from spikelib.hardware.energy.models import EnergyModelError, builtin_models, load_energy_model
from spikelib.hardware.energy.report import format_energy, write_report

logger = logging.getLogger(__name__)

__all__ = ["register", "run_energy", "demo_stage", "model_input"]


def model_input(batch: Any) -> Tuple[torch.Tensor, int]:
    """A loader batch ``x`` or ``(x, y)`` -> (model input, number of samples); see the module docstring."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"a batch must be a tensor or an (x, y) pair, got {type(x).__name__}")
    n = int(x.shape[0])
    if x.dim() in (3, 5):
        x = x.transpose(0, 1).contiguous()
    elif x.dim() != 4:
        raise ValueError(f"a batch must be [B, T, C], [B, C, H, W] or [B, T, C, H, W], got {tuple(x.shape)}")
    return x.to(torch.float32), n


def run_energy(model: nn.Module, batches: Iterable[Any], out_dir: Path, *, energy_model: str = "horowitz45",
               profile: Optional[str] = None, method: str = "common", max_batches: Optional[int] = None,
               fold_batchnorm: bool = True, plots: bool = True, compare: Sequence[Tuple[str, str]] = (),
               meta: Optional[Dict[str, Any]] = None, integer_delays: bool = True) -> Dict[str, Any]:
    """Count an evaluation pass and write the report into ``out_dir``; returns a summary dict.

    ``compare``: extra SNN estimates ``(model, method)``; one that cannot be computed (e.g. Loihi with real-valued
    MACs) is listed in the summary's ``skipped`` with the reason (and in the report's notes), not dropped silently.
    ``integer_delays``: evaluate delay layers in their inference form (integer delays, ``rounded_delays``) rather
    than the Gaussian training kernel, which spreads every synapse over all taps (recorded in the report).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    static = {"static": False}

    def prepare(batch: Any) -> Tuple[torch.Tensor, int]:
        x, n = model_input(batch)
        static["static"] = x.dim() == 4
        return x, n

    from spikelib.layers.delay_schedule import delay_layers, rounded_delays

    rounding = [layer for layer in delay_layers(model) if layer.mode == "gaussian"] if integer_delays else []
    if rounding:  # the inference form: each synapse one integer delay (what a chip runs)
        with rounded_delays(model):
            counts = measure(model, batches, max_batches=max_batches, prepare=prepare)
    else:
        counts = measure(model, batches, max_batches=max_batches, prepare=prepare)
    em = load_energy_model(energy_model)
    h45 = load_energy_model("horowitz45")
    other = METHODS[1 - METHODS.index(method)]
    estimates: List[EnergyEstimate] = [estimate_energy(counts, em, method=method, profile=profile,
                                                       fold_batchnorm=fold_batchnorm),
                                       estimate_energy(counts, em, method=other, profile=profile,
                                                       fold_batchnorm=fold_batchnorm)]
    skipped = []
    for name, how in compare:
        try:
            estimates.append(estimate_energy(counts, name, method=how, fold_batchnorm=fold_batchnorm))
        except EnergyModelError as exc:
            skipped.append(f"{name}/{how}: {exc}")
    repeats = int(getattr(model, "T", 1)) if static["static"] else 1
    for how in (method, other):
        for prof in ("fp32", "int8"):
            estimates.append(ann_baseline(counts, h45, profile=prof, method=how, fold_batchnorm=fold_batchnorm,
                                          repeats=repeats))
    models = [em] + [m for m in [h45] + [load_energy_model(n) for n, _ in compare] if m.name != em.name]
    unique = list({m.name: m for m in models}.values())
    info = dict(meta or {})
    if rounding:
        info["delays"] = f"{len(rounding)} delay layer(s) evaluated with integer (rounded) delays"
    if skipped:
        info["skipped estimates"] = "; ".join(skipped)
    files = write_report(out_dir, counts, estimates, unique, meta=info, plots=plots)
    main = estimates[0]
    rates = [c.firing_rate for c in counts.layers if c.firing_rate is not None]
    return {"out_dir": str(out_dir), "files": sorted(str(p) for p in files.values()), "samples": counts.samples,
            "estimates": {e.label: {"total_pJ": e.total_pj, "per_sample_pJ": e.per_sample_pj} for e in estimates},
            "main": main.label, "sops": counts.total("sops"), "macs": counts.total("macs"),
            "mean_firing_rate": (sum(rates) / len(rates)) if rates else None, "skipped": skipped}


# ------------------------------------------------------------------------------------------------------ command
def _data_file(path_text: str) -> Tuple[Any, Dict[str, Any]]:
    """``--data FILE.pt``: a tensor ``x`` ``[N, T, C]`` (or a dict with ``x`` and optionally ``y``)."""
    from spikelib.cli_common import CommandError, read_tensor_file

    path = Path(path_text)
    if path.suffix != ".pt":
        raise CommandError(f"--data must be 'checkpoint', a dataset name or a .pt file, got {path_text!r}")
    obj = read_tensor_file(path_text, "--data")
    x = obj.get("x") if isinstance(obj, dict) else obj
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4, 5):
        raise CommandError(f"--data file {str(path)!r} must hold a tensor x [N, T, C] (or a dict with 'x')")
    y = obj.get("y") if isinstance(obj, dict) else None
    y = torch.zeros(x.shape[0], dtype=torch.long) if y is None else y
    if not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1]:
        raise CommandError(f"--data file {str(path)!r}: y must be a tensor with one label per sample of x")
    return torch.utils.data.TensorDataset(x.float(), y), {"n_channels": int(x.shape[-1])}


def _handler(args: argparse.Namespace) -> int:
    from spikelib.cli_common import CommandError
    from spikelib.training.datasets import build_datasets, list_datasets
    from spikelib.training.run import load_run

    if args.data == "checkpoint":
        run = load_run(args.checkpoint)
        dataset = run.dataset(args.split)
    elif args.data in list_datasets():
        run = load_run(args.checkpoint, build_data=None)
        bundle = build_datasets(args.data, run.config.train.seed)
        dataset = bundle.test if args.split == "test" else bundle.train
    else:
        dataset, facts = _data_file(args.data)
        run = load_run(args.checkpoint, build_data=False, info=None)
        need = run.info.get("n_channels")
        if need is not None and int(need) != facts["n_channels"]:
            raise CommandError(f"--data: {facts['n_channels']} channels per step, the model takes {need}")
    try:
        load_energy_model(args.model)  # a bad model name/file is reported before the evaluation pass
    except EnergyModelError as exc:
        raise CommandError(f"--model: {exc}") from None
    out = Path(args.out) if args.out else Path("runs") / f"energy-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    try:
        summary = run_energy(run.model, loader, out, energy_model=args.model, profile=args.profile,
                             method=args.method, max_batches=args.batches, fold_batchnorm=not args.no_fold_bn,
                             plots=not args.no_plots, integer_delays=not args.gaussian_delays,
                             meta={"checkpoint": str(args.checkpoint), "model": run.model_name, "data": args.data,
                                   "split": args.split})
    except (EnergyModelError, UnsupportedLayerError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    for label, e in summary["estimates"].items():
        print(f"{label:<40} {format_energy(e['per_sample_pJ']):>12} per sample")
    print(f"report: {summary['out_dir']}/energy.html")
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib energy`` to the ``spikelib`` command."""
    p = subparsers.add_parser(
        "energy", help="estimate the energy of a trained network from its measured spike activity",
        description="Run an evaluation pass of a checkpoint's network, count its operations per layer (synaptic "
                    "operations of spikes, MACs of real-valued inputs, neuron updates, memory accesses) and write "
                    "an energy report (energy.json, energy.md, energy.html, PNG plots) with the SNN estimate and "
                    "the equivalent ANN in fp32 and int8.")
    p.add_argument("checkpoint", help="a checkpoint written by spikelib train (best.pt / last.pt)")
    p.add_argument("--data", default="checkpoint",
                   help="'checkpoint' (the checkpoint's dataset, default), a dataset name, or a .pt file with x "
                        "[N, T, C] (and y)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="split of a named dataset")
    p.add_argument("--model", default="horowitz45",
                   help=f"energy model: {' | '.join(builtin_models())} | a YAML/JSON model FILE (default horowitz45)")
    p.add_argument("--profile", default=None, help="profile of the energy model (horowitz45: fp32 (default), int8)")
    p.add_argument("--method", choices=METHODS, default="common",
                   help="common: SOP x E_AC + MAC x E_MAC; memory: also neuron updates and memory traffic")
    p.add_argument("--batches", type=positive_int, default=None, help="evaluate at most this many batches")
    p.add_argument("--batch-size", type=positive_int, default=64, help="evaluation batch size (default 64)")
    p.add_argument("--no-fold-bn", action="store_true", help="charge BatchNorm as MACs instead of folding it")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    p.add_argument("--gaussian-delays", action="store_true",
                   help="count learnable delays in their Gaussian training form (default: rounded integer delays)")
    p.add_argument("--out", default=None, help="output folder (default runs/energy-<timestamp>)")
    p.set_defaults(func=_handler)


# ---------------------------------------------------------------------------------------------------- demo stage
def demo_stage(ctx: Any) -> Dict[str, Any]:
    """The demo's energy stage: report of the trained model on up to 4 test batches into ``<run>/energy/``."""
    summary = run_energy(ctx.model, ctx.loaders["test"], Path(ctx.run_dir) / "energy", max_batches=4,
                         compare=(("loihi", "memory"),), meta={"model": type(ctx.model).__name__, "data": "test"})
    est = summary["estimates"]
    snn = est[summary["main"]]["per_sample_pJ"]
    ann = next(v["per_sample_pJ"] for k, v in est.items() if k.startswith("ANN (horowitz45/fp32"))
    ctx.echo(f"energy: SNN {format_energy(snn)} per sample vs equivalent ANN fp32 {format_energy(ann)} "
             f"(horowitz45, common method); report {summary['out_dir']}/energy.html")
    return summary
