"""Source code of a traced neuron step (:func:`spikelib.functional.dynamics.trace`) for the generated kernels.

:func:`forward_source` writes the step as one assignment per operation, in the traced order, so a kernel computes
exactly what the torch reference computes. :func:`backward_source` writes its reverse-mode derivative: it visits the
operations backwards and accumulates the adjoint ``g_n = dL/dn`` of every value that reaches an output, with::

    a + b: g_a += g, g_b += g        a - b: g_a += g, g_b -= g        -a: g_a -= g
    a * b: g_a += g b, g_b += g a    a / b: g_a += g / b, g_b -= (g (a / b)) / b
    spike(z): g_z += g surrogate'(z)  (the surrogate gradient)            detach(a): nothing

seeded with the gradients of the step's outputs (``g_s`` for the spike, ``gn_k`` for the new state ``k``). The
adjoints of the inputs are the gradients of the input ``x``, of the previous state and of the parameters. Only values
that depend on ``x``, the state or the parameters through operations that pass gradients get an adjoint, and a
kernel recomputes only the forward values its backward statements read (:func:`dependencies`). Two languages:
``"numba"`` (Python, literals wrapped in the kernel's float type) and ``"c"`` (CUDA/C++, float32 arithmetic, literals
written as the decimal of their float32 value, which parses back to exactly that value).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

import numpy as np

from spikelib.functional.dynamics import Program

__all__ = ["forward_source", "backward_source", "literal", "dependencies"]

_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def literal(value: float, lang: str, F: str = "np.float32") -> str:
    """A number in the kernel's float type: ``F(value)`` (numba) or the float32 value's decimal (C)."""
    if lang == "numba":
        return f"{F}({float(value)!r})"
    return f"{float(np.float32(value))!r}f"


def _value(prog: Program, i: int, names: Mapping[int, str], lang: str, F: str) -> str:
    node = prog.nodes[i]
    if node.op == "const":
        return literal(node.value, lang, F)
    return names.get(i, f"n{i}")


def dependencies(prog: Program, roots: Iterable[int]) -> Set[int]:
    """The ids of ``roots`` and of every value they are computed from."""
    seen: Set[int] = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            stack.extend(prog.nodes[i].args)
    return seen


def forward_source(prog: Program, inputs: Mapping[int, str], lang: str, F: str = "np.float32",
                   keep: Optional[Set[int]] = None) -> Tuple[List[str], Dict[int, str]]:
    """Statements computing the operations (``n<id> = ...``; only those in ``keep`` when given); returns them and the
    name of every value."""
    names: Dict[int, str] = dict(inputs)
    lines: List[str] = []
    for node in prog.nodes:
        if node.op in ("input", "const"):
            continue
        names[node.id] = f"n{node.id}"
        if keep is not None and node.id not in keep:
            continue
        a = [_value(prog, j, names, lang, F) for j in node.args]
        if node.op in _OPS:
            expr = f"{a[0]} {_OPS[node.op]} {a[1]}"
        elif node.op == "neg":
            expr = f"-{a[0]}"
        elif node.op == "detach":
            expr = a[0]
        elif node.op == "spike":
            cmp = ">" if node.strict else ">="
            if lang == "numba":
                expr = f"{F}(1.0) if {a[0]} {cmp} {F}(0.0) else {F}(0.0)"
            else:
                expr = f"{a[0]} {cmp} 0.0f ? 1.0f : 0.0f"
        else:  # pragma: no cover - the tracer makes no other operation
            raise ValueError(f"unknown operation {node.op!r}")
        name = f"n{node.id}"
        lines.append(f"{name} = {expr}" if lang == "numba" else f"const float {name} = {expr};")
    return lines, names


def backward_source(prog: Program, names: Mapping[int, str], seeds: Mapping[int, List[str]], lang: str,
                    F: str = "np.float32") -> Tuple[List[str], Dict[int, str], Set[int]]:
    """Statements computing the adjoints (after :func:`forward_source`'s statements).

    Args:
        prog: the traced step.
        names: the value names from :func:`forward_source`.
        seeds: the gradients flowing into output values (node id -> expressions to add).
        lang: ``"numba"`` or ``"c"``.

    Returns:
        The statements; the adjoint expression of every input node that receives a gradient (inputs without one are
        left out); the ids of the values the statements read.
    """
    diff: Set[int] = {prog.x, *prog.states, *prog.params}
    for node in prog.nodes:
        if node.op not in ("input", "const", "detach") and any(a in diff for a in node.args):
            diff.add(node.id)
    terms: Dict[int, List[str]] = defaultdict(list)
    for i, exprs in seeds.items():
        if i in diff:
            terms[i].extend(exprs)
    lines: List[str] = []
    inputs: Dict[int, str] = {}
    used: Set[int] = set()

    def val(i: int) -> str:
        used.add(i)
        return _value(prog, i, names, lang, F)

    def assign(name: str, expr: str) -> None:
        lines.append(f"{name} = {expr}" if lang == "numba" else f"const float {name} = {expr};")

    for node in reversed(prog.nodes):
        t = terms.get(node.id)
        if not t:
            continue
        if node.op == "input":
            inputs[node.id] = t[0] if len(t) == 1 else "(" + " + ".join(t) + ")"
            continue
        g = f"g{node.id}"
        assign(g, " + ".join(t))
        a, b = (node.args + (-1,))[:2]

        def add(target: int, term: Callable[[], str]) -> None:  # only to values that pass gradients on
            if target in diff:
                terms[target].append(term())

        if node.op == "add":
            add(a, lambda: g)
            add(b, lambda: g)
        elif node.op == "sub":
            add(a, lambda: g)
            add(b, lambda: f"-{g}")
        elif node.op == "neg":
            add(a, lambda: f"-{g}")
        elif node.op == "mul":
            add(a, lambda: f"{g} * {val(b)}")
            add(b, lambda: f"{g} * {val(a)}")
        elif node.op == "div":
            add(a, lambda: f"{g} / {val(b)}")
            add(b, lambda: f"-({g} * {val(node.id)}) / {val(b)}")
        elif node.op == "spike":
            sg = f"sg{node.id}"
            assign(sg, f"surrogate({val(a)}, alpha)")
            add(a, lambda: f"{g} * {sg}")
        else:  # pragma: no cover - detach values are not in `diff`
            raise ValueError(f"unknown operation {node.op!r}")
    return lines, inputs, used
