"""Learnability of the synthetic Heidelberg Digits on held-out speakers: a spikelib SNN vs logistic regression.

CI-sized: the English digits (10 classes) of 12 synthetic speakers x 2 repetitions through a 140-channel cochlea
(channels spaced over the same membrane as SHD's 700), 9 speakers for training and 3 unheard ones for testing.
The baseline is multinomial logistic regression on time-pooled spike counts (log(1 + count) per channel,
standardised), with its L2 strength picked on the test set (optimistic for the baseline). The SNN is
``spikelib.models.SpikingMLP`` trained with ``spikelib.training.loop.train_classifier`` on 10 ms frames; its score
is the mean test accuracy of the last three epochs (no selection on the test set). Everything is seeded.
"""

from __future__ import annotations

import importlib.util

import h5py
import numpy as np
import pytest
import torch

from spikelib.data.heidelberg.generate import generate_heidelberg

pytestmark = pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None,
                                reason="eSpeak NG not installed (bash scripts/install_speech.sh <python>)")

CHANNELS = 140
DT = 0.01
STEPS = 75


def _frames(path):
    with h5py.File(path, "r") as f:
        labels = f["labels"][()].astype(np.int64)
        x = np.zeros((labels.size, STEPS, CHANNELS), dtype=np.float32)
        for i, (t, u) in enumerate(zip(f["spikes/times"], f["spikes/units"])):
            k = np.minimum((t.astype(np.float64) / DT).astype(np.int64), STEPS - 1)
            np.add.at(x[i], (k, u.astype(np.int64)), 1.0)
    return torch.from_numpy(x), torch.from_numpy(labels)


def _logistic_regression(f_train, y_train, f_test, y_test, n_classes):
    best = 0.0
    for l2 in (1e-3, 1e-2, 1e-1):
        torch.manual_seed(0)
        model = torch.nn.Linear(f_train.shape[1], n_classes)
        opt = torch.optim.LBFGS(model.parameters(), max_iter=500)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(f_train), y_train) + l2 * model.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            best = max(best, float((model(f_test).argmax(1) == y_test).float().mean()))
    return best


def test_snn_beats_logistic_regression_on_unheard_speakers(tmp_path):
    from spikelib.models import SpikingMLP
    from spikelib.training.loop import train_classifier

    summary = generate_heidelberg(tmp_path, speakers=12, repeats=2, seed=0, test_speakers=3, languages=("en",),
                                  channels=CHANNELS, progress=False)
    x_train, y_train = _frames(summary["train"])
    x_test, y_test = _frames(summary["test"])
    assert len(y_train) == 180 and len(y_test) == 60 and set(y_train.tolist()) == set(range(10))

    pooled_train, pooled_test = torch.log1p(x_train.sum(1)), torch.log1p(x_test.sum(1))
    mean, std = pooled_train.mean(0), pooled_train.std(0) + 1e-6
    lr_acc = _logistic_regression((pooled_train - mean) / std, y_train, (pooled_test - mean) / std, y_test, 10)

    torch.manual_seed(0)
    model = SpikingMLP(CHANNELS, hidden=(128,), out_features=10, init_gain=2.0)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.log1p(x_train), y_train), batch_size=16,
                                        shuffle=True, generator=torch.Generator().manual_seed(0))
    test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.log1p(x_test), y_test), batch_size=60)
    history = train_classifier(model, train, test, epochs=30, lr=5e-3, progress=False)
    snn_acc = float(np.mean([h["test_acc"] for h in history[-3:]]))

    report = f"SNN {snn_acc:.3f} (last 3 epochs) vs logistic regression on pooled counts {lr_acc:.3f}; chance 0.1"
    assert lr_acc > 0.3, report  # the set is learnable at all
    print(report)
    assert snn_acc >= lr_acc + 0.05, report
