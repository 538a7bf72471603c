"""The training core: learning-rate schedules stepped per batch or per epoch against torch's schedulers (as the
trainer really steps them), OneCycle's beta1 cycling, gradient clipping, mixed precision only where asked,
determinism, the validation split (from the training set only), best-model selection (val_acc and val_loss, with a
test that fails if the choice is inverted), metric files, callbacks, a custom model / loss / metric / data set through
the public API only, loaders, diverging runs, and bad input."""

import csv
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spikelib.training import (Callback, ConfigError, DatasetBundle, Loss, Trainer, TrainingDivergedError,
                               parse_config)
from spikelib.training.build import split_train_val

DATA = {"dataset": "synthetic_temporal", "n_train": 48, "n_test": 16, "n_classes": 3, "n_groups": 3, "n_channels": 6,
        "n_steps": 36, "max_shift": 5, "batch_size": 8, "val_fraction": 0.25}


def _config(**sections):
    raw = {"data": dict(DATA), "model": {"name": "spiking_mlp", "hidden": [8], "init_gain": 4.0},
           "optim": {"lr": 0.01}, "train": {"epochs": 2, "device": "cpu"}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_config(raw)


class LRRecorder(Callback):
    """Records the rate (and beta1 / momentum) of the first group of every optimiser at each optimiser step."""

    def __init__(self):
        self.lrs, self.betas = {}, {}

    def on_stage_start(self, trainer):
        for slot in trainer.optimizers:
            def hook(opt, args, kwargs, name=slot.name):
                group = opt.param_groups[0]
                self.lrs.setdefault(name, []).append(group["lr"])
                self.betas.setdefault(name, []).append(group["betas"][0] if "betas" in group else group["momentum"])
            slot.optimizer.register_step_pre_hook(hook)


def _reference_lrs(make, steps_per_epoch, epochs, interval, lr, opt_cls=torch.optim.SGD, **opt_kw):
    """The rate torch's scheduler gives at each optimiser step when stepped after every step or every epoch."""
    opt = opt_cls([nn.Parameter(torch.zeros(1))], lr=lr, **opt_kw)
    units = steps_per_epoch if interval == "step" else 1
    sched = make(opt, units, epochs)
    lrs, betas = [], []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            g = opt.param_groups[0]
            lrs.append(g["lr"])
            betas.append(g["betas"][0] if "betas" in g else g["momentum"])
            opt.step()
            if interval == "step":
                sched.step()
        if interval == "epoch":
            sched.step()
    return lrs, betas


SCHEDULES = [
    ({"name": "cosine", "min_lr": 0.001},
     lambda o, u, E: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=u * E, eta_min=0.001)),
    ({"name": "step", "step_epochs": 2, "gamma": 0.3},
     lambda o, u, E: torch.optim.lr_scheduler.StepLR(o, step_size=u * 2, gamma=0.3)),
    ({"name": "multistep", "milestones": [2, 3], "gamma": 0.3},
     lambda o, u, E: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[u * 2, u * 3], gamma=0.3)),
    ({"name": "onecycle", "max_lr": 0.05, "pct_start": 0.25},
     lambda o, u, E: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=u * E, pct_start=0.25,
                                                         cycle_momentum=False)),
    ({"name": "cosine", "warmup_epochs": 1},
     lambda o, u, E: torch.optim.lr_scheduler.SequentialLR(o, [
         torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / u, end_factor=1.0, total_iters=u - 1),
         torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=u * E - u)], milestones=[u])),
]


@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("schedule, make", SCHEDULES, ids=["cosine", "step", "multistep", "onecycle", "warmup"])
def test_schedules_step_like_torch_per_batch_and_per_epoch(schedule, make, interval, tmp_path):
    if schedule.get("warmup_epochs") and interval == "epoch":
        schedule = dict(schedule, warmup_epochs=2)  # a warm-up of 2 units (epochs)
        make = lambda o, u, E: torch.optim.lr_scheduler.SequentialLR(o, [  # noqa: E731
            torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 2, end_factor=1.0, total_iters=1),
            torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=E - 2)], milestones=[2])
    epochs = 5
    rec = LRRecorder()
    cfg = _config(optim={"name": "sgd", "lr": 0.02, "momentum": 0.5}, schedule=dict(schedule, interval=interval),
                  train={"epochs": epochs})
    trainer = Trainer(cfg, None, callbacks=[rec])
    trainer.fit()
    steps = trainer.steps_per_epoch
    assert steps == 5  # 36 training samples / 8
    want, _ = _reference_lrs(make, steps, epochs, interval, 0.02, momentum=0.5)
    assert len(rec.lrs["weights"]) == steps * epochs
    assert rec.lrs["weights"] == pytest.approx(want, rel=1e-12, abs=1e-15)
    if interval == "epoch":  # constant within each epoch, and it really changes between epochs
        per_epoch = [rec.lrs["weights"][e * steps:(e + 1) * steps] for e in range(epochs)]
        assert all(len(set(e)) == 1 for e in per_epoch) and len({e[0] for e in per_epoch}) > 1


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_onecycle_cycles_adam_beta1_like_torch(interval):
    epochs = 4
    rec = LRRecorder()
    schedule = {"name": "onecycle", "max_lr": 0.005, "interval": interval, "cycle_momentum": True}
    trainer = Trainer(_config(optim={"name": "adam", "lr": 1e-3}, schedule=schedule, train={"epochs": epochs}),
                      None, callbacks=[rec])
    trainer.fit()
    make = lambda o, u, E: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.005, total_steps=u * E)  # noqa: E731
    lrs, betas = _reference_lrs(make, trainer.steps_per_epoch, epochs, interval, 1e-3, opt_cls=torch.optim.Adam)
    assert rec.lrs["weights"] == pytest.approx(lrs, rel=1e-12)
    assert rec.betas["weights"] == pytest.approx(betas, rel=1e-12)
    assert rec.betas["weights"][0] == pytest.approx(0.95) and min(rec.betas["weights"]) < 0.9


def test_nesterov_and_multistep_options():
    trainer = Trainer(_config(optim={"name": "sgd", "nesterov": True, "momentum": 0.5}), None).setup()
    assert trainer.optimizers[0].optimizer.param_groups[0]["nesterov"] is True
    with pytest.raises(ConfigError, match="optim.nesterov"):
        _config(optim={"name": "sgd", "nesterov": True, "momentum": 0.0})
    with pytest.raises(ConfigError, match="optim.nesterov"):
        _config(optim={"name": "adam", "nesterov": True})
    with pytest.raises(ConfigError, match="schedule.milestones"):
        _config(schedule={"name": "multistep", "milestones": [3, 2]})
    with pytest.raises(ConfigError, match="schedule.milestones"):
        _config(schedule={"name": "multistep"})
    with pytest.raises(ConfigError, match="schedule.cycle_momentum: momentum cycling is part of"):
        _config(schedule={"name": "cosine", "cycle_momentum": True})


def test_parameter_groups_from_the_config():
    cfg = _config(optim={"name": "adamw", "lr": 0.01, "weight_decay": 0.1,
                         "groups": [{"params": "@no_decay", "weight_decay": 0.0},
                                    {"params": "out.*", "lr": 0.001, "betas": [0.8, 0.99]}]})
    trainer = Trainer(cfg, None).setup()
    groups = trainer.optimizers[0].optimizer.param_groups
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert [sorted(names[id(p)] for p in g["params"]) for g in groups] == [
        sorted(n for n, p in trainer.model.named_parameters() if p.dim() <= 1),
        sorted(n for n, p in trainer.model.named_parameters() if n.startswith("out.") and p.dim() > 1),
        sorted(n for n, p in trainer.model.named_parameters() if not n.startswith("out.") and p.dim() > 1)]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.1, 0.1]
    assert [g["lr"] for g in groups] == [0.01, 0.001, 0.01] and groups[1]["betas"] == (0.8, 0.99)
    with pytest.raises(ConfigError, match=r"pattern 'nothing\.\*' matches no trainable parameter"):
        Trainer(_config(optim={"groups": [{"params": "nothing.*"}]}), None).setup()
    with pytest.raises(ConfigError, match=r"optim.groups\[0\].momentun: unknown key"):
        _config(optim={"groups": [{"params": "*", "momentun": 0.5}]})


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


class ScriptedBias(nn.Module):
    """Logits = a learnable bias; the test sets it before every validation pass, so each epoch's val_loss is known."""

    def __init__(self, classes=3):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))

    def forward(self, x):
        return self.bias.expand(x.shape[1], -1)


class SetBias(Callback):
    def __init__(self, values):
        self.values = values

    def on_train_epoch_end(self, trainer):
        with torch.no_grad():
            trainer.model.bias.copy_(torch.tensor(self.values[trainer.epoch]))


@pytest.mark.parametrize("select", ["val_loss", "val_acc"])
def test_best_model_selection_picks_the_lowest_loss_or_highest_accuracy(select, tmp_path):
    x, y = torch.zeros(40, 4, 2), torch.zeros(40, dtype=torch.long)  # every sample is class 0
    bundle = DatasetBundle(TensorDataset(x, y), TensorDataset(x[:8], y[:8]), {"n_classes": 3})
    # logits per epoch -> val_loss 1.10, 0.10 (lowest), 1.55 (highest), 0.55; val_acc 1, 1, 0, 1
    values = [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    cfg = {"data": {"val_fraction": 0.5, "batch_size": 8}, "optim": {"name": "sgd", "lr": 1e-9, "momentum": 0.0},
           "train": {"epochs": 4, "select": select, "evaluate_test": False, "device": "cpu"}}
    trainer = Trainer(cfg, tmp_path / select, model=ScriptedBias(), datasets=bundle, callbacks=[SetBias(values)])
    result = trainer.fit()
    losses = [h["val_loss"] for h in trainer.history]
    accs = [h["val_acc"] for h in trainer.history]
    assert losses == pytest.approx([math.log(3), 0.0949, 1.5514, 0.5514], abs=1e-4) and accs == [1, 1, 0, 1]
    if select == "val_loss":  # the lowest loss; an inverted choice would keep epoch 3
        assert result["best"] == {"metric": min(losses), "epoch": 2}
    else:  # the highest accuracy, the first of equals; an inverted choice would keep epoch 3
        assert result["best"] == {"metric": 1.0, "epoch": 1}
    best = torch.load(tmp_path / select / "best.pt", weights_only=True)
    assert best["epoch"] == result["best"]["epoch"]
    assert torch.allclose(best["model"]["bias"], torch.tensor(values[result["best"]["epoch"] - 1]), atol=1e-6)
    assert result["val"]["loss"] == pytest.approx(losses[result["best"]["epoch"] - 1])  # the best weights restored


def test_validation_comes_from_the_training_set_only():
    train = list(range(100))
    tr, val = split_train_val(train, 0.2, seed=3)
    assert len(val) == 20 and len(tr) == 80 and not set(tr.indices) & set(val.indices)
    assert set(tr.indices) | set(val.indices) == set(range(100))
    assert split_train_val(train, 0.2, seed=3)[1].indices == val.indices != split_train_val(train, 0.2, 4)[1].indices
    assert split_train_val(train, 0.0, seed=3) == (train, None)
    with pytest.raises(ConfigError, match="leaves no training samples"):
        split_train_val(list(range(3)), 0.9, 0)
    trainer = Trainer(_config(data={"val_fraction": None}), None).setup()  # unset: 10% of the training set
    assert len(trainer.datasets["val"]) == 5 and len(trainer.datasets["train"]) == 43


def test_gradient_clipping_bounds_the_update():
    cfg = _config(optim={"name": "sgd", "lr": 1.0, "momentum": 0.0, "grad_clip": 1e-3},
                  data={"n_train": 8, "val_fraction": 0.0, "batch_size": 8}, train={"epochs": 1})
    trainer = Trainer(cfg, None).setup()
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.fit()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    step = float((after - before).norm())
    assert 0 < step <= 1e-3 * (1 + 1e-5), step


def test_mixed_precision_only_when_asked_on_cpu():
    seen = []
    off = Trainer(_config(train={"epochs": 1}), None).setup()
    assert off.amp is False and off.scaler is None and off.progress is False  # no terminal under pytest
    on = Trainer(_config(train={"epochs": 1, "amp": True, "amp_dtype": "bfloat16"}), None).setup()
    assert on.amp is True and on.scaler is None
    on.model.linears[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    on.fit()
    assert seen and set(seen) == {torch.bfloat16}
    assert math.isfinite(on.history[-1]["train_loss"])


def test_float64_training():
    trainer = Trainer(_config(train={"epochs": 1, "dtype": "float64"}), None)
    trainer.fit()
    assert all(p.dtype == torch.float64 for p in trainer.model.parameters())


def test_callbacks_and_mid_epoch_checkpoints(tmp_path):
    events = []
    cfg = _config(train={"epochs": 1, "checkpoint_every": 2})
    Trainer(cfg, tmp_path, callbacks=[lambda t, e: events.append((e, t.epoch, t.batch))]).fit()
    # 36 training samples / 8 -> 5 batches; checkpoints after batches 2 and 4, then at the end of the epoch
    assert [e for e in events if e[0] == "checkpoint"] == [("checkpoint", 0, 2), ("checkpoint", 0, 4),
                                                            ("checkpoint", 1, 0)]
    assert [e[2] for e in events if e[0] == "batch_end"] == [1, 2, 3, 4, 5]
    assert events[0][0] == "stage_start" and events[-1][0] == "fit_end"


def test_max_batches_limits_training_and_evaluation():
    seen = []

    class Count(Callback):
        def on_batch_end(self, trainer):
            seen.append(trainer.batch)

    trainer = Trainer(_config(train={"epochs": 2, "max_batches": 2}), None, callbacks=[Count()])
    result = trainer.fit()
    assert seen == [1, 2, 1, 2] and trainer.global_step == 4
    assert result["test"]["count"] == 16  # eval batches are 256 wide: one batch holds the whole split
    trainer = Trainer(_config(data={"eval_batch_size": 4}, train={"epochs": 1, "max_batches": 1}), None)
    assert trainer.fit()["test"]["count"] == 4


class TinySNN(nn.Module):
    """A model that exists nowhere in spikelib.models: Linear -> LIF -> Linear, output per step [T, B, C]."""

    def __init__(self, c_in, classes):
        super().__init__()
        from spikelib import LIF

        self.fc1, self.lif, self.fc2 = nn.Linear(c_in, 16), LIF(tau=2.0), nn.Linear(16, classes)
        with torch.no_grad():
            self.fc1.weight.mul_(4.0)

    def forward(self, x):
        return self.fc2(self.lif(self.fc1(x)))


class MeanOverTimeCE(Loss):
    """A custom loss: cross-entropy of the mean output, per sample."""

    def scores(self, output):
        return output.mean(0)

    def forward(self, output, y):
        return nn.functional.cross_entropy(output.mean(0), y, reduction="none")


def _rate_task(n, seed):
    """Class k: channels 2k and 2k+1 fire at 40%, the others at 10% (items [T=20, C=6])."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    rate = torch.full((n, 1, 6), 0.1)
    rate[torch.arange(n), 0, 2 * y] = rate[torch.arange(n), 0, 2 * y + 1] = 0.4
    return TensorDataset((torch.rand(n, 20, 6, generator=g) < rate).float(), y)


def test_custom_model_loss_metric_and_data_through_the_public_api(tmp_path):
    bundle = DatasetBundle(_rate_task(240, 0), _rate_task(60, 1), {"n_classes": 3})
    calls = []

    def worst_class_margin(scores, y):
        calls.append(scores.shape)
        return (scores.gather(1, y[:, None])[:, 0] - scores.max(1).values).to(torch.float64)

    torch.manual_seed(0)
    cfg = {"data": {"batch_size": 16, "val_fraction": 0.2}, "optim": {"lr": 0.01},
           "train": {"epochs": 4, "select": "val_margin", "device": "cpu"}}
    trainer = Trainer(cfg, tmp_path / "run", model=TinySNN(6, 3), datasets=bundle, loss=MeanOverTimeCE(),
                      metrics={"margin": worst_class_margin})
    result = trainer.fit()
    assert calls and all(s[1] == 3 for s in calls)
    assert {"train_margin", "val_margin"} <= set(trainer.history[-1])
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    assert result["test"]["acc"] > 0.8, result  # chance 1/3
    assert trainer.evaluate("test")["acc"] == pytest.approx(result["test"]["acc"])
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert saved["model_name"] == "TinySNN" and set(saved["model"]) == set(TinySNN(6, 3).state_dict())
    # a plain function as the loss (scalar mean), and no run folder at all
    fn_trainer = Trainer({"train": {"epochs": 1, "device": "cpu"}}, None, model=TinySNN(6, 3), datasets=bundle,
                         loss=lambda out, y: nn.functional.cross_entropy(out.mean(0), y))
    assert math.isfinite(fn_trainer.fit()["test"]["loss"])


def test_ready_loaders_and_static_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (x[:, 0] > 0).long()

    class Repeat(nn.Module):  # a static input repeated over T steps
        def __init__(self):
            super().__init__()
            self.T, self.fc = 3, nn.Linear(5, 2)

        def forward(self, x):
            return self.fc(x).expand(self.T, -1, -1)

    loaders = {"train": DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g),
               "val": DataLoader(TensorDataset(x[:32], y[:32]), batch_size=32)}
    trainer = Trainer({"loss": {"name": "tet", "lam": 0.0}, "optim": {"lr": 0.05},
                       "train": {"epochs": 5, "device": "cpu"}}, None, model=Repeat(), loaders=loaders,
                      prepare_batch=lambda b: (b[0], b[1]))
    result = trainer.fit()
    assert result["val"]["acc"] > 0.85 and trainer.steps_per_epoch == 4


def test_a_diverging_run_stops_with_a_clear_error(tmp_path):
    class Explode(Callback):
        def on_batch_end(self, trainer):
            if trainer.global_step == 3:
                with torch.no_grad():
                    trainer.model.out.weight.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match=r"the training loss is nan at stage 1, epoch 1, batch 4: the "
                                                     r"run diverged; lower optim.lr"):
        Trainer(_config(), tmp_path, callbacks=[Explode()]).fit()


def test_trainer_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="delays: model 'spiking_mlp' has no delay layers"):
        Trainer(_config(delays={"lr": 0.1}), tmp_path / "a").fit()
    with pytest.raises(ConfigError, match="warmup_epochs: must be 0 with schedule.name=onecycle"):
        _config(schedule={"name": "onecycle", "warmup_epochs": 1})
    with pytest.raises(ConfigError, match="train.select: 'val_f1' names no metric"):
        Trainer(_config(train={"select": "val_f1"}), None).setup()
    with pytest.raises(ConfigError, match="data.dataset: required key is missing"):
        Trainer({"model": {"name": "spiking_mlp"}}, None)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        Trainer(None, None, model=lambda x: x)
    with pytest.raises(ValueError, match="resume=True needs a run_dir"):
        Trainer(_config(), None, resume=True)
    try:
        import tensorboard  # noqa: F401
    except ImportError:  # the optional dependency is named when it is missing
        with pytest.raises(ImportError, match="train.tensorboard: true needs the tensorboard package"):
            Trainer(_config(train={"tensorboard": True}), tmp_path / "c").fit()
    from spikelib.training.distributed import DistInfo, local_batch_size

    with pytest.raises(ValueError, match="data.batch_size=10 is not divisible by the 4 processes"):
        local_batch_size(10, DistInfo(0, 4, 0))


def test_empty_data_and_labels_out_of_range(tmp_path):
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
    from spikelib.training.datasets import build_datasets

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
    with pytest.raises(ValueError, match="the loss must return per-sample values"):
        Trainer(cfg, None, datasets=bundle, loss=lambda o, t: nn.functional.cross_entropy(o, t)).fit()

    shd = build_datasets("synthetic_shd", 0, root=str(tmp_path / "data"), n_train=40, n_test=20,
                         augment="snn_delays")
    assert shd.batch_mix is not None and shd.train.transform is not None and shd.test.transform is None
