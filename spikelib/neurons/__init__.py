"""Neuron modules: sequence layers (``LIF``, ``ParametricLIF``) and single-step cells (``LIFCell``)."""

from spikelib.neurons.base import StatefulModule, reset
from spikelib.neurons.lif import LIF, LIFCell, ParametricLIF, ParametricLIFCell, iir_lif

__all__ = ["LIF", "LIFCell", "ParametricLIF", "ParametricLIFCell", "StatefulModule", "iir_lif", "reset"]
