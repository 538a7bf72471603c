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
    per_sample = counts.layer("0").sops / 6  # every table is per sample
    assert "| layer | kind | SOPs |" in md and f"| 0 | linear | {per_sample:,.0f} |" in md
    assert rep["layers"][0]["per_sample"]["sops"] == per_sample
    assert "ISSCC" in md and "## NeuroBench metrics (per sample)" in md
    page = (tmp_path / "energy.html").read_text()
    assert page.count("<table>") == 3 and 'src="spike_raster.png"' in page
    for text in (md, page, (tmp_path / "energy.json").read_text()):  # citations, no notes about this workplace
        for note in ("workplace", "search tool", "could not be opened"):
            assert note not in text
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


def test_plots_are_per_sample_and_rates_apart(tmp_path, counts, monkeypatch):
    import matplotlib.pyplot as plt

    calls = []
    real = plt.Axes.barh

    def spy(ax, names, values, *a, **k):
        calls.append((ax, list(names), list(values)))
        return real(ax, names, values, *a, **k)

    monkeypatch.setattr(plt.Axes, "barh", spy)
    est = estimate_energy(counts)
    write_report(tmp_path, counts, [est])
    bars = {}
    for ax, names, values in calls:
        bars.setdefault(ax.get_title().split(" (")[0], []).append((names, values))
    energy = bars["Energy per layer"]
    per_layer = {layer.name: layer.total / counts.samples for layer in est.layers}
    names, values = energy[0]
    assert values[::-1] == pytest.approx([per_layer[n] for n in names[::-1]])  # pJ per sample, not totals
    assert bars["Input spike rate of synaptic layers"][0][0] == ["2", "0"]
    assert bars["Firing rate of neuron layers"][0][0] == ["3", "1"]


def test_layers_that_never_fire_are_a_warning(tmp_path, capsys):
    from spikelib.hardware.energy.cli import run_energy

    net = nn.Sequential(nn.Linear(10, 6), LIF(v_threshold=1e6), nn.Linear(6, 4, bias=False), LIF(v_threshold=0.2))
    data = [((torch.rand(3, 8, 10) < 0.3).float(), torch.zeros(3))]  # batch first, as loaders yield
    res = run_energy(net, data, tmp_path, plots=False)
    assert res["silent_layers"] == ["1", "3"] and "never fired" in res["warnings"][0] and "'1', '3'" in res["warnings"][0]
    md = (tmp_path / "energy.md").read_text()
    assert "## Warnings" in md and "never fired" in md
