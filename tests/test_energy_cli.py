"""``spikelib energy``: a checkpoint of the trainer -> report; bad input is reported with exit status 2."""

import json

import pytest


def _checkpoint(path):
    from spikelib.training.checkpoint import save_checkpoint
    from spikelib.training.config import parse_config
    from spikelib.training.trainer import build_model

    raw = {"data": {"dataset": "synthetic_temporal", "n_train": 8, "n_test": 12, "n_classes": 4, "n_steps": 70,
                    "n_channels": 12, "n_groups": 4},
           "model": {"name": "spiking_mlp", "hidden": [16], "init_gain": 4.0}}
    cfg = parse_config(raw)
    model = build_model(cfg, {"n_classes": 4, "n_channels": 12})
    save_checkpoint(path, {"model_name": "spiking_mlp", "config": cfg.to_dict(), "model": model.state_dict(),
                           "info": {"n_classes": 4, "n_channels": 12}})


def _parse(argv):
    import argparse

    from spikelib.hardware.energy.cli import register

    parser = argparse.ArgumentParser(prog="spikelib")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_energy_command_writes_a_report(tmp_path, capsys):
    ckpt = tmp_path / "best.pt"
    _checkpoint(ckpt)
    out = tmp_path / "report"
    args = _parse(["energy", str(ckpt), "--model", "loihi", "--method", "memory", "--batch-size", "5",
                   "--out", str(out)])
    assert args.func(args) == 0
    rep = json.loads((out / "energy.json").read_text())
    assert rep["samples"] == 12 and rep["main"].startswith("SNN (loihi/default, memory)")
    assert (out / "spike_raster.png").is_file()
    assert "per sample" in capsys.readouterr().out


def test_energy_command_with_a_tensor_file(tmp_path):
    import torch

    ckpt = tmp_path / "best.pt"
    _checkpoint(ckpt)
    x = (torch.rand(7, 70, 12, generator=torch.Generator().manual_seed(0)) < 0.2).float()  # [N, T, C]
    torch.save({"x": x}, tmp_path / "data.pt")
    out = tmp_path / "r"
    args = _parse(["energy", str(ckpt), "--data", str(tmp_path / "data.pt"), "--no-plots", "--out", str(out)])
    assert args.func(args) == 0
    rep = json.loads((out / "energy.json").read_text())
    assert rep["samples"] == 7
    assert rep["counts"]["layers"][0]["in_spikes"] == int(x.sum())  # the file's spikes reached the first layer
    assert not (out / "energy_per_layer.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--model", "truenorth"], "unknown energy model 'truenorth'"),
    (["--data", "nothing.csv"], "--data must be"),
])
def test_energy_command_bad_input(tmp_path, capsys, argv, message):
    from spikelib.cli import main

    ckpt = tmp_path / "best.pt"
    _checkpoint(ckpt)
    assert main(["energy", str(ckpt), "--out", str(tmp_path / "o")] + argv) == 2
    assert message in capsys.readouterr().err
    assert main(["energy", str(tmp_path / "none.pt")]) == 2 and "does not exist" in capsys.readouterr().err
