"""Executed documentation: the README tour and the getting-started guide run as written, and the API reference builds
with MkDocs in strict mode (warnings are errors).

Every ```python block of a document runs, in order, in one namespace (inside a temporary working directory). A line
ending in ``# => VALUE`` is a check: the expression before it must equal ``VALUE`` (so the documents show values the
suite proves). Blocks of other languages (bash, yaml) are not run.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ["README.md", "docs/getting-started.md"]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_CHECK = re.compile(r"^(?P<indent>\s*)(?P<expr>.+?)\s+# => (?P<value>.+)$")


def python_blocks(text: str):
    return [m.group(1) for m in _BLOCK.finditer(text)]


def with_checks(code: str, where: str) -> str:
    """``expr  # => value`` lines become assertions that name the document and the line."""
    out = []
    for n, line in enumerate(code.split("\n"), 1):
        m = _CHECK.match(line)
        if m:
            expr, value = m.group("expr"), m.group("value")
            ast.parse(expr, mode="eval")  # a check must be an expression, not a statement
            ast.parse(value, mode="eval")
            head, tail = f"{where} line {n}: {expr} is ", f", the document says {value}"
            line = (f"{m.group('indent')}__got = ({expr})\n"
                    f"{m.group('indent')}assert __got == ({value}), {head!r} + repr(__got) + {tail!r}")
        out.append(line)
    return "\n".join(out)


def test_check_lines_are_turned_into_assertions():
    code = with_checks("x = 2\nx + 1  # => 3\n", "doc")
    exec(compile(code, "doc", "exec"), {})
    with pytest.raises(AssertionError, match="doc line 2: x \\+ 1 is 3, the document says 4"):
        exec(compile(with_checks("x = 2\nx + 1  # => 4\n", "doc"), "doc", "exec"), {})


@pytest.mark.parametrize("document", EXECUTED)
def test_document_runs_as_written(document, tmp_path, monkeypatch):
    text = (ROOT / document).read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert blocks, f"{document} has no python block"
    checks = sum(1 for b in blocks for line in b.split("\n") if _CHECK.match(line))
    assert checks >= 3, f"{document} checks too little ({checks} '# =>' lines)"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [document])
    namespace = {"__name__": "__doc_test__"}
    for i, block in enumerate(blocks, 1):
        where = f"{document} block {i}"
        exec(compile(with_checks(block, where), where, "exec"), namespace)


def test_readme_tour_produces_spikes(tmp_path, monkeypatch):
    """The tour's first block on its own: the pasted code must spike (issue 21: it did not)."""
    first = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[0]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(first, "README tour", "exec"), namespace)
    assert float(namespace["out"].spikes.mean()) > 0.05
    assert float(namespace["spikes_out"].detach().sum()) > 0


def test_docstring_conventions_are_rewritten_for_the_google_parser():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from griffe_docstrings import rewrite
    finally:
        sys.path.pop(0)
    doc = ("Run :func:`~spikelib.functional.lif.lif` on :class:`LIF`.\n\nArgs:\n    n_train, n_test: sample counts\n"
           "        per split.\n    seed: the seed.\n    Other arguments as in :class:`LIF`.\n\nReturns:\n    x.")
    assert rewrite(doc) == ("Run `lif` on `LIF`.\n\nArgs:\n    n_train: sample counts\n        per split.\n"
                            "    n_test: sample counts\n        per split.\n    seed: the seed.\n\n"
                            "Other arguments as in `LIF`.\n\nReturns:\n    x.")


def test_api_reference_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="the dev extra installs mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the dev extra installs mkdocstrings-python")
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for page in ("api/losses", "api/monitor", "api/encoders", "api/neurons", "getting-started", "architecture"):
        assert (site / page / "index.html").is_file(), page
    losses = (site / "api/losses/index.html").read_text(encoding="utf-8")
    assert 'id="spikelib.losses.tet_loss"' in losses and "Deng et al." in losses
    neurons = (site / "api/neurons/index.html").read_text(encoding="utf-8")
    assert 'id="spikelib.neurons.LIF"' in neurons and ":class:" not in neurons
