"""Training stages (IIR-SNN's timestep schedule, SNN-delays' fine-tuning) as a trainer feature: T applied through the
hook at every stage, each stage initialised from the previous stage's best checkpoint with fresh optimisers, all
stages in one run folder with metrics per stage, and a run killed with SIGKILL in the middle of any stage (or between
two stages) resumes to exactly the result of an uninterrupted run (CPU, one thread, real subprocesses)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from spikelib.training import Callback, ConfigError, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_task import CONFIG, RepeatSNN, data  # noqa: E402

# A run of the stage task in a subprocess, slowed down and announcing every event, so the test can kill it at a
# known point: argv = run_dir, resume (0/1), kill event ("stage:batch" or "enter:stage") or "-".
SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    sys.path.insert(0, {tests!r})
    from stage_task import CONFIG, RepeatSNN, data
    from spikelib.training import Callback, Trainer

    run_dir, resume, kill = sys.argv[1], sys.argv[2] == "1", sys.argv[3]

    class Announce(Callback):
        def on_stage_start(self, trainer):
            if kill == f"enter:{{trainer.stage}}":
                os.kill(os.getpid(), signal.SIGKILL)
        def on_batch_end(self, trainer):
            if kill == f"{{trainer.stage}}:{{trainer.epoch}}:{{trainer.batch}}":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.01)

    torch.manual_seed(0)  # the model's initial weights
    Trainer(CONFIG, run_dir, resume=resume, model=RepeatSNN(), datasets=data(), callbacks=[Announce()]).fit()
""").format(tests=str(Path(__file__).resolve().parent))


def _run(run_dir, resume=False, kill="-"):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SPIKELIB_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-c", SCRIPT, str(run_dir), "1" if resume else "0", kill], env=env,
                          capture_output=True, text=True, timeout=300)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("stages") / "ref"
    proc = _run(run)
    assert proc.returncode == 0, proc.stderr
    return run


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("kill", [pytest.param("0:0:3", id="mid-stage-1", marks=pytest.mark.slow),
                                  pytest.param("1:1:3", id="mid-stage-2"),
                                  pytest.param("2:0:3", id="mid-stage-3", marks=pytest.mark.slow),
                                  pytest.param("enter:1", id="entering-stage-2", marks=pytest.mark.slow),
                                  pytest.param("enter:2", id="entering-stage-3")])
def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(reference, tmp_path, kill):
    run = tmp_path / "killed"
    proc = _run(run, kill=kill)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    state = _load(run / "last.pt")
    if kill.startswith("enter:"):  # killed while entering the stage, before its first checkpoint
        assert state["stage"] == int(kill[-1]) - 1 and state["epoch"] == 2 and state["batch"] == 0
    else:
        stage, epoch, batch = map(int, kill.split(":"))
        assert (state["stage"], state["epoch"]) == (stage, epoch) and 0 < state["batch"] <= batch  # mid-stage
    assert not (run / "result.json").exists()
    resumed = _run(run, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _load(reference / "last.pt"), _load(run / "last.pt")
    assert a["stage"] == b["stage"] == 2 and a["global_step"] == b["global_step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _strip(a["history"]) == _strip(b["history"])
    for name in ("best_T4.pt", "best_T2.pt", "best_T1.pt", "best.pt"):
        wa, wb = _load(reference / name)["model"], _load(run / name)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (reference, run))
    assert ra["stages"] == rb["stages"] and ra["test"] == rb["test"]
    assert _strip(json.loads((run / "metrics.json").read_text())) == _strip(a["history"])
    assert not list(run.glob(".*.tmp"))


class StageProbe(Callback):
    def __init__(self):
        self.starts = []

    def on_stage_start(self, trainer):
        opt = trainer.optimizers[0].optimizer
        self.starts.append({"stage": trainer.stage_config.name, "T": trainer.model.T,
                            "weights": {k: v.clone() for k, v in trainer.model.state_dict().items()},
                            "optimizer_state": len(opt.state_dict()["state"]), "lr": opt.param_groups[0]["lr"]})


def test_stages_in_one_run_folder(tmp_path):
    probe = StageProbe()
    model = RepeatSNN()
    trainer = Trainer(CONFIG, tmp_path / "run", model=model, datasets=data(), callbacks=[probe])
    result = trainer.fit()
    run = tmp_path / "run"
    # T reached the model through the hook, stage by stage (training and evaluation)
    assert [s["T"] for s in probe.starts] == [4, 2, 1]
    assert set(model.seen) == {4, 2, 1} and model.seen[-1] == 1
    # every stage starts from the previous stage's best checkpoint, with fresh optimisers and schedules
    for prev, start in zip(("T4", "T2"), probe.starts[1:]):
        best = torch.load(run / f"best_{prev}.pt", weights_only=True)
        assert best["stage_info"] == {"name": prev, "timesteps": int(prev[1:]), "delays": None}
        assert all(torch.equal(best["model"][k], start["weights"][k]) for k in best["model"])
        assert start["optimizer_state"] == 0 and start["lr"] == pytest.approx(0.02)
    # metrics per stage in one metrics file, results per stage, the final stage's best as best.pt
    rows = json.loads((run / "metrics.json").read_text())
    assert [(r["stage"], r["timesteps"], r["epoch"]) for r in rows] == [
        ("T4", 4, 1), ("T4", 4, 2), ("T2", 2, 1), ("T2", 2, 2), ("T1", 1, 1), ("T1", 1, 2)]
    assert "stage,timesteps,epoch" in (run / "metrics.csv").read_text().splitlines()[0]
    assert [s["name"] for s in result["stages"]] == ["T4", "T2", "T1"]
    assert all({"val", "test", "best"} <= set(s) for s in result["stages"])
    assert result["test"] == result["stages"][-1]["test"]
    final = torch.load(run / "best.pt", weights_only=True)
    assert final["stage_info"]["timesteps"] == 1 and final["model"].keys() == model.state_dict().keys()
    assert json.loads((run / "result.json").read_text())["stages"] == result["stages"]


def test_stages_without_a_run_folder_and_bad_hooks():
    trainer = Trainer(CONFIG, None, model=RepeatSNN(), datasets=data())
    result = trainer.fit()
    assert [s["timesteps"] for s in result["stages"]] == [4, 2, 1] and trainer.model.T == 1
    calls = []
    Trainer(CONFIG, None, model=RepeatSNN(), datasets=data(),
            timestep_hook=lambda model, T, datasets: calls.append((T, sorted(datasets)))).fit()
    assert calls[:3] == [(4, ["test", "train", "val"]), (2, ["test", "train", "val"]), (1, ["test", "train", "val"])]

    class NoT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ConfigError, match="stages.timesteps: model NoT has no set_timesteps"):
        Trainer(CONFIG, None, model=NoT(), datasets=data()).fit()
