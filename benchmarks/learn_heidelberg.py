"""Learnability of the synthetic Heidelberg Digits on unheard speakers: spikelib SNN vs logistic regression.

Generates (or reuses, via the cache) ``spikelib data synth-heidelberg --speakers S --repeats R --test-speakers H``
with SHD's 700 channels and 20 classes, bins the spikes into 10 ms frames with 700 -> 140 channel pooling (sum of 5
neighbouring units, the SNN-delays recipe) and log(1 + count), then reports

* logistic regression on time-pooled counts (log(1 + count) per pooled channel, standardised; L2 strengths 1e-3,
  1e-2, 1e-1, each reported: picking the best on the test set is optimistic for the baseline);
* ``SpikingMLP(140, (256,), 20, init_gain=2)`` trained with ``train_classifier`` (Adam 5e-3, batch 32, seeded):
  test accuracy per epoch, the mean of the last three epochs and the last.

Run ``python benchmarks/learn_heidelberg.py --out DIR`` (defaults: 12 speakers, 3 held out, 3 repetitions, 40 epochs);
writes ``results/heidelberg_learn.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import common

import h5py  # noqa: E402
import numpy as np  # noqa: E402

NAME = "heidelberg_learn"
POOL, DT, STEPS = 5, 0.01, 75


def _frames(path: Path):
    import torch

    with h5py.File(path, "r") as f:
        labels = f["labels"][()].astype(np.int64)
        x = np.zeros((labels.size, STEPS, 700 // POOL), dtype=np.float32)
        for i, (t, u) in enumerate(zip(f["spikes/times"], f["spikes/units"])):
            k = np.minimum((t.astype(np.float64) / DT).astype(np.int64), STEPS - 1)
            np.add.at(x[i], (k, u.astype(np.int64) // POOL), 1.0)
    return torch.from_numpy(x), torch.from_numpy(labels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="data folder (generated or reused)")
    p.add_argument("--speakers", type=int, default=12)
    p.add_argument("--test-speakers", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from spikelib.data.heidelberg.generate import generate_heidelberg
    from spikelib.models import SpikingMLP
    from spikelib.training.loop import train_classifier

    t = time.perf_counter()
    summary = generate_heidelberg(args.out, speakers=args.speakers, repeats=args.repeats, seed=args.seed,
                                  test_speakers=args.test_speakers)
    gen_s = time.perf_counter() - t
    x_train, y_train = _frames(Path(summary["train"]))
    x_test, y_test = _frames(Path(summary["test"]))
    f_train, f_test = torch.log1p(x_train.sum(1)), torch.log1p(x_test.sum(1))
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    logreg = {}
    for l2 in (1e-3, 1e-2, 1e-1):
        torch.manual_seed(args.seed)
        model = torch.nn.Linear(f_train.shape[1], 20)
        opt = torch.optim.LBFGS(model.parameters(), max_iter=500)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(f_train), y_train) + l2 * model.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            logreg[str(l2)] = float((model(f_test).argmax(1) == y_test).float().mean())
    torch.manual_seed(args.seed)
    snn = SpikingMLP(700 // POOL, hidden=(256,), out_features=20, init_gain=2.0)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.log1p(x_train), y_train), batch_size=32,
                                        shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.log1p(x_test), y_test), batch_size=256)
    t = time.perf_counter()
    history = train_classifier(snn, train, test, epochs=args.epochs, lr=5e-3, progress=False)
    per_epoch = [round(h["test_acc"], 4) for h in history]
    payload = {
        "benchmark": NAME, "command": common.command_line(),
        "data": {k: summary[k] for k in ("train_samples", "test_samples", "test_speakers", "mean_spikes")},
        "generate_seconds": gen_s, "chance": 0.05,
        "logistic_regression_pooled_counts": logreg,
        "snn": {"test_acc_per_epoch": per_epoch, "last3_mean": float(np.mean(per_epoch[-3:])),
                "last": per_epoch[-1], "train_acc_last_epoch": history[-1]["train_acc"],
                "train_seconds": time.perf_counter() - t},
        "machine": {**common.machine_info(False), "loadavg": common.loadavg()},
    }
    path = common.write_json(NAME, payload)
    print(f"logistic regression on pooled counts: {logreg}; SNN last-3 mean {payload['snn']['last3_mean']:.3f}, "
          f"last {per_epoch[-1]:.3f}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
