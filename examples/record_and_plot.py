"""Record the spikes and membranes of a network's layers during a pass and plot them.

A small convolutional SNN (``spikelib.layers.Sequential`` folds time into the batch for the convolution) runs on a
rate-coded image; a ``Monitor`` records every neuron layer's spikes and membrane traces without changing what the
network computes, and ``spikelib.plot`` draws a raster per layer, membrane traces and the firing rate of each layer.

    python examples/record_and_plot.py --out plots/          # writes layers.png, membrane.png, rates.png
"""

import argparse
from pathlib import Path

import torch
from torch import nn

import spikelib
from spikelib import encoders, plot
from spikelib.layers import Sequential
from spikelib.monitor import Monitor


def build(channels: int = 4) -> Sequential:
    torch.manual_seed(0)
    net = Sequential(
        nn.Conv2d(1, channels, 3, padding=1), spikelib.LIF(tau=4.0, decay_input=False),   # [T, B, C, 8, 8]
        nn.AvgPool2d(2), nn.Flatten(),                                                     # [T, B, C * 16]
        nn.Linear(channels * 16, 10), spikelib.LIF(tau=4.0, decay_input=False),            # [T, B, 10]
    )
    with torch.no_grad():
        net[4].weight.mul_(2.0)
    return net


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("plots"), help="folder for the PNG files")
    parser.add_argument("--steps", type=int, default=50, help="time steps")
    parser.add_argument("--tiny", action="store_true", help="a short run (used by the test suite)")
    args = parser.parse_args(argv)
    steps = 12 if args.tiny else args.steps
    args.out.mkdir(parents=True, exist_ok=True)

    net = build()
    image = torch.rand(2, 1, 8, 8)                          # [B, C, H, W] intensities in [0, 1]
    x = encoders.rate(image, num_steps=steps)                # [T, B, 1, 8, 8] spikes

    with torch.no_grad():
        reference = net(x)
        with Monitor(net, states=True) as rec:               # every neuron layer, with membranes
            out = net(x)
    assert torch.equal(out, reference)                       # recording does not change the computation

    hidden = rec.trace("1")                                  # Recorded(output=spikes, states=LIFState(v))
    files = {
        "layers": args.out / "layers.png",
        "membrane": args.out / "membrane.png",
        "rates": args.out / "rates.png",
    }
    plot.layers(rec, sample=0).savefig(files["layers"])
    plot.traces(hidden.states.v, neurons=[0, 1, 2], threshold=1.0).savefig(files["membrane"])
    plot.firing_rates(rec).savefig(files["rates"])
    rates = rec.firing_rates()
    for name, rate in rates.items():
        print(f"layer {name}: {rate:.3f} spikes per neuron and step")
    print("wrote", ", ".join(str(p) for p in files.values()))
    return {"rates": rates, "files": files, "hidden_shape": tuple(hidden.output.shape)}


if __name__ == "__main__":
    main()
