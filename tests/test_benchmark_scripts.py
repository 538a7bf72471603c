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


def test_results_md_renders_every_stored_result(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("spikelib_bench_report", BENCH / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    results = sorted((BENCH / "results").glob("*.json"))
    out = report.write_results_md(BENCH / "results", tmp_path / "RESULTS.md")
    text = Path(out).read_text()
    assert results and text.count("\n## ") == len(results)  # one section per stored result file
    assert "- Command: `" in text
