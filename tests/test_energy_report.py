"""Energy reports: JSON contents, Markdown/HTML tables, PNG plots."""

import json

import pytest
import torch
from torch import nn

from spikelib.hardware.energy.accounting import ann_baseline, estimate_energy
from spikelib.hardware.energy.counting import measure
from spikelib.hardware.energy.models import load_energy_model
from spikelib.hardware.energy.report import build_report, format_energy, write_report
from spikelib.neurons import LIF


@pytest.fixture(scope="module")
def counts():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), LIF(v_threshold=0.2), nn.Linear(16, 4), LIF(v_threshold=0.2))
    data = [((torch.rand(8, 3, 10) < 0.3).float(), torch.zeros(3)) for _ in range(2)]
    return measure(net, data)


def test_report_files_and_contents(tmp_path, counts):
    model = load_energy_model("horowitz45")
    ests = [estimate_energy(counts, model), estimate_energy(counts, model, method="memory"),
            ann_baseline(counts, model, profile="fp32"), ann_baseline(counts, model, profile="int8")]
    files = write_report(tmp_path, counts, ests, [model], meta={"checkpoint": "demo.pt"})
    assert set(files) == {"energy.json", "energy.md", "energy.html", "energy_per_layer.png", "firing_rates.png",
                          "spike_raster.png"}
    for name in ("energy_per_layer.png", "firing_rates.png", "spike_raster.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads((tmp_path / "energy.json").read_text())
    assert rep["samples"] == 6 and rep["meta"]["checkpoint"] == "demo.pt"
    assert sum(r["energy_pJ"] for r in rep["layers"]) == pytest.approx(ests[0].total_pj)
    assert sum(r["share"] for r in rep["layers"]) == pytest.approx(1.0)
    assert rep["summary"][2]["total_pJ"] == pytest.approx(counts.total("dense_macs") * 4.6)
    lif = next(r for r in rep["layers"] if r["name"] == "1")
    c = counts.layer("1")
    assert lif["firing_rate"] == pytest.approx(c.out_spikes / (16 * 8 * 6))
    assert rep["models"][0]["citation"].startswith("M. Horowitz")
    md = (tmp_path / "energy.md").read_text()
    assert "| layer | kind | SOPs |" in md and f"| 0 | linear | {counts.layer('0').sops:,} |" in md
    assert "ISSCC" in md
    page = (tmp_path / "energy.html").read_text()
    assert page.count("<table>") == 2 and 'src="spike_raster.png"' in page
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_report_without_plots_and_bad_input(tmp_path, counts):
    files = write_report(tmp_path, counts, [estimate_energy(counts)], plots=False)
    assert set(files) == {"energy.json", "energy.md", "energy.html"}
    with pytest.raises(ValueError, match="at least one EnergyEstimate"):
        build_report(counts, [])


def test_format_energy():
    assert format_energy(12.0) == "12 pJ"
    assert format_energy(1234.5) == "1.23 nJ"
    assert format_energy(2.5e9) == "2.5 mJ"
    assert format_energy(None) == "-"


# ------------------------------------------------------------------------------------------------------- demo
def test_demo_stage_writes_into_the_run_folder(tmp_path):
    from types import SimpleNamespace

    from spikelib.hardware.energy.cli import demo_stage
    from spikelib.models import SpikingMLP

    torch.manual_seed(0)
    model = SpikingMLP(12, (16,), 4, init_gain=4.0).eval()
    data = [((torch.rand(5, 20, 12) < 0.2).float(), torch.zeros(5, dtype=torch.long)) for _ in range(6)]
    lines = []
    ctx = SimpleNamespace(model=model, loaders={"test": data}, run_dir=tmp_path, echo=lines.append)
    res = demo_stage(ctx)
    assert res["samples"] == 20  # 4 batches of 5
    assert (tmp_path / "energy" / "energy.html").is_file() and lines and "per sample" in lines[0]
    assert any(k.startswith("SNN (loihi/default, memory)") for k in res["estimates"]) and not res["skipped"]
    json.dumps(res)


def test_run_energy_counts_learnable_delays_in_their_integer_form(tmp_path):
    from spikelib.hardware.energy.cli import run_energy
    from spikelib.hardware.energy.counting import measure
    from spikelib.layers.delay_schedule import rounded_delays
    from spikelib.models import SNNDelays

    torch.manual_seed(0)
    net = SNNDelays(8, (6,), 3, max_delay=4, delays="learn")
    data = [((torch.rand(2, 12, 8) < 0.4).float(), torch.zeros(2, dtype=torch.long))]  # batch first [B, T, C]
    res = run_energy(net, data, tmp_path, plots=False)
    assert net.synapses[0].mode == "gaussian"  # restored afterwards
    x = data[0][0].transpose(0, 1)
    with rounded_delays(net):
        expected = measure(net, [x]).total("sops")
    assert res["sops"] == expected < measure(net, [x]).total("sops")  # the Gaussian form reaches every tap
    rep = json.loads((tmp_path / "energy.json").read_text())
    assert "integer (rounded) delays" in rep["meta"]["delays"]
