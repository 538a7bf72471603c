"""Run folders (issue #23): one run at a time (a second ``spikelib train`` on the same ``--out`` is refused while the
first runs), temporaries of a write killed half-way are removed on the next start, a run killed after its final
``last.pt`` but before the metric files resumes with no epoch missing, and a SIGTERM stops a run at a batch boundary
with a checkpoint that resumes to the uninterrupted result. Real subprocesses, SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

CONFIG = {"data": {"dataset": "synthetic_temporal", "n_train": 60, "n_test": 16, "n_classes": 3, "n_groups": 3,
                   "n_channels": 6, "n_steps": 36, "max_shift": 5, "batch_size": 8},
          "model": {"name": "spiking_mlp", "hidden": [8]},
          "optim": {"lr": 0.01}, "schedule": {"name": "cosine"},
          "train": {"epochs": 3, "device": "cpu", "checkpoint_every": 2}}

# `spikelib train` with a hook: HOOK=slow (sleep per batch), HOOK=stall (waits at batch 3), HOOK=midwrite (the second checkpoint write stops
# half-way and waits to be killed), HOOK=aftersave (SIGKILL right after the final last.pt, before the metric files).
SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from spikelib.training import Callback, checkpoint, trainer as T
    hook = os.environ["HOOK"]
    writes = []

    class Hook(Callback):
        def on_batch_end(self, trainer):
            print(f"batch {trainer.epoch} {trainer.batch}", flush=True)
            if hook == "slow":
                time.sleep(0.2)
            if hook == "stall" and trainer.batch == 3:
                time.sleep(600)  # holds the folder until the test kills it
        def on_checkpoint(self, trainer):
            if hook == "aftersave" and trainer.epoch == trainer.stage_epochs:
                os.kill(os.getpid(), signal.SIGKILL)

    real_write = checkpoint.atomic_write
    def write(path, writer):
        writes.append(path)
        if hook == "midwrite" and path.name == "last.pt" and len(writes) >= int(os.environ.get("AT", "1")):
            def half(fh):
                class Half:
                    def write(self, data):
                        fh.write(bytes(memoryview(data).cast("B")[: len(memoryview(data).cast("B")) // 2]))
                        fh.flush()
                        print("writing", flush=True)
                        time.sleep(60)
                writer(Half())
            return real_write(path, half)
        return real_write(path, writer)
    checkpoint.atomic_write = write

    real_init = T.Trainer.__init__
    def init(self, *args, callbacks=(), **kwargs):
        real_init(self, *args, callbacks=list(callbacks) + [Hook()], **kwargs)
    T.Trainer.__init__ = init

    from spikelib.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SPIKELIB_NUM_THREADS="1", **extra)
    for key in ("RANK", "WORLD_SIZE"):
        env.pop(key, None)
    return env


def _start(args, hook):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, "train", *args, "--no-progress"], env=_env(HOOK=hook),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _train(*args, hook="none"):
    return subprocess.run([sys.executable, "-c", SCRIPT, "train", *args, "--no-progress"], env=_env(HOOK=hook),
                          capture_output=True, text=True, timeout=300)


def _config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def _wait_for(proc, text):
    seen = []
    for line in proc.stdout:
        seen.append(line.strip())
        if line.strip() == text:
            return seen
    raise AssertionError(f"never saw {text!r}: {seen[-5:]} {proc.stderr.read()[-2000:]}")


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    cfg, out = _config(tmp_path), tmp_path / "run"
    first = _start([str(cfg), "--out", str(out)], "stall")
    try:
        _wait_for(first, "batch 0 3")  # running, holding the folder (last.pt exists: written at batch 2)
        second = _train(str(cfg), "--out", str(out), "--resume")
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: run folder {out} is in use by another process (a run is writing into it); wait for it to end or "
            f"choose another --out"]
    finally:
        first.kill()
        first.wait(timeout=60)
    resumed = _train(str(cfg), "--out", str(out), "--resume")  # the kernel released the lock with the process
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_temporaries_of_a_write_killed_half_way_are_removed_on_the_next_start(tmp_path):
    cfg = _config(tmp_path)
    ref = _train(str(cfg), "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    # killed during the very first checkpoint write: no last.pt, a half-written temporary
    out = tmp_path / "first"
    proc = _start([str(cfg), "--out", str(out)], "midwrite")
    _wait_for(proc, "writing")
    proc.kill()
    proc.wait(timeout=60)
    assert not (out / "last.pt").exists() and len(list(out.glob(".last.pt.*.tmp"))) == 1
    again = _train(str(cfg), "--out", str(out))  # a fresh start in the same folder
    assert again.returncode == 0, again.stderr
    assert not list(out.glob(".*.tmp"))
    # killed during a later write: the last complete checkpoint resumes to the uninterrupted result
    out = tmp_path / "later"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "train", str(cfg), "--out", str(out), "--no-progress"],
                            env=_env(HOOK="midwrite", AT="4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(proc, "writing")
    proc.kill()
    proc.wait(timeout=60)
    assert (out / "last.pt").exists() and list(out.glob(".last.pt.*.tmp"))
    resumed = _train(str(cfg), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.glob(".*.tmp"))
    a, b = _load(tmp_path / "ref" / "last.pt"), _load(out / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_run_killed_before_its_metric_files_loses_no_epoch(tmp_path):
    cfg, out = _config(tmp_path), tmp_path / "run"
    proc = _train(str(cfg), "--out", str(out), hook="aftersave")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _load(out / "last.pt")["epoch"] == 3
    assert [r["epoch"] for r in json.loads((out / "metrics.json").read_text())] == [1, 2]  # the last one missing
    resumed = _train(str(cfg), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in json.loads((out / "metrics.json").read_text())] == [1, 2, 3]
    assert (out / "metrics.csv").read_text().count("\n") == 4 and (out / "result.json").is_file()


@pytest.mark.slow
def test_sigterm_stops_at_a_batch_with_a_checkpoint_and_resumes_exactly(tmp_path):
    cfg = _config(tmp_path)
    ref = _train(str(cfg), "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    proc = _start([str(cfg), "--out", str(out)], "slow")
    _wait_for(proc, "batch 1 3")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    err = proc.stderr.read().strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: interrupted by SIGTERM at epoch 2")
    state = _load(out / "last.pt")
    assert state["epoch"] == 1 and state["batch"] >= 3
    resumed = _train(str(cfg), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _load(tmp_path / "ref" / "last.pt"), _load(out / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
