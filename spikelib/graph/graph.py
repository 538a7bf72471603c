"""The declared layer graph of a network: :class:`Graph` of :class:`GraphNode` (built by
:func:`spikelib.graph.trace`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Type

from torch import nn

from spikelib.graph import nodes as N

__all__ = ["Graph", "GraphNode", "GraphStructureError"]


class GraphStructureError(ValueError):
    """The graph does not have the structure a consumer needs (the message names the node)."""


@dataclass
class GraphNode:
    """One operation of the graph.

    Attributes:
        name: the module's qualified name in the model (``"input"``, ``"output"``, or ``"<owner>:<function>#k"`` for
            arithmetic recorded outside declared layers).
        node: what it computes.
        module: the module that declared it (None for the input/output and recorded functions).
        inputs: names of the nodes whose outputs it reads, in argument order.
        in_shapes: per-sample shapes of those inputs (no time, no batch; None where the layout is unknown).
        out_shape: per-sample shape of its output.
        steps: time steps of its output (None for an output without time axis).
    """

    name: str
    node: N.Node
    module: Optional[nn.Module] = None
    inputs: List[str] = field(default_factory=list)
    in_shapes: List[Optional[Tuple[int, ...]]] = field(default_factory=list)
    out_shape: Optional[Tuple[int, ...]] = None
    steps: Optional[int] = None

    def label(self) -> str:
        """``name (kind)`` for messages."""
        owner = f", {type(self.module).__name__}" if self.module is not None else ""
        return f"{self.name!r} ({self.node.kind}{owner})"


class Graph:
    """Nodes in execution order (the first is ``"input"``, the last ``"output"``) and the edges between them."""

    def __init__(self, nodes: Iterable[GraphNode], *, steps: int, batch: int) -> None:
        self.nodes: Dict[str, GraphNode] = {}
        for g in nodes:
            if g.name in self.nodes:
                raise ValueError(f"duplicate node name {g.name!r}")
            self.nodes[g.name] = g
        self.steps, self.batch = int(steps), int(batch)
        for g in self.nodes.values():
            for src in g.inputs:
                if src not in self.nodes:
                    raise ValueError(f"node {g.name!r} reads {src!r}, which is not in the graph")

    # ------------------------------------------------------------------------------------------------- structure
    @property
    def edges(self) -> List[Tuple[str, str]]:
        """``(source, target)`` pairs, one per input of each node."""
        return [(src, g.name) for g in self.nodes.values() for src in g.inputs]

    @property
    def input(self) -> GraphNode:
        return self.nodes["input"]

    @property
    def output(self) -> GraphNode:
        return self.nodes["output"]

    def layers(self) -> List[GraphNode]:
        """Every node but the input and output, in execution order."""
        return [g for g in self.nodes.values() if not isinstance(g.node, (N.Input, N.Output))]

    def successors(self, name: str) -> List[str]:
        return [g.name for g in self.nodes.values() if name in g.inputs]

    def find(self, *types: Type[N.Node]) -> List[GraphNode]:
        """The nodes whose record is an instance of one of ``types``."""
        return [g for g in self.nodes.values() if isinstance(g.node, types)]

    def without(self, *types: Type[N.Node]) -> "Graph":
        """A copy with every node of ``types`` (one input each) bypassed: its readers read its input instead."""
        drop = {g.name: g for g in self.nodes.values() if isinstance(g.node, types)}
        for g in drop.values():
            if len(g.inputs) != 1:
                raise GraphStructureError(f"node {g.label()} has {len(g.inputs)} inputs and cannot be bypassed")

        def source(name: str) -> Tuple[str, Optional[Tuple[int, ...]]]:
            shape = None
            while name in drop:
                shape = drop[name].in_shapes[0] if drop[name].in_shapes else None
                name = drop[name].inputs[0]
            return name, shape

        kept = []
        for g in self.nodes.values():
            if g.name in drop:
                continue
            inputs, shapes = [], []
            for i, src in enumerate(g.inputs):
                new, _ = source(src)
                inputs.append(new)
                shapes.append(self.nodes[new].out_shape if new != src else (g.in_shapes[i] if i < len(g.in_shapes)
                                                                             else None))
            kept.append(GraphNode(g.name, g.node, g.module, inputs, shapes, g.out_shape, g.steps))
        return Graph(kept, steps=self.steps, batch=self.batch)

    def simplified(self) -> "Graph":
        """Without the nodes that only move data (dropout, identity: :class:`~spikelib.graph.nodes.Free`)."""
        return self.without(N.Free)

    def chain(self) -> List[GraphNode]:
        """The layers of a graph that is a single chain input -> ... -> output, else :class:`GraphStructureError`
        naming the first node that branches or joins."""
        out: List[GraphNode] = []
        name = "input"
        while True:
            nxt = self.successors(name)
            if len(nxt) != 1:
                where = self.nodes[name].label()
                raise GraphStructureError(f"the network is not a chain of layers: node {where} feeds {len(nxt)} "
                                          f"nodes ({', '.join(nxt) or 'none'})")
            g = self.nodes[nxt[0]]
            if len(g.inputs) != 1:
                raise GraphStructureError(f"the network is not a chain of layers: node {g.label()} reads "
                                          f"{len(g.inputs)} inputs ({', '.join(g.inputs)})")
            if isinstance(g.node, N.Output):
                return out
            out.append(g)
            name = g.name

    def check_no_functions(self, consumer: str) -> None:
        """Raise naming the first arithmetic recorded outside declared layers (``consumer`` names the tool)."""
        for g in self.nodes.values():
            if isinstance(g.node, N.Function):
                readers = ", ".join(self.successors(g.name)) or "the output"
                owner = f" in the forward() of {g.node.owner!r}" if g.node.owner else ""
                raise GraphStructureError(
                    f"{consumer}: the network computes `{g.node.name}`{owner} outside any declared layer (read by "
                    f"{readers}); {consumer} sees declared layers only. Use a spikelib layer for it "
                    f"(spikelib.layers.Add / Residual for sums, TimeReduce for readouts over time) or declare a "
                    f"module for it (a graph_node() method).")

    def describe(self) -> str:
        """One line per node: name, kind, inputs, per-sample output shape, steps."""
        lines = []
        for g in self.nodes.values():
            src = ", ".join(g.inputs)
            lines.append(f"{g.name:<32} {g.node.kind:<18} <- {src:<32} out {g.out_shape} T={g.steps}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges, steps={self.steps}, batch={self.batch})"


def shapes_equal(a: Optional[Sequence[int]], b: Optional[Sequence[int]]) -> bool:
    return a is not None and b is not None and tuple(a) == tuple(b)
