"""The ``spikelib`` command: pluggable COMMAND_MODULES, --help everywhere, train/eval end to end, and clear exit-2
errors for a missing config, bad keys, wrong --resume use and bad checkpoints."""

import json
import subprocess
import sys
import types

import pytest
import yaml

import spikelib.cli as cli
from spikelib.cli import build_parser, main

CONFIG = {"data": {"dataset": "synthetic_temporal", "n_train": 40, "n_test": 12, "n_classes": 3, "n_groups": 3,
                   "n_channels": 6, "n_steps": 36, "max_shift": 5, "batch_size": 8},
          "model": {"name": "spiking_mlp", "hidden": [8]},
          "train": {"epochs": 1, "device": "cpu"}}


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


def test_every_command_has_help(capsys):
    commands = _commands()
    assert {"train", "eval", "demo", "backends"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: spikelib " + name in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "spikelib", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "demo" in out.stdout


def test_command_modules_plug_in(monkeypatch, capsys):
    module = types.ModuleType("fake_cmd")

    def register(subparsers):
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="x")
        p.set_defaults(func=lambda args: print(f"hello {args.name}") or 3)

    module.register = register
    monkeypatch.setitem(sys.modules, "fake_cmd", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ("fake_cmd",))
    assert main(["hello", "--name", "you"]) == 3
    assert capsys.readouterr().out == "hello you\n"
    monkeypatch.setitem(sys.modules, "broken_cmd", types.ModuleType("broken_cmd"))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("broken_cmd",))
    with pytest.raises(TypeError, match="command module broken_cmd has no register"):
        main(["x"])


def test_train_then_eval(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress", "--epochs", "2", "--lr", "0.02",
                 "--set", "optim.grad_clip=5"]) == 0
    assert f"{out}: best epoch" in capsys.readouterr().out
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["train"]["epochs"] == 2 and stored["optim"]["lr"] == 0.02 and stored["optim"]["grad_clip"] == 5
    result = json.loads((out / "result.json").read_text())
    assert main(["eval", str(out / "best.pt"), "--no-progress"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["split"] == "test" and ev["count"] == 12 and ev["acc"] == pytest.approx(result["test"]["acc"])
    assert main(["eval", str(out / "best.pt"), "--split", "val", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["acc"] == pytest.approx(result["val"]["acc"])
    # resuming a finished run changes nothing; a second plain run into the same folder is refused
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress", "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert "already holds a run (last.pt); pass --resume or another --out" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "{tmp}/missing.yaml"], "missing.yaml does not exist"),
    (["train", "{cfg}", "--set", "optim.lrr=1"], "optim.lrr: unknown key (did you mean 'lr'?)"),
    (["train", "{cfg}", "--set", "data.n_trian=5", "--out", "{tmp}/o"], "data.n_trian: unknown key"),
    (["train", "{cfg}", "--resume"], "--resume needs --out RUN_DIR"),
    (["train", "{cfg}", "--resume", "--out", "{tmp}/empty"], "last.pt does not exist"),
    (["eval", "{tmp}/missing.pt"], "missing.pt does not exist"),
    (["eval", "{tmp}/garbage.pt"], "could not be read (corrupt, truncated or not a torch file)"),
])
def test_bad_input_exits_2_with_a_clear_message(argv, message, cfg, tmp_path, capsys):
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 10)
    argv = [a.format(tmp=tmp_path, cfg=cfg) for a in argv]
    assert main(argv + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_argument_errors_exit_2(cfg, capsys):
    for argv in (["train", str(cfg), "--epochs", "0"], ["train", str(cfg), "--nproc", "0"],
                 ["eval", "x.pt", "--split", "dev"], ["demo", "--min-accuracy", "2"], ["nope"], []):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert capsys.readouterr().err == ("error: give the run configuration (spikelib train CONFIG.yaml), or --resume "
                                       "--out RUN_DIR\n")
