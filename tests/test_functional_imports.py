"""The functional core holds equations only: its modules import nothing of spikelib but each other, the surrogates
and the backend registry (a leaf), and no backend module imports a neuron module; backends are registered by
``import spikelib`` (spikelib.kernels imports them), so every operation finds them whatever is imported first."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "spikelib"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_functional_imports_only_equations_and_the_registry():
    allowed = ("spikelib.functional", "spikelib.surrogate", "spikelib.kernels.registry")
    bad = [(p.name, m) for p in (ROOT / "functional").glob("*.py") for m in _imports(p)
           if m.startswith("spikelib") and not m.startswith(allowed)]
    assert bad == []


def test_registry_is_a_leaf():
    assert [m for m in _imports(ROOT / "kernels" / "registry.py") if m.startswith("spikelib")] == []


def test_kernels_import_no_modules_above_them():
    above = ("spikelib.neurons", "spikelib.layers", "spikelib.models", "spikelib.training", "spikelib.hardware")
    bad = [(str(p), m) for p in (ROOT / "kernels").rglob("*.py") for m in _imports(p) if m.startswith(above)]
    assert bad == []


def test_backends_registered_whatever_is_imported_first():
    code = (
        "import spikelib.functional.delay, spikelib.functional.elm, spikelib.functional.lif\n"
        "from spikelib.kernels.registry import available_backends as a\n"
        "ops = ['lif', 'elm', 'delay_linear_int', 'delay_gaussian_kernel', 'delay_shifted_matmul', 'neuron']\n"
        "print(';'.join(','.join(sorted(a(op))) for op in ops))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "cupy,numba,torch;fast,numba,torch_loop;numba,torch;numba,torch;numba,spectral,torch;cupy,numba,torch"
