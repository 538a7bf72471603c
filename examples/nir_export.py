"""Export your network to NIR (the Neuromorphic Intermediate Representation), read it back, and run it elsewhere.

The network is read from its declared layers, so a custom module with a residual connection exports as it is. The
file round-trips to a spikelib network with identical spikes; with norse installed, norse runs the same file and
gives the same spikes (see spikelib.hardware.nir for the peers' documented differences).

    python examples/nir_export.py --out net.nir          # needs the nir extra: pip install 'spikelib[nir]'
"""

import argparse
from pathlib import Path

import torch
from torch import nn

import spikelib
from spikelib import encoders


class ResidualNet(nn.Module):
    """``h = LIF(W1 x); y = LIF(h + LIF(W2 h))``: the sum is written in ``forward``, NIR gets two edges into ``out``."""

    def __init__(self, inputs: int = 16, hidden: int = 24) -> None:
        super().__init__()
        self.inp, self.n1 = nn.Linear(inputs, hidden), spikelib.LIF(v_threshold=0.4)
        self.body, self.n2 = nn.Linear(hidden, hidden), spikelib.LIF(v_threshold=0.4)
        self.out = spikelib.LIF(v_threshold=0.8, tau=3.0)

    def forward(self, x):
        h = self.n1(self.inp(x))
        return self.out(h + self.n2(self.body(h)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("net.nir"), help="the NIR file to write")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tiny", action="store_true", help="a short run (used by the test suite)")
    args = parser.parse_args(argv)
    T = 10 if args.tiny else args.steps
    try:
        import nir  # noqa: F401  (spikelib.hardware.nir imports it when used)
    except ImportError as exc:
        raise SystemExit(f"this example needs NIR: pip install 'spikelib[nir]' ({exc})")
    from spikelib.hardware.nir import from_nir, read_nir, to_nir, write_nir

    torch.manual_seed(0)
    net = ResidualNet()
    with torch.no_grad():
        net.inp.weight.mul_(4.0)
        net.body.weight.mul_(4.0)
    net.eval()
    graph = to_nir(net)                                       # nodes and edges from the declared layers
    path = write_nir(graph, args.out)
    back = from_nir(read_nir(path))                           # a spikelib GraphNetwork

    x = encoders.rate(torch.rand(3, 16), num_steps=T)
    with torch.no_grad():
        ours, theirs = net(x), back(x)
    same = torch.equal(ours, theirs)
    result = {"path": path, "nodes": sorted(graph.nodes), "edges": sorted(graph.edges), "round_trip_equal": same,
              "spikes": int(ours.sum())}
    try:
        import norse.torch as norse
    except ImportError:
        norse = None
    if norse is not None:
        peer, state, steps = norse.from_nir(read_nir(path), dt=1e-4), None, []
        with torch.no_grad():
            for t in range(T):
                o, state = peer(x[t], state)
                steps.append(o)
        result["norse_equal"] = torch.equal(torch.stack(steps), ours)
    print(f"wrote {path}: nodes {result['nodes']}; spikelib round trip equal: {same}; "
          f"norse equal: {result.get('norse_equal', 'norse not installed')}")
    return result


if __name__ == "__main__":
    main()
