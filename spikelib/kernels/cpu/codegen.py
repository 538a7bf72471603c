"""Generated numba kernels: fill a ``.tmpl`` template and execute it once per process through the kernel cache.

Each kernel variant (neuron flags, surrogate, dtype) is generated as its own small Python module so that numba
compiles straight-line, vectorisable code with every flag and constant folded in (a runtime switch over surrogates
inside the inner loop measured 4x slower). The module is executed from the rendered source under a name that hashes
it, and numba keeps its machine code in the private, verified kernel cache (:mod:`.cache`: ``$SPIKELIB_CACHE_DIR``,
default ``~/.cache/spikelib``), so a variant compiles once per machine (about 1 s) and later processes load it in
milliseconds; nothing read from the cache can run code, and no cache failure is fatal.

Template syntax: ``{NAME}`` is replaced by a value; a line ending in ``#? FLAG`` is kept only when ``FLAG`` is true and
one ending in ``#? !FLAG`` only when it is false (the marker is removed). A multi-line value keeps the indentation of
the line it is placed in.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from pathlib import Path
from types import ModuleType
from typing import Dict, Mapping

from spikelib.kernels.cpu.cache import cache_dir, exec_generated

__all__ = ["cache_dir", "load_generated", "render_template"]

logger = logging.getLogger(__name__)

_TEMPLATE_DIR = Path(__file__).resolve().parent
_LOADED: Dict[str, ModuleType] = {}
_LOCK = threading.Lock()
_FLAG_RE = re.compile(r"^(?P<code>.*?)\s*#\?\s*(?P<neg>!?)(?P<flag>[A-Z_][A-Z0-9_]*)\s*$")


def render_template(name: str, flags: Mapping[str, bool], values: Mapping[str, str]) -> str:
    """Return the source of template ``name`` with ``flags`` applied and ``values`` substituted.

    Raises:
        KeyError: the template uses a flag or value that was not given (so a typo cannot silently drop code).
    """
    text = (_TEMPLATE_DIR / name).read_text()
    out = []
    for line in text.splitlines():
        m = _FLAG_RE.match(line)
        if m:
            flag = m.group("flag")
            if flag not in flags:
                raise KeyError(f"template {name} uses flag {flag!r}, which was not given")
            keep = bool(flags[flag]) != bool(m.group("neg"))
            if not keep:
                continue
            line = m.group("code")
        out.append(line)
    lines = []
    for line in out:
        for key, value in values.items():
            token = "{" + key + "}"
            if token in line and "\n" in value:
                indent = line[: len(line) - len(line.lstrip())]
                value = value.replace("\n", "\n" + indent)
            line = line.replace(token, value)
        lines.append(line)
    source = "\n".join(lines) + "\n"
    leftover = re.findall(r"\{[A-Z_][A-Z0-9_]*\}", source)
    if leftover:
        raise KeyError(f"template {name} has placeholders without a value: {sorted(set(leftover))}")
    return source


def load_generated(source: str, tag: str) -> ModuleType:
    """Execute generated ``source`` as a module (once per process) and return it; see :mod:`.cache`."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    mod_name = f"spikelib_gen_{tag}_{digest}"
    with _LOCK:
        if mod_name not in _LOADED:
            _LOADED[mod_name] = exec_generated(mod_name, source)
            logger.debug("loaded generated kernel %s", mod_name)
        return _LOADED[mod_name]
