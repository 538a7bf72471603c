"""Checkpoints: weights_only round trip of every RNG state, atomic writes (an exception mid-write leaves the old file
and no temporary file; a full disk is a plain ENOSPC naming the file), the checksum (a flipped bit anywhere is an
error), clear errors for missing/corrupt/truncated/foreign files and for another model's weights."""

import errno
import os
import random

import numpy as np
import pytest
import torch
import yaml

from spikelib.training import atomic
from spikelib.training.checkpoint import (VERSION, CheckpointError, check_compatible, get_rng_state,
                                          load_checkpoint, load_model_state, save_checkpoint, set_rng_state)
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
    assert loaded["format"] == "spikelib-checkpoint" and loaded["version"] == VERSION == 2
    _draws()
    set_rng_state(loaded["rng"])
    second = _draws()
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and first[3] == second[3]


def test_trainer_checkpoint_has_everything_and_loads_weights_only(tmp_path):
    Trainer(parse_config(CONFIG), tmp_path).fit()
    data = load_checkpoint(tmp_path / "last.pt")
    assert {"model", "optimizers", "scaler", "stage", "epoch", "batch", "global_step", "running", "best", "history",
            "callbacks", "rng", "config", "model_name", "world_size", "checksum"} <= set(data)
    assert set(data["optimizers"]) == {"weights"} and set(data["optimizers"]["weights"]) == {"optimizer",
                                                                                            "schedulers"}
    assert data["epoch"] == 1 and data["batch"] == 0 and data["model_name"] == "spiking_mlp"
    assert parse_config(data["config"]) == parse_config(CONFIG)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == data["config"]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1 and set(best["model"]) == set(data["model"])


class _FullDisk:
    """A file object whose writes stop with ENOSPC after ``limit`` bytes (as a full disk does)."""

    def __init__(self, fh, limit):
        self.fh, self.limit = fh, limit

    def write(self, data):
        n = len(memoryview(data).cast("B"))
        if n > self.limit:
            self.fh.write(bytes(memoryview(data).cast("B")[: self.limit]))
            raise OSError(errno.ENOSPC, "No space left on device")
        self.limit -= n
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def test_a_full_disk_during_a_save_leaves_the_old_checkpoint_and_names_the_file(tmp_path, monkeypatch):
    import builtins

    from spikelib.training import checkpoint as C

    trainer = Trainer(parse_config(CONFIG), tmp_path)
    trainer.fit()
    before = (tmp_path / "last.pt").read_bytes()
    real_open = builtins.open

    def full_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return _FullDisk(fh, 1000) if "w" in mode and str(path).endswith(".tmp") else fh

    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    monkeypatch.setattr(C, "atomic_write", lambda path, writer: _write_with(path, writer, full_open))
    with pytest.raises(OSError) as exc:
        trainer.save()
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    load_checkpoint(tmp_path / "last.pt")  # still a complete, readable checkpoint


def _write_with(path, writer, opener):
    from spikelib._atomic import atomic_path

    with atomic_path(path) as tmp:
        fh = opener(tmp, "wb")
        try:
            writer(fh)
        finally:
            fh.close()
    return path


def test_a_flipped_bit_is_an_error(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"model_name": "m", "config": {"a": 1}, "model": {"w": torch.randn(64)}})
    data = bytearray((tmp_path / "c.pt").read_bytes())
    raw = torch.randn(64).numpy().tobytes()  # find the tensor's bytes in the zip (stored uncompressed) and flip one
    stored = torch.load(tmp_path / "c.pt", weights_only=True)["model"]["w"].numpy().tobytes()
    at = bytes(data).find(stored)
    assert at > 0 and raw != stored
    data[at + 17] ^= 0x04
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    assert not torch.equal(torch.load(tmp_path / "flipped.pt", weights_only=True)["model"]["w"],
                           torch.load(tmp_path / "c.pt", weights_only=True)["model"]["w"])  # loads, but differs
    with pytest.raises(CheckpointError, match="checksum mismatch: the file was damaged after it was written"):
        load_checkpoint(tmp_path / "flipped.pt")
    payload = torch.load(tmp_path / "c.pt", weights_only=True)  # a changed plain value is caught as well
    payload["config"]["a"] = 2
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(tmp_path / "edited.pt")
    del payload["checksum"]
    torch.save(payload, tmp_path / "nosum.pt")
    with pytest.raises(CheckpointError, match="has no checksum entry"):
        load_checkpoint(tmp_path / "nosum.pt")
    load_checkpoint(tmp_path / "c.pt")


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
    torch.save({"format": "spikelib-checkpoint", "version": 1, "model_name": "m", "config": {},
                "model": {"w": torch.zeros(2)}}, tmp_path / "v1.pt")
    assert load_checkpoint(tmp_path / "v1.pt")["model"]["w"].shape == (2,)  # version 1: no checksum, still read
    torch.save({"format": "spikelib-checkpoint", "version": 1, "model_name": "m", "config": {},
                "model": {"w": [1, 2]}}, tmp_path / "notensor.pt")
    with pytest.raises(CheckpointError, match="'model' entry is not a state dict of named tensors"):
        load_checkpoint(tmp_path / "notensor.pt")
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
