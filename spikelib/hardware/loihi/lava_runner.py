"""Run a netx HDF5 network in Lava's bit-accurate simulator and return its spikes and ``u``/``v`` traces.

Uses lava-nc/lava-dl ``src/lava/lib/dl/netx/hdf5.py`` (``netx.hdf5.Network``) to build the network, lava-nc/lava
``src/lava/proc/io/source.py`` (``RingBuffer``: sends ``data[..., t]`` at step ``t``) for the input and
``src/lava/proc/monitor/process.py`` (``Monitor``) to record every layer's spikes, ``u`` and ``v``. It runs with
``Loihi2SimCfg(select_tag='fixed_pt')`` (without the tag Lava silently picks the float models) and always stops the
runtime. Lava simulates one sample at a time; a batch is run sample by sample. Conv layers are fed and read in Lava's
``(x, y, z) = (W, H, C)`` layout and converted to spikelib's ``C, H, W`` order. Networks with a conv layer followed by
a dense one (netx ``flatten``) are refused: Lava 0.10 / lava-dl 0.6 never finished such runs here (no error, no
progress), while conv-only and dense-only networks match the simulator bit for bit.

Lava is optional (``bash scripts/install_lava.sh <python>``). lava-dl's ``netx`` package imports slayer's
``object_detection`` module, which needs torchvision and OpenCV; an empty stand-in module is registered for it before
the import (nothing on the netx path uses it).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Union

import numpy as np
import torch

from spikelib.hardware.loihi.simulator import SimResult, check_spike_input

__all__ = ["lava_available", "run_lava", "import_lava"]

_STUB = "lava.lib.dl.slayer.object_detection"
_INSTALL_HINT = "Lava is not installed: run `bash scripts/install_lava.sh <python>` (lava-nc 0.10.0, lava-dl 0.6.0)"


def _import_lava_multiprocessing() -> None:
    """Import Lava's message infrastructure, which calls ``multiprocessing.set_start_method('fork')`` at import.

    That call raises "context has already been set" once anything in the process has fixed the start method (even
    to 'fork', e.g. by calling ``multiprocessing.get_start_method()``). When the method is already 'fork' the call is
    made a no-op during the import; another method is an error (Lava's runtime needs 'fork').
    """
    import multiprocessing as mp

    name = "lava.magma.runtime.message_infrastructure.multiprocessing"
    if name in sys.modules:
        return
    current = mp.get_start_method(allow_none=True)
    if current is None:
        importlib.import_module(name)
        return
    if current != "fork":
        raise RuntimeError(f"Lava's runtime needs the 'fork' multiprocessing start method, but this process already "
                           f"uses {current!r}")
    original = mp.set_start_method

    def _keep_fork(method, force=False):
        if method != "fork":
            original(method, force=force)

    mp.set_start_method = _keep_fork
    try:
        importlib.import_module(name)
    finally:
        mp.set_start_method = original


def import_lava() -> types.SimpleNamespace:
    """Import the Lava pieces the runner needs; ImportError with the install command when Lava is missing."""
    if _STUB not in sys.modules:
        sys.modules[_STUB] = types.ModuleType(_STUB)
    try:
        _import_lava_multiprocessing()
        from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.source import RingBuffer
        from lava.proc.monitor.process import Monitor
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return types.SimpleNamespace(netx=netx, RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, RingBuffer=RingBuffer,
                                 Monitor=Monitor)


def lava_available() -> bool:
    """True when lava-nc and lava-dl import."""
    try:
        import_lava()
    except ImportError:
        return False
    return True


def _run_one(lava: types.SimpleNamespace, path: str, x: np.ndarray, message_bits: int):
    """One sample ``x [n_in, T]`` (int); returns per-layer lists of ``[T, n]`` arrays (spikes, u, v)."""
    T = x.shape[1]
    net = lava.netx.hdf5.Network(net_config=path, input_message_bits=message_bits)
    in_shape = tuple(net.inp.shape)
    if len(in_shape) == 3:  # Lava's (x, y, z) = (W, H, C); spikelib flattens C, H, W
        x = x.reshape(in_shape[::-1] + (T,)).transpose(2, 1, 0, 3)
    source = lava.RingBuffer(data=x)
    source.s_out.connect(net.inp)
    monitors = []
    for layer in net.layers:
        probes = [layer]
        for target in (layer.neuron.s_out, layer.neuron.u, layer.neuron.v):
            mon = lava.Monitor()
            mon.probe(target=target, num_steps=T)
            probes.append((mon, target))
        monitors.append(probes)
    try:
        net.run(condition=lava.RunSteps(num_steps=T), run_cfg=lava.Loihi2SimCfg(select_tag="fixed_pt"))
        results = []
        for layer, *probes in monitors:
            arrays = []
            for mon, target in probes:
                data = np.asarray(mon.get_data()[target.process.name][target.name])
                shape = tuple(layer.shape)
                if len(shape) == 3:  # (W, H, C) -> C, H, W order
                    data = data.reshape((T,) + shape).transpose(0, 3, 2, 1)
                arrays.append(data.reshape(T, -1))
            results.append(arrays)
    finally:
        net.stop()
    return results


def run_lava(path: Union[str, os.PathLike], spikes: torch.Tensor) -> SimResult:
    """Run the netx file at ``path`` in Lava (fixed point) on ``spikes [T, B, n_in]`` for ``T`` steps.

    Inputs above 1 are graded spikes: the network is built with netx ``input_message_bits=8``.

    Returns a :class:`~spikelib.hardware.loihi.simulator.SimResult` laid out like the simulator's (per layer
    ``[T, B, n]``: spikes float32, ``u``/``v`` int64), so the two compare with ``torch.equal``.
    """
    lava = import_lava()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"netx file {path} does not exist")
    if not isinstance(spikes, torch.Tensor) or spikes.dim() != 3:
        raise ValueError(f"spikes must be a tensor [T, B, n_in], got "
                         f"{tuple(spikes.shape) if isinstance(spikes, torch.Tensor) else type(spikes).__name__}")
    x = check_spike_input(spikes, spikes.shape[2])
    from spikelib.hardware.loihi.netx import load_netx

    kinds = [layer.conv is not None for layer in load_netx(path).layers]
    if any(a and not b for a, b in zip(kinds[:-1], kinds[1:])):
        raise NotImplementedError("a conv layer followed by a dense layer (netx 'flatten'): Lava 0.10 / lava-dl 0.6 "
                                  "did not finish such runs here (Loihi2SimCfg, fixed_pt); conv-only and dense-only "
                                  "networks run")
    bits = 8 if float(x.max()) > 1 else 0  # graded input spikes: netx input_message_bits
    per_sample = [_run_one(lava, str(path), x[:, b].t().numpy().astype(np.int32), bits) for b in range(x.shape[1])]
    n_layers = len(per_sample[0])
    out = SimResult([], [], [])
    for layer in range(n_layers):
        for field, dtype, target in ((0, torch.float32, out.spikes), (1, torch.int64, out.u), (2, torch.int64, out.v)):
            stacked = np.stack([sample[layer][field] for sample in per_sample], axis=1)
            target.append(torch.from_numpy(stacked.astype(np.float64)).to(dtype))
    return out
