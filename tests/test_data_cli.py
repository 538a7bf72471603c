"""``spikelib data synth-shd|synth-modelnet``: help, outputs equal to the library calls, progress, bad input."""

from __future__ import annotations

import argparse
import subprocess
import sys

import h5py
import numpy as np
import pytest

from spikelib.data import cli as data_cli
from spikelib.data.modelnet import ModelNet40Dataset
from spikelib.data.shd import SHDDataset
from spikelib.data.synthetic_shapes import write_synthetic_shapes
from spikelib.data.synthetic_shd import write_synthetic_shd


def _parser():
    parser = argparse.ArgumentParser(prog="spikelib")
    sub = parser.add_subparsers(dest="command", required=True)
    data_cli.register(sub)
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("argv", [["data", "--help"], ["data", "synth-shd", "--help"],
                                  ["data", "synth-modelnet", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "synth-shd" in out if argv == ["data", "--help"] else "--train" in out and "--seed" in out


def test_synth_shd_equals_library_call(tmp_path, capsys):
    assert _run(["data", "synth-shd", "--out", str(tmp_path / "cli"), "--train", "30", "--test", "10",
                 "--seed", "4"]) == 0
    captured = capsys.readouterr()
    assert "synthetic SHD train" in captured.err and "100%" in captured.err  # the tqdm progress bar
    assert "shd_train.h5" in captured.out
    ref = write_synthetic_shd(tmp_path / "lib", n_train=30, n_test=10, seed=4)
    for split in ("train", "test"):
        with h5py.File(tmp_path / "cli" / f"shd_{split}.h5", "r") as a, h5py.File(ref[split], "r") as b:
            assert np.array_equal(a["labels"][()], b["labels"][()])
            assert all(np.array_equal(a["spikes/times"][i], b["spikes/times"][i]) for i in range(len(b["labels"])))
    assert len(SHDDataset(tmp_path / "cli", "test")) == 10


def test_synth_modelnet_equals_library_call(tmp_path, capsys):
    assert _run(["data", "synth-modelnet", "--out", str(tmp_path / "cli"), "--train", "12", "--test", "6",
                 "--points", "128", "--classes", "cube,sphere,torus", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""  # --no-progress
    ref = write_synthetic_shapes(tmp_path / "lib", n_train=12, n_test=6, n_points=128,
                                 classes=["cube", "sphere", "torus"])
    with h5py.File(tmp_path / "cli" / "ply_data_train0.h5", "r") as a, h5py.File(ref["train"][0], "r") as b:
        assert np.array_equal(a["data"][()], b["data"][()])
    ds = ModelNet40Dataset(tmp_path / "cli", "train", n_points=128)
    assert ds.class_names == ["cube", "sphere", "torus"] and len(ds) == 12


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["data", "synth-shd", "--out", str(tmp_path), "--train", "0"])
    assert info.value.code == 2 and "expected an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["data", "synth-shd", "--train", "3"])  # --out is required
    assert "--out" in capsys.readouterr().err
    assert _run(["data", "synth-modelnet", "--out", str(tmp_path), "--classes", "cube,blob"]) == 2
    assert "unknown --classes ['blob']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["data", "synth-modelnet", "--out", str(tmp_path), "--noise", "-1"])


def test_refuses_to_overwrite_real_data(tmp_path, capsys):
    with h5py.File(tmp_path / "shd_train.h5", "w") as f:  # stands for the real SHD file
        f.create_dataset("labels", data=np.zeros(3, dtype=np.uint16))
    before = (tmp_path / "shd_train.h5").read_bytes()
    assert _run(["data", "synth-shd", "--out", str(tmp_path), "--train", "5", "--test", "5", "--no-progress"]) == 2
    assert "not written by the synthetic generator" in capsys.readouterr().err
    assert (tmp_path / "shd_train.h5").read_bytes() == before and not (tmp_path / "shd_test.h5").exists()
    assert _run(["data", "synth-shd", "--out", str(tmp_path), "--train", "5", "--test", "5", "--no-progress",
                 "--force"]) == 0
    assert len(SHDDataset(tmp_path, "train")) == 5
    assert _run(["data", "synth-shd", "--out", str(tmp_path), "--train", "6", "--test", "5",
                 "--no-progress"]) == 0  # synthetic files are replaced without --force
    assert len(SHDDataset(tmp_path, "train")) == 6


def test_data_commands_extension(monkeypatch):
    def register_hello(sub):
        p = sub.add_parser("hello", help="say hello")
        p.set_defaults(func=lambda args: 7)

    monkeypatch.setattr(data_cli, "DATA_COMMANDS", data_cli.DATA_COMMANDS + [("hello", register_hello)])
    assert _run(["data", "hello"]) == 7

    def register_wrong(sub):
        sub.add_parser("other")

    monkeypatch.setattr(data_cli, "DATA_COMMANDS", data_cli.DATA_COMMANDS + [("named", register_wrong)])
    with pytest.raises(RuntimeError, match="did not add a parser named 'named'"):
        _parser()


def test_spikelib_command(tmp_path):
    """The installed ``spikelib`` entry point lists the data group (once spikelib.cli includes it)."""
    from spikelib import cli

    if "spikelib.data.cli" not in cli.COMMAND_MODULES:
        pytest.fail("spikelib.data.cli is not in spikelib.cli.COMMAND_MODULES")
    run = subprocess.run([sys.executable, "-m", "spikelib.cli", "data", "synth-shd", "--out", str(tmp_path),
                          "--train", "4", "--test", "2", "--no-progress"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(SHDDataset(tmp_path, "train")) == 4


def test_check_command(tmp_path, capsys):
    import json

    write_synthetic_shd(tmp_path, n_train=8, n_test=4, seed=0)
    assert _run(["data", "check", str(tmp_path)]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [d["split"] for d in lines] == ["train", "test"] and [d["samples"] for d in lines] == [8, 4]
    assert lines[1]["speakers"] == [10, 11] and lines[0]["spikes_per_sample"]["min"] > 0
    assert _run(["data", "check", str(tmp_path / "shd_test.h5")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    with h5py.File(tmp_path / "shd_test.h5", "a") as f:  # damage one sample
        f["spikes/units"][2] = np.array([1, 2, 900], dtype=np.uint16)
        f["spikes/times"][2] = np.array([0.1, 0.2, 0.3], dtype=np.float16)
    assert _run(["data", "check", str(tmp_path)]) == 2
    assert "sample 2 has unit index 900" in capsys.readouterr().err
    assert _run(["data", "check", str(tmp_path / "nothing")]) == 2
    assert "no SHD files" in capsys.readouterr().err
