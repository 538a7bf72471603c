"""Every shipped recipe (configs/*.yaml) runs end to end with ``spikelib train --fast-dev-run``: its ``tiny`` section
(synthetic data, small layers), one epoch per stage, two batches, in a temporary folder. The SSC recipe validates on
SSC's official validation file."""

from pathlib import Path

import pytest

from spikelib.cli import main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One working folder for all recipes, so the synthetic data sets (runs/data) are generated once."""
    return tmp_path_factory.mktemp("recipes")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_runs_with_fast_dev_run(path, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert main(["train", str(path), "--fast-dev-run", "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("fast-dev-run passed: best epoch 1"), out[-3:]
    assert any(line.startswith("epoch 1/1:") for line in out)
    assert not (workdir / "runs").exists() or all(p.name == "data" for p in (workdir / "runs").iterdir())


def _write_ssc(folder, counts, seed=0):
    """Tiny files in the official SSC layout (ssc_{train,valid,test}.h5; 35 classes; labels 0..2 used)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in counts.items():
        with h5py.File(folder / f"ssc_{split}.h5", "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            labels = np.arange(n) % 3
            for i in range(n):
                k = int(rng.integers(20, 60))
                times[i] = np.sort(rng.uniform(0.05, 0.9, k)).astype(np.float32)
                units[i] = (labels[i] * 200 + rng.integers(0, 200, k)).astype(np.uint16)
            f.create_dataset("labels", data=labels.astype(np.uint16))


def test_ssc_uses_its_official_validation_split(tmp_path):
    from spikelib.training import Trainer, load_config

    _write_ssc(tmp_path / "ssc", {"train": 30, "valid": 9, "test": 12})
    overrides = [f"data.root={tmp_path / 'ssc'}", "data.batch_size=10", "data.max_time=1.0", "model.hidden=[8]",
                 "model.max_delay=4", "model.right_padding=2", "delays.sig_init=2", "train.epochs=1",
                 "train.device=cpu"]
    trainer = Trainer(load_config(CONFIG_DIR / "ssc_delays.yaml", overrides), None).setup()
    assert trainer.datasets["val"].split == "valid" and len(trainer.datasets["val"]) == 9
    assert len(trainer.datasets["train"]) == 30 and trainer.datasets["test"].split == "test"
    assert trainer.datasets["train"].time_origin == "first_spike"  # the recipe asks for spikingjelly's origin
    split = Trainer(load_config(CONFIG_DIR / "ssc_delays.yaml", overrides + ["data.val_fraction=0.2"]), None).setup()
    assert len(split.datasets["val"]) == 6 and len(split.datasets["train"]) == 24  # from train, when asked

