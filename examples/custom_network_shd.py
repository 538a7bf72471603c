"""Train your own network on SHD-format data: the Spiking Heidelberg Digits, or the synthetic stand-in written
locally in the same HDF5 layout when no data folder is given.

The network is a custom ``nn.Module`` (a LIF layer, synapses with learnable delays, a leaky readout), the data come
from ``SHDDataset`` (binned to 10 ms frames, 700 -> 140 channels), augmented on the events before binning (an
``event_transform``: here a plain numpy function that drops 10% of the spikes; tonic's transforms work the same way),
and the loss is the mean over time of the readout's cross-entropy (``spikelib.losses.rate_cross_entropy``).

    python examples/custom_network_shd.py --data /path/to/SHD --epochs 20     # the real data set
    python examples/custom_network_shd.py                                      # synthetic SHD-format data
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

import spikelib
from spikelib import losses
from spikelib.data import SHDDataset, write_synthetic_shd
from spikelib.layers import DelayedLinear
from spikelib.neurons import LeakyIntegrator


class MyNet(nn.Module):
    """Linear -> LIF -> delayed synapses -> LIF -> Linear -> leaky readout (membrane [T, B, 20])."""

    def __init__(self, channels: int = 140, hidden: int = 64, classes: int = 20, max_delay: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, hidden)
        self.lif1 = spikelib.LIF(tau=5.0, decay_input=False)
        self.delayed = DelayedLinear(hidden, hidden, max_delay, delays="random")   # fixed random integer delays
        self.lif2 = spikelib.LIF(tau=5.0, decay_input=False)
        self.head = nn.Linear(hidden, classes)
        self.readout = LeakyIntegrator(tau=10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.head(self.lif2(self.delayed(self.lif1(self.fc(x))))))


class DropSpikes:
    """An event transform: drop each spike with probability ``p`` (events in tonic's format: fields t, x, p)."""

    def __init__(self, p: float, seed: int = 0) -> None:
        self.p, self.rng = p, np.random.default_rng(seed)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return events[self.rng.random(events.shape[0]) >= self.p]


def time_first(batch):
    x, y = batch
    return x.transpose(0, 1), y                   # DataLoader gives [B, T, C]; spikelib is time first


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with shd_train.h5 / shd_test.h5")
    parser.add_argument("--out", type=Path, default=Path("runs/custom_shd"), help="where synthetic data go")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="a short run (used by the test suite)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    root = args.data
    if root is None:
        root = args.out / "data"
        n_train, n_test = (120, 40) if args.tiny else (2000, 500)
        write_synthetic_shd(root, n_train=n_train, n_test=n_test, seed=0)
    max_time = 0.3 if args.tiny else 1.0
    common = dict(bin_ms=10.0, max_time=max_time, channels_out=140)
    train_set = SHDDataset(root, "train", event_transform=DropSpikes(0.1), **common)
    test_set = SHDDataset(root, "test", **common)
    train = DataLoader(train_set, batch_size=32, shuffle=True)
    test = DataLoader(test_set, batch_size=64)

    model = MyNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    epochs = 2 if args.tiny else args.epochs
    history = []
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for batch in train:
            x, y = time_first(batch)
            loss = losses.rate_cross_entropy(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, count = total + loss.item() * len(y), count + len(y)
        model.eval()
        correct, seen = 0, 0
        with torch.no_grad():
            for batch in test:
                x, y = time_first(batch)
                correct += int((model(x).mean(0).argmax(1) == y).sum())
                seen += len(y)
        history.append({"epoch": epoch + 1, "train_loss": total / count, "test_acc": correct / seen})
        print(f"epoch {epoch + 1}: train loss {total / count:.3f}, test accuracy {correct / seen:.1%} "
              f"(chance 5%)")
    return {"history": history, "data": root}


if __name__ == "__main__":
    main()
