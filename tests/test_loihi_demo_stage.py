"""The demo's Loihi stage on a small SNN-delays model with learnable (float) delays: export, simulation, Lava."""

import json
from types import SimpleNamespace

import pytest
import torch

from spikelib.hardware.loihi.demo_stage import stage
from spikelib.models.snn_delays import SNNDelays


@pytest.mark.lava
def test_stage_reports_agreement(tmp_path):
    g = torch.Generator().manual_seed(0)
    model = SNNDelays(20, hidden=(16,), out_features=4, max_delay=6, delays="learn", generator=g)
    assert model.synapses[0].mode == "gaussian"  # float delays, as the demo hands the model over
    with torch.no_grad():
        for syn in list(model.synapses) + [model.readout]:
            syn.weight.mul_(3.0)
    model.eval()
    x = (torch.rand(40, 30, 20, generator=g) < 0.3).float() * torch.randint(1, 4, (40, 30, 20), generator=g)
    y = torch.randint(0, 4, (40,), generator=g)
    lines = []
    ctx = SimpleNamespace(model=model, loaders={"test": [(x[:20], y[:20]), (x[20:], y[20:])]}, run_dir=tmp_path,
                          echo=lines.append)
    res = stage(ctx)
    assert res["file_round_trip"] and res["n"] == 40
    assert res["lava"]["installed"] and res["lava"]["bit_exact"] == {"spikes": True, "u": True, "v": True}
    assert res["input_bins_over_one_spike"] > 0.15 and res["input_max_count"] == 3
    assert res["agreement"] >= 0.8 and res["passed"] and res["accuracy_within_tolerance"]
    assert model.synapses[0].mode == "gaussian"  # the stage restored the model's mode
    saved = json.loads((tmp_path / "loihi" / "report.json").read_text())
    assert saved["fixed_acc"] == res["fixed_acc"] and (tmp_path / "loihi" / "net.h5").is_file()
    assert "Lava bit-exact on spikes/u/v: True" in lines[0]
