"""The kernel cache (spikelib.kernels.cpu.cache): private, verified, never fatal, and nothing in it can run code.

Each failure mode of issue 23 is built for real (a file instead of a folder, a read-only folder, truncated and empty
entries, a foreign or group-writable folder, a planted ``.pyc`` and planted pickles in numba's ``.nbi``/``.nbc``
files); every planted payload would create a marker file, and a control proves each payload live (the import system
runs the ``.pyc``, ``pickle`` runs the ``.nbi``). Small generated modules keep most tests in-process and fast; two
subprocess tests run ``spikelib.lif`` end to end in fresh processes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import marshal
import os
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

numba = pytest.importorskip("numba")

from spikelib.kernels.cpu import cache  # noqa: E402
from spikelib.kernels.cpu.cache import KernelCacheWarning  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs ``open(marker, 'w')``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    """A fresh SPIKELIB_CACHE_DIR (and fresh per-process stores)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SPIKELIB_CACHE_DIR", str(root))
    monkeypatch.setattr(cache, "_STORES", {})
    yield root
    for d, _, _ in os.walk(tmp_path):  # undo read_only() even when a test failed
        _immutable(Path(d), False)


_COUNTER = [0]


def _source(value: int = 7) -> str:
    """A tiny numba module, unique per call so that no earlier module or cache entry is reused."""
    _COUNTER[0] += 1
    return textwrap.dedent(f"""
        from numba import njit

        TOKEN = {os.getpid()}_{_COUNTER[0]}

        @njit(cache=True)
        def f(x):
            return x * 2 + {value}
    """)


def _load(source: str, name: str = "m"):
    """Execute ``source`` as a fresh module (as a new process would) and call its kernel once."""
    mod_name = f"spikelib_gen_test{name}_{abs(hash(source)) % 10**12}"
    module = cache.exec_generated(mod_name, source)
    value = module.f(3)
    return module, value


def _hits(module) -> int:
    return sum(module.f._cache_hits.values())


def _entries(root: Path, pattern: str):
    return sorted((root / "kernels" / "numba").rglob(pattern))


def _cache_warnings(record) -> list:
    return [w for w in record if issubclass(w.category, KernelCacheWarning)]


def _immutable(path: Path, on: bool) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` and the folders below it read-only for this user (chmod; chattr +i when running as root)."""
    dirs = [Path(d) for d, _, _ in os.walk(folder)]
    if os.geteuid() != 0:
        for d in dirs:
            os.chmod(d, 0o500)
    elif not all(_immutable(d, True) for d in dirs):
        for d in dirs:
            _immutable(d, False)
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    try:
        yield
    finally:
        for d in dirs:
            if os.geteuid() != 0:
                os.chmod(d, 0o700)
            else:
                _immutable(d, False)


# --- privacy ------------------------------------------------------------------------------------------------------

def test_missing_folders_are_created_private(cache_root):
    src = _source()
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelCacheWarning)
        module, value = _load(src)
    assert value == 13
    for folder in (cache_root, cache_root / "kernels", cache_root / "kernels" / "numba"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert (cache_root / "kernels" / "key").stat().st_mode & 0o077 == 0
    assert _entries(cache_root, "*.nbi") and _entries(cache_root, "*.nbc")
    assert not (cache_root / "kernels" / "__pycache__").exists(), "the import system is never used"
    assert isinstance(module.f._cache, cache._glue()["VerifiedFunctionCache"])


def test_a_new_process_loads_the_compiled_kernel_from_the_cache(cache_root):
    src = _source()
    first, _ = _load(src)
    assert _hits(first) == 0 and sum(first.f._cache_misses.values()) == 1
    second, value = _load(src)  # new dispatchers, as in a new process
    assert value == 13 and _hits(second) == 1


@pytest.mark.parametrize("problem", ["foreign owner", "group writable", "parent writable by others"])
def test_unsafe_folders_are_refused_with_one_warning(cache_root, monkeypatch, problem):
    src = _source()
    _load(src)  # a filled cache, then made unsafe
    monkeypatch.setattr(cache, "_STORES", {})
    kernels = cache_root / "kernels"
    if problem == "foreign owner":
        if os.geteuid() == 0:
            for d, _, fs in os.walk(cache_root):
                for p in [d] + [os.path.join(d, f) for f in fs]:
                    os.chown(p, 65534, 65534)
        else:
            monkeypatch.setattr(cache, "_euid", lambda: os.geteuid() + 1)
        expected = "is owned by uid"
    elif problem == "group writable":
        os.chmod(kernels, 0o770)
        expected = "writable by group or others"
    else:
        os.chmod(cache_root, 0o777)
        expected = "its parent"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first, value = _load(src)
        second, _ = _load(src)
    found = _cache_warnings(record)
    assert len(found) == 1 and expected in str(found[0].message) and "compiled in memory" in str(found[0].message)
    assert value == 13 and _hits(first) == 0 and _hits(second) == 0, "nothing is read from a refused folder"


# --- never fatal --------------------------------------------------------------------------------------------------

def test_cache_dir_that_is_a_file_falls_back_to_memory(tmp_path, monkeypatch):
    path = tmp_path / "not-a-folder"
    path.write_text("x")
    monkeypatch.setenv("SPIKELIB_CACHE_DIR", str(path))
    monkeypatch.setattr(cache, "_STORES", {})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _, value = _load(_source())
        _, value2 = _load(_source())
    found = _cache_warnings(record)
    assert value == value2 == 13
    assert len(found) == 1 and "not-a-folder" in str(found[0].message)
    assert path.read_text() == "x"


def test_read_only_folder_serves_its_entries_and_compiles_the_rest_in_memory(cache_root):
    kept = _source()
    _load(kept)
    with read_only(cache_root):
        cache._STORES.clear()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            warm, value = _load(kept)
            new1, value1 = _load(_source(value=1))
            new2, value2 = _load(_source(value=2))
    assert (value, value1, value2) == (13, 7, 8)
    assert _hits(warm) == 1, "a read-only cache still serves what it holds"
    found = _cache_warnings(record)
    assert len(found) == 1 and "cannot write" in str(found[0].message)


def test_read_only_empty_folder_falls_back_to_memory(cache_root):
    cache_root.mkdir(mode=0o700)
    with read_only(cache_root):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            _, value = _load(_source())
            _, value2 = _load(_source())
    assert value == value2 == 13
    assert len(_cache_warnings(record)) == 1


@pytest.mark.parametrize("damage", ["truncated .nbi", "truncated .nbc", "empty .nbi", "empty .nbc", "garbage .nbc",
                                    "fifo .nbi", "symlink .nbc", "huge .nbc", "truncated key"])
def test_damaged_entries_are_rebuilt(cache_root, damage):
    src = _source()
    _load(src)
    kind, suffix = damage.split(" ")
    if suffix == "key":
        targets = [cache_root / "kernels" / "key"]
    else:
        targets = _entries(cache_root, "*" + suffix)
    assert targets
    for path in targets:
        data = path.read_bytes()
        path.unlink()
        if kind == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "garbage":
            path.write_bytes(data[:40] + bytes(b ^ 0xFF for b in data[40:80]) + data[80:])
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "symlink":
            os.symlink("/dev/zero", path)
        elif kind == "huge":
            with open(path, "wb") as fh:
                fh.truncate(cache.MAX_ENTRY_BYTES + 4096)  # sparse: nothing is read
    cache._STORES.clear()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        rebuilt, value = _load(src)
    assert value == 13 and _hits(rebuilt) == 0
    assert len(_cache_warnings(record)) == 1
    cache._STORES.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelCacheWarning)
        again, _ = _load(src)
    assert _hits(again) == 1, "the rebuilt entry is valid"


def test_entries_of_another_format_version_are_rebuilt_quietly(cache_root):
    src = _source()
    _load(src)
    for path in _entries(cache_root, "*.nb?"):
        path.write_bytes(cache.MAGIC_PREFIX + b"1\n" + path.read_bytes()[len(cache.MAGIC):])
    cache._STORES.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelCacheWarning)
        module, value = _load(src)
        again, _ = _load(src)
    assert value == 13 and _hits(module) == 0 and _hits(again) == 1


def test_a_verified_entry_numba_cannot_rebuild_is_a_miss(cache_root, monkeypatch):
    src = _source()
    _load(src)
    glue = cache._glue()
    from numba.core import caching

    def broken(self, target_context, payload):
        raise ValueError("incompatible entry")

    monkeypatch.setattr(caching.CompileResultCacheImpl, "rebuild", broken)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        module, value = _load(src)
    assert value == 13 and isinstance(module.f._cache, glue["VerifiedFunctionCache"])
    found = _cache_warnings(record)
    assert len(found) == 1 and "incompatible entry" in str(found[0].message)


# --- nothing planted runs -----------------------------------------------------------------------------------------

def test_planted_pickles_in_numba_files_never_run(cache_root, tmp_path):
    src = _source()
    _load(src)
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists(), "the payload is live: unpickling it runs code"
    marker = tmp_path / "marker"
    planted = _entries(cache_root, "*.nbi") + _entries(cache_root, "*.nbc")
    for path in planted:
        path.write_bytes(pickle.dumps(Payload(marker)))
    # also in numba's own places: beside the module and in numba's default in-tree folder
    pycache = cache_root / "kernels" / "__pycache__"
    pycache.mkdir()
    for path in planted:
        (pycache / path.name).write_bytes(pickle.dumps(Payload(marker)))
    cache._STORES.clear()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        module, value = _load(src)
    assert not marker.exists(), "a planted pickle ran"
    assert value == 13 and _hits(module) == 0
    assert len(_cache_warnings(record)) == 1


def test_planted_pyc_never_runs(cache_root, tmp_path):
    src = _source()
    mod_name = "spikelib_gen_testpyc_1"
    cache.exec_generated(mod_name, src).f(1)
    py = cache_root / "kernels" / f"{mod_name}.py"
    assert py.read_text() == src

    def plant(marker: Path) -> None:
        code = compile(f"open({str(marker)!r}, 'w').write('code ran')\n" + src, str(py), "exec")
        st = py.stat()
        pyc = Path(importlib.util.cache_from_source(str(py)))
        pyc.parent.mkdir(exist_ok=True)
        header = importlib.util.MAGIC_NUMBER + struct.pack("<III", 0, int(st.st_mtime) & 0xFFFFFFFF, st.st_size)
        pyc.write_bytes(header + marshal.dumps(code))

    control = tmp_path / "control-marker"
    plant(control)
    probe = (f"import importlib.util as u; s = u.spec_from_file_location('x', {str(py)!r}); "
             "u.module_from_spec(s); s.loader.exec_module(u.module_from_spec(s))")
    subprocess.run([sys.executable, "-c", probe], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert control.exists(), "the payload is live: importing the cached .py runs the planted .pyc"
    marker = tmp_path / "marker"
    plant(marker)
    module = cache.exec_generated(mod_name, src)
    assert module.f(1) == 9 and not marker.exists(), "a planted .pyc ran"
    assert module.__spec__ is None, "generated modules never go through the import system"


def test_a_tampered_source_file_is_never_executed(cache_root, tmp_path):
    src = _source()
    mod_name = "spikelib_gen_testsrc_1"
    cache.exec_generated(mod_name, src)
    py = cache_root / "kernels" / f"{mod_name}.py"
    marker = tmp_path / "marker"
    py.write_text(f"open({str(marker)!r}, 'w')\n" + src)
    module = cache.exec_generated(mod_name, src)
    assert module.f(1) == 9 and not marker.exists()
    assert py.read_text() == src, "the readable copy is restored"


# --- every numba module of spikelib goes through the verified cache ------------------------------------------------

def test_every_cached_numba_module_of_spikelib_is_verified(cache_root):
    """Each module with ``cache=True`` kernels, reached through the code path spikelib itself uses."""
    from spikelib.data.heidelberg import cochlea
    from spikelib.hardware.energy import counters
    from spikelib.kernels.cpu import (delay_numba, depthwise_numba, dropout_numba, elm_numba, linear_numba,
                                      rows_numba, winograd_numba)

    cached = sorted(p.relative_to(ROOT) for p in (ROOT / "spikelib").rglob("*.py")
                    if "cache=True" in p.read_text() and p.name not in ("cache.py",))
    loaders = {
        "spikelib/kernels/cpu/_delay_kernels.py": lambda: delay_numba._kernels(),
        "spikelib/hardware/energy/_binary_scan.py": lambda: (counters._binary_spike_count(torch.zeros(8)),
                                                             sys.modules["spikelib.hardware.energy._binary_scan"])[1],
        "spikelib/data/heidelberg/_cochlea_kernels.py": lambda: cochlea._kernels(),
        "spikelib/kernels/cpu/_linear_kernels.py": lambda: linear_numba._kernels(),
        "spikelib/kernels/cpu/_rows_kernels.py": lambda: rows_numba._kernels(),
        "spikelib/kernels/cpu/_depthwise_kernels.py": lambda: depthwise_numba._kernels(),
        "spikelib/kernels/cpu/_dropout_kernels.py": lambda: dropout_numba._kernels(),
        "spikelib/kernels/cpu/_elm_kernels.py": lambda: elm_numba._kernels(),
        "spikelib/kernels/cpu/_winograd_kernels.py": lambda: winograd_numba._kernels(),
    }
    docs_only = {"spikelib/kernels/cpu/delay_numba.py"}  # mentions cache=True in its docstring
    assert {str(p) for p in cached} - docs_only == set(loaders), "a new cache=True module needs import_kernel_module"
    verified = cache._glue()["VerifiedFunctionCache"]
    for path, load in loaders.items():
        module = load()
        dispatchers = [v for v in vars(module).values() if isinstance(v, numba.core.dispatcher.Dispatcher)
                       and v.py_func.__module__ == module.__name__ and v._cache.cache_path]
        assert dispatchers and all(isinstance(d._cache, verified) for d in dispatchers), path


# --- end to end, fresh processes ----------------------------------------------------------------------------------

_LIF_PROBE = textwrap.dedent("""
    import json, warnings
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        import torch, spikelib
        from spikelib.kernels import backend_calls
        from spikelib.kernels.cpu.cache import KernelCacheWarning
        x = torch.rand(12, 3, 40, requires_grad=True)
        out = spikelib.lif(x)
        out.spikes.sum().backward()
        grad = x.grad.clone()
        x.grad = None
        ref = spikelib.lif(x, backend="torch")
        ref.spikes.sum().backward()
        import sys
        hits = sum(sum(v._cache_hits.values()) for m in list(sys.modules.values())
                   if m.__name__.startswith("spikelib_gen_lif") for v in vars(m).values() if hasattr(v, "_cache_hits"))
    print(json.dumps({
        "equal": bool(torch.equal(out.spikes, ref.spikes) and torch.allclose(grad, x.grad)),
        "numba": backend_calls("lif").get("numba", 0), "hits": hits,
        "warnings": [str(w.message) for w in record if issubclass(w.category, KernelCacheWarning)]}))
""")


def _lif_process(cache_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPIKELIB_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", _LIF_PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_lif_cold_then_warm_process_and_planted_index(tmp_path):
    root = tmp_path / "cache"
    cold = _lif_process(root)
    assert cold == {"equal": True, "numba": 1, "hits": 0, "warnings": []}
    warm = _lif_process(root)
    assert warm["equal"] and warm["numba"] == 1 and warm["hits"] >= 2 and not warm["warnings"]
    marker = tmp_path / "marker"
    for path in (root / "kernels" / "numba").rglob("*.nbi"):
        path.write_bytes(pickle.dumps(Payload(marker)))
    planted = _lif_process(root)
    assert not marker.exists()
    assert planted["equal"] and planted["numba"] == 1 and planted["hits"] == 0 and len(planted["warnings"]) == 1


@pytest.mark.slow
def test_lif_with_an_unusable_cache_runs_and_warns_once(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("")
    result = _lif_process(path)
    assert result["equal"] and result["numba"] == 1 and len(result["warnings"]) == 1


def test_index_naming_another_signatures_data_is_a_miss(cache_root):
    """The race of numba's cache: a process's index names a data file that another process filled for a different
    signature. Rebuilt here step by step; the data file's key digest turns it into a miss, never a wrong kernel."""
    src = _source()
    first, _ = _load(src)
    assert first.f(1) == 9
    index = _entries(cache_root, "*.nbi")[0]
    (data_int,) = _entries(cache_root, "*.nbc")
    int_bytes = data_int.read_bytes()
    index.unlink()  # the second process read the index before the first one wrote it
    second, _ = _load(src)  # f(3): int again, but as if in another process: fresh index {int: .1}
    index.unlink()
    third = cache.exec_generated(f"spikelib_gen_testm_{abs(hash(src)) % 10**12}", src)
    assert third.f(1.5) == 10.0  # {float: .1}, data .1 = float
    data_int.write_bytes(int_bytes)  # the other process's late write of .1 (a valid entry, for int)
    fourth = cache.exec_generated(f"spikelib_gen_testm_{abs(hash(src)) % 10**12}", src)
    assert fourth.f(1.5) == 10.0 and _hits(fourth) == 0


def test_a_changed_kernel_helper_changes_every_modules_stamp(tmp_path, monkeypatch):
    """Kernel modules inline the helpers' code (vector_math, _tile_gemm): a change to a helper alone must invalidate
    their cached code, so the helpers' sources are part of each module's stamp."""
    from spikelib.kernels.cpu import cache as kc

    module = tmp_path / "kernels.py"
    module.write_text("x = 1\n")
    helper = tmp_path / "helper.py"
    helper.write_text("y = 1\n")
    monkeypatch.setattr(kc, "KERNEL_HELPERS", (str(helper),))  # an absolute name replaces the folder's
    before = kc._source_stamp(str(module))
    helper.write_text("y = 2\n")
    assert kc._source_stamp(str(module)) != before and before != b""
    assert set(kc.KERNEL_HELPERS) <= {str(helper)}
    for name in ("vector_math.py", "_tile_gemm.py"):  # the real list names files that exist
        assert (Path(kc.__file__).with_name(name)).is_file()
