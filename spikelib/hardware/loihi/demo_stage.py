"""The demo's Loihi stage: quantise the trained model, export netx, simulate bit-exactly, run Lava when installed.

``stage(ctx) -> dict`` (see :mod:`spikelib.demo`): quantises ``ctx.model`` (:func:`~spikelib.hardware.loihi.quantize`),
writes ``<run>/loihi/net.h5`` and ``report.json``, checks that the file reads back to the same integers, compares the
float model with the bit-accurate simulation on the first ``LOIHI_TEST_SAMPLES`` test samples (accuracy of each and
agreement of their predictions), runs one sample in Lava (``fixed_pt``) when Lava is installed and checks spikes and
``u``/``v`` bit for bit, and adds the Loihi 2 resource estimate. Binned inputs can hold several events per bin: they
enter the network as graded input spikes (payload = count, netx ``input_message_bits=8``), so float and fixed point see
the same input; the share of bins with more than one event is reported. ``passed`` is False when the netx file does
not read back to the same network or Lava disagrees with the
simulator; ``accuracy_within_tolerance`` says whether the fixed-point accuracy is at most ``ACCURACY_TOLERANCE`` below
the float accuracy on the same inputs (reported, not a failure: the demo's test split can be a few dozen samples).
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict

import torch

__all__ = ["stage", "ACCURACY_TOLERANCE", "LOIHI_TEST_SAMPLES"]

ACCURACY_TOLERANCE = 0.05
LOIHI_TEST_SAMPLES = 128


def _test_batch(ctx, n: int):
    xs, ys, count = [], [], 0
    for x, y in ctx.loaders["test"]:
        xs.append(x)
        ys.append(y)
        count += len(y)
        if count >= n:
            break
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def stage(ctx) -> Dict[str, Any]:
    from spikelib.hardware.loihi.lava_runner import lava_available, run_lava
    from spikelib.hardware.loihi.netx import export_netx, load_netx
    from spikelib.hardware.loihi.quantize import compare_float_fixed, quantize
    from spikelib.hardware.loihi.resources import estimate_resources
    from spikelib.hardware.loihi.simulator import MAX_GRADED_INPUT, simulate
    from spikelib.training.atomic import atomic_write_text

    t0 = time.perf_counter()
    model = ctx.model.to("cpu").eval()
    net, report = quantize(model)
    folder = ctx.run_dir / "loihi"
    folder.mkdir(exist_ok=True)
    path = export_netx(net, folder / "net.h5")
    back = load_netx(path)
    same_file = all(torch.equal(a.weight, b.weight) and a.vth == b.vth for a, b in zip(net.layers, back.layers))
    x, y = _test_batch(ctx, LOIHI_TEST_SAMPLES)
    multi = float((x > 1).float().mean())
    if float(x.max()) > MAX_GRADED_INPUT or bool((x != x.round()).any()) or float(x.min()) < 0:
        raise ValueError(f"demo inputs must be event counts in 0..{MAX_GRADED_INPUT} for Loihi's graded input spikes")
    xb = x.to(torch.get_default_dtype())
    acc = compare_float_fixed(model, back, [(xb, y)])
    result: Dict[str, Any] = {"netx": str(path), "file_round_trip": same_file, "input_bins_over_one_spike": multi,
                              "input_max_count": float(x.max()),
                              **acc, "accuracy_tolerance": ACCURACY_TOLERANCE, "quantization": report.to_dict()}
    lava: Dict[str, Any] = {"installed": lava_available()}
    if lava["installed"]:
        x1 = xb[:1].transpose(0, 1).contiguous()
        x1 = torch.cat([x1, x1.new_zeros((int(net.meta.get("pad_steps", 0)) + len(net.layers), 1, x1.shape[2]))])
        t1 = time.perf_counter()
        ref, got = simulate(back, x1), run_lava(path, x1)
        lava["seconds"] = time.perf_counter() - t1
        lava["bit_exact"] = {name: all(torch.equal(a, b) for a, b in zip(getattr(ref, name), getattr(got, name)))
                             for name in ("spikes", "u", "v")}
        lava["spikes_per_layer"] = [int(s.sum()) for s in ref.spikes]
    result["lava"] = lava
    result["resources"] = estimate_resources(back).to_dict()
    ok_lava = all(lava.get("bit_exact", {}).values()) if lava["installed"] else True
    result["accuracy_within_tolerance"] = bool(acc["fixed_acc"] >= acc["float_acc"] - ACCURACY_TOLERANCE)
    result["passed"] = bool(same_file and ok_lava)
    result["seconds"] = time.perf_counter() - t0
    atomic_write_text(folder / "report.json", json.dumps(result, indent=2) + "\n")
    lava_text = (f"Lava bit-exact on spikes/u/v: {all(lava['bit_exact'].values())}" if lava["installed"]
                 else "Lava not installed (bash scripts/install_lava.sh <python>)")
    ctx.echo(f"loihi: float acc {acc['float_acc']:.1%} vs fixed-point acc {acc['fixed_acc']:.1%} on {acc['n']} test "
             f"samples (agreement {acc['agreement']:.1%}); {lava_text}; "
             f"{result['resources']['total']['cores']} Loihi 2 core(s); {path}")
    return result
