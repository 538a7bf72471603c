"""Layers built from synapses and neurons, time first ``[T, B, ...]``: delayed synapses (DCLS)."""

from spikelib.layers.delay import DCLS_SIGMA_OFFSET, DelayedLinear, default_sigma

__all__ = ["DCLS_SIGMA_OFFSET", "DelayedLinear", "default_sigma"]
