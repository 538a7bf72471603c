"""Every shipped model gives the same energy counts, the same netx arrays and the same NIR graph as before the
declared layer graph (fixtures generated on commit f3e1f19 by tests/fixtures/regression/generate.py, from the same
weights and inputs).

Renames, all of them deliberate: readouts are modules now (``readout_li`` instead of the model itself, or of NIR node
``readout`` / ``readout_lif``), so their layer kind is ``"li"`` (was ``"readout"``); the attention products are modules
(``attn.product`` instead of ``attn``); ``spikelib.layers.Sequential`` replaces ``NIRSequential`` (state keys without
``layers.``). NIR graphs also record the readout over time and the zero time padding in their metadata now. One value changed on
purpose: a non-firing readout's threshold mantissa is netx's 131072 (1 << 17) instead of 131071, which a membrane
clipped to 2^23 - 1 could exceed. And Meta-SpikeFormer's head now reads spikes as the reference does (issue #19: a
``head_lif`` before the head), so its head counts spike-driven accumulates instead of MACs.
"""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent / "fixtures" / "regression"
sys.path.insert(0, str(HERE))
from generate import ENERGY_CASES, LOIHI_CASES, NIR_CASES, _netx_arrays, build  # noqa: E402

LAYER_RENAMES = {"": "readout_li", "features.8.0.attn": "features.8.0.attn.product",
                 "features.10.0.attn": "features.10.0.attn.product", "features.5.attn": "features.5.attn.product"}
KIND_RENAMES = {"readout": "li"}
NIR_RENAMES = {"readout_lif": "readout_li", "readout": "readout_li"}
# Deliberate changes of a model (issue #19: Meta-SpikeFormer's head neuron): new layers, and layers whose input became
# spikes (their real-valued MACs become spike-driven accumulates; everything else about them is unchanged).
NEW_LAYERS = {"meta_spikeformer_tiny_test": {"head_lif"}}
NOW_SPIKE_DRIVEN = {"meta_spikeformer_tiny_test": {"head"}}


def _load(name):
    record = torch.load(HERE / f"{name}.pt", weights_only=True)
    model, x = build(name)
    state = {k.removeprefix("layers."): v for k, v in record["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()
    return record, model, (record["input"] if "input" in record else x)


@pytest.mark.parametrize("name", ENERGY_CASES + ["conv_sequential"])
def test_energy_counts_unchanged(name):
    from spikelib.hardware.energy import measure

    record, model, x = _load(name)
    counts = measure(model, [x], prepare=lambda b: (b, 2))
    assert counts.samples == record["counts"]["samples"]
    old_layers = [layer for layer in record["counts"]["layers"]
                  if not (layer["name"] == "" and not any(v for k, v in layer.items() if isinstance(v, int)))]
    new = {c.name: c.to_dict() for c in counts.layers}
    added = NEW_LAYERS.get(name, set())
    assert set(new) >= added and len(new) == len(old_layers) + len(added)
    spike_driven = NOW_SPIKE_DRIVEN.get(name, set())
    for old in old_layers:
        old_name = old["name"].removeprefix("layers.")  # NIRSequential's children were under "layers."
        got = new[old_name if old_name in new else LAYER_RENAMES[old_name]]
        assert got["kind"] == KIND_RENAMES.get(old["kind"], old["kind"]), old["name"]
        if old_name in spike_driven:
            assert old["macs"] > 0 and got["macs"] == 0 and got["binary_calls"] == got["calls"]
            assert got["sops"] <= got["dense_macs"] == old["dense_macs"]
            continue
        for field, value in old.items():
            if field not in ("name", "kind"):
                assert got[field] == value, (name, old["name"], field)
    if added or spike_driven:
        return
    totals = Counter()
    for old in old_layers:
        totals.update({k: v for k, v in old.items() if isinstance(v, int)})
    assert {k: totals[k] for k in counts.to_dict()["totals"]} == counts.to_dict()["totals"]


@pytest.mark.parametrize("name", LOIHI_CASES + ["conv_sequential"])
def test_netx_arrays_unchanged(name, tmp_path):
    from spikelib.hardware.loihi import export_netx
    from spikelib.hardware.loihi.quantize import quantize

    record, model, _ = _load(name)
    net, _ = quantize(model, input_shape=(2, 6, 6) if name == "conv_sequential" else None)
    arrays = _netx_arrays(export_netx(net, tmp_path / "n.net"))
    assert set(arrays) == set(record["netx"])
    for key, value in record["netx"].items():
        if key.endswith("neuron/vThMant") and float(value) == 131071:
            value = torch.full_like(value, 131072)  # the never-firing value (see the module docstring)
        assert torch.equal(arrays[key], value), key


@pytest.mark.parametrize("name", NIR_CASES + ["conv_sequential"])
def test_nir_graph_unchanged(name):
    nir = pytest.importorskip("nir")
    from spikelib.hardware.nir import read_nir, to_nir

    _, model, _ = _load(name)
    graph = to_nir(model, input_shape=(2, 6, 6) if name == "conv_sequential" else None)
    old = read_nir(HERE / f"{name}.nir")
    rename = lambda k: NIR_RENAMES.get(k, k) if k not in graph.nodes else k  # noqa: E731
    assert {rename(k) for k in old.nodes} == set(graph.nodes)
    assert sorted((rename(a), rename(b)) for a, b in old.edges) == sorted(graph.edges)

    def same(a, b, where):
        assert type(a) is type(b), where
        if isinstance(a, nir.NIRGraph):
            assert set(a.nodes) == set(b.nodes) and sorted(a.edges) == sorted(b.edges), where
            for k in a.nodes:
                same(a.nodes[k], b.nodes[k], f"{where}/{k}")
            return
        for field in ("weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset", "delay", "input_type",
                      "output_type", "stride", "padding", "kernel_size"):
            if hasattr(a, field):
                va, vb = getattr(a, field), getattr(b, field)
                if isinstance(va, dict):
                    assert {k: np.asarray(v).tolist() for k, v in va.items()} == \
                        {k: np.asarray(v).tolist() for k, v in vb.items()}, (where, field)
                else:
                    assert np.array_equal(np.asarray(va), np.asarray(vb)), (where, field)

    for k, node in old.nodes.items():
        same(node, graph.nodes[rename(k)], k)
