"""Neuron modules: sequence layers (``LIF``, ``ParametricLIF``, ``IF``, ``CubaLIF``, ``ALIF``, ``Izhikevich``,
``Recurrent`` around any of them, the non-firing ``LeakyIntegrator``) and single-step cells (``LIFCell``, ``ParametricLIFCell``, ``IFCell``,
``CubaLIFCell``, ``ALIFCell``, ``IzhikevichCell``)."""

from spikelib.neurons.base import StatefulModule, reset
from spikelib.neurons.families import (
    ALIF,
    IF,
    ALIFCell,
    CubaLIF,
    CubaLIFCell,
    IFCell,
    Izhikevich,
    IzhikevichCell,
)
from spikelib.neurons.leaky import LeakyIntegrator
from spikelib.neurons.lif import LIF, LIFCell, ParametricLIF, ParametricLIFCell, iir_lif
from spikelib.neurons.recurrent import Recurrent, RecurrentState

__all__ = [
    "ALIF",
    "ALIFCell",
    "CubaLIF",
    "CubaLIFCell",
    "IF",
    "IFCell",
    "Izhikevich",
    "IzhikevichCell",
    "LIF",
    "LIFCell",
    "LeakyIntegrator",
    "ParametricLIF",
    "ParametricLIFCell",
    "Recurrent",
    "RecurrentState",
    "StatefulModule",
    "iir_lif",
    "reset",
]
