"""The kernel threads (spikelib/kernels/cpu/threads.py): torch's OpenMP team where torch runs on OpenMP, the thread
pool otherwise (and in forked processes); both run every unit exactly once, give the kernels' results bit for bit,
and re-raise a unit's error."""

import os
import subprocess
import sys
import threading

import pytest
import torch

from spikelib.functional import lif
from spikelib.kernels.cpu import threads as kt

OPENMP = "parallel backend: OpenMP" in torch.__config__.parallel_info()
needs_openmp = pytest.mark.skipif(not OPENMP, reason="this torch build does not run on OpenMP")


@pytest.fixture(params=["openmp", "pool"])
def mode(request, monkeypatch):
    if request.param == "openmp" and not OPENMP:
        pytest.skip("this torch build does not run on OpenMP")
    monkeypatch.setenv("SPIKELIB_KERNEL_THREADS", request.param)
    return request.param


def _calls_during(fn):
    before = kt.team_calls()
    fn()
    after = kt.team_calls()
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


def test_every_unit_runs_once_on_the_chosen_threads(mode):
    """Both schedulers cover every chunk exactly once, on more than one OS thread, and the run is counted under
    the team that ran it."""
    seen, idents, lock = [], set(), threading.Lock()

    def kernel(out, chunk, c_begin, c_end):
        with lock:
            seen.append((c_begin, c_end))
            idents.add(threading.get_native_id())
        for u in range(c_begin * chunk, min(len(out), c_end * chunk)):
            out[u] += 1

    for runner in (kt.run_dynamic, kt.run_chunked):
        for m, chunk, threads in ((1000, 3, 2), (7, 1, 3), (5, 8, 4)):
            out, seen[:] = [0] * m, []
            calls = _calls_during(lambda: runner(kernel, (out,), m, chunk, threads))
            assert out == [1] * m
            n_chunks = -(-m // chunk)
            assert sum(e - b for b, e in seen) == n_chunks and len(set(seen)) == len(seen)
            assert calls == ({mode: 1} if min(threads, n_chunks) > 1 else {})
    assert len(idents) > 1  # the work really ran on several threads


def test_a_units_error_is_reraised_and_stops_the_hand_out(mode):
    ran = []

    def failing(chunk, c_begin, c_end):
        ran.append(c_begin)
        raise RuntimeError(f"boom in chunk {c_begin}")

    with pytest.raises(RuntimeError, match="boom in chunk"):
        kt.run_dynamic(failing, (), 200, 1, 2)
    assert len(ran) < 200  # no thread takes new chunks after the first error


@needs_openmp
def test_openmp_team_is_torchs_loaded_runtime(monkeypatch):
    monkeypatch.delenv("SPIKELIB_KERNEL_THREADS", raising=False)
    path = kt.openmp_team()
    assert path is not None and "omp" in os.path.basename(path)
    if os.path.exists("/proc/self/maps"):  # the runtime torch loaded, not a second copy
        with open("/proc/self/maps") as maps:
            assert path in maps.read()


def test_kernel_results_equal_on_both_teams(monkeypatch):
    """A LIF forward and backward large enough for several threads: identical on the team and on the pool."""
    x = (torch.rand(20, 4, 8192) * 2).requires_grad_(True)
    results = {}
    for mode in (["openmp"] if OPENMP else []) + ["pool"]:
        monkeypatch.setenv("SPIKELIB_KERNEL_THREADS", mode)
        monkeypatch.setenv("SPIKELIB_NUM_THREADS", "2")
        calls = {}

        def step():
            out = lif(x, backend="numba", return_membrane=True)
            (g,) = torch.autograd.grad(out.spikes.sum() + out.membrane.sum(), x)
            results[mode] = (out.spikes, out.membrane, g)

        calls = _calls_during(step)
        assert calls.get(mode, 0) >= 2 and set(calls) == {mode}  # forward and backward ran on that team
    ref = results["pool"]
    for got in results.values():
        for a, b in zip(got, ref):
            assert torch.equal(a, b)


def test_bad_mode_is_reported(monkeypatch):
    monkeypatch.setenv("SPIKELIB_KERNEL_THREADS", "fibers")
    with pytest.raises(ValueError, match="SPIKELIB_KERNEL_THREADS must be one of auto, openmp, pool, got 'fibers'"):
        kt.run_dynamic(lambda chunk, b, e: None, (), 10, 1, 2)


@needs_openmp
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_uses_the_pool():
    """GNU OpenMP cannot start a team in a child forked after the parent used it; the child falls back to the pool
    (and SPIKELIB_KERNEL_THREADS=openmp is refused there with a clear error)."""
    code = r"""
import os, sys
import torch
from spikelib.kernels.cpu import threads as kt
kt.run_dynamic(lambda chunk, b, e: None, (), 10, 1, 2)
assert kt.team_calls() == {"openmp": 1}, kt.team_calls()
pid = os.fork()
if pid == 0:
    out = [0] * 10
    def kernel(chunk, b, e):
        for u in range(b * chunk, min(10, e * chunk)):
            out[u] += 1
    kt.run_dynamic(kernel, (), 10, 1, 2)
    ok = out == [1] * 10 and kt.team_calls().get("pool") == 1 and kt.openmp_team() is None
    os.environ["SPIKELIB_KERNEL_THREADS"] = "openmp"
    try:
        kt.openmp_team()
        ok = False
    except RuntimeError as exc:
        ok = ok and "forked" in str(exc)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    env = {k: v for k, v in os.environ.items() if k != "SPIKELIB_KERNEL_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_arguments_are_released_when_the_run_returns(mode):
    """Nothing of a run outlives it: the kernel's arrays are freed as soon as the caller drops them (no reference
    cycle through the callback, checked with the garbage collector off)."""
    import gc
    import weakref

    def kernel(a, chunk, c_begin, c_end):
        a[c_begin * chunk:c_end * chunk] += 1

    gc.disable()
    try:
        t = torch.zeros(1000)
        kt.run_dynamic(kernel, (t.numpy(),), 1000, 10, 2)
        assert torch.equal(t, torch.ones(1000))
        ref = weakref.ref(t)
        del t
        assert ref() is None
    finally:
        gc.enable()


@needs_openmp
def test_the_team_reuses_one_c_callback(monkeypatch):
    """The team's C callback is made once, not per run: a ctypes callback (a libffi closure) made for every kernel run
    left the resident set of an SHD training loop 130-240 MiB higher (glibc could no longer trim its heap)."""
    monkeypatch.setenv("SPIKELIB_KERNEL_THREADS", "openmp")
    kt.run_dynamic(lambda chunk, b, e: None, (), 10, 1, 2)  # the team exists
    made = []
    real = kt._OpenMPTeam._CALLBACK
    monkeypatch.setattr(kt._OpenMPTeam, "_CALLBACK", lambda fn: made.append(fn) or real(fn))
    for _ in range(5):
        kt.run_dynamic(lambda chunk, b, e: None, (), 10, 1, 2)
    assert made == [] and kt.team_calls().get("openmp", 0) >= 6


@pytest.mark.parametrize("m, threads, unit_work, n_expected", [
    (32768, 2, 104, 16),  # the LIF benchmark [100, 32768]: 8 chunks per thread of 2048 units (213K neuron-steps)
    (16384, 2, 104, 12),  # 8 per thread would be 107K neuron-steps each: 12 chunks of >= 2**17
    (8192, 2, 104, 6),
    (1740, 2, 104, 1),  # 181K neuron-steps: one chunk, on the calling thread
    (65536, 2, 104, 16),  # 8 per thread of 4096 units
    (200000, 2, 5, 6),  # T=1: 1M neuron-steps' worth
    (1000000, 2, 5, 38),  # a chunk would exceed 4096 units and the least work: chunks of about that least work
    (300000, 2, 14, 32),
    (100000, 3, 104, 24),
    (64, 2, 104, 1),
    (5, 1, 5, 1),
])
def test_chunks_carry_the_least_work_and_split_evenly(m, threads, unit_work, n_expected):
    """Every chunk but the last does at least MIN_CHUNK_WORK neuron-steps; several chunks come in a multiple of the
    threads (8 per thread, fewer where they would be smaller than the least work); chunks are 16-aligned."""
    chunk = kt.chunk_size(m, threads, 8, unit_work)
    n_chunks = -(-m // chunk)
    assert chunk % 16 == 0 and chunk >= 16
    assert n_chunks == n_expected
    if n_chunks > 1:
        assert chunk * unit_work >= kt.MIN_CHUNK_WORK
        assert n_chunks % threads == 0
    if m * unit_work < 2 * kt.MIN_CHUNK_WORK:
        assert n_chunks == 1


def test_small_neuron_kernels_run_on_the_calling_thread(monkeypatch):
    """A LIF over [100, 1740] (174K neuron-steps, below twice the least chunk work) runs serially: no team run."""
    monkeypatch.delenv("SPIKELIB_NUM_THREADS", raising=False)
    x = torch.rand(100, 1740) * 1.5
    before = sum(kt.team_calls().values())
    lif(x, backend="numba")
    assert sum(kt.team_calls().values()) == before
    x = torch.rand(100, 32768) * 1.5
    lif(x, backend="numba")
    assert sum(kt.team_calls().values()) == before + (1 if kt.kernel_threads(100 * 32768) > 1 else 0)
