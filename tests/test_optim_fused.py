"""Optimisers of the training core run torch's fused kernel on the CPU, and training is bitwise repeatable across
processes on two threads.

torch's per-tensor Adam takes its square roots from MKL's vector math, whose last bit differed between processes for
the same parameters, gradients and state (a few elements of the SHD recipe's first layer, in about one process in four
after the first step); the fused kernel does not.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from spikelib.training import DatasetBundle, Trainer
from spikelib.training.optim import fused_on_cpu, make_optimizer


def _trainer(name: str, delays: bool = False) -> Trainer:
    x = (torch.rand(8, 12, 10) < 0.2).float()
    data = DatasetBundle(TensorDataset(x, torch.arange(8) % 2), None, {"n_classes": 2, "n_channels": 10})
    cfg = {"data": {"batch_size": 4, "val_fraction": 0.0}, "optim": {"name": name, "lr": 1e-3},
           "train": {"epochs": 1, "device": "cpu"}}
    if delays:
        cfg["model"] = {"name": "snn_delays", "hidden": [8], "max_delay": 4, "right_padding": 2}
        cfg["delays"] = {"final_epoch": 1}
        trainer = Trainer(cfg, None, datasets=data)
    else:
        trainer = Trainer(cfg, None, datasets=data, model=nn.Sequential(nn.Flatten(0, 1), nn.Linear(10, 2)))
    trainer.setup()
    return trainer


@pytest.mark.parametrize("name,fused", [("adam", True), ("adamw", True), ("sgd", True), ("adamax", None)])
def test_cpu_optimisers_are_fused_where_torch_has_the_kernel(name, fused):
    trainer = _trainer(name)
    opt = trainer.optimizers[0].optimizer
    assert type(opt).__name__.lower() == name
    assert all(g.get("fused") == fused for g in opt.param_groups)


def test_the_delay_recipe_positions_optimiser_is_fused_too():
    trainer = _trainer("adam", delays=True)
    assert [s.name for s in trainer.optimizers] == ["weights", "positions"]
    for slot in trainer.optimizers:
        assert all(g["fused"] is True for g in slot.optimizer.param_groups)


def test_fused_only_for_floating_cpu_parameters():
    w = nn.Parameter(torch.randn(3))
    assert fused_on_cpu("adam", [w]) and not fused_on_cpu("adamax", [w]) and not fused_on_cpu("adam", [])
    meta = nn.Parameter(torch.randn(3, device="meta"))
    assert not fused_on_cpu("adam", [w, meta])
    opt = make_optimizer("adam", [{"params": [meta]}], 1e-3, 0.0, 0.0, False, (0.9, 0.999))
    assert opt.param_groups[0]["fused"] is None  # torch's default path where it has no fused kernel


def test_fused_adam_matches_the_per_tensor_adam_to_rounding():
    """Same update as torch's default Adam (weight decay, several steps) up to float32 rounding."""
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(300, 140))
    b = nn.Parameter(a.detach().clone())
    fused = make_optimizer("adam", [{"params": [a]}], 1e-2, 1e-5, 0.0, False, (0.9, 0.999))
    plain = torch.optim.Adam([b], lr=1e-2, weight_decay=1e-5)
    assert fused.param_groups[0]["fused"] is True and plain.param_groups[0]["fused"] is None
    for _ in range(5):
        g = torch.randn(300, 140)
        a.grad, b.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)


_RUN = textwrap.dedent("""
    import hashlib, sys, torch
    from torch.utils.data import TensorDataset
    from spikelib.training import DatasetBundle, Trainer
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(64, 60, 140, generator=g) < 0.05).float()
    data = DatasetBundle(TensorDataset(x, torch.arange(64) % 20), None, {"n_classes": 20, "n_channels": 140})
    cfg = {"data": {"batch_size": 32, "val_fraction": 0.0},
           "model": {"name": "snn_delays", "hidden": [256, 256], "max_delay": 24, "right_padding": 12},
           "optim": {"lr": 1e-3, "weight_decay": 1e-5}, "delays": {"lr": 0.1, "final_epoch": 1},
           "train": {"epochs": 2, "device": "cpu", "seed": 0, "progress": False}}
    trainer = Trainer(cfg, None, datasets=data)
    trainer.fit()
    h = hashlib.sha256()
    for p in trainer.model.parameters():
        h.update(p.detach().numpy().tobytes())
    print(h.hexdigest())
""")


@pytest.mark.slow
def test_training_is_bitwise_repeatable_across_processes_on_two_threads():
    """Five fresh processes, four optimiser steps of the SHD recipe at SHD width: the same parameters bit for bit
    (with torch's per-tensor Adam two processes of six differed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "SPIKELIB_KERNEL"))}
    digests = set()
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        digests.add(out.stdout.strip().splitlines()[-1])
    assert len(digests) == 1, digests
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests)
    assert hashlib.sha256(b"").hexdigest() not in digests
