"""Deploy a trained network to Loihi: quantise to fixed point, simulate bit-exactly, export netx HDF5, run Lava.

A small LIF network is trained on a toy task, quantised to Loihi's integer arithmetic (with a report of what was
rounded), simulated with spikelib's bit-accurate simulator (Lava's CUBA LIF, fixed point), compared with the float
model, and written as a lava-dl netx HDF5 file. With ``--lava`` (and Lava installed: scripts/install_lava.sh) the same
file runs in Lava and is compared with the simulator bit for bit.

    python examples/loihi_deployment.py --out net.h5 [--lava]
"""

import argparse
from pathlib import Path

import torch
from torch import nn

import spikelib
from spikelib import encoders, losses
from spikelib.hardware.loihi import export_netx, load_netx, simulate
from spikelib.hardware.loihi.quantize import compare_float_fixed, quantize


def train(T: int, steps: int):
    torch.manual_seed(0)
    classes, inputs = 4, 32
    prototypes = torch.rand(classes, inputs)

    def batch(n):
        y = torch.randint(0, classes, (n,))
        return encoders.rate(prototypes[y], num_steps=T), y

    # Loihi runs LIF layers with a hard reset to 0 and one tau / threshold per layer.
    net = nn.Sequential(nn.Linear(inputs, 48), spikelib.LIF(tau=4.0), nn.Linear(48, classes), spikelib.LIF(tau=4.0))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        x, y = batch(32)
        loss = losses.count_cross_entropy(net(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.eval(), batch


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("net.h5"), help="the netx file to write")
    parser.add_argument("--steps", type=int, default=30, help="time steps per sample")
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--lava", action="store_true", help="also run the file in Lava and compare bit for bit")
    parser.add_argument("--tiny", action="store_true", help="a short run (used by the test suite)")
    args = parser.parse_args(argv)
    T, train_steps = (15, 30) if args.tiny else (args.steps, args.train_steps)

    net, batch = train(T, train_steps)
    loihi, report = quantize(net)                                  # integer weights, decays, thresholds
    print(report.summary())
    path = export_netx(loihi, args.out)
    back = load_netx(path)                                         # what the chip (or Lava) reads

    x, y = batch(64)
    scores = compare_float_fixed(net, back, [(x.transpose(0, 1), y)])   # batches are [B, T, C] there
    sim = simulate(back, x[:, :1])                                  # one sample, bit-exact, with u/v traces
    result = {"path": path, "report": report, **scores, "spikes_per_layer": [int(s.sum()) for s in sim.spikes]}
    if args.lava:
        from spikelib.hardware.loihi.lava_runner import lava_available, run_lava
        if not lava_available():
            raise SystemExit("Lava is not installed: bash scripts/install_lava.sh .venv/bin/python")
        got = run_lava(path, x[:, :1])
        result["lava_bit_exact"] = all(torch.equal(a, b) for name in ("spikes", "u", "v")
                                       for a, b in zip(getattr(sim, name), getattr(got, name)))
    print(f"float accuracy {scores['float_acc']:.1%}, fixed point {scores['fixed_acc']:.1%}, "
          f"agreement {scores['agreement']:.1%} on {scores['n']} samples; netx file {path}"
          + (f"; Lava bit-exact: {result['lava_bit_exact']}" if args.lava else ""))
    return result


if __name__ == "__main__":
    main()
