"""Shared pieces of NIR export and import: the lazy ``nir`` import, the error type and the default step."""

from __future__ import annotations

__all__ = ["DEFAULT_DT", "NIRConversionError", "nir_module"]

DEFAULT_DT = 1e-4


class NIRConversionError(ValueError):
    """A module or NIR node that has no counterpart here (the message names it)."""


def nir_module():
    try:
        import nir
    except ImportError as exc:
        raise ImportError("NIR support needs the 'nir' package: pip install 'spikelib[nir]'") from exc
    return nir
