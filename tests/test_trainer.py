"""The Trainer: LR schedules against torch's schedulers, gradient clipping, mixed precision only where asked,
determinism, the validation split (from the training set only), best-model selection, metric files, progress off
without a terminal, and its bad-input errors."""

import csv
import json
import math

import pytest
import torch

from spikelib.training.config import ConfigError, ScheduleConfig, parse_config
from spikelib.training.schedules import lr_factor
from spikelib.training.trainer import Trainer, split_train_val

DATA = {"dataset": "synthetic_temporal", "n_train": 48, "n_test": 16, "n_classes": 3, "n_groups": 3, "n_channels": 6,
        "n_steps": 36, "max_shift": 5, "batch_size": 8, "val_fraction": 0.25}


def _config(**sections):
    raw = {"data": dict(DATA), "model": {"name": "spiking_mlp", "hidden": [8], "init_gain": 4.0},
           "optim": {"lr": 0.01}, "train": {"epochs": 2, "device": "cpu"}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_config(raw)


@pytest.mark.parametrize("name, make", [
    ("cosine", lambda o, E, n: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=E * n, eta_min=0.01)),
    ("step", lambda o, E, n: torch.optim.lr_scheduler.StepLR(o, step_size=E * 2, gamma=0.3)),
    ("multistep", lambda o, E, n: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[E * 2, E * 5], gamma=0.3)),
    ("onecycle", lambda o, E, n: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=E * n,
                                                                     pct_start=0.25)),
])
def test_schedules_match_torch(name, make):
    steps_per_epoch, epochs = 7, 6
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = make(opt, steps_per_epoch, epochs)
    f = lr_factor(ScheduleConfig(name=name, min_lr=0.01, step_epochs=2, milestones=[2.0, 5.0], gamma=0.3,
                                 pct_start=0.25), 0.1,
                  steps_per_epoch, epochs)
    for step in range(steps_per_epoch * epochs):
        assert 0.1 * f(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), step
        opt.step()
        ref.step()


def test_nesterov_and_multistep_options(tmp_path):
    trainer = Trainer(_config(optim={"name": "sgd", "nesterov": True, "momentum": 0.5}), tmp_path / "a")
    trainer._setup()
    assert trainer.optimizer.param_groups[0]["nesterov"] is True
    with pytest.raises(ConfigError, match="optim.nesterov"):
        Trainer(_config(optim={"name": "sgd", "nesterov": True, "momentum": 0.0}), tmp_path / "b")._setup()
    with pytest.raises(ConfigError, match="optim.nesterov"):
        Trainer(_config(optim={"name": "adam", "nesterov": True}), tmp_path / "c")._setup()
    with pytest.raises(ConfigError, match="schedule.milestones"):
        _config(schedule={"name": "multistep", "milestones": [3, 2]})
    with pytest.raises(ConfigError, match="schedule.milestones"):
        Trainer(_config(schedule={"name": "multistep"}), tmp_path / "d")._setup()


def test_warmup_is_linear_then_the_schedule():
    f = lr_factor(ScheduleConfig(name="cosine", warmup_epochs=1.0), 0.1, 4, 5)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(4 + 8) == pytest.approx(0.5) and f(19) < 0.01


def test_runs_are_deterministic_and_write_metric_files(tmp_path):
    results = [Trainer(_config(), tmp_path / str(i)).fit() for i in range(2)]
    a, b = (torch.load(tmp_path / str(i) / "last.pt", weights_only=True) for i in range(2))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert results[0]["test"] == results[1]["test"]
    run = tmp_path / "0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    history = json.loads((run / "metrics.json").read_text())
    assert [int(r["epoch"]) for r in rows] == [1, 2] == [h["epoch"] for h in history]
    assert float(rows[1]["val_acc"]) == history[1]["val_acc"]
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "lr", "val_loss", "val_acc", "seconds"}
    result = json.loads((run / "result.json").read_text())
    best = max(history, key=lambda h: h["val_acc"])  # the first epoch with the best validation accuracy
    assert result["best"] == {"metric": best["val_acc"], "epoch": best["epoch"]}
    assert result["val"]["acc"] == pytest.approx(best["val_acc"]) and result["test"]["count"] == 16
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == best["epoch"]
    assert not list(run.glob(".*"))


def test_validation_comes_from_the_training_set_only():
    train = list(range(100))
    tr, val = split_train_val(train, 0.2, seed=3)
    assert len(val) == 20 and len(tr) == 80 and not set(tr.indices) & set(val.indices)
    assert set(tr.indices) | set(val.indices) == set(range(100))
    assert split_train_val(train, 0.2, seed=3)[1].indices == val.indices != split_train_val(train, 0.2, 4)[1].indices
    assert split_train_val(train, 0.0, seed=3) == (train, None)
    trainer = Trainer(_config(), "unused")
    trainer._setup = trainer._setup  # noqa: the split is made in _setup
    with pytest.raises(ConfigError, match="leaves no training samples"):
        split_train_val(list(range(3)), 0.9, 0)


def test_gradient_clipping_bounds_the_update(tmp_path):
    cfg = _config(optim={"name": "sgd", "lr": 1.0, "momentum": 0.0, "grad_clip": 1e-3},
                  data={"n_train": 8, "val_fraction": 0.0, "batch_size": 8}, train={"epochs": 1})
    trainer = Trainer(cfg, tmp_path)
    trainer._setup()
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer._fit()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    step = float((after - before).norm())
    assert 0 < step <= 1e-3 * (1 + 1e-5), step


def test_mixed_precision_only_when_asked_on_cpu(tmp_path):
    seen = []

    def hook(module, inputs, output):
        seen.append(output.dtype)

    off = Trainer(_config(train={"epochs": 1}), tmp_path / "off")
    off._setup()
    assert off.amp is False and off.scaler is None and off.progress is False  # no terminal under pytest
    on = Trainer(_config(train={"epochs": 1, "amp": True, "amp_dtype": "bfloat16"}), tmp_path / "on")
    on._setup()
    assert on.amp is True and on.scaler is None
    on.model.linears[0].register_forward_hook(hook)
    on._fit()
    assert seen and set(seen) == {torch.bfloat16}
    assert math.isfinite(on.history[-1]["train_loss"])


def test_callbacks_and_mid_epoch_checkpoints(tmp_path):
    events = []
    cfg = _config(train={"epochs": 1, "checkpoint_every": 2})
    Trainer(cfg, tmp_path, callbacks=[lambda t, e: events.append((e, t.epoch, t.batch))]).fit()
    # 36 training samples / 8 -> 5 batches; checkpoints after batches 2 and 4, then at the end of the epoch
    assert [e for e in events if e[0] == "checkpoint"] == [("checkpoint", 0, 2), ("checkpoint", 0, 4),
                                                            ("checkpoint", 1, 0)]
    assert [e[2] for e in events if e[0] == "batch_end"] == [1, 2, 3, 4, 5]


def test_trainer_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="delays: model 'spiking_mlp' has no delay layers"):
        Trainer(_config(delays={"lr": 0.1}), tmp_path / "a").fit()
    with pytest.raises(ConfigError, match="warmup_epochs: must be 0 with schedule.name=onecycle"):
        Trainer(_config(schedule={"name": "onecycle", "warmup_epochs": 1}), tmp_path / "b").fit()
    try:
        import tensorboard  # noqa: F401
    except ImportError:  # the optional dependency is named when it is missing
        with pytest.raises(ImportError, match="train.tensorboard: true needs the tensorboard package"):
            Trainer(_config(train={"tensorboard": True}), tmp_path / "c").fit()
    from spikelib.training.distributed import DistInfo, local_batch_size

    with pytest.raises(ValueError, match="data.batch_size=10 is not divisible by the 4 processes"):
        local_batch_size(10, DistInfo(0, 4, 0))


def test_empty_data_and_labels_out_of_range(tmp_path):
    from torch.utils.data import TensorDataset

    from spikelib.training.datasets import DatasetBundle

    x = torch.zeros(8, 5, 6)
    bad = DatasetBundle(TensorDataset(x, torch.tensor([0, 1, 2, 7, 0, 1, 2, 0])), TensorDataset(x[:2], torch.zeros(2)),
                        {"n_classes": 3, "n_channels": 6, "chance": 1 / 3})
    with pytest.raises(ValueError, match="label 7 is out of range 0..2"):
        Trainer(_config(data={"val_fraction": 0.0}), tmp_path / "a", datasets=bad).fit()
    empty = DatasetBundle(TensorDataset(x[:0], torch.zeros(0)), TensorDataset(x[:2], torch.zeros(2)),
                          {"n_classes": 3, "n_channels": 6, "chance": 1 / 3})
    with pytest.raises(ConfigError, match="the training set is empty"):
        Trainer(_config(), tmp_path / "b", datasets=empty).fit()


def test_batch_mix_is_applied_to_training_batches_only(tmp_path):
    from torch.utils.data import TensorDataset

    from spikelib.training.datasets import DatasetBundle, build_datasets

    calls = []

    def all_to_class_zero(x, y):  # lam = 1: every target becomes y_b = 0
        calls.append(x.shape[0])
        return x, y, torch.zeros_like(y), torch.ones(x.shape[0])

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(32, 10, 6, generator=g) < 0.3).float()
    y = torch.randint(0, 3, (32,), generator=g)
    bundle = DatasetBundle(TensorDataset(x, y), TensorDataset(x[:8], y[:8]), {"n_classes": 3, "n_channels": 6,
                                                                              "chance": 1 / 3},
                           batch_mix=all_to_class_zero)
    cfg = _config(data={"val_fraction": 0.0}, optim={"lr": 0.05}, train={"epochs": 3})
    trainer = Trainer(cfg, tmp_path, datasets=bundle)
    trainer.fit()
    assert calls == [8] * 12  # 4 batches x 3 epochs, never during evaluation
    with torch.no_grad():
        predictions = trainer.model(x.transpose(0, 1)).argmax(1)
    assert float((predictions == 0).float().mean()) > 0.9  # it learned the mixed targets

    shd = build_datasets("synthetic_shd", 0, root=str(tmp_path / "data"), n_train=40, n_test=20,
                         augment="snn_delays")
    assert shd.batch_mix is not None and shd.train.transform is not None and shd.test.transform is None
