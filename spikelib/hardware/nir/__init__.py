"""NIR export and import of spikelib networks (Neuromorphic Intermediate Representation, neuromorphs/NIR).

Node semantics follow NIR's continuous-time definitions (neuromorphs/NIR ``nir/ir/neuron.py``) discretised with forward
Euler at a time step ``dt`` (seconds; default ``1e-4``, the ``dt`` snnTorch's importer assumes, jeshraghian/snntorch
``snntorch/import_nir.py``). For a LIF node ``tau dv/dt = (v_leak - v) + r I``, one step is
``v += (dt / tau) (v_leak - v + r I)``; spikelib's LIF (:mod:`spikelib.functional.lif`) with ``tau`` in steps is

    decay_input=True :  NIR LIF(tau = tau dt, r = 1,   v_leak = v_reset, v_threshold, v_reset)
    decay_input=False:  NIR LIF(tau = tau dt, r = tau, v_leak = v_reset, v_threshold, v_reset)

The network is read from its declared layer graph (:func:`spikelib.graph.trace`), so any module built from declared
layers exports, including residual connections: NIR sums the edges that enter a node, so an ``Add`` becomes edges
from its inputs straight to its readers. Nodes: ``Affine`` -> ``Linear`` / ``Affine``; ``DelayedAffine`` with
integer delays -> a sub-``NIRGraph`` ``Input -> Delay(d dt) -> Linear(W masked to delay d) -> Output`` per distinct
delay ``d`` (NIR's ``Delay`` delays whole channels, so per-synapse delays become parallel branches summed at the
output; the delays of zero weights are not represented); ``LI`` (non-firing readouts) -> ``LI``; ``Conv`` 1-d/2-d ->
``Conv1d`` / ``Conv2d`` (``input_shape`` written); average pooling in 2-d -> ``AvgPool2d`` (``SumPool2d`` with
``divisor_override=1``); ``Flatten`` -> ``Flatten`` (dims counted without the batch); batch norm right after a
synapse is folded into it (eval mode); ``Delay`` -> ``Delay``; ``CubaLIF`` -> ``CubaLIF``. Every neuron parameter is
written per neuron with its shape; ``Input``/``Output`` carry the shapes. spikelib facts NIR cannot hold (tau in
steps, ``decay_input``, a readout over time, zero time padding) are written as node/graph ``metadata`` so that
:func:`from_nir` rebuilds the network exactly.

:func:`from_nir` builds a :class:`spikelib.layers.Sequential` (time first ``[T, B, ...]``) from a chain of nodes and a
:class:`spikelib.layers.GraphNetwork` from any other acyclic graph, including graphs exported by snnTorch and norse
(``LIF`` with ``r = 1`` or ``r = tau / dt``, ``CubaLIF``, ``LI``, ``Delay``).
Differences of the peers (checked in tests/test_nir.py): norse's ``from_nir`` ignores ``r`` (warns), so only
``decay_input=True`` layers mean the same there, and it needs ``dt`` passed; snnTorch maps ``LIF`` to
``Leaky(beta = 1 - dt/tau, threshold = v_th / (r dt / tau), reset='zero')`` with ``dt = 1e-4`` fixed, i.e. it rescales
the membrane instead of the input (same spikes); neither imports ``Delay`` or ``LI``. spikelib spikes at
``v >= v_th``, NIR/norse/snnTorch at ``v > v_th`` (differs only on exact ties).
"""
from spikelib.hardware.nir.common import DEFAULT_DT, NIRConversionError
from spikelib.hardware.nir.cuba import CubaLIF
from spikelib.hardware.nir.export import to_nir
from spikelib.hardware.nir.files import read_nir, write_nir
from spikelib.hardware.nir.importer import from_nir

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "CubaLIF", "NIRConversionError", "DEFAULT_DT"]
