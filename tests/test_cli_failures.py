"""Every command on the command line: expected failures end in ONE ``error:`` line naming the cause and what to do,
with exit status 2 (missing data set, missing optional package, bad or truncated input files, non-UTF-8 YAML, NaN
weights, a full disk, permission denied, an interrupted run, bad checkpoint fields); one line per epoch when stdout
is not a terminal; ``-v`` after the sub-command; backend messages only with ``-vv``; --set parsed by type; --resume
hints; --max-batches; spikelib nir export|import|check."""

import errno
import json
import logging
import os
import tempfile

import pytest
import torch
import yaml

from spikelib.cli import main

CONFIG = {"data": {"dataset": "synthetic_temporal", "n_train": 40, "n_test": 12, "n_classes": 3, "n_groups": 3,
                   "n_channels": 6, "n_steps": 36, "max_shift": 5, "batch_size": 8},
          "model": {"name": "spiking_mlp", "hidden": [8]},
          "train": {"epochs": 2, "device": "cpu"}}


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run of CONFIG (best.pt, last.pt)."""
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    assert main(["train", str(path), "--out", str(folder / "run"), "--no-progress"]) == 0
    return folder / "run"


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_one_line_per_epoch_without_a_terminal_and_v_after_the_subcommand(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress", "-v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("train loss" in line and "val loss" in line and "lr " in line for line in epochs)
    assert lines[-1].startswith(f"{out}: best epoch")
    assert logging.getLogger("spikelib.training.trainer").getEffectiveLevel() == logging.INFO  # -v took effect
    assert logging.getLogger("spikelib.kernels").getEffectiveLevel() == logging.WARNING  # backends only with -vv
    assert main(["train", str(cfg), "--out", str(tmp_path / "run2"), "--no-progress", "-vv", "--epochs", "1"]) == 0
    assert logging.getLogger("spikelib.kernels").getEffectiveLevel() == logging.DEBUG
    from spikelib.cli import configure_logging

    configure_logging(0)  # leave the default levels to later tests


def test_set_values_are_parsed_by_type_with_clear_errors(cfg, tmp_path, capsys):
    assert main(["train", str(cfg), "--out", str(tmp_path / "a"), "--set", "model.hidden=8"]) == 2
    assert _error_line(capsys).endswith("model.hidden: expected a list of integers (e.g. [64] or [64, 64]), got 8")
    assert main(["train", str(cfg), "--out", str(tmp_path / "b"), "--set", "optim.lr=1e-2", "--epochs", "1",
                 "--no-progress"]) == 0
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["optim"]["lr"] == 0.01
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(tmp_path / "c"), "--set", "model.out_features=5"]) == 2
    assert "model.out_features: 5 in the configuration, but synthetic_temporal has 3 classes" in _error_line(capsys)


def test_max_batches_and_resume_hints(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress", "--max-batches", "2"]) == 0
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["global_step"] == 4 and last["config"]["train"]["max_batches"] == 2
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--set", "model.hidden=[4]"]) == 2
    line = _error_line(capsys)
    assert "model.hidden: [8] in the checkpoint, [4] in this run" in line
    assert f"spikelib train --resume --out {out} (reads {out / 'config.yaml'})" in line
    assert main(["train", "--resume", "--out", str(out), "--no-progress", "--epochs", "3"]) == 0  # its own config
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 3


def test_missing_data_set(tmp_path, capsys):
    path = tmp_path / "shd.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "shd", "root": str(tmp_path / "nowhere")},
                                    "model": {"name": "spiking_mlp"}}))
    assert main(["train", str(path), "--out", str(tmp_path / "o")]) == 2
    line = _error_line(capsys)
    assert "SHD train file not found" in line and "nowhere" in line


def test_missing_optional_package(cfg, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert main(["train", str(cfg), "--out", str(tmp_path / "o"), "--set", "train.tensorboard=true"]) == 2
    assert "train.tensorboard: true needs the tensorboard package: pip install tensorboard" in _error_line(capsys)


def test_non_utf8_and_duplicate_key_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"data:\n  dataset: synthetic_temporal\n  root: caf\xe9\n")
    assert main(["train", str(bad)]) == 2
    assert "not UTF-8 text" in _error_line(capsys)
    dup = tmp_path / "dup.yaml"
    dup.write_text("data:\n  dataset: synthetic_temporal\nmodel:\n  name: spiking_mlp\n  name: snn_delays\n")
    assert main(["train", str(dup)]) == 2
    assert "key 'name' appears twice in one mapping" in _error_line(capsys)


def test_truncated_and_foreign_input_files(trained, tmp_path, capsys):
    x = torch.rand(5, 36, 6)
    torch.save({"x": x}, tmp_path / "x.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "x.pt").read_bytes()[:300])
    assert main(["energy", str(trained / "best.pt"), "--data", str(tmp_path / "cut.pt"), "--out",
                 str(tmp_path / "e")]) == 2
    assert "--data:" in _error_line(capsys)
    import numpy as np

    np.save(tmp_path / "s.npy", np.zeros((10, 6), dtype=np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "s.npy").read_bytes()[:100])
    assert main(["loihi", "export", str(trained / "best.pt"), "--out", str(tmp_path / "n.h5")]) == 0
    capsys.readouterr()
    assert main(["loihi", "simulate", str(tmp_path / "n.h5"), "--input", str(tmp_path / "cut.npy")]) == 2
    assert "--input:" in _error_line(capsys)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["loihi", "simulate", str(tmp_path / "n.h5"), "--input", str(tmp_path / "obj.npy")]) == 2
    assert "--input:" in _error_line(capsys)
    data = bytearray((trained / "best.pt").read_bytes())
    (tmp_path / "cut_ckpt.pt").write_bytes(bytes(data[: len(data) // 2]))
    for command in (["eval"], ["energy"], ["loihi", "export"], ["nir", "export"]):
        extra = ["--out", str(tmp_path / "x.out")] if command[0] in ("loihi", "nir") else []
        assert main(command + [str(tmp_path / "cut_ckpt.pt")] + extra) == 2
        assert "could not be read (corrupt, truncated or not a torch file)" in _error_line(capsys)


def test_nan_weights_and_bad_checkpoint_fields(trained, tmp_path, capsys):
    from spikelib.training.checkpoint import load_checkpoint, save_checkpoint

    data = load_checkpoint(trained / "best.pt")
    data["model"]["linears.0.weight"][0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", data)
    for command in (["eval"], ["energy"], ["loihi", "export"], ["nir", "export"]):
        extra = ["--out", str(tmp_path / "x.out")] if command[0] in ("loihi", "nir") else []
        assert main(command + [str(tmp_path / "nan.pt")] + extra) == 2
        assert "linears.0.weight hold NaN or infinite values (the run diverged)" in _error_line(capsys)
    data = load_checkpoint(trained / "best.pt")
    data["config"]["model"]["hidden"] = [400000000]  # would allocate ~250 GB if it were built
    save_checkpoint(tmp_path / "huge.pt", data)
    assert main(["eval", str(tmp_path / "huge.pt")]) == 2
    assert "its configuration asks for a model far larger than the weights the file holds" in _error_line(capsys)
    data = load_checkpoint(trained / "best.pt")
    data["config"]["optim"]["lr"] = "fast"
    save_checkpoint(tmp_path / "field.pt", data)
    assert main(["eval", str(tmp_path / "field.pt")]) == 2
    assert "configuration: optim.lr: expected a finite number > 0, got 'fast'" in _error_line(capsys)
    data = load_checkpoint(trained / "best.pt")
    data["config"]["model"]["hidden"] = [9]
    save_checkpoint(tmp_path / "shape.pt", data)
    assert main(["eval", str(tmp_path / "shape.pt")]) == 2
    assert "its configuration does not describe its weights" in _error_line(capsys)


def _fail_writes_under(monkeypatch, folder, err):
    """Make folder creation and atomic writes under ``folder`` fail with ``err`` (root ignores chmod)."""
    real_mkdir, real_mkstemp = os.mkdir, tempfile.mkstemp

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            raise OSError(err, os.strerror(err), str(path)) if err != errno.EACCES else \
                PermissionError(err, os.strerror(err), str(path))
        return real_mkdir(path, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(folder)):
            raise PermissionError(err, os.strerror(err), str(dir)) if err == errno.EACCES else \
                OSError(err, os.strerror(err), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_permission_denied_in_every_writing_command(trained, cfg, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "sub").mkdir()
    _fail_writes_under(monkeypatch, ro, errno.EACCES)
    commands = [["train", str(cfg), "--out", str(ro / "run")],
                ["demo", "--out", str(ro), "--epochs", "1", "--n-train", "40", "--n-test", "20"],
                ["energy", str(trained / "best.pt"), "--out", str(ro / "energy")],
                ["loihi", "export", str(trained / "best.pt"), "--out", str(ro / "sub" / "net.h5")],
                ["nir", "export", str(trained / "best.pt"), "--out", str(ro / "sub" / "m.nir")],
                ["data", "synth-shd", "--out", str(ro / "shd"), "--train", "4", "--test", "2", "--no-progress"],
                ["data", "synth-modelnet", "--out", str(ro / "mn"), "--train", "4", "--test", "2", "--no-progress"]]
    for argv in commands:
        assert main(argv) == 2, argv
        line = _error_line(capsys)
        assert line.startswith("error: permission denied:") and str(ro) in line, (argv, line)


def test_a_full_disk_during_the_first_save(cfg, tmp_path, capsys, monkeypatch):
    from spikelib.training import checkpoint as C

    real = C.atomic_write

    def full(path, writer):
        if path.name == "last.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, writer)

    monkeypatch.setattr(C, "atomic_write", full)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: no space left on device while writing {out / 'last.pt'}: free some space")


def test_interrupted_run_saves_and_says_how_to_resume(cfg, tmp_path, capsys, monkeypatch):
    import signal

    from spikelib.training import Callback, trainer as T

    class Interrupt(Callback):  # a SIGINT arriving in the middle of the first epoch
        def on_batch_end(self, trainer):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    real_init = T.Trainer.__init__

    def init(self, *args, callbacks=(), **kwargs):
        real_init(self, *args, callbacks=list(callbacks) + [Interrupt()], **kwargs)

    monkeypatch.setattr(T.Trainer, "__init__", init)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job (nohup ... &)
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert line == (f"error: interrupted by SIGINT at epoch 1, batch 2; {out / 'last.pt'} holds this point: continue "
                    f"with spikelib train --resume --out {out}")
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and state["batch"] == 2
    assert signal.getsignal(signal.SIGINT) is before  # the handler was restored


def test_nir_export_import_check(trained, tmp_path, capsys):
    pytest.importorskip("nir")
    out = tmp_path / "m.nir"
    assert main(["nir", "export", str(trained / "best.pt"), "--out", str(out)]) == 0
    assert out.is_file() and "nodes" in capsys.readouterr().out
    assert main(["nir", "import", str(out), "--out", str(tmp_path / "w.pt")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"] > 0 and "input" in summary["nodes"]
    assert set(torch.load(tmp_path / "w.pt", weights_only=True))
    assert main(["nir", "check", str(out), "--random", "10"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["importable"] and check["run"]["steps"] == 10 and check["run"]["finite"]
    assert main(["nir", "check", str(tmp_path / "none.nir")]) == 2
    assert "does not exist" in _error_line(capsys)
    (tmp_path / "junk.nir").write_bytes(b"not hdf5")
    assert main(["nir", "check", str(tmp_path / "junk.nir")]) == 2
    assert "could not be read as a NIR graph" in _error_line(capsys)
    assert main(["loihi", "nir", str(trained / "best.pt"), "--out", str(tmp_path / "alias.nir")]) == 0  # the alias
