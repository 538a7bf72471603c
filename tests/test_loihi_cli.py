"""``spikelib loihi export|simulate|resources|nir`` through argparse (register), on a real checkpoint."""

import argparse
import json

import numpy as np
import pytest
import torch

from spikelib.hardware.loihi.cli import register


def _parser():
    p = argparse.ArgumentParser(prog="spikelib")
    register(p.add_subparsers(dest="command", required=True))
    return p


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from spikelib.training.checkpoint import save_checkpoint
    from spikelib.training.config import parse_config
    from spikelib.training.datasets import build_datasets
    from spikelib.training.trainer import build_model

    raw = {"data": {"dataset": "synthetic_temporal", "n_train": 16, "n_test": 8, "batch_size": 8},
           "model": {"name": "snn_delays", "hidden": [8], "max_delay": 4, "delays": "random"},
           "train": {"epochs": 1, "seed": 0, "device": "cpu"}}
    config = parse_config(raw)
    bundle = build_datasets(config.data.dataset, config.train.seed, **config.data.args)
    model = build_model(config, bundle.info)
    with torch.no_grad():
        for syn in list(model.synapses) + [model.readout]:
            syn.weight.mul_(3.0)
    path = tmp_path_factory.mktemp("ck") / "last.pt"
    save_checkpoint(path, {"model_name": config.model.name, "config": config.to_dict(), "model": model.state_dict()})
    return path


def test_export_simulate_resources_nir(checkpoint, tmp_path, capsys):
    out = tmp_path / "net.h5"
    assert _run(["loihi", "export", str(checkpoint), "--out", str(out)]) == 0
    report = json.loads((tmp_path / "net.h5.report.json").read_text())
    assert len(report["quantization"]["layers"]) == 2 and report["resources"]["total"]["cores"] >= 2
    assert "scale" in capsys.readouterr().out
    x = (torch.rand(30, 50) < 0.2).numpy().astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert _run(["loihi", "simulate", str(out), "--input", str(tmp_path / "x.npy")]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert sim["steps"] == 30 and sim["batch"] == 1 and len(sim["spikes_per_layer"]) == 2
    assert _run(["loihi", "resources", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["neurons"] == 8 + 10
    assert _run(["loihi", "nir", str(checkpoint), "--out", str(tmp_path / "m.nir")]) == 0
    assert (tmp_path / "m.nir").is_file()


@pytest.mark.lava
def test_simulate_with_lava(checkpoint, tmp_path, capsys):
    out = tmp_path / "net.h5"
    assert _run(["loihi", "export", str(checkpoint), "--out", str(out)]) == 0
    capsys.readouterr()
    assert _run(["loihi", "simulate", str(out), "--random", "25", "--rate", "0.3", "--lava"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["lava_bit_exact"] == {"spikes": True, "u": True, "v": True}


def test_errors(tmp_path, capsys):
    from spikelib.cli import main

    bad = tmp_path / "bad.h5"
    bad.write_text("x")
    assert main(["loihi", "simulate", str(bad), "--random", "5"]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert main(["loihi", "export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "n.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["loihi", "export", "ck.pt", "--out", "n.h5", "--weight-bits", "9"])
