"""Griffe extension used by the documentation build (mkdocs.yml): reads spikelib's docstring conventions.

spikelib's docstrings are Google style with two habits the Google parser does not know:

- Sphinx roles (``:class:`~spikelib.monitor.Monitor```, ``:func:`lif```) become inline code (``Monitor``, ``lif``).
- Grouped arguments (``n_train, n_test: number of samples``) become one entry per name with the same description, so
  the strict build still checks every name against the signature.
- A line of an ``Args:`` section that is not ``name: description`` (``Other arguments as in LIF.``) is moved after the
  section as a paragraph.

The rewrite happens on the docstring text when griffe creates each object; the source files are not changed.
"""

from __future__ import annotations

import re
from typing import Any, List

from griffe import Extension, Object

__all__ = ["SpikelibDocstrings", "rewrite"]

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|py:\w+):`~?([^`]+)`")
_SECTIONS = ("Args:", "Arguments:", "Parameters:")
_NAMES = re.compile(r"^\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*$")


def _role(match: re.Match) -> str:
    target = match.group(1)
    short = target.rsplit(".", 1)[-1] if match.group(0).split("`", 1)[1].startswith("~") else target
    return f"`{short}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _rewrite_args(lines: List[str], start: int) -> tuple:
    """Rewrite the ``Args:`` block that starts after ``lines[start]``; returns (new block, notes, index after)."""
    header = _indent(lines[start])
    i = start + 1
    entries: List[List[str]] = []
    while i < len(lines):
        line = lines[i]
        if line.strip() and _indent(line) <= header:
            break
        if not line.strip():
            # a blank line ends the section unless the next line is still indented under it
            nxt = next((ln for ln in lines[i + 1:] if ln.strip()), "")
            if not nxt or _indent(nxt) <= header:
                break
        if entries and (not line.strip() or _indent(line) > _indent(entries[-1][0])):
            entries[-1].append(line)
        else:
            entries.append([line])
        i += 1
    block: List[str] = []
    notes: List[str] = []
    for entry in entries:
        first = entry[0]
        name, sep, rest = first.strip().partition(":")
        if sep and _NAMES.match(name.strip()):
            pad = " " * _indent(first)
            for one in (n.strip() for n in name.split(",")):
                block.append(f"{pad}{one}:{rest}")
                block.extend(entry[1:])
        else:
            notes.append(" ".join(part.strip() for part in entry))
    return block, notes, i


def rewrite(doc: str) -> str:
    """The docstring with roles as inline code and ``Args:`` sections in the Google parser's form."""
    lines = _ROLE.sub(_role, doc).split("\n")
    out: List[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() in _SECTIONS:
            pad = " " * _indent(lines[i])
            block, notes, i = _rewrite_args(lines, i)
            out.extend(block)
            if notes:
                out.append("")
                out.extend(pad + note for note in notes)
            continue
        i += 1
    return "\n".join(out)


class SpikelibDocstrings(Extension):
    """Rewrites every docstring with :func:`rewrite` when griffe creates the object."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
