"""synth-heidelberg: SHD layout, tonic and spikelib readers, split by speaker, caching, determinism, plot, bad input."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikelib.data.heidelberg import cli as hcli
from spikelib.data.heidelberg import tts
from spikelib.data.heidelberg.generate import CLIP_LENGTHS, LABEL_KEYS, generate_heidelberg

pytestmark = pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None,
                                reason="eSpeak NG not installed (bash scripts/install_speech.sh <python>)")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """2 speakers x 20 words x 1 repetition at SHD's 700 channels (1 speaker held out), with the raster plot."""
    out = tmp_path_factory.mktemp("shd700")
    start = time.perf_counter()
    summary = generate_heidelberg(out, speakers=2, repeats=1, seed=0, plot=True, progress=False)
    summary["wall"] = time.perf_counter() - start
    return out, summary


def _read(path):
    with h5py.File(path, "r") as f:
        return {"times": [t.astype(np.float64) for t in f["spikes/times"][()]],
                "units": [u for u in f["spikes/units"][()]], "labels": f["labels"][()],
                "speaker": f["extra/speaker"][()], "keys": f["extra/keys"][()],
                "times_dtype": f["spikes/times"].dtype, "units_dtype": f["spikes/units"].dtype,
                "gender": f["extra/meta_info/gender"][()]}


def test_files_have_the_shd_layout(full):
    out, summary = full
    assert summary["train_samples"] == 20 and summary["test_samples"] == 20
    train, test = _read(out / "shd_train.h5"), _read(out / "shd_test.h5")
    for data in (train, test):
        assert h5py.check_vlen_dtype(data["times_dtype"]) == np.float16
        assert h5py.check_vlen_dtype(data["units_dtype"]) == np.uint16
        assert data["labels"].dtype == np.uint16 and data["speaker"].dtype == np.uint16
        assert sorted(data["labels"].tolist()) == list(range(20))
        assert [k.decode() for k in data["keys"]] == list(LABEL_KEYS)
        assert LABEL_KEYS[0] == "english-zero" and LABEL_KEYS[19] == "german-neun"
        assert len(data["gender"]) == 2
        for t, u in zip(data["times"], data["units"]):
            assert t.size == u.size > 500
            assert np.all(np.diff(t) >= 0)
            assert 0 <= t.min() and t.max() < CLIP_LENGTHS[-1] / tts.SAMPLE_RATE
            assert u.max() < 700
    # split by speaker: disjoint sets
    assert set(train["speaker"].tolist()) == {0} and set(test["speaker"].tolist()) == {1}
    # tonotopy: the spikes cover the speech range of units (low units are > 5 kHz, speech is mostly below)
    units = np.concatenate(train["units"])
    assert np.percentile(units, 5) < 350 and np.percentile(units, 95) > 600


def test_tonic_reads_the_files(full, tmp_path):
    tonic_datasets = pytest.importorskip("tonic.datasets")
    out, _ = full
    root = tmp_path / "root"
    (root / "SHD").mkdir(parents=True)
    for split in ("train", "test"):
        shutil.copy(out / f"shd_{split}.h5", root / "SHD" / f"shd_{split}.h5")
        (root / "SHD" / f"shd_{split}.h5.zip").touch()  # tonic then skips the download
    train = tonic_datasets.SHD(str(root), train=True)
    test = tonic_datasets.SHD(str(root), train=False)
    assert len(train) == 20 and len(test) == 20
    assert [k.decode() for k in train.classes] == list(LABEL_KEYS)
    assert set(train.speaker.tolist()) == {0} and set(test.speaker.tolist()) == {1}
    seen = set()
    for i in range(len(train)):
        events, target = train[i]
        assert events["x"].min() >= 0 and events["x"].max() <= 699
        assert np.all(np.diff(events["t"]) >= 0)
        seen.add(int(target))
    assert seen == set(range(20))


def test_spikelib_shd_dataset_reads_the_files(full):
    from spikelib.data import shd
    out, _ = full
    ds = shd.SHDDataset(out, split="train")
    assert len(ds) == 20
    x, y = ds[0]
    assert x.ndim == 2 and x.shape[1] == 700 and x.sum() > 100
    assert {int(ds[i][1]) for i in range(len(ds))} == set(range(20))
    summary = ds.check_all()  # the loader's own layout and per-sample checks
    assert summary["classes_present"] == 20 and summary["speakers"] == [0]


def test_plot_is_written(full):
    out, summary = full
    png = Path(summary["plot"])
    assert png == out / "shd_raster.png"
    data = png.read_bytes()
    assert len(data) > 20_000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_run_is_instant_and_identical(full):
    out, summary = full
    before = _read(out / "shd_train.h5")
    start = time.perf_counter()
    again = generate_heidelberg(out, speakers=2, repeats=1, seed=0, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < max(5.0, summary["wall"] / 4), (elapsed, summary["wall"])
    after = _read(out / "shd_train.h5")
    assert again["mean_spikes"] == summary["mean_spikes"]
    for a, b in zip(before["times"] + before["units"], after["times"] + after["units"]):
        np.testing.assert_array_equal(a, b)


def test_seed_determines_the_data_whatever_the_worker_count(tmp_path):
    kw = dict(speakers=2, repeats=1, languages=("en",), channels=16, progress=False)
    a = generate_heidelberg(tmp_path / "a", seed=3, workers=2, **kw)  # two spawned cochlea processes
    b = generate_heidelberg(tmp_path / "b", seed=3, workers=1, **kw)  # in this process
    c = generate_heidelberg(tmp_path / "c", seed=4, **kw)
    ra, rb, rc = (_read(Path(s["train"])) for s in (a, b, c))
    assert sorted(ra["labels"].tolist()) == list(range(10))
    for x, y in zip(ra["times"] + ra["units"], rb["times"] + rb["units"]):
        np.testing.assert_array_equal(x, y)
    assert any(x.size != y.size or not np.array_equal(x, y) for x, y in zip(ra["units"], rc["units"]))


def test_speech_is_deterministic_and_independent_of_synthesis_order(tmp_path):
    """eSpeak NG carries state between utterances; the worker makes every word from the same initial state."""
    people = tts.make_speakers(3, seed=1)
    reqs = [tts.utterance_request(p, lang, d, np.random.default_rng([p.index, d]))
            for p in people for lang in ("en", "de") for d in (0, 4, 7)]
    forward = tts.synthesize(reqs, tmp_path / "a")
    backward = tts.synthesize(reqs[::-1], tmp_path / "b")[::-1]
    alone = tts.synthesize(reqs[4:6], tmp_path / "c")
    for x, y in zip(forward, backward):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(forward[4:6], alone):
        np.testing.assert_array_equal(x, y)
    assert len({x.tobytes() for x in forward}) == len(reqs)


def test_speakers_differ_and_repetitions_vary():
    people = tts.make_speakers(12, seed=0)
    assert len({(p.variant, p.accents, p.pitch, p.rate) for p in people}) == 12
    assert tts.make_speakers(3, seed=0) == people[:3]  # a larger set extends a smaller one
    reqs = {tts.utterance_request(people[0], "en", 1, np.random.default_rng(r)) for r in range(5)}
    assert len(reqs) == 5


def test_cli_register_runs_the_generator(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    hcli.register(parser.add_subparsers())
    args = parser.parse_args(["synth-heidelberg", "--out", str(tmp_path / "o"), "--speakers", "2", "--repeats", "1",
                              "--languages", "en", "--channels", "8", "--no-progress"])
    assert args.func(args) == 0
    assert (tmp_path / "o" / "shd_train.h5").is_file() and '"train_samples": 10' in capsys.readouterr().out
    bad = parser.parse_args(["synth-heidelberg", "--out", str(tmp_path / "p"), "--speakers", "1"])
    assert bad.func(bad) == 2
    assert "speakers must be >= 2" in capsys.readouterr().err
    from spikelib.cli import main  # the `spikelib data synth-heidelberg` entry point

    assert main(["data", "synth-heidelberg", "--out", str(tmp_path / "m"), "--speakers", "2", "--repeats", "1",
                 "--languages", "de", "--channels", "8", "--no-progress", "--plot"]) == 0
    assert (tmp_path / "m" / "shd_raster.png").stat().st_size > 1000
    assert main(["data", "synth-heidelberg", "--out", str(tmp_path / "q"), "--speakers", "2",
                 "--languages", "fr"]) == 2
    assert "unknown language(s) ['fr']" in capsys.readouterr().err
    assert main(["data", "synth-heidelberg", "--out", str(tmp_path / "r"), "--speakers", "2", "--channels", "8",
                 "--variants", "m3,nobody", "--no-progress"]) == 2
    assert "does not know voice(s)" in capsys.readouterr().err


def test_bad_input_is_reported(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="speakers must be >= 2"):
        generate_heidelberg(tmp_path / "z", speakers=0)
    with pytest.raises(ValueError, match=r"unknown language\(s\) \['fr'\]"):
        generate_heidelberg(tmp_path / "l", speakers=2, languages=("en", "fr"))
    with pytest.raises(ValueError, match="does not know voice.*nobody"):
        generate_heidelberg(tmp_path / "v", speakers=2, variants=("m3", "nobody"), channels=8, progress=False)
    with pytest.raises(ValueError, match=r"does not know voice.*'en-gb\+"):
        generate_heidelberg(tmp_path / "a", speakers=2, accents={"en": ("en-gb",)}, channels=8, progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="out_dir .* is not a writable directory"):
        generate_heidelberg(blocker / "sub", speakers=2)
    foreign = tmp_path / "real"
    foreign.mkdir()
    with h5py.File(foreign / "shd_train.h5", "w") as f:
        f["labels"] = np.zeros(3, dtype=np.uint16)
    with pytest.raises(FileExistsError, match="not written by synth-heidelberg"):
        generate_heidelberg(foreign, speakers=2)
    monkeypatch.setattr(tts.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(tts.EspeakNotFoundError, match="install_speech.sh"):
        generate_heidelberg(tmp_path / "m", speakers=2)


def test_workers_exit_when_the_generating_process_is_killed(tmp_path):
    # A spawned worker with the watchdog of the generator's pool: its parent is SIGKILLed (no clean-up runs), and the
    # worker must be gone within a few polls instead of working through its queued tasks.
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing, os, sys, time\n"
        "from spikelib.data.heidelberg.generate import exit_with_parent\n"
        "def init(parent):\n"
        "    exit_with_parent(parent, poll_s=0.1)\n"
        "def work(_):\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    ctx = multiprocessing.get_context('spawn')\n"
        "    pool = ctx.Pool(1, initializer=init, initargs=(os.getpid(),))\n"
        "    pool.map_async(work, range(4))\n"
        "    print(pool._pool[0].pid, flush=True)\n"
        "    time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # running
        time.sleep(0.5)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not _alive(worker):
                break
            time.sleep(0.05)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its killed parent")
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's exit is reaped by whatever adopted it, maybe late)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): kill(0) said it exists
        return True
