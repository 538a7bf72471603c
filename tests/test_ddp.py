"""DDP on the CPU: ``spikelib train --nproc 2`` (torch.distributed.run, gloo, per-rank batch 8) ends with the same
weights (within 1e-5) and the same per-epoch metrics as one process with the global batch of 16."""

import os
import subprocess
import sys

import pytest
import torch

from spikelib.training.config import parse_config
from spikelib.training.datasets import build_datasets
from spikelib.training.trainer import build_model, seed_everything

CONFIG = """\
data:
  dataset: synthetic_temporal
  n_train: 160
  n_test: 32
  n_classes: 4
  n_groups: 4
  n_channels: 12
  n_steps: 44
  max_shift: 5
  batch_size: 16
model:
  name: spiking_mlp
  hidden: [16]
  init_gain: 4.0
optim:
  lr: 0.02
  grad_clip: 10.0
schedule:
  name: cosine
train:
  epochs: 2
  device: cpu
"""

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _run(cfg, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "spikelib", "train", str(cfg), "--out", str(out), "--no-progress",
                           *extra], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)


def test_two_gloo_processes_match_one_process_with_the_global_batch(tmp_path):
    import yaml

    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(CONFIG)
    one = _run(cfg, tmp_path / "one")
    two = _run(cfg, tmp_path / "two", "--nproc", "2")
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one["global_step"] == two["global_step"] == 2 * 9  # 144 training samples / 16 per global batch

    # the weights moved far more than the tolerance, so the comparison is not trivially true
    config = parse_config(yaml.safe_load(CONFIG))
    seed_everything(config.train.seed)
    bundle = build_datasets(config.data.dataset, config.train.seed, **config.data.args)
    init = build_model(config, bundle.info).state_dict()
    moved = max(float((one["model"][k] - init[k]).abs().max()) for k in init)
    assert moved > 1e-2, moved

    for key in one["model"]:
        torch.testing.assert_close(two["model"][key], one["model"][key], rtol=0, atol=1e-5, msg=key)
    for a, b in zip(one["history"], two["history"]):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
