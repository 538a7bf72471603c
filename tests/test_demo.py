"""The end-to-end demo (stage pipeline, summary, checkpoint, exit status), SpikingMLP, the small training loop, and
the ``spikelib`` command's demo and backends."""

import json
import math

import numpy as np

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import spikelib
from spikelib.cli import main
from spikelib.demo import DEMO_CONFIG, DEMO_STAGES, DemoContext, run_demo
from spikelib.data import SyntheticTemporalDataset
from spikelib.models import SpikingMLP
from spikelib.training import evaluate, to_time_first, train_classifier

from test_synthetic_data import fit_logistic_regression

# SpikingMLP settings that learn the burst-order task in a few epochs
DEMO_MODEL = dict(hidden=(128,), tau=4.0, readout="membrane", tau_out=2.0, init_gain=4.0)


# ----------------------------------------------------------------------------------------------------- model
def test_mlp_shapes_and_membrane_readout_matches_leaky_integrator():
    torch.manual_seed(0)
    model = SpikingMLP(12, hidden=(16, 8), out_features=3, tau_out=3.0, init_gain=3.0).double()
    x = (torch.rand(9, 4, 12, dtype=torch.float64) < 0.3).double()
    logits = model(x)
    assert logits.shape == (4, 3)
    # the closed form equals the mean of U[t] = U[t-1] + (I[t] - U[t-1]) / tau_out, U[-1] = 0
    h = x
    for linear, lif in zip(model.linears, model.lifs):
        h = lif(linear(h))
    current = model.out(h)
    u, us = torch.zeros(4, 3, dtype=torch.float64), []
    for i_t in current:
        u = u + (i_t - u) / 3.0
        us.append(u)
    torch.testing.assert_close(logits, torch.stack(us).mean(0))


def test_mlp_spike_readout_gives_counts_and_gradients():
    torch.manual_seed(0)
    model = SpikingMLP(10, hidden=(20,), out_features=4, readout="spikes", init_gain=4.0)
    x = (torch.rand(15, 3, 10) < 0.4).float()
    counts = model(x)
    assert counts.shape == (3, 4)
    assert torch.equal(counts, counts.round()) and counts.min() >= 0 and counts.max() <= 15
    counts.sum().backward()
    assert model.linears[0].weight.grad is not None and model.linears[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(in_features=0, out_features=2), ValueError, "in_features"),
        (dict(in_features=4), TypeError, "out_features"),
        (dict(in_features=4, out_features=2, hidden=(8, 0)), ValueError, r"hidden\[1\]"),
        (dict(in_features=4, out_features=2, hidden=8), TypeError, "hidden"),
        (dict(in_features=4, out_features=2, readout="rate"), ValueError, "readout"),
        (dict(in_features=4, out_features=2, tau=0.5), ValueError, "tau"),
        (dict(in_features=4, out_features=2, tau_out=float("inf")), ValueError, "tau_out"),
        (dict(in_features=4, out_features=2, init_gain=0), ValueError, "init_gain"),
    ],
)
def test_mlp_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        SpikingMLP(**kwargs)


def test_mlp_rejects_batch_first_or_wrong_width():
    model = SpikingMLP(6, out_features=2)
    with pytest.raises(ValueError, match="time first"):
        model(torch.zeros(5, 6))
    with pytest.raises(ValueError, match="6 channels"):
        model(torch.zeros(5, 2, 7))


# ----------------------------------------------------------------------------------------------------- loop
def test_to_time_first():
    x = torch.arange(24.0).reshape(2, 3, 4)
    y = to_time_first(x)
    assert y.shape == (3, 2, 4) and y.is_contiguous() and torch.equal(y[1, 0], x[0, 1])
    with pytest.raises(ValueError, match=r"\[B, T"):
        to_time_first(torch.zeros(3))


def test_train_classifier_argument_errors():
    model = SpikingMLP(4, hidden=(4,), out_features=2)
    loader = [(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))]
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(model, loader, loader, 0, 1e-3, "cpu", progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_classifier(model, loader, loader, 1, -1.0, "cpu", progress=False)
    with pytest.raises(TypeError, match="model"):
        train_classifier(lambda x: x, loader, loader, 1, 1e-3, "cpu", progress=False)
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        train_classifier(model, [torch.zeros(2, 3, 4)], loader, 1, 1e-3, "cpu", progress=False)


class _Recorder(nn.Module):
    """Wraps a model; records the shape it receives and whether a stateful LIF starts each batch from rest."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.probe = spikelib.LIF(stateful=True)
        self.shapes, self.fresh = [], []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        self.fresh.append(self.probe.state is None)
        self.probe(x)
        return self.inner(x)


def test_loop_feeds_time_first_and_resets_state_every_batch():
    ds = SyntheticTemporalDataset(40, 0)
    model = _Recorder(SpikingMLP(ds.n_channels, hidden=(8,), out_features=ds.n_classes))
    calls = []
    history = train_classifier(model, DataLoader(ds, 16), DataLoader(ds, 20), 2, 1e-3, "cpu", progress=False,
                               on_epoch_end=calls.append)
    assert [h["epoch"] for h in history] == [1, 2] and calls == history
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"}
    assert all(math.isfinite(h["train_loss"]) and 0 <= h["test_acc"] <= 1 for h in history)
    assert set(model.shapes) == {(80, 16, 50), (80, 8, 50), (80, 20, 50)}
    assert all(model.fresh)
    assert model.training  # evaluate() restores the mode it found
    assert evaluate(model, DataLoader(ds, 40))["acc"] == pytest.approx(history[-1]["test_acc"])


def test_snn_learns_what_counts_cannot():
    """Same data: logistic regression on per-channel counts is near chance, a briefly trained SNN is far above."""
    train, test = SyntheticTemporalDataset(1000, 10), SyntheticTemporalDataset(400, 11)
    x, y = train.tensors()
    xt, yt = test.tensors()
    _, acc_counts = fit_logistic_regression(x.sum(1), y, xt.sum(1), yt)
    torch.manual_seed(0)
    model = SpikingMLP(train.n_channels, out_features=train.n_classes, **DEMO_MODEL)
    history = train_classifier(model, DataLoader(train, 32, shuffle=True), DataLoader(test, 200), 4, 1e-2, "cpu",
                               progress=False)
    acc_snn = history[-1]["test_acc"]
    assert acc_counts < 0.2, acc_counts
    assert acc_snn > 0.4, acc_snn
    assert acc_snn > acc_counts + 0.3


# ----------------------------------------------------------------------------------------------------- CLI
TINY = ["--epochs", "1", "--n-train", "120", "--n-test", "40", "--batch-size", "20", "--hidden", "16",
        "--no-progress"]


def test_cli_demo_writes_summary_and_checkpoint(tmp_path, capsys):
    data = tmp_path / "data"
    rc = main(["demo", *TINY, "--out", str(tmp_path / "runs"), "--data-dir", str(data), "--min-accuracy", "0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    (run,) = (tmp_path / "runs").glob("demo-*")
    assert {"model.pt", "summary.json", "summary.md", "train"} <= {p.name for p in run.iterdir()}
    assert not list(run.rglob(".*.tmp"))  # no temporary file left behind
    summary = json.loads((run / "summary.json").read_text())
    assert summary["passed"] is True and summary["error"] is None
    stages = summary["stages"]
    assert list(stages)[:5] == ["data", "model", "train", "evaluate", "checkpoint"]
    assert stages["data"]["n_classes"] == 20 and stages["data"]["n_channels"] == 140 and stages["data"]["n_steps"] == 50
    assert stages["evaluate"]["chance_level"] == pytest.approx(0.05) and stages["evaluate"]["n_test"] == 40
    assert len(stages["train"]["history"]) == 1 and sum(stages["train"]["lif_backend_calls"].values()) > 0
    # the data were generated once into --data-dir in the official SHD layout; a second demo reuses them
    (folder,) = data.glob("synthetic_shd-*")
    assert sorted(p.name for p in folder.iterdir()) == ["shd_test.h5", "shd_train.h5"]
    # model.pt is a spikelib checkpoint that `spikelib eval` reads (weights_only) and that gives the same accuracy
    state = torch.load(run / "model.pt", weights_only=True)
    assert state["model_name"] == "snn_delays" and state["config"]["data"]["dataset"] == "synthetic_shd"
    assert main(["eval", str(run / "model.pt"), "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 40 and result["acc"] == pytest.approx(stages["evaluate"]["test_acc"])
    assert "chance level 5.0%" in out and "epoch  1/1" in out and "PASSED" in out
    assert "PASSED" in (run / "summary.md").read_text()


def test_cli_demo_fails_below_min_accuracy(tmp_path, capsys):
    rc = main(["demo", *TINY, "--min-accuracy", "1.0", "--out", str(tmp_path), "--data-dir", str(tmp_path / "d")])
    assert rc == 1
    assert "FAILED: evaluate" in capsys.readouterr().err
    (run,) = tmp_path.glob("demo-*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["passed"] is False and summary["stages"]["evaluate"]["passed"] is False


def test_demo_stage_errors_are_reported_and_later_stages_see_the_context(tmp_path, capsys):
    seen = {}

    def good(ctx):
        seen["ctx"] = ctx
        return {"value": np.float32(1.5), "path": tmp_path}

    def bad(ctx):
        raise RuntimeError("boom")

    ctx = DemoContext(run_dir=tmp_path, config={"x": 1}, echo=lambda line: None)
    rc = run_demo(ctx, [("good", good), ("bad", bad), ("never", good)])
    assert rc == 1 and seen["ctx"] is ctx
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stages"]["good"]["value"] == 1.5 and summary["stages"]["good"]["path"] == str(tmp_path)
    assert summary["error"] == "stage 'bad' failed: RuntimeError: boom" and "never" not in summary["stages"]
    assert "boom" in (tmp_path / "summary.md").read_text()
    assert run_demo(DemoContext(run_dir=tmp_path, config={}, echo=lambda l: None), [("s", lambda c: [1])]) == 1
    assert "must return a dict" in json.loads((tmp_path / "summary.json").read_text())["error"]
    assert run_demo(DemoContext(run_dir=tmp_path, config={}, echo=lambda l: None),
                    [("s", "spikelib.demo:no_such_stage")]) == 1
    assert [name for name, _ in DEMO_STAGES][:5] == ["data", "model", "train", "evaluate", "checkpoint"]


def test_configs_demo_yaml_is_the_demo_recipe():
    import yaml

    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "configs" / "demo.yaml").read_text()
    assert yaml.safe_load(text) == DEMO_CONFIG


def test_cli_rejects_bad_arguments(capsys):
    for argv in (["demo", "--epochs", "0"], ["demo", "--min-accuracy", "2"], ["nope"], []):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "--epochs" in capsys.readouterr().err


def test_cli_backends(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in spikelib.available_backends("lif"):
        assert name in out
    assert "float32   -> " in out and "bfloat16  -> torch" in out
