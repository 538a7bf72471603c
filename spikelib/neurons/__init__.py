"""Neuron modules: sequence layers (``LIF``, ``ParametricLIF``, the non-firing ``LeakyIntegrator``) and single-step
cells (``LIFCell``)."""

from spikelib.neurons.base import StatefulModule, reset
from spikelib.neurons.leaky import LeakyIntegrator
from spikelib.neurons.lif import LIF, LIFCell, ParametricLIF, ParametricLIFCell, iir_lif

__all__ = ["LIF", "LIFCell", "LeakyIntegrator", "ParametricLIF", "ParametricLIFCell", "StatefulModule", "iir_lif",
           "reset"]
