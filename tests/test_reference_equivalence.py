"""Same weights as the authors' reference code: every zoo model against fixtures generated from the reference models.

``tests/fixtures/reference/generate.py`` runs the authors' code (BICLab/Spike-Driven-Transformer,
BICLab/Spike-Driven-Transformer-V2, bic-L/MaxFormer, Thvnvtos/SNN-delays, bollossom/E-3DSNN) at tiny sizes in float64
and stores, per case, the checkpoint as their training scripts save it (``<case>.pth``) and the reference's outputs,
every spiking neuron's output (in call order) and, in training mode, the gradients of the input and of every
parameter (``<case>.pt``). Here each checkpoint is loaded into the spikelib model with
:func:`spikelib.models.load_reference_checkpoint` (safe loading, strict key and layout map) and the spikelib model
must reproduce all of it: logits to float64 rounding, spikes exactly, gradients to the float32 rounding of the
stored reference gradients (both sides compute in float64). No reference code is needed to
run these tests; ``test_live_reference`` regenerates a case with the reference code when ``SPIKELIB_REFERENCE_PYTHON``
and ``SPIKELIB_REFERENCES`` name a prepared environment (see generate.py) and skips otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spikelib.models import CheckpointMismatchError, get_model, load_reference_checkpoint, reference_state_keys
from spikelib.models.checkpoints import convert_reference_state, read_checkpoint
from spikelib.neurons.lif import LIF, ParametricLIF
from spikelib.sparse import IntegerSpike, SparseSpikeTensor

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
CASES = sorted(p.stem for p in FIXTURES.glob("*.pt"))
GRAD_CASES = [c for c in CASES if not c.startswith("e3dsnn")]


def load_case(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def unpack(s: dict) -> torch.Tensor:
    if "bits" in s:
        n = int(np.prod(s["shape"]))
        return torch.from_numpy(np.unpackbits(s["bits"].numpy())[:n].astype(np.float64)).reshape(s["shape"])
    return s["counts"].double().reshape(s["shape"])


def build(case: dict) -> torch.nn.Module:
    spec = case["spikelib"]
    kw = dict(spec["kwargs"])
    for k in ("embed_dims", "depths", "hidden", "enc_channels", "enc_depth"):
        if isinstance(kw.get(k), list):
            kw[k] = tuple(kw[k])
    model = get_model(spec["name"], **kw)
    return model.float() if spec["name"].startswith("e3dsnn") else model.double()


def model_input(case: dict, model):
    if "coords" in case:  # E-3DSNN: the reference's voxelised sparse tensor
        return SparseSpikeTensor(case["input"].float(), case["coords"], case["spatial_shape"], 2)
    return case["input"].clone()


def forward(name: str, model, x, train: bool):
    if name == "snn_delays":
        return [model.membrane(x)]
    if name == "meta_spikeformer_kd" and train:
        return list(model.forward_heads(x))
    return [model(x)]


def record(name: str, model, x, train: bool):
    spikes = []
    kinds = (LIF, ParametricLIF, IntegerSpike)

    current = {}

    def track(m, a, o):  # the sites of the sparse features that dense layers (the decoder's fuse MLP) work on
        if isinstance(o, SparseSpikeTensor):
            current["coords"] = o.coords

    def hook(m, a, o):
        if isinstance(o, SparseSpikeTensor):  # sites in coordinate order (spconv orders them its own way)
            spikes.append(_by_coordinate(o.features.detach(), o.coords))
        elif "coords" in current and len(current["coords"]) == len(o):
            spikes.append(_by_coordinate(o.detach(), current["coords"]))
        else:
            spikes.append(o.detach())

    hooks = [m.register_forward_hook(track) for m in model.modules() if not isinstance(m, kinds)]
    hooks += [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    model.train(train)
    try:
        with torch.set_grad_enabled(train):
            outs = forward(name, model, x, train)
    finally:
        for h in hooks:
            h.remove()
    return outs, spikes


def _by_coordinate(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    key = coords.long() @ torch.tensor([1 << 48, 1 << 32, 1 << 16, 1])
    return features[torch.argsort(key)]


def compare_spikes(ref: dict, ours: list, name: str = "") -> None:
    names, maps = list(ref["spike_names"]), list(ref["spikes"])
    if name == "snn_delays" and len(ours) == len(names) - 1:
        # the readout LIF (threshold 1e9) is a module in the reference and a functional call here: it never fires
        assert not unpack(maps[-1]).any()
        names, maps = names[:-1], maps[:-1]
    assert len(ours) == len(names), f"{len(ours)} spiking layers ran, the reference ran {len(names)}"
    for i, (n, s, o) in enumerate(zip(names, maps, ours)):
        r = unpack(s)
        if "coords" in s:
            r = _by_coordinate(r, s["coords"])
        o = o.reshape(r.shape).to(r.dtype)
        assert torch.equal(o, r), f"spike map {i} ({n}): {int((o != r).sum())} of {r.numel()} entries differ"


@pytest.mark.parametrize("name", CASES)
def test_checkpoint_loads_and_gives_the_reference_outputs_and_spikes(name):
    case = load_case(name)
    model = build(case)
    load_reference_checkpoint(model, FIXTURES / f"{name}.pth")
    x = model_input(case, model)
    outs, spikes = record(name, model, x, train=False)
    ref = case["eval"]
    assert len(outs) == len(ref["out"])
    tol = 1e-5 if name.startswith("e3dsnn") else 1e-10
    for o, r in zip(outs, ref["out"]):
        assert o.shape == r.shape
        err = float((o.double() - r.double()).abs().max())
        assert err <= tol * max(1.0, float(r.abs().max())), f"logits differ by {err:.3g}"
    compare_spikes(ref, spikes, name)
    rate = sum(float(s.float().mean()) for s in spikes) / len(spikes)
    print(f"\n{name}: eval logits equal, {len(spikes)} spike maps equal (mean rate {rate:.3f})")


def _grads_in_our_layout(name: str, model, case: dict) -> dict:
    """The reference gradients converted with the checkpoint's key and layout map (positions: dD = -dP)."""
    state = read_checkpoint(FIXTURES / f"{name}.pth", tuple(getattr(model, "reference_wrappers", ())))
    grads = {k: g.double() for k, g in case["train"]["grads"].items()}
    for k in list(grads):
        if k.endswith(".P"):
            grads[k] = grads[k] + (model.synapses[0].max_delay + 1) // 2  # conv: K//2 - P' = -dL/dP = dL/dD
    state.update(grads)
    conv = convert_reference_state(model, state)
    return {k: conv[k] for k, p in model.named_parameters()}


@pytest.mark.parametrize("name", GRAD_CASES)
def test_training_pass_gives_the_reference_outputs_spikes_and_gradients(name):
    case = load_case(name)
    model = build(case)
    load_reference_checkpoint(model, FIXTURES / f"{name}.pth")
    ref = case["train"]
    x = model_input(case, model).requires_grad_(True)
    outs, spikes = record(name, model, x, train=True)
    for o, r in zip(outs, ref["out"]):
        assert torch.allclose(o, r, rtol=0, atol=1e-10 * max(1.0, float(r.abs().max()))), name
    compare_spikes(ref, spikes, name)
    sum((o * g).sum() for o, g in zip(outs, ref["grad_output"])).backward()
    assert torch.allclose(x.grad, ref["grad_input"], rtol=1e-9, atol=1e-12), "input gradient"
    expected = _grads_in_our_layout(name, model, case)
    # a conv bias followed by training-mode BatchNorm has a zero gradient up to rounding noise: errors are measured
    # against the largest gradient of the model (float64 rounding ~1e-16 of it), and against the tensor's own scale
    scale = max(float(e.abs().max()) for e in expected.values())
    worst = 0.0
    for k, p in model.named_parameters():
        e = expected[k]
        assert p.grad is not None, f"{k}: no gradient"
        err = float((p.grad - e).abs().max()) / max(float(e.abs().max()), 1e-4 * scale)
        worst = max(worst, err)
        assert err < 1e-6, f"gradient of {k} differs (relative {err:.3g}; stored rounded to float32)"
    print(f"\n{name}: training outputs, {len(spikes)} spike maps, input and {len(expected)} parameter gradients equal "
          f"(worst relative error {worst:.2g})")


@pytest.mark.parametrize("name", CASES)
def test_reference_key_order_is_the_reference_state_dict_order(name):
    case = load_case(name)
    model = build(case)
    wrappers = tuple(getattr(model, "reference_wrappers", ()))
    assert reference_state_keys(model) == list(read_checkpoint(FIXTURES / f"{name}.pth", wrappers).keys())


def test_positional_loading_of_renamed_keys():
    """bic-L/MaxFormer's released ImageNet files use older module names; their loader pairs tensors by order."""
    state = read_checkpoint(FIXTURES / "maxformer_imagenet.pth")
    renamed = {f"old_{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(state.items())}
    case = load_case("maxformer_imagenet")
    model = build(case)
    with pytest.raises(CheckpointMismatchError, match="old_0.weight"):
        load_reference_checkpoint(model, renamed)
    load_reference_checkpoint(model, renamed, positional=True)
    ref = build(case)
    load_reference_checkpoint(ref, FIXTURES / "maxformer_imagenet.pth")
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k
    bad = dict(renamed)
    bad.pop(next(iter(bad)))
    with pytest.raises(CheckpointMismatchError, match="positional loading"):
        load_reference_checkpoint(model, bad, positional=True)


def test_mismatched_checkpoints_name_the_first_bad_key(tmp_path):
    state = read_checkpoint(FIXTURES / "meta_spikeformer_kd.pth")
    no_kd = get_model("meta_spikeformer_tiny_test", embed_dims=(8, 8, 8, 8), num_heads=2, depths=(6, 2),
                      num_classes=5, T=2)
    with pytest.raises(CheckpointMismatchError, match="'head_kd.weight' has no place"):
        load_reference_checkpoint(no_kd, state)
    kd = get_model("meta_spikeformer_tiny_test", embed_dims=(8, 8, 8, 8), num_heads=2, depths=(6, 2),
                   num_classes=5, T=2, kd=True)
    missing = dict(state)
    del missing["block3.2.mlp.fc1_bn.running_var"]
    with pytest.raises(CheckpointMismatchError, match="lacks block3.2.mlp.fc1_bn.running_var"):
        load_reference_checkpoint(kd, missing)
    wrong = dict(state)
    wrong["head.weight"] = torch.zeros(7, 8)
    with pytest.raises(CheckpointMismatchError, match=r"head.weight: shape \(7, 8\)"):
        load_reference_checkpoint(kd, wrong)
    before = {k: v.clone() for k, v in kd.state_dict().items()}
    for k, v in kd.state_dict().items():  # nothing was loaded by the failed attempts
        assert torch.equal(v, before[k])


def test_unsafe_checkpoints_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"head.weight": torch.zeros(1)}, "payload": Evil()}, path)
    model = get_model("meta_spikeformer_tiny_test")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_reference_checkpoint(model, path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reference_checkpoint(model, tmp_path / "missing.pth")
    # the argparse.Namespace that timm's saver stores beside the weights is plain data and is accepted
    sd = read_checkpoint(FIXTURES / "sdt_lif.pth")
    raw = torch.load(FIXTURES / "sdt_lif.pth", weights_only=False)
    assert isinstance(raw["args"], argparse.Namespace) and list(sd) == list(raw["state_dict"])


@pytest.mark.skipif(not (os.environ.get("SPIKELIB_REFERENCE_PYTHON") and os.environ.get("SPIKELIB_REFERENCES")),
                    reason="the reference code is not installed: set SPIKELIB_REFERENCE_PYTHON (a python with "
                           "spikingjelly 0.0.0.0.14, timm, spconv) and SPIKELIB_REFERENCES (the checkouts); see "
                           "tests/fixtures/reference/generate.py")
@pytest.mark.slow
def test_live_reference_regenerates_the_committed_fixtures(tmp_path):
    """Run the reference code again and check that the committed fixtures are what it produces."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cases = ["sdt_lif", "maxformer_cifar"]
    subprocess.run([os.environ["SPIKELIB_REFERENCE_PYTHON"], str(FIXTURES / "generate.py"), "--refs",
                    os.environ["SPIKELIB_REFERENCES"], "--out", str(tmp_path), *cases], check=True, env=env,
                   cwd=Path(__file__).parent.parent)
    for name in cases:
        new, old = torch.load(tmp_path / f"{name}.pt", weights_only=True), load_case(name)
        for a, b in zip(new["eval"]["out"], old["eval"]["out"]):
            assert torch.equal(a, b)
        assert new["eval"]["spike_names"] == old["eval"]["spike_names"]
