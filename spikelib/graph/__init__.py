"""The declared layer graph: what every layer computes, as typed nodes, and the data flow of any network built from
declared layers.

::

    from spikelib.graph import declare, declared_layers, trace

    declare(layer)                  # the node a layer declares (None for a container)
    declared_layers(model)          # (name, module, node) of every declared layer; names undeclared ones
    graph = trace(model, input_shape=(700,))   # nodes + edges of one recorded forward pass

Energy counting (:mod:`spikelib.hardware.energy`), Loihi mapping (:mod:`spikelib.hardware.loihi`) and NIR export
(:mod:`spikelib.hardware.nir`) read these nodes; NIR import builds modules from them. See docs/architecture.md.
"""

from spikelib.graph import nodes
from spikelib.graph.declare import (UndeclaredLayerError, declare, declared_layers, is_declared, is_temporal,
                                    register_declaration)
from spikelib.graph.graph import Graph, GraphNode, GraphStructureError
from spikelib.graph.trace import TraceError, infer_input_shape, trace

__all__ = ["Graph", "GraphNode", "GraphStructureError", "TraceError", "UndeclaredLayerError", "declare", "declared_layers",
           "infer_input_shape", "is_declared", "is_temporal", "nodes", "register_declaration", "trace"]
