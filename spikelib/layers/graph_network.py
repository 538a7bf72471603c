"""``GraphNetwork``: modules connected by a directed acyclic graph, run time first (what NIR import builds).

Each node is a module with the names of the nodes it reads (``"input"`` is the network's input). A node that reads
several nodes gets their sum (NIR's rule for several edges into one node), computed by an
:class:`~spikelib.layers.residual.Add` module so that tools see it; the output is the sum of the nodes the output
reads. Every module runs as in :class:`~spikelib.layers.sequential.Sequential` (sequence modules on ``[T, B, ...]``,
per-step modules on the steps folded into the batch).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from spikelib.layers.residual import Add
from spikelib.layers.sequential import apply_layer

__all__ = ["GraphNetwork"]


def _topological(inputs: Mapping[str, Sequence[str]], outputs: Sequence[str]) -> List[str]:
    order: List[str] = []
    state: Dict[str, int] = {}

    def visit(name: str, path: Tuple[str, ...]) -> None:
        if name == "input":
            return
        if name not in inputs:
            raise ValueError(f"node {path[-1]!r} reads {name!r}, which is not a node of the graph")
        mark = state.get(name, 0)
        if mark == 2:
            return
        if mark == 1:
            raise ValueError(f"the graph has a cycle through {name!r} ({' -> '.join(path + (name,))}); "
                             f"recurrent graphs are not supported here")
        state[name] = 1
        for src in inputs[name]:
            visit(src, path + (name,))
        state[name] = 2
        order.append(name)

    for name in outputs:
        visit(name, ("output",))
    for name in inputs:  # nodes that do not reach the output still run (they may be probes)
        visit(name, (name,))
    return order


class GraphNetwork(nn.Module):
    """Run ``modules`` in an order that respects ``inputs`` (see the module docstring).

    Args:
        modules: node name -> module (names without dots).
        inputs: node name -> names of the nodes it reads (``"input"`` for the network input), at least one each.
        outputs: the nodes whose (summed) values are the network's output.
    """

    temporal = True

    def __init__(self, modules: Mapping[str, nn.Module], inputs: Mapping[str, Sequence[str]],
                 outputs: Sequence[str]) -> None:
        super().__init__()
        if set(modules) != set(inputs):
            raise ValueError(f"modules and inputs must name the same nodes; only in modules: "
                             f"{sorted(set(modules) - set(inputs))}, only in inputs: {sorted(set(inputs) - set(modules))}")
        for name, srcs in inputs.items():
            if not srcs:
                raise ValueError(f"node {name!r} reads no node")
        if not outputs:
            raise ValueError("outputs must name at least one node")
        self.nodes = nn.ModuleDict(dict(modules))
        self.inputs = {k: list(v) for k, v in inputs.items()}
        self.outputs = list(outputs)
        self.order = _topological(self.inputs, self.outputs)
        self.joins = nn.ModuleDict({k: Add() for k, v in self.inputs.items() if len(v) > 1})
        self.output_join = Add() if len(self.outputs) > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: Dict[str, torch.Tensor] = {"input": x}
        for name in self.order:
            srcs = self.inputs[name]
            h = self.joins[name](*(values[s] for s in srcs)) if len(srcs) > 1 else values[srcs[0]]
            values[name] = apply_layer(self.nodes[name], h)
        if self.output_join is not None:
            return self.output_join(*(values[s] for s in self.outputs))
        return values[self.outputs[0]]

    def extra_repr(self) -> str:
        edges = ", ".join(f"{s}->{k}" for k in self.order for s in self.inputs[k])
        return f"outputs={self.outputs}, edges=[{edges}]"
