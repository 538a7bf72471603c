"""Pure functions over time-first tensors ``[T, B, ...]``: ``(x_seq, state, params) -> (out_seq, state)``."""

from spikelib.functional.lif import LIFConfig, LIFOutput, LIFState, lif, lif_step

__all__ = ["LIFConfig", "LIFOutput", "LIFState", "lif", "lif_step"]
