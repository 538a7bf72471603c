"""``spikelib loihi ...``: quantise a trained checkpoint and export it to netx, simulate a netx file bit-exactly (and in
Lava), estimate Loihi 2 resources, and export a checkpoint to NIR.

``spikelib loihi export CHECKPOINT --out net.h5``
    rebuilds the model of a ``spikelib train`` checkpoint, quantises it (:mod:`spikelib.hardware.loihi.quantize`),
    writes the netx file and ``<out>.report.json`` (what was rounded/clipped, resources), and prints a summary.
``spikelib loihi simulate NETX (--input spikes.npy | --random T) [--lava]``
    runs the bit-accurate simulator on input spikes ``[T, C]`` or ``[T, B, C]`` (0/1, or graded counts 0..255; ``.npy``
    or ``.pt``); ``--lava`` also runs Lava and reports whether spikes and ``u``/``v`` agree bit for bit. Prints JSON.
``spikelib loihi resources NETX``
    prints the Loihi 2 resource estimate as JSON.
``spikelib loihi nir CHECKPOINT --out model.nir``
    kept as an alias of ``spikelib nir export`` (:mod:`spikelib.commands.nir`).

Checkpoints are read with :func:`spikelib.training.run.load_run`; expected failures end in one ``error:`` line
(exit status 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

from spikelib.cli_common import CommandError, positive_float, positive_int, read_tensor_file

__all__ = ["register"]


def _load_checkpoint_model(path: str):
    from spikelib.training.run import load_run

    return load_run(path, build_data=None).model


def _write_json(path: Path, payload: Dict[str, Any]) -> None:
    from spikelib.training.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def _export(args: argparse.Namespace) -> int:
    from spikelib.hardware.loihi.extract import UnsupportedLayerError
    from spikelib.hardware.loihi.netx import export_netx
    from spikelib.hardware.loihi.quantize import QuantizationRangeError, quantize
    from spikelib.hardware.loihi.resources import estimate_resources

    model = _load_checkpoint_model(args.checkpoint)
    try:
        net, report = quantize(model, weight_bits=args.weight_bits, clip=args.clip)
    except (UnsupportedLayerError, QuantizationRangeError, ValueError) as exc:
        raise CommandError(f"{args.checkpoint}: {exc}") from None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CommandError(f"--out: folder {out.parent} does not exist")
    export_netx(net, out)
    resources = estimate_resources(net)
    _write_json(out.with_name(out.name + ".report.json"),
                {"quantization": report.to_dict(), "resources": resources.to_dict(), "meta": net.meta})
    print(report.summary())
    print(resources.summary())
    print(f"wrote {out} and {out.name}.report.json")
    return 0


def _load_input(args: argparse.Namespace, n_in: int):
    import torch

    if args.input:
        x = read_tensor_file(args.input, "--input")
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            raise CommandError(f"--input must hold a tensor [T, C] or [T, B, C], got "
                               f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return x[:, None] if x.dim() == 2 else x
    g = torch.Generator().manual_seed(args.seed)
    return (torch.rand(args.random, 1, n_in, generator=g) < args.rate).float()


def _simulate(args: argparse.Namespace) -> int:
    import torch

    from spikelib.hardware.loihi.netx import NetxFormatError, load_netx
    from spikelib.hardware.loihi.simulator import simulate

    try:
        net = load_netx(args.netx)
    except (NetxFormatError, ValueError) as exc:
        raise CommandError(f"{args.netx}: {exc}") from None
    x = _load_input(args, net.input_size)
    try:
        result = simulate(net, x)
    except (ValueError, TypeError) as exc:
        raise CommandError(f"--input: {exc}") from None
    payload: Dict[str, Any] = {"netx": args.netx, "steps": int(x.shape[0]), "batch": int(x.shape[1]),
                               "spikes_per_layer": [int(s.sum()) for s in result.spikes],
                               "output_spike_counts": result.spikes[-1].sum(0).to(torch.int64).tolist()}
    if args.lava:
        from spikelib.hardware.loihi.lava_runner import run_lava

        try:
            lava = run_lava(args.netx, x)
        except (ImportError, RuntimeError, TimeoutError) as exc:  # not installed/patched, LavaError, timeout
            raise CommandError(f"Lava: {exc}") from None
        same = {name: all(torch.equal(a, b) for a, b in zip(getattr(result, name), getattr(lava, name)))
                for name in ("spikes", "u", "v")}
        payload["lava_bit_exact"] = same
        if not all(same.values()):
            print(json.dumps(payload, indent=2))
            return 1
    print(json.dumps(payload, indent=2))
    return 0


def _resources(args: argparse.Namespace) -> int:
    from spikelib.hardware.loihi.netx import NetxFormatError, load_netx
    from spikelib.hardware.loihi.resources import estimate_resources

    try:
        report = estimate_resources(load_netx(args.netx))
    except (NetxFormatError, ValueError) as exc:
        raise CommandError(f"{args.netx}: {exc}") from None
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def _nir(args: argparse.Namespace) -> int:
    from spikelib.commands.nir import _export

    args.input_shape = None
    return _export(args)


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib loihi {export,simulate,resources,nir}``."""
    loihi = subparsers.add_parser("loihi", help="Loihi deployment: quantise/export netx, simulate, resources, NIR",
                                  description=__doc__.split("\n\n")[0])
    sub = loihi.add_subparsers(dest="loihi_command", required=True)
    ex = sub.add_parser("export", help="quantise a checkpoint and write a netx HDF5 file")
    ex.add_argument("checkpoint", help="a `spikelib train` checkpoint (last.pt / best.pt)")
    ex.add_argument("--out", required=True, help="netx file to write (e.g. net.h5)")
    ex.add_argument("--weight-bits", type=int, choices=range(2, 9), default=8, metavar="2..8",
                    help="weight mantissa bits (default 8)")
    ex.add_argument("--clip", action="store_true", help="clip out-of-range values instead of failing")
    ex.set_defaults(func=_export)
    sim = sub.add_parser("simulate", help="bit-accurate simulation of a netx file (optionally also in Lava)")
    sim.add_argument("netx", help="netx HDF5 file")
    src = sim.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="spikes or counts 0..255 [T, C] or [T, B, C] (.npy or torch .pt)")
    src.add_argument("--random", type=positive_int, metavar="T", help="T steps of random input spikes")
    sim.add_argument("--rate", type=positive_float, default=0.1, help="spike probability of --random (default 0.1)")
    sim.add_argument("--seed", type=int, default=0, help="seed of --random")
    sim.add_argument("--lava", action="store_true", help="also run Lava (fixed_pt) and compare bit for bit")
    sim.set_defaults(func=_simulate)
    res = sub.add_parser("resources", help="Loihi 2 resource estimate of a netx file (JSON)")
    res.add_argument("netx", help="netx HDF5 file")
    res.set_defaults(func=_resources)
    nr = sub.add_parser("nir", help="alias of `spikelib nir export`")
    nr.add_argument("checkpoint", help="a `spikelib train` checkpoint")
    nr.add_argument("--out", required=True, help="NIR file to write")
    nr.add_argument("--dt", type=positive_float, default=1e-4, help="seconds per step (default 1e-4)")
    nr.set_defaults(func=_nir)
