"""The benchmark scripts are never run by the suite (no timed tests), but they must at least compile under the
project's Python and the report must render every stored result file."""

import importlib.util
import py_compile
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
