"""Energy model files (cited values, validation) and the accounting methods."""

import json

import pytest
import torch
import yaml
from torch import nn

from spikelib.hardware.energy.accounting import ann_baseline, estimate_energy
from spikelib.hardware.energy.counting import EnergyCounter
from spikelib.hardware.energy.models import DATA_DIR, EnergyModelError, builtin_models, load_energy_model
from spikelib.neurons import LIF


def counts_of(net, x):
    with EnergyCounter(net) as counter, torch.no_grad():
        net(x)
    return counter.counts(samples=x.shape[1])


def silent_net():
    return nn.Sequential(nn.Linear(6, 8), LIF(v_threshold=1e9), nn.Linear(8, 3), LIF(v_threshold=1e9))


# ------------------------------------------------------------------------------------------------ model files
def test_builtin_models_are_cited_and_match_the_papers_figures():
    assert set(builtin_models()) >= {"horowitz45", "loihi"}
    h = load_energy_model("horowitz45")
    assert "ISSCC" in h.citation and "45 nm" in h.technology_node
    e = {k: v["value"] for k, v in h.energies.items()}
    assert (e["fp32_add"], e["fp32_mult"], e["int8_add"], e["int8_mult"]) == (0.9, 3.7, 0.03, 0.2)
    assert (e["sram_8kb_64b"], e["sram_32kb_64b"], e["sram_1mb_64b"], e["dram_64b"]) == (10, 20, 100, 1300)
    fp32 = h.profile("fp32")
    assert fp32.cost("ac") == pytest.approx(0.9) and fp32.cost("mac") == pytest.approx(4.6)  # E_AC, E_MAC
    assert h.profile("int8").cost("mac") == pytest.approx(0.23)
    loihi = load_energy_model("loihi")
    assert "IEEE Micro" in loihi.citation and loihi.profile().includes_memory
    assert loihi.profile().cost("ac") == 23.6 and loihi.profile().cost("neuron_update") == 81.0
    for model in (h, loihi):
        assert model.verification
        for name, entry in model.energies.items():
            assert entry["source"] and entry["verified"], name


def test_user_file_round_trip(tmp_path):
    data = yaml.safe_load((DATA_DIR / "horowitz45.yaml").read_text())
    data["name"] = "mine"
    data["energies"]["fp32_add"]["value"] = 1.0
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    m = load_energy_model(str(path))
    assert m.name == "mine" and m.profile("fp32").cost("ac") == 1.0


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("energies"), "missing the field 'energies'"),
    (lambda d: d.pop("reference"), "missing the field 'reference'"),
    (lambda d: d["energies"]["fp32_add"].__setitem__("value", 0), r"energies\.fp32_add\.value must be a finite"),
    (lambda d: d["energies"]["fp32_mult"].__setitem__("value", -3.7), "fp32_mult.value must be a finite energy > 0"),
    (lambda d: d["energies"]["fp32_add"].pop("source"), "needs a 'value' and a 'source'"),
    (lambda d: d["profiles"]["fp32"].pop("neuron_update"), r"missing the field\(s\) \['neuron_update'\]"),
    (lambda d: d["profiles"]["fp32"].__setitem__("ac", "fp64_add"), "unknown energy 'fp64_add'"),
    (lambda d: d["profiles"]["fp32"].__setitem__("ac", 0.9), "not a bare number"),
    (lambda d: d["profiles"]["fp32"].__setitem__("warp", "fp32_add"), "unknown role"),
])
def test_bad_model_files_are_named(tmp_path, edit, message):
    data = yaml.safe_load((DATA_DIR / "horowitz45.yaml").read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(EnergyModelError, match=message):
        load_energy_model(path)


def test_unknown_model_name_and_missing_file():
    with pytest.raises(EnergyModelError, match="unknown energy model 'truenorth'.*horowitz45"):
        load_energy_model("truenorth")
    with pytest.raises(EnergyModelError, match="does not exist"):
        load_energy_model("/nonexistent/model.yaml")
    with pytest.raises(EnergyModelError, match="no profile 'fp64'"):
        load_energy_model("horowitz45").profile("fp64")


# ------------------------------------------------------------------------------------------------- accounting
def test_a_network_that_never_spikes_costs_only_its_first_layer_macs():
    net = silent_net()
    x = torch.rand(5, 2, 6)  # real-valued input: the first layer does MACs
    counts = counts_of(net, x)
    assert counts.total("sops") == 0 and counts.total("out_spikes") == 0
    est = estimate_energy(counts, "horowitz45", method="common")
    first_macs = 5 * 2 * 6 * 8
    assert counts.total("macs") == first_macs
    assert est.total_pj == pytest.approx(first_macs * 4.6)
    assert est.part("sop") == 0


def test_doubling_spikes_doubles_the_sop_part():
    net = nn.Sequential(nn.Linear(6, 8), LIF(v_threshold=0.3), nn.Linear(8, 3))
    x = (torch.rand(5, 2, 6, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    one = estimate_energy(counts_of(net, x), "horowitz45")
    two = estimate_energy(counts_of(net, torch.cat([x, x], 1)), "horowitz45")
    assert one.part("sop") > 0
    assert two.part("sop") == pytest.approx(2 * one.part("sop"))
    assert one.part("sop") == pytest.approx(0.9 * counts_of(net, x).total("sops"))


@pytest.mark.parametrize("profile, e_mac", [("fp32", 4.6), ("int8", 0.23)])
def test_ann_baseline_is_dense_macs_times_e_mac(profile, e_mac):
    net = nn.Sequential(nn.Linear(6, 8), LIF(v_threshold=0.3), nn.Linear(8, 3))
    x = (torch.rand(5, 2, 6) < 0.3).float()
    counts = counts_of(net, x)
    ann = ann_baseline(counts, "horowitz45", profile=profile)
    assert ann.total_pj == pytest.approx(counts.total("dense_macs") * e_mac)
    assert counts.total("dense_macs") == 5 * 2 * (6 * 8 + 8 * 3)
    assert ann_baseline(counts, profile=profile, repeats=5).total_pj == pytest.approx(ann.total_pj / 5)
    with pytest.raises(ValueError, match="repeats"):
        ann_baseline(counts, repeats=0)


def test_memory_method_adds_neuron_updates_and_traffic():
    net = nn.Sequential(nn.Linear(6, 8), LIF(v_threshold=0.3), nn.Linear(8, 3))
    x = (torch.rand(5, 2, 6, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    counts = counts_of(net, x)
    h = load_energy_model("horowitz45").profile("fp32")
    mem = estimate_energy(counts, "horowitz45", method="memory")
    common = estimate_energy(counts, "horowitz45", method="common")
    assert mem.part("neuron") == pytest.approx(counts.total("neuron_updates") * h.cost("neuron_update"))
    assert mem.part("weight_read") == pytest.approx(counts.total("sops") * h.cost("weight_read"))
    assert mem.part("spike") == pytest.approx(counts.total("out_spikes") * h.cost("spike"))
    assert mem.total_pj > common.total_pj
    loihi = estimate_energy(counts, "loihi", method="memory")
    assert loihi.part("weight_read") == 0  # Loihi's per-op figures include their memory accesses
    assert loihi.part("sop") == pytest.approx(23.6 * counts.total("sops"))


def test_loihi_refuses_real_valued_macs_naming_the_layer():
    counts = counts_of(silent_net(), torch.rand(5, 2, 6))
    with pytest.raises(EnergyModelError, match=r"no MAC energy.*layer '0' \(linear\)"):
        estimate_energy(counts, "loihi")


def test_batchnorm_folding_switch():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    x = (torch.rand(6, 4) < 0.5).float()
    with EnergyCounter(net) as c, torch.no_grad():
        net(x)
    counts = c.counts(samples=6)
    folded = estimate_energy(counts)
    unfolded = estimate_energy(counts, fold_batchnorm=False)
    assert unfolded.total_pj - folded.total_pj == pytest.approx(24 * 4.6)
    with pytest.raises(ValueError, match="method"):
        estimate_energy(counts, method="magic")


def test_memory_method_charges_the_reads_of_real_valued_inputs():
    """The memory method reads every real-valued input value of a MAC layer once (a spike is an address): dropping
    those reads changes ``state_read`` by exactly ``in_elements x E_state_read`` of that layer."""
    net = nn.Sequential(nn.Linear(6, 8), LIF(v_threshold=0.3), nn.Linear(8, 3))
    x = torch.rand(5, 2, 6, generator=torch.Generator().manual_seed(2)) + 0.05  # real-valued: the first layer MACs
    counts = counts_of(net, x)
    first = counts.layer("0")
    assert first.macs > 0 and not first.spike_input and counts.layer("2").spike_input
    cost = load_energy_model("horowitz45").profile("fp32").cost("state_read")
    mem = estimate_energy(counts, "horowitz45", method="memory")
    assert mem.part("state_read") == pytest.approx((counts.total("state_reads") + x.numel()) * cost)
    by_layer = {layer.name: layer.parts for layer in mem.layers}
    assert by_layer["0"]["state_read"] == pytest.approx(x.numel() * cost)  # the input values, read once each
    assert "state_read" not in by_layer["2"]  # spikes are addresses, not value reads
