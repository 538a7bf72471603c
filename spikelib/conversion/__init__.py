"""ANN -> SNN conversion (usable alone, and IIR-SNN's first step): batch-norm folding, spiking counterparts of
Sequential / conv / residual networks built from spikelib layers, and threshold balancing layer by layer (percentile
or max of the input currents on one training batch).

::

    from spikelib.conversion import convert
    snn = convert(ann.eval(), x_batch, timesteps=5)

See :mod:`spikelib.conversion.structure` (the module rules), :mod:`spikelib.conversion.thresholds` (the balancing
rule of SayeedChowdhury/IIR-SNN) and :mod:`spikelib.conversion.convert`.
"""

from spikelib.conversion.convert import convert
from spikelib.conversion.structure import ConversionError, convert_structure, default_neuron, register_converter
from spikelib.conversion.thresholds import (balance_thresholds, neuron_layers, neuron_thresholds, reference_percentile,
                                            set_threshold)

__all__ = ["ConversionError", "balance_thresholds", "convert", "convert_structure", "default_neuron",
           "neuron_layers", "neuron_thresholds", "reference_percentile", "register_converter", "set_threshold"]
