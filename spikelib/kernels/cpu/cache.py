"""The kernel cache: private, verified and never fatal. Holds generated kernel sources and numba's compiled code.

Where: ``$SPIKELIB_CACHE_DIR/kernels``, else ``$XDG_CACHE_HOME/spikelib/kernels`` (``~/.cache/spikelib/kernels``).
Missing folders are created ``0700``.

Private. The folder is used only when it is a folder owned by the user running spikelib and not writable by group or
others, and its parent is owned by the user (or root) and not writable by others unless sticky (like ``/tmp``).
Otherwise it is refused with one :class:`KernelCacheWarning` and kernels are compiled in memory.

Verified. Nothing read from the folder can run code:

* generated kernel modules are executed from the source string spikelib rendered in this process (``compile`` +
  ``exec``), never imported from the folder, so Python's bytecode cache (``__pycache__/*.pyc``) is never consulted;
  the ``.py`` file written beside is for reading and tracebacks only;
* numba's cache files (``.nbi`` index, ``.nbc`` code; both pickles) are written by spikelib with a header holding an
  HMAC-SHA256 of the file's name and content under a random 256-bit key kept in the folder (file ``key``, ``0600``).
  A file is unpickled only after its tag verifies, from the very bytes that were verified. A file spikelib did not
  write with this key (planted, truncated, corrupted, written by plain numba or another version) is never unpickled:
  it counts as a miss, the kernel is compiled and the entry rewritten (one warning per process).

Never fatal. A cache folder that is a file, cannot be created, is read-only, an I/O error, an invalid entry, numba
failing to rebuild a verified entry: each ends in compiling the kernel in memory, with one
:class:`KernelCacheWarning` per process and kind of failure; a read-only folder still serves the entries it holds.

numba caches only the modules that go through this module: generated ones (:func:`exec_generated`) and spikelib's
own kernel modules (:func:`import_kernel_module`); their dispatchers get a :class:`numba.core.caching.FunctionCache`
whose files are verified, in ``<folder>/numba/``. Files of earlier spikelib versions in ``<folder>/__pycache__`` are
ignored. Speed: a warm process loads a compiled kernel in milliseconds; measured in
``benchmarks/bench_kernel_cache.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import io
import linecache
import logging
import os
import pickle
import secrets
import stat
import sys
import tempfile
import threading
import types
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Set, Tuple

from spikelib._atomic import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["KernelCacheWarning", "cache_dir", "exec_generated", "import_kernel_module", "kernel_store"]

MAGIC_PREFIX = b"spikelib kernel cache v"
MAGIC = MAGIC_PREFIX + b"2\n"  # v2: data entries hold (digest of their index key, payload)
TAG_BYTES = 32
KEY_BYTES = 32
MAX_ENTRY_BYTES = 256 << 20  # a compiled kernel is ~150 KB; anything near this is not ours
_LOCK = threading.RLock()


class KernelCacheWarning(UserWarning):
    """The kernel cache could not be used as intended; kernels are compiled in memory instead."""


def cache_dir() -> Path:
    """Folder of the kernel cache (``$SPIKELIB_CACHE_DIR/kernels`` or ``$XDG_CACHE_HOME/spikelib/kernels``)."""
    root = os.environ.get("SPIKELIB_CACHE_DIR")
    if root:
        return Path(root).expanduser().absolute() / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).absolute() / "spikelib" / "kernels"


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and any missing parents with mode ``0700`` (an existing folder is left as it is)."""
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:  # created by another process meanwhile; checked below
            pass


def _folder_problem(folder: Path) -> Optional[str]:
    """Why ``folder`` cannot hold a private cache (None when it can)."""
    euid = _euid()
    st = os.stat(folder)
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder} is not a folder"
    if euid >= 0 and st.st_uid != euid:
        return f"{folder} is owned by uid {st.st_uid}, not by you (uid {euid})"
    if st.st_mode & 0o022:
        return f"{folder} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    parent = os.stat(folder.parent)
    if euid >= 0 and parent.st_uid not in (euid, 0):
        return f"its parent {folder.parent} is owned by uid {parent.st_uid}, who could replace it"
    if parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX:
        return f"its parent {folder.parent} is writable by group or others without the sticky bit"
    return None


def _read_regular(path: Path, limit: int) -> Optional[bytes]:
    """Bytes of the regular file ``path`` (no symlink, FIFO or device; at most ``limit`` bytes), None if missing."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{path} holds {st.st_size} bytes, more than the {limit} a cache entry may have")
        return fh.read(limit + 1)


class KernelStore:
    """One cache folder as this process sees it: usable or not, writable or not, its key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key: Optional[bytes] = None
        self.writable = False
        self._warned: Set[str] = set()
        try:
            _make_private_dirs(folder)
            problem = _folder_problem(folder)
        except OSError as exc:
            self._warn("unusable", f"cannot use the kernel cache folder {folder} ({exc})")
            return
        if problem is not None:
            self._warn("refused", f"refusing the kernel cache folder: {problem}; use a private folder "
                                  "(SPIKELIB_CACHE_DIR) or fix its owner and permissions")
            return
        self.writable = True
        try:
            self.key = self._load_key()
        except OSError as exc:
            self.writable = False
            self._warn("write", f"cannot create the key of the kernel cache {folder} ({exc})")

    @property
    def usable(self) -> bool:
        """True when entries can be read (and verified)."""
        return self.key is not None

    def _warn(self, kind: str, message: str) -> None:
        """One warning per kind of failure and process (later ones go to the debug log)."""
        if kind in self._warned:
            logger.debug("%s", message)
            return
        self._warned.add(kind)
        warnings.warn(f"{message}; kernels are compiled in memory instead", KernelCacheWarning, stacklevel=3)

    def _load_key(self) -> bytes:
        path = self.folder / "key"
        for _ in range(3):
            try:
                data = _read_regular(path, KEY_BYTES)
            except OSError as exc:  # not a regular file: replaced below
                logger.debug("kernel cache key %s unreadable: %s", path, exc)
                data = b""
            if data is not None and len(data) == KEY_BYTES and os.stat(path).st_uid in (_euid(), -1):
                return data
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".key.", suffix=".tmp")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_bytes(KEY_BYTES))
                if data is None:
                    try:
                        os.link(tmp, path)  # atomic create-if-absent: concurrent first runs agree on one key
                    except FileExistsError:
                        pass
                    except OSError:  # a file system without hard links
                        if not os.path.lexists(path):
                            os.replace(tmp, path)
                else:  # truncated, foreign or corrupt key: a new one (entries under the old one are rebuilt)
                    self._warn("invalid", f"the kernel cache key {path} was invalid and is replaced")
                    os.replace(tmp, path)
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
        raise OSError(f"cannot establish {path}")

    def _tag(self, name: str, payload: bytes) -> bytes:
        assert self.key is not None
        return hmac.new(self.key, name.encode() + b"\0" + payload, hashlib.sha256).digest()

    def read(self, path: Path) -> Optional[bytes]:
        """The verified content of entry ``path``, or None (missing, or invalid: then one warning)."""
        if self.key is None:
            return None
        try:
            data = _read_regular(path, MAX_ENTRY_BYTES + len(MAGIC) + TAG_BYTES)
        except OSError as exc:
            self._warn("invalid", f"kernel cache entry {path} is unreadable ({exc}); it is rebuilt")
            return None
        if data is None:
            return None
        head = len(MAGIC) + TAG_BYTES
        payload = data[head:]
        if data.startswith(MAGIC_PREFIX) and not data.startswith(MAGIC):
            logger.debug("kernel cache entry %s has the format of another spikelib version; rebuilt", path)
            return None
        tag = data[len(MAGIC):head]
        if data[: len(MAGIC)] != MAGIC or not hmac.compare_digest(tag, self._tag(path.name, payload)):
            self._warn("invalid", f"kernel cache entry {path} failed verification (not written by spikelib with this "
                                  "cache's key: truncated, corrupted or planted); it is ignored and rebuilt")
            return None
        return payload

    def write(self, path: Path, payload: bytes) -> bool:
        """Write entry ``path`` atomically with its tag; False (and one warning) if the folder is not writable."""
        if self.key is None or not self.writable:
            return False
        try:
            self.make_dirs(path.parent)
            with atomic_path(path, fsync=False, create_parent=False) as tmp:
                with open(tmp, "wb") as fh:
                    fh.write(MAGIC + self._tag(path.name, payload) + payload)
        except OSError as exc:
            self.writable = False
            self.warn_write(exc)
            return False
        return True

    def make_dirs(self, folder: Path) -> None:
        """Create folders below the cache folder (``0700``)."""
        if self.folder not in folder.parents and folder != self.folder:
            raise ValueError(f"{folder} is not inside the kernel cache {self.folder}")
        _make_private_dirs(folder)

    def write_source(self, path: Path, source: str) -> None:
        """Keep a readable copy of a generated module (never executed from the file)."""
        if not self.writable:
            return
        data = source.encode()
        try:
            if _read_regular(path, len(data)) == data:
                return
        except OSError:
            pass
        try:
            with atomic_path(path, fsync=False, create_parent=False) as tmp:
                tmp.write_bytes(data)
        except OSError as exc:
            self.writable = False
            self.warn_write(exc)

    def warn_write(self, exc: OSError) -> None:
        """The folder cannot be written (read-only, full): new kernels are compiled in every process."""
        self._warn("write", f"cannot write to the kernel cache {self.folder} ({exc}); new kernels are not kept")

    def warn_failure(self, what: str, exc: BaseException) -> None:
        """A numba cache operation failed (the kernel is compiled in memory)."""
        self._warn(f"numba-{what}", f"numba could not {what} a cached kernel in {self.folder} "
                                    f"({type(exc).__name__}: {exc})")


_STORES: Dict[Path, KernelStore] = {}


def kernel_store() -> KernelStore:
    """The :class:`KernelStore` of the current cache folder (opened, checked and keyed once per process)."""
    folder = cache_dir()
    with _LOCK:
        store = _STORES.get(folder)
        if store is None:
            store = _STORES[folder] = KernelStore(folder)
        return store


# ----------------------------------------------------------------------------------------------------------------
# numba glue (imported lazily: numba is optional)

_CLAIMED: Dict[str, Tuple[Optional[bytes], KernelStore]] = {}  # module name -> (source stamp or None, store)
_GLUE: Optional[Dict[str, Any]] = None


#: Modules whose numba functions the kernel modules inline (``inline="always"`` helpers, intrinsics): compiled code
#: depends on their source too, so it is part of every cached module's stamp.
KERNEL_HELPERS = ("vector_math.py", "_tile_gemm.py")


def _source_stamp(py_file: str) -> bytes:
    """SHA-256 of the module's source and of the :data:`KERNEL_HELPERS` beside this file (b"" if unreadable)."""
    digest = hashlib.sha256()
    try:
        for path in (py_file, *(str(Path(__file__).parent / name) for name in KERNEL_HELPERS)):
            with open(path, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
    except OSError:
        return b""
    return digest.digest()


def _glue() -> Dict[str, Any]:
    """Build (once) the numba classes that keep spikelib's cached kernels in the verified store."""
    global _GLUE
    if _GLUE is not None:
        return _GLUE
    from numba.core import caching

    impl_base = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")

    class Locator(caching._CacheLocator):
        """Cache path and source stamp of a claimed function; no I/O until something is saved."""

        def __init__(self, py_func: Any, py_file: str) -> None:
            stamp, store = _CLAIMED.get(py_func.__module__) or (None, kernel_store())
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._stamp = stamp if stamp is not None else _source_stamp(py_file)
            self.store = store
            self._path = str(store.folder / "numba" / self.get_suitable_cache_subpath(py_file))

        def ensure_cache_path(self) -> None:
            self.store.make_dirs(Path(self._path))

        def get_cache_path(self) -> str:
            return self._path

        def get_source_stamp(self) -> bytes:
            return self._stamp

        def get_disambiguator(self) -> str:
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Optional["Locator"]:
            if py_func.__module__ not in _CLAIMED:  # not spikelib's: numba's own locators decide
                return None
            return cls(py_func, py_file)

    class VerifiedFile(caching.IndexDataCacheFile):
        """numba's index and data files, each read through :meth:`KernelStore.read` and written by ``write``.

        A data file also holds a digest of its index key (signature, CPU, bytecode), checked on load: two processes
        compiling different signatures at once can leave the index naming a data file the other one wrote (a race
        of numba's own cache), which is then a miss instead of a kernel for the wrong types.
        """

        def __init__(self, store: KernelStore, *args: Any) -> None:
            super().__init__(*args)
            self.store = store

        @staticmethod
        def _key_digest(key: Any) -> str:
            return hashlib.sha256(repr(key).encode()).hexdigest()

        def save(self, key: Any, data: Any) -> None:
            super().save(key, (self._key_digest(key), data))

        def load(self, key: Any) -> Any:
            entry = super().load(key)
            if entry is None:
                return None
            digest, data = entry
            return data if digest == self._key_digest(key) else None

        def _load_index(self) -> dict:
            payload = self.store.read(Path(self._index_path))
            if payload is None:
                return {}
            stream = io.BytesIO(payload)
            if pickle.load(stream) != self._version:
                return {}
            stamp, overloads = pickle.loads(stream.read())
            return overloads if stamp == self._source_stamp else {}

        def _save_index(self, overloads: dict) -> None:
            payload = pickle.dumps(self._version, protocol=-1) + self._dump((self._source_stamp, overloads))
            self.store.write(Path(self._index_path), payload)

        def _load_data(self, name: str) -> Any:
            path = Path(self._data_path(name))
            payload = self.store.read(path)
            if payload is None:
                raise FileNotFoundError(f"no valid cache entry {path}")  # numba counts OSError as a miss
            return pickle.loads(payload)

        def _save_data(self, name: str, data: Any) -> None:
            self.store.write(Path(self._data_path(name)), self._dump(data))

    class Impl(caching.CompileResultCacheImpl):
        """numba's compile-result serialisation with the :class:`Locator` (no search over numba's locators)."""

        def __init__(self, py_func: Any) -> None:
            self._lineno = py_func.__code__.co_firstlineno
            self._locator = Locator(py_func, py_func.__code__.co_filename)
            modname = os.path.splitext(os.path.basename(py_func.__code__.co_filename))[0]
            qualname = getattr(py_func, "__qualname__", py_func.__name__)
            self._filename_base = self.get_filename_base(f"{modname}.{qualname}", getattr(sys, "abiflags", ""))

    class VerifiedFunctionCache(caching.FunctionCache):
        """A numba function cache over the verified store; any failure is a miss (compile in memory)."""

        _impl_class = Impl

        def __init__(self, py_func: Any) -> None:
            super().__init__(py_func)
            locator = self._impl.locator
            self.store = locator.store
            self._cache_file = VerifiedFile(self.store, self._cache_path, self._impl.filename_base,
                                            locator.get_source_stamp())
            if not self.store.usable:
                self.disable()

        def load_overload(self, sig: Any, target_context: Any) -> Any:
            try:
                return super().load_overload(sig, target_context)
            except Exception as exc:  # a verified entry numba cannot rebuild: compile instead
                self.store.warn_failure("load", exc)
                return None

        def save_overload(self, sig: Any, data: Any) -> None:
            if not self.store.writable:
                return
            try:
                super().save_overload(sig, data)
            except OSError as exc:
                self.store.writable = False
                self.store.warn_write(exc)
            except Exception as exc:  # the kernel is compiled and works; it is just not kept
                self.store.warn_failure("save", exc)

    # Dispatchers of claimed modules are created (at decoration) with this locator, so numba's own locators never
    # touch the folder (no __pycache__, no "no locator available" error when it is read-only); they get their
    # verified cache right after the module is executed (_secure_dispatchers), before any call.
    impl_base._locator_classes.insert(0, Locator)
    _GLUE = {"Locator": Locator, "VerifiedFunctionCache": VerifiedFunctionCache,
             "NullCache": caching.NullCache}
    return _GLUE


def _secure_dispatchers(module: types.ModuleType) -> int:
    """Give every caching numba dispatcher defined in ``module`` a verified cache; returns how many."""
    from numba.core.dispatcher import Dispatcher

    glue = _glue()
    count = 0
    for obj in list(vars(module).values()):
        if not isinstance(obj, Dispatcher) or getattr(obj.py_func, "__module__", None) != module.__name__:
            continue
        if isinstance(obj._cache, (glue["NullCache"], glue["VerifiedFunctionCache"])):
            continue
        obj._cache = glue["VerifiedFunctionCache"](obj.py_func)
        count += 1
    return count


def exec_generated(mod_name: str, source: str, store: Optional[KernelStore] = None) -> types.ModuleType:
    """Execute generated ``source`` as module ``mod_name`` (never through the import system) with verified numba
    caching; a readable copy is written to the cache folder when it is writable."""
    store = store or kernel_store()
    path = store.folder / f"{mod_name}.py"
    with _LOCK:
        try:
            _glue()
        except ImportError:  # without numba there is nothing to cache (a numba kernel fails on its import)
            pass
        _CLAIMED[mod_name] = (hashlib.sha256(source.encode()).digest(), store)
        store.write_source(path, source)
        filename = str(path)
        lines = source.splitlines(keepends=True)
        linecache.cache[filename] = (len(source), None, lines, filename)  # tracebacks show this source, not the file
        module = types.ModuleType(mod_name)
        module.__file__ = filename
        sys.modules[mod_name] = module
        try:
            exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
            if _GLUE is not None:
                _secure_dispatchers(module)
        except Exception:
            sys.modules.pop(mod_name, None)
            raise
        return module


def import_kernel_module(name: str) -> types.ModuleType:
    """Import spikelib's kernel module ``name`` (``@numba.njit(cache=True)`` functions) with verified caching."""
    with _LOCK:
        _glue()
        _CLAIMED.setdefault(name, (None, kernel_store()))
        module = importlib.import_module(name)
        _secure_dispatchers(module)
        return module
