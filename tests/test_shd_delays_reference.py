"""The SHD delay recipe through the YAML path equals the reference training loop (Thvnvtos/SNN-delays at d169b4e).

``configs/shd_delays.yaml`` (at tiny size through ``--set``-style overrides: sizes, one batch per epoch, the reference's
initial weights instead of a fresh draw) runs in :class:`spikelib.training.Trainer`; every optimiser step is compared
with the reference's own loop, recorded by ``tests/fixtures/snn_delays_reference/generate.py`` from the reference
code (which is not in this repository): the loss, every weight, delay position, BatchNorm parameter and running
statistic after the step (and the clamping), and the learning rate and Adam beta1 of every optimiser group in force
during the step. Four steps (one per epoch: both schedules, the beta1 cycle and the sigma decay step in between).
In float64 they agree to rounding; in float32 (the reference's own ``train_model``, unchanged) to float32 rounding.
With ``SNN_DELAYS_REFERENCE=/path/to/checkout`` the records are regenerated from the reference instead of read.
"""

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from spikelib.training import Callback, DatasetBundle, Trainer, load_config
from spikelib.training.build import build_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "snn_delays_reference"
CONFIG = ROOT / "configs" / "shd_delays.yaml"


def _records():
    checkout = os.environ.get("SNN_DELAYS_REFERENCE")
    if checkout:
        import importlib.util

        spec = importlib.util.spec_from_file_location("generate_snn_delays", FIXTURE / "generate.py")
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        return {"float64": gen.record(Path(checkout), torch.float64),
                "float32": gen.record(Path(checkout), torch.float32)}
    return torch.load(FIXTURE / "reference.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def records():
    return _records()


def _to_ours(ref, taps):
    """Reference state (Sequential indices: Dcls1d 0/4/8, BatchNorm 1/5) -> SNNDelays state; P -> delay K//2 - P."""
    out = {}
    for ours, i in (("synapses.0", 0), ("synapses.1", 4), ("readout", 8)):
        out[f"{ours}.weight"] = ref[f"model.{i}.weight"][:, :, 0]
        out[f"{ours}.delay"] = taps // 2 - ref[f"model.{i}.P"][0, :, :, 0].double()  # exact for float32 P too
    for ours, i in (("norms.0", 1), ("norms.1", 5)):
        for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"{ours}.{key}"] = ref[f"model.{i}.{key}"]
    return out


class Recorder(Callback):
    """Per optimiser step: rates and beta1 of every group (before the step), loss and state (after it)."""

    def __init__(self):
        self.steps = []

    def on_stage_start(self, trainer):
        def before(opt, args, kwargs):
            self.steps.append({"groups": [[(g["lr"], g["betas"][0]) for g in slot.optimizer.param_groups]
                                          for slot in trainer.optimizers]})

        trainer.optimizers[0].optimizer.register_step_pre_hook(before)

    def on_batch_end(self, trainer):
        self.steps[-1]["loss"] = trainer.running["loss_sum"] / trainer.running["count"]
        self.steps[-1]["state"] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _run_yaml_path(record):
    s = record["sizes"]
    dtype = record["dtype"]
    taps = s["taps"]
    overrides = [f"model.in_features={s['n_inputs']}", f"model.hidden=[{s['n_hidden']}, {s['n_hidden']}]",
                 f"model.out_features={s['n_outputs']}", f"model.max_delay={taps - 1}",
                 f"model.right_padding={(taps - 1) // 2}", "model.dropout=0", f"delays.sig_init={taps // 2}",
                 f"delays.final_epoch={s['epochs'] // 4}", f"train.epochs={s['epochs']}",
                 "delays.init=model",  # the reference's initial positions are loaded below
                 "data.val_fraction=0", f"data.batch_size={s['B']}", f"train.dtype={dtype}",
                 "train.evaluate_test=false", "train.device=cpu"]
    config = load_config(CONFIG, overrides)
    assert config.schedule.name == "onecycle" and config.schedule.interval == "epoch" and config.schedule.cycle_momentum
    model = build_model(config, {}).to(getattr(torch, dtype))
    model.load_state_dict({**model.state_dict(), **_to_ours(record["init"], taps)})
    data = DatasetBundle(TensorDataset(record["x"], record["y"]), None, {"n_classes": s["n_outputs"]})
    rec = Recorder()
    Trainer(config, None, model=model, datasets=data, callbacks=[rec]).fit()
    return rec.steps


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-11), ("float32", 1e-5)])
def test_yaml_path_equals_the_reference_loop(records, dtype, tol):
    record = records[dtype]
    ours = _run_yaml_path(record)
    taps = record["sizes"]["taps"]
    assert len(ours) == len(record["steps"]) == 4
    moved = 0.0
    for k, (a, b) in enumerate(zip(ours, record["steps"])):
        # rates and beta1: weights (delay-layer weights with weight decay, BatchNorm without), then positions
        ref_groups = [[b["groups"][0][0], b["groups"][0][-1]], b["groups"][1]]
        flat = lambda groups: [v for g in groups for pair in g for v in pair]  # noqa: E731
        assert flat(a["groups"]) == pytest.approx(flat(ref_groups), rel=1e-12), (k, a["groups"], b["groups"])
        assert a["loss"] == pytest.approx(b["loss"], rel=tol, abs=tol), k
        want_state = _to_ours(b["state"], taps)
        for key, want in want_state.items():
            got = a["state"][key].double()
            torch.testing.assert_close(got, want.double(), rtol=tol, atol=tol, msg=f"step {k + 1}: {key}")
        moved = max(moved, float((want_state["synapses.0.delay"] - _to_ours(record["init"], taps)[
            "synapses.0.delay"]).abs().max()))
    assert moved > 1e-3  # the positions really moved, so the comparison is not trivially true
    betas = [s["groups"][0][0][1] for s in ours]
    assert betas[0] == pytest.approx(0.95) and min(betas) < 0.9  # beta1 cycled, once per epoch
    rates = [s["groups"][1][0][0] for s in ours]
    assert rates[0] == pytest.approx(0.1) and rates[1] < rates[0]  # positions: cosine, per epoch
