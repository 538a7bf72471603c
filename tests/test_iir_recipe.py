"""The IIR-SNN recipe (spikelib.conversion.iir): recipes parse, a tiny end-to-end run on the digits set writes the
table with accuracy and energy per T, and a run killed (SIGKILL) in the middle of a stage resumes to the result of an
uninterrupted run."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from spikelib.conversion.iir import ann_per_inference, load_recipe, run_iir, summary_table
from spikelib.training import ConfigError

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "data": {"dataset": "digits", "batch_size": 32, "eval_batch_size": 512, "val_fraction": 0.1},
    "train": {"seed": 0, "device": "cpu", "progress": False, "max_batches": 3, "checkpoint_every": 1},
    "ann": {"model": {"name": "vgg_tiny_ann"}, "optim": {"name": "sgd", "lr": 0.05}, "train": {"epochs": 1}},
    "conversion": {"steps": 4, "batch_size": 64, "eval_timesteps": [1, 3]},
    "snn": {"model": {"name": "vgg_tiny_snn"}, "optim": {"name": "adam", "lr": 1e-3},
            "stages": {"timesteps": [3, 1], "epochs": 2}},
    "scratch": {"timesteps": 1, "epochs": 1},
    "energy": {"batches": 1},
}


def test_shipped_recipes_parse():
    files = sorted(glob.glob(str(ROOT / "configs" / "iir" / "*.yaml")))
    assert len(files) >= 4
    for f in files:
        recipe = load_recipe(f)
        assert [s.timesteps for s in recipe["snn"].stages] == [5, 3, 2, 1]
        assert recipe["conversion"]["percentile"] == 90


@pytest.mark.parametrize("change,match", [
    ({"extra": {}}, "extra: unknown section"),
    ({"snn": {"model": {"name": "vgg_tiny_snn"}}}, "snn.stages: required"),
    ({"conversion": {"percentil": 90}}, "conversion.percentil: unknown key"),
    ({"scratch": {"timesteps": 0, "epochs": 1}}, "scratch.timesteps"),
    ({"ann": {"model": {"name": "vgg_tiny_ann"}, "optim": {"lr": -1}}}, "ann: optim.lr"),
])
def test_bad_recipes_name_the_key(change, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe({**TINY, **change})


def test_tiny_run_reports_every_t(tmp_path):
    result = run_iir(TINY, tmp_path / "run", progress=False)
    assert [r["timesteps"] for r in result["iir"]] == [3, 1]
    for row in result["iir"]:
        assert 0.0 <= row["test_acc"] <= 1.0
        assert row["samples"] == 450 and row["macs_per_inference"] > 0  # the first layer: analog input
    conv = json.loads((tmp_path / "run" / "conversion.json").read_text())
    assert set(conv["test_acc_by_T"]) == {"1", "3"} and len(conv["thresholds"]) == 3
    assert result["scratch"]["timesteps"] == 1
    # the ANN row is one dense pass: the T = 3 stage's dense equivalent is three of them, the T = 1 stage's one
    macs, energy = ann_per_inference(result)
    assert macs > 0 and macs == pytest.approx(result["iir"][1]["ann_macs_per_inference"])
    assert result["iir"][0]["ann_macs_per_inference"] == pytest.approx(3 * macs)
    assert energy > 0 and energy == pytest.approx(result["iir"][1]["ann_energy_uj_per_inference"])
    table = (tmp_path / "run" / "summary.md").read_text()
    assert table == summary_table(result) and "| IIR SNN | 1 |" in table and "SNN from scratch" in table
    with pytest.raises(ConfigError, match="not empty"):
        run_iir(TINY, tmp_path / "run")


_SCRIPT = """
import os, signal, sys, json
from spikelib.conversion.iir import run_iir
from spikelib.training import Callback

class Kill(Callback):
    def __init__(self, armed):
        self.armed = armed
    def on_batch_end(self, trainer):
        if self.armed and trainer.stage == 1 and trainer.epoch == 0 and trainer.batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

recipe, run_dir, resume, armed = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
run_iir(recipe, run_dir, resume=resume, progress=False, snn_callbacks=[Kill(armed)])
"""


def _run(tmp_path, run_dir, resume, armed):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(TINY), str(run_dir), str(int(resume)),
                           str(int(armed))], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_sigkill_in_a_stage_then_resume_equals_an_uninterrupted_run(tmp_path):
    full = _run(tmp_path, tmp_path / "full", False, False)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run(tmp_path, tmp_path / "killed", False, True)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "killed" / "result.json").exists()
    assert (tmp_path / "killed" / "snn" / "last.pt").is_file()
    resumed = _run(tmp_path, tmp_path / "killed", True, False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("best_T3.pt", "best_T1.pt", "last.pt"):
        a = torch.load(tmp_path / "full" / "snn" / name, weights_only=True)["model"]
        b = torch.load(tmp_path / "killed" / "snn" / name, weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ra = json.loads((tmp_path / "full" / "result.json").read_text())
    rb = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert ra["iir"] == rb["iir"] and ra["ann"] == rb["ann"]


def test_command_line_errors_are_one_line(tmp_path, capsys):
    from spikelib.conversion.iir import main

    assert main([str(tmp_path / "missing.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: config file") and "does not exist" in err[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {dataset: digits}\nann: {model: {name: vgg_tiny_ann}}\nsnn: {model: {name: vgg_tiny_snn}}\n")
    assert main([str(bad), "--run-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == "error: snn.stages: required (e.g. {timesteps: [5, 3, 2, 1], epochs: 10})"


def test_spikelib_iir_command(tmp_path, capsys):
    from spikelib.cli import main

    assert main(["iir", str(tmp_path / "missing.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: config file")


def test_calibration_batch_comes_from_the_training_part_only():
    from spikelib.conversion.iir import _calibration_batch
    from spikelib.training.build import split_train_val
    from spikelib.training.datasets import build_datasets

    recipe = load_recipe(TINY)
    bundle = build_datasets("digits", 0)
    x = _calibration_batch(bundle, recipe["ann"], 5000, 0)
    train, val = split_train_val(bundle.train, 0.1, 0)
    assert x.shape[0] == len(train) == 1347 - 135
    # the whole training part, in some order: the same images as the trainer's training subset, no validation image
    assert sorted(tuple(v.flatten().tolist()) for v in x) == sorted(
        tuple(bundle.train[i][0].flatten().tolist()) for i in train.indices)
    again = _calibration_batch(bundle, recipe["ann"], 64, 0)
    assert torch.equal(again, _calibration_batch(bundle, recipe["ann"], 64, 0))


def test_shipped_digits_recipes_run_end_to_end_at_smoke_size(tmp_path):
    """Every shipped digits recipe (the shallow and the deep VGG) runs through all its parts: its own models, stages
    and baseline, with one batch per epoch and a few balancing steps."""
    for name in ("digits.yaml", "digits_deep.yaml"):
        raw = yaml.safe_load((ROOT / "configs" / "iir" / name).read_text())
        raw["train"].update(max_batches=1, progress=False)
        for part in ("ann", "scratch"):
            raw[part]["train"] = {**raw[part].get("train", {}), "epochs": 1}
        raw["scratch"]["epochs"] = 1
        raw["ann"].pop("schedule")
        raw["scratch"].pop("schedule")
        raw["snn"].pop("schedule")
        raw["snn"]["stages"]["epochs"] = 1
        raw["conversion"].update(steps=3, batch_size=16, eval_timesteps=[1])
        result = run_iir(raw, tmp_path / name, progress=False)
        assert [r["timesteps"] for r in result["iir"]] == [5, 3, 2, 1]
        assert result["scratch"]["timesteps"] == 1 and result["ann"]["model"] == raw["ann"]["model"]["name"]
        assert all(r["macs_per_inference"] > 0 for r in result["iir"])
