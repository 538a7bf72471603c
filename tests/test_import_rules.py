"""The dependency rules of docs/architecture.md, read from the source with ``ast`` (imports inside functions count):
no import cycle among spikelib's modules; hardware/ never imports models/ or training/ (its command-line faces may);
functional/ imports no backend (only kernels/registry.py); graph/ imports nothing of spikelib outside itself; only
cli.py and __main__.py import spikelib.cli."""

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "spikelib"
FACES = ("cli", "demo_stage", "__main__")


def _modules() -> Dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


MODULES = _modules()


def _resolve(current: str, node: ast.AST) -> List[str]:
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = current.split(".")
            if not MODULES[current].name == "__init__.py":
                parts = parts[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        if name.startswith("spikelib"):
            out.append(name)
    return out


def _edges() -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[module].update(t for t in _resolve(module, node) if t != module)
    return edges


def _is_face(module: str) -> bool:
    return module.rsplit(".", 1)[-1] in FACES


def forbidden_edges() -> Set[str]:
    bad = set()
    for m, targets in _edges().items():
        for t in targets:
            if m.startswith("spikelib.hardware") and not _is_face(m) and t.startswith(("spikelib.models",
                                                                                       "spikelib.training")):
                bad.add(f"{m} -> {t}")
            if m.startswith("spikelib.functional") and t.startswith("spikelib.kernels") \
                    and t != "spikelib.kernels.registry":
                bad.add(f"{m} -> {t}")
            if m.startswith("spikelib.graph") and not t.startswith("spikelib.graph") and t != "spikelib":
                bad.add(f"{m} -> {t}")
            if t == "spikelib.cli" and m not in ("spikelib.__main__", "spikelib.cli"):
                bad.add(f"{m} -> {t}")
    return bad


def cycles() -> List[List[str]]:
    """Strongly connected components of more than one module (package __init__ files are faces: left out)."""
    edges = _edges()
    nodes = [m for m in MODULES if MODULES[m].name != "__init__.py"]
    graph = {m: [t for t in edges[m] if t in MODULES and MODULES[t].name != "__init__.py"] for m in nodes}
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    assert cycles() == []


def test_no_forbidden_imports():
    assert sorted(forbidden_edges()) == []


def test_the_checker_sees_function_level_imports(tmp_path):
    tree = ast.parse("def f():\n    from spikelib.models import SNNDelays\n")
    found = [t for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for t in _resolve("spikelib.hardware.energy.counters", node)]
    assert found == ["spikelib.models"]
