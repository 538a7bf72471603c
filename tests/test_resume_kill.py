"""A training run killed with SIGKILL mid-epoch and resumed with ``spikelib train --resume`` ends with exactly the
same weights, optimiser state and per-epoch metrics as an uninterrupted run (CPU, one thread, real subprocesses).

The model (tiny SNN-delays) has time-shared dropout and BatchNorm, so the restored generator states and running
statistics matter; the schedule is a cosine with warm-up stepped per batch, the delay positions have their own group
and the Gaussian width its per-epoch schedule; checkpoints are written every 2 batches.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import torch

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
  name: snn_delays
  hidden: [16]
  max_delay: 4
  dropout: 0.2
optim:
  lr: 0.01
  grad_clip: 5.0
schedule:
  name: cosine
  warmup_epochs: 0.5
train:
  epochs: 3
  checkpoint_every: 2
  device: cpu
delays:
  lr: 0.5
  final_epoch: 2
"""

# Runs the trainer like `spikelib train` does, but slowed down (a sleep per batch, no effect on the numbers) and
# announcing every batch on stdout, so the test can kill it at a known point.
SLOW_RUN = textwrap.dedent("""
    import sys, time
    from spikelib.training.config import load_config
    from spikelib.training.trainer import Trainer

    def announce(trainer, event):
        if event == "batch_end":
            print(f"batch {trainer.epoch} {trainer.batch}", flush=True)
            time.sleep(0.05)

    Trainer(load_config(sys.argv[1]), sys.argv[2], progress=False, callbacks=[announce]).fit()
""")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SPIKELIB_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _train(*args):
    return subprocess.run([sys.executable, "-m", "spikelib", "train", *args, "--no-progress"], env=_env(),
                          capture_output=True, text=True, timeout=300)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(CONFIG)
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"

    ref = _train(str(cfg), "--out", str(ref_dir))
    assert ref.returncode == 0, ref.stderr

    # 144 training samples (10% validation) / 16 = 9 batches per epoch; checkpoints after batches 2, 4, 6, 8.
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(cfg), str(killed_dir)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line.strip())
            if line.strip() == "batch 1 5":  # second epoch, one batch after the checkpoint at batch 4
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, seen[-3:], proc.stderr.read())
    state = _load(killed_dir / "last.pt")
    assert state["epoch"] == 1 and 0 < state["batch"] < 9, (state["epoch"], state["batch"])  # really mid-epoch
    assert not (killed_dir / "result.json").exists()

    resumed = _train(str(cfg), "--out", str(killed_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr

    a, b = _load(ref_dir / "last.pt"), _load(killed_dir / "last.pt")
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"] == 27
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizers"].keys() == b["optimizers"].keys() == {"weights", "positions"}
    for name in a["optimizers"]:
        oa, ob = a["optimizers"][name]["optimizer"], b["optimizers"][name]["optimizer"]
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            for key in sa:
                assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), (name, key)
        assert a["optimizers"][name]["schedulers"] == b["optimizers"][name]["schedulers"]
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (ref_dir, killed_dir))
    assert ra["val"] == rb["val"] and ra["test"] == rb["test"] and ra["best"] == rb["best"]
    assert not list(killed_dir.glob(".*.tmp"))


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, capsys):
    from spikelib.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(CONFIG.replace("epochs: 3", "epochs: 1").replace("n_train: 160", "n_train: 40"))
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 0
    before = (out / "last.pt").read_bytes()
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress", "--set", "model.hidden=[8]"]) == 2
    assert "model.hidden: [16] in the checkpoint, [8] in this run" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before  # the refused run wrote nothing
