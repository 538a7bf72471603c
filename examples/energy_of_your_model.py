"""The energy of your own model: count its operations during a real evaluation pass and price them.

Any network built from declared layers is counted exactly, layer by layer (synaptic operations triggered by spikes,
MACs of real-valued inputs, neuron updates, memory accesses), and priced with cited energy models (Horowitz 45 nm,
Loihi), next to the equivalent ANN. The report is written as JSON, Markdown, HTML and (with matplotlib) PNG plots.

    python examples/energy_of_your_model.py --out energy/
"""

import argparse
from pathlib import Path

import torch
from torch import nn

import spikelib
from spikelib import encoders
from spikelib.hardware.energy import ann_baseline, estimate_energy, measure, write_report
from spikelib.layers import Sequential


class MyNet(nn.Module):
    """A researcher's own network: a conv stem, a residual sum written as arithmetic, a leaky readout."""

    def __init__(self, channels: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels),
                               spikelib.LIF(tau=2.0), nn.MaxPool2d(2), nn.Flatten())
        features = channels * 16
        self.body = nn.Linear(features, features)
        self.lif = spikelib.LIF(tau=2.0)
        self.merge = spikelib.LIF(tau=2.0, v_threshold=0.5)
        self.head = nn.Linear(features, classes)
        self.readout = spikelib.neurons.LeakyIntegrator(tau=4.0)

    def forward(self, x):
        h = self.stem(x)                     # [T, B, features] spikes
        h = self.merge(h + self.lif(self.body(h)))   # a residual connection into a neuron: spikes again
        return self.readout(self.head(h))    # membrane [T, B, classes]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("energy"), help="report folder")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="time steps")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    parser.add_argument("--tiny", action="store_true", help="a short run (used by the test suite)")
    args = parser.parse_args(argv)
    n_batches, T = (2, 6) if args.tiny else (args.batches, args.steps)

    torch.manual_seed(0)
    model = MyNet().eval()
    images = [torch.rand(4, 1, 8, 8) for _ in range(n_batches)]
    batches = [encoders.rate(img, num_steps=T) for img in images]     # [T, B, 1, 8, 8] spikes each

    counts = measure(model, batches, prepare=lambda x: (x, x.shape[1]))
    snn = estimate_energy(counts, "horowitz45")
    loihi = estimate_energy(counts, "loihi")
    ann = ann_baseline(counts, "horowitz45", profile="fp32", repeats=T)
    files = write_report(args.out, counts, [snn, loihi, ann], plots=not args.no_plots)

    for layer in counts.layers:
        print(f"{layer.name:>8} {layer.kind:<8} SOPs {layer.sops:>8} MACs {layer.macs:>8}")
    print(f"per sample: SNN {snn.per_sample_pj / 1e3:.1f} nJ (45 nm), {loihi.per_sample_pj / 1e3:.1f} nJ (Loihi); "
          f"ANN fp32 {ann.per_sample_pj / 1e3:.1f} nJ. Report: {files['energy.md']}")
    return {"counts": counts, "snn": snn, "loihi": loihi, "ann": ann, "files": files}


if __name__ == "__main__":
    main()
