"""A model and data set for the stage tests (imported by tests/test_stages.py and by its subprocess runs): a static
input repeated over ``T`` steps (direct encoding, as IIR-SNN feeds images) into Linear -> LIF -> Linear, the logits
the mean over time; Gaussian blobs of 3 classes in 8 dimensions."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

from spikelib import LIF
from spikelib.training import DatasetBundle

CONFIG = {"data": {"batch_size": 16, "val_fraction": 0.25},
          "optim": {"lr": 0.02}, "schedule": {"name": "cosine"},
          "stages": {"timesteps": [4, 2, 1], "epochs": [2, 2, 2]},
          "train": {"device": "cpu", "checkpoint_every": 2, "seed": 3}}


class RepeatSNN(nn.Module):
    """``x [B, 8]`` repeated ``T`` times -> Linear -> LIF (dropout mask per sample) -> Linear -> mean over time."""

    def __init__(self, T: int = 4):
        super().__init__()
        self.T = T
        self.fc1, self.lif, self.fc2 = nn.Linear(8, 32), LIF(tau=2.0), nn.Linear(32, 3)
        self.drop = nn.Dropout(0.1)
        self.seen = []

    def forward(self, x):
        self.seen.append(self.T)
        h = self.lif(self.fc1(x).expand(self.T, -1, -1))
        return self.fc2(self.drop(h)).mean(0)


def data() -> DatasetBundle:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 1.5

    def make(n):
        y = torch.arange(n) % 3
        return TensorDataset(centres[y] + torch.randn(n, 8, generator=g), y)

    return DatasetBundle(make(120), make(60), {"n_classes": 3, "layout": "static"})
