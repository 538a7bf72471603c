"""Run a netx HDF5 network in Lava's bit-accurate simulator and return its spikes and ``u``/``v`` traces.

Uses lava-nc/lava-dl ``src/lava/lib/dl/netx/hdf5.py`` (``netx.hdf5.Network``, with ``reset_interval`` /
``reset_offset``) to build the network, lava-nc/lava ``src/lava/proc/io/source.py`` (``RingBuffer``: sends
``data[..., t]`` at step ``t``) for the input and ``src/lava/proc/monitor/process.py`` (``Monitor``) to record every
neuron group's spikes, ``u`` and ``v``. It runs with ``Loihi2SimCfg(select_tag='fixed_pt')`` (without the tag Lava
silently picks the float models). Lava simulates one sample at a time; a batch is run sample by sample. Conv layers are
fed and read in Lava's ``(x, y, z) = (W, H, C)`` layout and converted to spikelib's ``C, H, W`` order. A network with
input neurons gets its graded current straight into ``in_layer.neuron.a_in`` and its per-sample bias in
``in_layer.neuron.bias_mant``, as lava-dl's PilotNet tutorial and ``tiny.net`` test do.

Lava never hangs the caller. Lava runs its processes as forked children; when one raises, Lava 0.10 logs the traceback
at INFO only and ``Runtime.stop()`` can wait forever. So everything Lava does runs in a supervisor process in its own
process group: the supervisor reports each sample's results through a pipe, and hooks installed in it (inherited by
every Lava process it forks) write any exception raised in a Lava process to a second pipe at once. The caller raises
:class:`LavaError` with the child's message as soon as one arrives, ``TimeoutError`` after ``timeout`` seconds, and on
every exit (results, error, timeout, ``KeyboardInterrupt``) kills the whole process group, so no Lava process is left
behind. On Linux every process of the group also dies with its parent (``PR_SET_PDEATHSIG``).

Lava is optional (``bash scripts/install_lava.sh <python>``, which also patches Lava 0.10 for NumPy 2.4: its
``ReshapePort`` calls ``np.reshape(..., newshape=...)``, its conv model keeps padding as int8, which overflows for
input sides over 127, and netx calls ``int()`` on the input layer's ``(1,)``-shaped transform; :func:`import_lava`
refuses an unpatched install). lava-dl's ``netx`` package imports slayer's
``object_detection`` module, which needs torchvision and OpenCV; an empty stand-in module is registered for it before
the import (nothing on the netx path uses it).
"""

from __future__ import annotations

import ctypes
import importlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

from spikelib.hardware.loihi.simulator import (
    SimResult, check_input_bias, check_input_current, check_reset, check_spike_input,
)

__all__ = ["lava_available", "run_lava", "import_lava", "LavaError"]

_STUB = "lava.lib.dl.slayer.object_detection"
_INSTALL_HINT = "Lava is not installed: run `bash scripts/install_lava.sh <python>` (lava-nc 0.10.0, lava-dl 0.6.0)"
_REPORT_BYTES = 4000  # one os.write below PIPE_BUF (4096) is atomic: reports of concurrent Lava processes never mix
_GRACE_S = 5.0

_last_process_group: Optional[int] = None  # the process group of the latest run (tests check that it is gone)
_report_fd: Optional[int] = None  # in the supervisor and its Lava processes: where exceptions are reported


class LavaError(RuntimeError):
    """Lava failed; the message holds the Lava process's exception and traceback."""


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


def _check_patched() -> None:
    """Refuse a Lava 0.10 install without install_lava.sh's NumPy 2.4 patches (its runs would fail in a child)."""
    import inspect

    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.process.ports.ports import ReshapePort
    from lava.proc.conv import utils

    problems = []
    if "newshape=" in inspect.getsource(ReshapePort.get_transform_func_fwd):
        try:
            np.reshape(np.zeros(1), newshape=(1,))
        except TypeError:
            problems.append("ReshapePort calls np.reshape(newshape=...), which NumPy 2.4 removed")
    small = np.array([1, 1], dtype=np.int8)
    try:
        ok = tuple(utils.output_shape((200, 200, 1), 1, small, small, np.zeros(2, np.int8), small)) == (200, 200, 1)
    except (OverflowError, ValueError):
        ok = False
    if not ok:
        problems.append("conv's output_shape overflows int8 padding for input sides over 127")
    if "int(layer_config['weight'])" in inspect.getsource(Network.create_input):
        try:
            int(np.zeros(1))
        except TypeError:
            problems.append("netx's create_input calls int() on (1,)-shaped arrays, which NumPy 2.4 refuses")
    if problems:
        raise RuntimeError(f"Lava is installed without spikelib's NumPy patches ({'; '.join(problems)}): run "
                           f"`bash scripts/install_lava.sh <python>`")


def import_lava() -> types.SimpleNamespace:
    """Import the Lava pieces the runner needs; ImportError with the install command when Lava is missing,
    RuntimeError when it lacks ``scripts/install_lava.sh``'s patches."""
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
    _check_patched()
    return types.SimpleNamespace(netx=netx, RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, RingBuffer=RingBuffer,
                                 Monitor=Monitor)


def lava_available() -> bool:
    """True when lava-nc and lava-dl import (patched)."""
    try:
        import_lava()
    except (ImportError, RuntimeError):
        return False
    return True


# ------------------------------------------------------------------------------------- inside the Lava supervisor
def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def _report(source: str, exc: BaseException) -> None:
    """Write ``exc`` (message first, then the end of its traceback) to the report pipe in one atomic write."""
    if _report_fd is None or getattr(exc, "_spikelib_reported", False):
        return
    try:
        exc._spikelib_reported = True
    except AttributeError:
        pass
    head = f"{source} raised {type(exc).__name__}: {exc}\n"
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    data = (head + tail[-max(0, _REPORT_BYTES - len(head.encode()) - 200):]).encode("utf-8", errors="replace")
    try:
        os.write(_report_fd, data[:_REPORT_BYTES - 1] + b"\0")
    except OSError:
        pass


def _install_hooks() -> None:
    """Report exceptions of Lava's processes the moment they happen (inherited by every process Lava forks)."""
    from lava.magma.core.model.py.model import AbstractPyProcessModel
    from lava.magma.runtime.message_infrastructure.multiprocessing import SystemProcess

    join, run = AbstractPyProcessModel.join, SystemProcess.run

    def reporting_join(self):  # a process model calls join() in its except block before re-raising (model.py)
        exc = sys.exc_info()[1]
        if exc is not None:
            _report(f"Lava process model {type(self).__name__}", exc)
        return join(self)

    def guarded_run(self):
        _die_with_parent()
        target = self._target
        if target is not None:
            def guarded(*args, **kwargs):
                try:
                    return target(*args, **kwargs)
                except Exception as exc:
                    _report(f"Lava process {self.name}", exc)
                    raise
            self._target = guarded
        return run(self)

    AbstractPyProcessModel.join = reporting_join
    SystemProcess.run = guarded_run


def _to_lava(x: np.ndarray, shape: tuple) -> np.ndarray:
    """spikelib's flat ``C, H, W`` order ``[n, ...]`` -> Lava's ``(W, H, C, ...)`` for 3-d shapes."""
    if len(shape) != 3:
        return x
    return x.reshape(tuple(shape[::-1]) + x.shape[1:]).transpose((2, 1, 0) + tuple(range(3, x.ndim + 2)))


def _run_one(lava: types.SimpleNamespace, job: dict, b: int) -> Dict[str, np.ndarray]:
    """One sample; returns ``{"s0": [T, n], "u0": ..., "v0": ...}`` per neuron group, in spikelib's order."""
    x = job["x"][b]  # [n_in, T]
    T = x.shape[1]
    net = lava.netx.hdf5.Network(net_config=job["path"], input_message_bits=job["bits"],
                                 reset_interval=job["reset_interval"], reset_offset=job["reset_offset"])
    if job["input_neurons"]:
        neuron = net.in_layer.neuron
        shape = tuple(neuron.a_in.shape)
        source = lava.RingBuffer(data=_to_lava(x, shape))
        source.s_out.connect(neuron.a_in)
        if job["bias"] is not None:
            neuron.bias_mant.init = _to_lava(job["bias"][b], shape)
    else:
        source = lava.RingBuffer(data=_to_lava(x, tuple(net.inp.shape)))
        source.s_out.connect(net.inp)
    probes = []
    for layer in net.layers:
        for target in (layer.neuron.s_out, layer.neuron.u, layer.neuron.v):
            mon = lava.Monitor()
            mon.probe(target=target, num_steps=T)
            probes.append((layer, mon, target))
    out: Dict[str, np.ndarray] = {}
    try:
        net.run(condition=lava.RunSteps(num_steps=T), run_cfg=lava.Loihi2SimCfg(select_tag="fixed_pt"))
        for i, (layer, mon, target) in enumerate(probes):
            data = np.asarray(mon.get_data()[target.process.name][target.name])
            shape = tuple(layer.shape)
            if len(shape) == 3:  # (W, H, C) -> C, H, W order
                data = data.reshape((T,) + shape).transpose(0, 3, 2, 1)
            out[f"{'suv'[i % 3]}{i // 3}"] = data.reshape(T, -1).astype(np.int64)
    finally:
        net.stop()
    return out


def _supervisor(job: dict, conn, report_fd: int, parent: int) -> None:
    """The supervisor process: own process group, hooks, then every sample; results and errors go to the parent."""
    global _report_fd
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    _die_with_parent()
    if os.getppid() != parent:  # the caller died before prctl took effect
        os._exit(1)
    _report_fd = report_fd
    try:
        lava = import_lava()
        _install_hooks()
        for b in range(len(job["x"])):
            buf = io.BytesIO()
            np.savez(buf, **_run_one(lava, job, b))
            conn.send_bytes(b"R" + buf.getvalue())
    except Exception as exc:
        _report("Lava's supervisor process", exc)
        conn.send_bytes(b"E" + json.dumps({"error": f"{type(exc).__name__}: {exc}",
                                           "traceback": traceback.format_exc()[-_REPORT_BYTES:]}).encode())
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------- in the caller
def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _first_report(data: bytes) -> str:
    return data.split(b"\0")[0].decode("utf-8", errors="replace").strip()


def _supervise(job: dict, timeout: Optional[float]) -> List[Dict[str, np.ndarray]]:
    """Run ``job`` in a supervisor process group; its per-sample results, or LavaError / TimeoutError."""
    global _last_process_group
    ctx = multiprocessing.get_context("fork")
    report_r, report_w = os.pipe()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_supervisor, args=(job, send, report_w, os.getpid()), name="spikelib-lava")
    deadline = None if timeout is None else time.monotonic() + timeout
    results: List[Dict[str, np.ndarray]] = []
    reports = b""
    try:
        proc.start()
        _last_process_group = proc.pid
        try:
            os.setpgid(proc.pid, proc.pid)  # also done by the child: whichever runs first
        except OSError:
            pass
        os.close(report_w)
        report_w = -1
        send.close()
        watch = [recv, report_r, proc.sentinel]
        while len(results) < len(job["x"]):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = multiprocessing.connection.wait(watch, timeout=remaining)
            if not ready:
                raise TimeoutError(f"Lava did not finish within timeout={timeout} s ({len(results)} of "
                                   f"{len(job['x'])} samples done); its processes were killed")
            if report_r in ready:
                chunk = os.read(report_r, 1 << 16)
                if not chunk:
                    watch.remove(report_r)
                reports += chunk
                if b"\0" in reports:
                    raise LavaError(f"a Lava process failed: {_first_report(reports)}")
            if recv in ready:
                try:
                    msg = recv.recv_bytes()
                except EOFError:
                    watch.remove(recv)
                    continue
                if msg[:1] == b"R":
                    with np.load(io.BytesIO(msg[1:]), allow_pickle=False) as data:
                        results.append({k: data[k] for k in data.files})
                else:
                    if report_r in watch and multiprocessing.connection.wait([report_r], timeout=0.5):
                        reports += os.read(report_r, 1 << 16)  # a Lava process's own report says more
                    if b"\0" in reports:
                        raise LavaError(f"a Lava process failed: {_first_report(reports)}")
                    info = json.loads(msg[1:].decode())
                    raise LavaError(f"Lava failed: {info['error']}\n{info['traceback']}")
            elif proc.sentinel in ready and (recv not in watch or not recv.poll()):
                raise LavaError(f"Lava's supervisor process ended (exit code {proc.exitcode}) before returning "
                                f"results")
        proc.join(_GRACE_S)
        return results
    finally:
        if proc.pid is not None:
            _kill_group(proc.pid)
            if proc.is_alive():
                proc.kill()
            proc.join()
        for fd in (report_r, report_w):
            if fd >= 0:
                os.close(fd)
        recv.close()
        send.close()


def run_lava(path: Union[str, os.PathLike], spikes: torch.Tensor, *, reset_interval: Optional[int] = None,
             reset_offset: int = 0, input_bias: Optional[torch.Tensor] = None,
             timeout: Optional[float] = 600.0) -> SimResult:
    """Run the netx file at ``path`` in Lava (fixed point) on ``spikes [T, B, n_in]`` for ``T`` steps.

    Args:
        path: the netx file.
        spikes: as :func:`~spikelib.hardware.loihi.simulator.simulate`: spikes (values above 1 are graded spikes: the
            network is built with netx ``input_message_bits=8``), or the graded current of the input neurons.
        reset_interval, reset_offset: netx's periodic reset (see ``simulate``).
        input_bias: per-sample bias mantissas of the input neurons (see ``simulate``).
        timeout: seconds for the whole run (all samples, Lava's start-up included); None: no limit.

    Returns:
        A :class:`~spikelib.hardware.loihi.simulator.SimResult` laid out like the simulator's (per neuron group
        ``[T, B, n]``: spikes float32, ``u``/``v`` int64), so the two compare with ``torch.equal``.

    Raises:
        LavaError: a Lava process raised (its message and traceback included), within moments of the exception.
        TimeoutError: Lava did not finish within ``timeout``. No Lava process outlives the call in any case.
    """
    from spikelib.hardware.loihi.netx import load_netx

    import_lava()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"netx file {path} does not exist")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    check_reset(reset_interval, reset_offset)
    net = load_netx(path)
    bias = None
    if net.input_neurons is not None:
        x = check_input_current(spikes, net.input_size, "spikes")
        bias = check_input_bias(input_bias, x.shape[1], net.input_size)
        bits = 0
    else:
        if input_bias is not None:
            raise ValueError("input_bias needs a network with input neurons (an input layer with a neuron group)")
        x = check_spike_input(spikes, net.input_size)
        bits = 8 if float(x.max()) > 1 else 0  # graded input spikes: netx input_message_bits
    job = {"path": str(path), "bits": bits, "reset_interval": reset_interval, "reset_offset": reset_offset,
           "input_neurons": net.input_neurons is not None,
           "x": [x[:, b].t().numpy().astype(np.int32) for b in range(x.shape[1])],
           "bias": None if bias is None else bias.numpy().astype(np.int32)}
    per_sample = _supervise(job, timeout)
    out = SimResult([], [], [])
    for g in range(len(net.neuron_groups)):
        for key, dtype, target in (("s", torch.float32, out.spikes), ("u", torch.int64, out.u),
                                   ("v", torch.int64, out.v)):
            stacked = np.stack([sample[f"{key}{g}"] for sample in per_sample], axis=1)
            target.append(torch.from_numpy(stacked).to(dtype))
    return out
