"""Layers built from synapses and neurons, time first ``[T, B, ...]``: dense synapses (``Linear``, event-driven on
spikes), delayed synapses (DCLS), per-channel delays, time-first containers (``Sequential``, ``Residual``,
``GraphNetwork``), ``Add``, readouts over time (``TimeReduce``), zero time padding (``TimePad``) and the spike-driven
attention products."""

from spikelib.layers.attention_products import SpikeAttentionProduct, SpikeColumnSum
from spikelib.layers.channel_delay import ChannelDelay
from spikelib.layers.delay import DCLS_SIGMA_OFFSET, DelayedLinear, default_sigma
from spikelib.layers.graph_network import GraphNetwork
from spikelib.layers.linear import Linear
from spikelib.layers.readout import TimeReduce
from spikelib.layers.residual import Add, Residual
from spikelib.layers.sequential import Sequential, apply_layer
from spikelib.layers.time_pad import TimePad

__all__ = ["Add", "ChannelDelay", "DCLS_SIGMA_OFFSET", "DelayedLinear", "GraphNetwork", "Linear", "Residual",
           "Sequential", "SpikeAttentionProduct", "SpikeColumnSum", "TimePad", "TimeReduce", "apply_layer", "default_sigma"]
