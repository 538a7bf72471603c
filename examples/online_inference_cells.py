"""Online inference with cells: feed a trained network one time step at a time, as samples arrive from a sensor.

The network is trained as a sequence model (``LIF`` layers over ``[T, B, C]``). For streaming, the same weights run
with ``LIFCell`` layers that take one step ``[B, C]`` and keep their membrane between calls; the explicit state can
also be carried by hand (``cell(x_t, state)``). The streamed outputs equal the sequence model's outputs bit for bit.

    python examples/online_inference_cells.py
"""

import argparse
import time

import torch
from torch import nn

import spikelib
from spikelib import encoders, losses


def sequence_model(inputs: int, hidden: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), spikelib.LIF(tau=5.0, decay_input=False),
                         nn.Linear(hidden, classes), spikelib.LIF(tau=5.0, decay_input=False))


def cell_model(trained: nn.Sequential) -> nn.Sequential:
    """The same network, one step at a time: the Linear layers are shared, each LIF becomes a LIFCell."""
    cells = []
    for layer in trained:
        if isinstance(layer, spikelib.LIF):
            cells.append(spikelib.LIFCell(tau=layer.tau_value(), v_threshold=layer.v_threshold,
                                          decay_input=layer.config.decay_input))
        else:
            cells.append(layer)
    return nn.Sequential(*cells)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="time steps per sample")
    parser.add_argument("--train-steps", type=int, default=100, help="optimiser steps of the offline training")
    parser.add_argument("--tiny", action="store_true", help="a short run (used by the test suite)")
    args = parser.parse_args(argv)
    T = 20 if args.tiny else args.steps
    train_steps = 20 if args.tiny else args.train_steps

    torch.manual_seed(0)
    classes, inputs = 3, 30
    prototypes = torch.rand(classes, inputs)
    net = sequence_model(inputs, 32, classes)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(train_steps):                              # offline training on whole sequences
        y = torch.randint(0, classes, (32,))
        x = encoders.rate(prototypes[y], num_steps=T)
        loss = losses.count_cross_entropy(net(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    stream_model = cell_model(net).eval()
    y = torch.randint(0, classes, (4,))
    stream = encoders.rate(prototypes[y], num_steps=T)        # what the sensor will deliver, step by step
    with torch.no_grad():
        offline = net(stream)
        spikelib.reset(stream_model)                           # start every stream from rest
        online, seconds = [], []
        for t in range(T):                                     # one step as it arrives
            start = time.perf_counter()
            online.append(stream_model(stream[t]))
            seconds.append(time.perf_counter() - start)
        online = torch.stack(online)
    equal = torch.equal(online, offline)
    prediction = online.sum(0).argmax(1)
    print(f"streamed {T} steps: outputs equal to the sequence model: {equal}; "
          f"median {1e3 * sorted(seconds)[T // 2]:.3f} ms per step; predictions {prediction.tolist()} "
          f"(labels {y.tolist()})")
    return {"equal": equal, "accuracy": float((prediction == y).float().mean()), "spikes": int(online.sum())}


if __name__ == "__main__":
    main()
