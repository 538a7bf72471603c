"""Checkpoints: weights_only round trip of every RNG state, atomic writes (an exception mid-write leaves the old file
and no temporary file), clear errors for missing/corrupt/truncated/foreign files and for another model's weights."""

import os
import random

import numpy as np
import pytest
import torch
import yaml

from spikelib.training import atomic
from spikelib.training.checkpoint import (CheckpointError, check_compatible, get_rng_state, load_checkpoint,
                                          load_model_state, save_checkpoint, set_rng_state)
from spikelib.training.config import parse_config
from spikelib.training.trainer import Trainer

CONFIG = {"data": {"dataset": "synthetic_temporal", "n_train": 40, "n_test": 10, "n_classes": 3, "n_groups": 3,
                   "n_channels": 6, "n_steps": 36, "max_shift": 5, "batch_size": 8},
          "model": {"name": "spiking_mlp", "hidden": [8]},
          "train": {"epochs": 1, "device": "cpu", "progress": False}}


def _draws():
    return torch.rand(4), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn()


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    np.random.randn()  # leave a cached Gaussian in NumPy's state
    state = get_rng_state()
    first = _draws()
    save_checkpoint(tmp_path / "c.pt", {"model_name": "m", "config": {}, "model": {}, "rng": state})
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)  # plain types and tensors only
    assert loaded["format"] == "spikelib-checkpoint" and loaded["version"] == 1
    _draws()
    set_rng_state(loaded["rng"])
    second = _draws()
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and first[3] == second[3]


def test_trainer_checkpoint_has_everything_and_loads_weights_only(tmp_path):
    Trainer(parse_config(CONFIG), tmp_path).fit()
    data = load_checkpoint(tmp_path / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "batch", "global_step", "running", "best",
            "history", "rng", "config", "model_name", "world_size"} <= set(data)
    assert data["epoch"] == 1 and data["batch"] == 0 and data["model_name"] == "spiking_mlp"
    assert parse_config(data["config"]) == parse_config(CONFIG)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == data["config"]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1 and set(best["model"]) == set(data["model"])


def test_exception_during_write_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    trainer = Trainer(parse_config(CONFIG), tmp_path)
    trainer.fit()
    before = (tmp_path / "last.pt").read_bytes()
    real_save = torch.save

    def failing_save(obj, fh, *args, **kwargs):
        real_save(obj, fh, *args, **kwargs)
        fh.write(b"half")
        fh.flush()
        raise OSError("disk full (injected)")

    monkeypatch.setattr(atomic.torch, "save", failing_save)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="injected"):
        trainer.save()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.setattr(atomic.torch, "save", real_save)
    load_checkpoint(tmp_path / "last.pt")  # still a complete, readable checkpoint


def test_atomic_write_text_and_permissions(tmp_path):
    path = atomic.atomic_write_text(tmp_path / "a.txt", "hello")
    assert path.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic.atomic_write_text(tmp_path / "missing" / "a.txt", "x")


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="could not be read .corrupt, truncated or not a torch file"):
        load_checkpoint(tmp_path / "garbage.pt")
    save_checkpoint(tmp_path / "full.pt", {"model_name": "m", "config": {}, "model": {"w": torch.zeros(1000)}})
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(tmp_path / "truncated.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is not a spikelib checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "spikelib-checkpoint", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"format": "spikelib-checkpoint", "version": 1, "model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="has no 'model_name' entry"):
        load_checkpoint(tmp_path / "partial.pt")


def test_checkpoint_of_another_model_is_refused_with_the_mismatch_named():
    from spikelib.models import SpikingMLP

    small, big = SpikingMLP(6, (8,), 3), SpikingMLP(6, (16,), 3)
    with pytest.raises(CheckpointError, match=r"shape mismatch linears.0.weight: \(8, 6\) in the checkpoint vs "
                                              r"\(16, 6\) in the model"):
        load_model_state(big, small.state_dict(), "spiking_mlp")
    deep = SpikingMLP(6, (8, 8), 3)
    with pytest.raises(CheckpointError, match=r"missing keys \['linears.1.weight'"):
        load_model_state(deep, small.state_dict(), "spiking_mlp")
    ckpt = {"model_name": "spiking_mlp", "config": {"model": {"name": "spiking_mlp", "hidden": [8]},
                                                    "data": {"dataset": "synthetic_temporal"}}}
    with pytest.raises(CheckpointError, match=r"model.hidden: \[8\] in the checkpoint, \[16\] in this run; "
                                              r"model.tau: not in the checkpoint, 3.0 in this run"):
        check_compatible(ckpt, {"model": {"name": "spiking_mlp", "hidden": [16], "tau": 3.0},
                                "data": {"dataset": "synthetic_temporal"}})
    with pytest.raises(CheckpointError, match="model.name: 'spiking_mlp' in the checkpoint, 'snn_delays' in this run"):
        check_compatible(ckpt, {"model": {"name": "snn_delays", "hidden": [8]},
                                "data": {"dataset": "synthetic_temporal"}})
