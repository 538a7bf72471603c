"""The benchmark scripts are never run by the suite (no timed tests), but they must at least compile under the
project's Python and the report must render every stored result file."""

import importlib.util
import py_compile
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_benchmark_script_compiles(script, tmp_path):
    py_compile.compile(str(BENCH / script), cfile=str(tmp_path / "x.pyc"), doraise=True)


def _load(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"spikelib_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_results_md_renders_every_stored_result(tmp_path, monkeypatch):
    report = _load("report", monkeypatch)
    results = sorted((BENCH / "results").glob("*.json"))
    out = report.write_results_md(BENCH / "results", tmp_path / "RESULTS.md")
    text = Path(out).read_text()
    across = 1 if report.tta_across_seeds(report.load_results(BENCH / "results")) else 0
    assert results and text.count("\n## ") == len(results) + across  # one section per stored result file
    assert "- Command: `" in text


def _tta_payload(seed, ours, ref, reported=True):
    epochs = lambda accs, extra: [{"epoch": k + 1, "test_acc": a, "train_s": 1.0, "eval_s": 0.1, **extra(a)}
                                  for k, a in enumerate(accs)]  # noqa: E731
    return {"benchmark": "time_to_accuracy_cpu" if seed == 0 else f"time_to_accuracy_seed{seed}_cpu",
            "config": {"spikelib_init": "own", "seed": seed}, "machine": {"spikelib_git": "abc1234"},
            "runs": {"spikelib": {"epochs": epochs(ours, lambda a: {})},
                     "reference": {"epochs": epochs(ref, lambda a: {"test_acc_reported": a + 0.01} if reported
                                                    else {})}}}


def test_time_to_accuracy_across_seeds_mean_sd_and_standard_error(monkeypatch):
    report = _load("report", monkeypatch)
    payloads = [_tta_payload(0, [0.50, 0.60], [0.52, 0.70]), _tta_payload(1, [0.54, 0.64], [0.56, 0.66])]
    lines = report.tta_across_seeds(payloads)
    rows = [line for line in lines if line.startswith("| 2 |")]
    # epoch 2: spikelib 62 +- 2.83, reference 68 +- 2.83, difference -6 +- sqrt(2.83^2 / 2 * 2) = 2.83
    assert rows == ["| 2 | 62.00 +- 2.83 | 68.00 +- 2.83 | -6.00 +- 2.83 |"]
    assert "seeds 0, 1 (spikelib abc1234)" in "\n".join(lines)
    # one run, or runs without the per-sample reference accuracy (older files): no section
    assert report.tta_across_seeds(payloads[:1]) == []
    assert report.tta_across_seeds([_tta_payload(0, [0.5], [0.5], False), _tta_payload(1, [0.5], [0.5], False)]) == []


def test_reference_accuracy_is_counted_per_sample(monkeypatch):
    tta = _load("bench_time_to_accuracy", monkeypatch)
    # their per-batch accuracies: 9 batches of 256 at 0.5 and a last batch of 96 at 0.875 (84 correct)
    scored = [(0.5, 256)] * 9 + [(84 / 96, 96)]
    assert tta.per_sample_accuracy(scored) == (9 * 128 + 84) / 2400
    with pytest.raises(RuntimeError, match="no test batch"):
        tta.per_sample_accuracy([])


def _commit_all(repo, message):
    import subprocess

    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-q", "-m", message], check=True, capture_output=True)


def test_code_state_ignores_prose_and_results_but_not_code(tmp_path, monkeypatch):
    import subprocess

    common = _load("common", monkeypatch)
    assert common.affects_figures("spikelib/models/x.py") and common.affects_figures("benchmarks/report.py")
    assert common.affects_figures("configs/shd.yaml") and common.affects_figures("tests/fixtures/reference/generate.py")
    assert not common.affects_figures("README.md") and not common.affects_figures("docs/index.rst")
    assert not common.affects_figures("benchmarks/results/lif_cpu.json")
    assert not common.affects_figures("tests/test_lif.py")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "spikelib").mkdir()
    (tmp_path / "spikelib" / "a.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("one\n")
    _commit_all(tmp_path, "first")
    first = common.code_state_id(root=tmp_path)
    assert first is not None and len(first) == 12 and common.uncommitted_code(tmp_path) == []
    (tmp_path / "README.md").write_text("two\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "r.json").write_text("{}\n")
    assert common.uncommitted_code(tmp_path) == []  # prose and results are not code
    _commit_all(tmp_path, "docs and results")
    assert common.code_state_id(root=tmp_path) == first
    (tmp_path / "spikelib" / "a.py").write_text("x = 2\n")
    (tmp_path / "spikelib" / "new.py").write_text("")
    assert sorted(common.uncommitted_code(tmp_path)) == ["spikelib/a.py", "spikelib/new.py"]
    _commit_all(tmp_path, "code")
    assert common.code_state_id(root=tmp_path) != first
    assert common.code_state_id("HEAD~1", root=tmp_path) == first
    assert common.code_state_id("0" * 40, root=tmp_path) is None  # a commit this clone lacks


def test_results_md_says_whether_figures_share_one_code_state(monkeypatch):
    report = _load("report", monkeypatch)
    run = lambda name, git, code: {"benchmark": name, "machine": {"spikelib_git": git, "spikelib_code": code}}  # noqa: E731
    one = report.code_state_lines([run("a", "1111111", "s1"), run("b", "2222222", "s1")], "s1")
    assert "one code state, `s1` (commits 1111111, 2222222" in one[0] and "the code of this checkout" in one[0]
    assert "not this checkout's code (s2)" in report.code_state_lines([run("a", "1111111", "s1")], "s2")[0]
    mixed = "\n".join(report.code_state_lines([run("a", "1111111", "s1"), run("b", "2222222+dirty", "s1"),
                                               run("c", "3333333", "s3")], "s1"))
    assert "do not all come from one committed code state" in mixed
    assert "- `s3` (commit 3333333): c" in mixed and "- `uncommitted changes` (commit 2222222+dirty): b" in mixed


def test_regenerate_all_plans_every_result_file_it_can_make(tmp_path, monkeypatch):
    regen = _load("regenerate_all", monkeypatch)
    steps = dict(regen.plan(regen.parse_args(["--refs", str(tmp_path), "--training", "--tta-data", str(tmp_path),
                                              "--tta-seed", "0", "--tta-seed", "2"])))
    assert steps["heidelberg_learn"] == ["benchmarks/learn_heidelberg.py", "--out", str(tmp_path / "heidelberg_learn"),
                                         "--epochs", "40"]
    assert "--refs" in steps["delays_ref"] and steps["time_to_accuracy_seed2"][-6:-4] == ["--seed", "2"]
    assert {"iir_digits", "iir_digits_deep", "time_to_accuracy", "lif_fresh"} <= set(steps)
