"""Synthetic Heidelberg Digits: spoken digits (eSpeak NG, separate process) -> cochlea model -> SHD-format files.

See :func:`spikelib.data.heidelberg.generate.generate_heidelberg` and ``spikelib data synth-heidelberg --help``.
Submodules are imported lazily so that ``import spikelib.data`` needs neither scipy nor eSpeak NG.
"""

from __future__ import annotations

__all__ = ["generate_heidelberg"]


def generate_heidelberg(*args, **kwargs):  # noqa: ANN002, ANN003 - forwards to generate.generate_heidelberg
    """See :func:`spikelib.data.heidelberg.generate.generate_heidelberg`."""
    from spikelib.data.heidelberg.generate import generate_heidelberg as _generate

    return _generate(*args, **kwargs)
