"""SHA-256 of model files, computed once and cached by path + size + mtime.

* :func:`sha256_file` hashes in chunks, reports ``progress(done_bytes, total_bytes)``, can be
  cancelled (``cancel()`` returning True raises :class:`HashCancelled`), and may run in any
  thread. :func:`submit` runs it in a background worker and returns a
  :class:`concurrent.futures.Future` (the editor hashes a 2 GB file without blocking; connect
  ``future.add_done_callback`` to a Qt signal).
* :func:`cached_sha256` answers from the cache only (never reads the file).
* :func:`prefetch` starts hashing a file in the background (the loader nodes call it when they
  load a model, so the first saved PNG's provenance does not wait for a 2 GB read); a
  :func:`sha256_file` call for a file being prefetched waits for that work instead of reading
  the file a second time.
* The cache is one JSON file, ``hashes.json``, in the user cache folder (``NODEGEN_CACHE_DIR``,
  else ``$XDG_CACHE_HOME/nodegen``, else ``~/.cache/nodegen``); entries are keyed by absolute
  path and valid while size and mtime (ns) match. Writes are atomic (temp file + rename) and
  merge what other processes wrote meanwhile.
* A diffusers-format model *folder* hashes as the SHA-256 of its manifest: one line
  ``"<sha256>  <relative/path>\\n"`` per file, sorted by path; its size is the sum of the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

CHUNK = 8 << 20
CACHE_NAME = "hashes.json"

Progress = Callable[[int, int], None]


class HashCancelled(Exception):
    pass


def cache_dir() -> Path:
    env = os.environ.get("NODEGEN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nodegen"


def _stat_key(path: str | os.PathLike) -> tuple[str, int, int]:
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


class HashCache:
    """The on-disk hash cache (thread-safe; one per cache file)."""

    def __init__(self, file: str | os.PathLike) -> None:
        self.file = Path(file)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] | None = None

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.file.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        return entries if isinstance(entries, dict) else {}

    def get(self, path: str | os.PathLike) -> str | None:
        key, size, mtime = _stat_key(path)
        with self._lock:
            if self._entries is None:
                self._entries = self._read()
            e = self._entries.get(key)
        if e and e.get("size") == size and e.get("mtime_ns") == mtime:
            return e.get("sha256")
        return None

    def put(self, path: str | os.PathLike, sha256: str, size: int, mtime_ns: int) -> None:
        from nodegen.kernel.workflow import atomic_write_text

        key = str(Path(path).resolve())
        with self._lock:
            merged = self._read()  # keep what other processes added meanwhile
            if self._entries:
                for k, v in self._entries.items():
                    merged.setdefault(k, v)
            merged[key] = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
            merged = {k: v for k, v in merged.items() if os.path.exists(k)} if len(merged) > 5000 else merged
            self._entries = merged
            try:
                atomic_write_text(self.file, json.dumps({"version": 1, "entries": merged}, indent=0))
            except OSError:
                pass  # a read-only cache folder only costs re-hashing later


_caches: dict[str, HashCache] = {}
_caches_lock = threading.Lock()


def default_cache() -> HashCache:
    file = str(cache_dir() / CACHE_NAME)
    with _caches_lock:
        if file not in _caches:
            _caches[file] = HashCache(file)
        return _caches[file]


#: Most files hashed as one model folder (a bound against huge trees).
MAX_FOLDER_FILES = 10_000


def _files_of(folder: Path) -> list[Path]:
    """The regular files of a model folder (symlinked folders are not followed: no loops)."""
    from nodegen.kernel.files import is_regular_file

    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for fn in filenames:
            p = Path(dirpath) / fn
            if is_regular_file(p):
                files.append(p)
                if len(files) > MAX_FOLDER_FILES:
                    raise ValueError(f"model folder {folder} has more than {MAX_FOLDER_FILES} files")
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def file_size(path: str | os.PathLike) -> int:
    p = Path(path)
    return sum(f.stat().st_size for f in _files_of(p)) if p.is_dir() else p.stat().st_size


def cached_sha256(path: str | os.PathLike, cache: HashCache | None = None) -> str | None:
    """The cached hash if the file is unchanged since it was hashed, else None (cheap)."""
    p = Path(path)
    if p.is_dir():
        return None
    try:
        return (cache or default_cache()).get(p)
    except OSError:
        return None


def sha256_file(path: str | os.PathLike, progress: Progress | None = None,
                cancel: Callable[[], bool] | None = None, cache: HashCache | None = None) -> str:
    """SHA-256 (hex) of a file or a model folder, from the cache when the file is unchanged."""
    p = Path(path)
    if p.is_dir():
        lines = []
        files = _files_of(p)
        total = sum(f.stat().st_size for f in files)
        done = 0
        for f in files:
            sub = None if progress is None else (lambda d, _t, base=done: progress(base + d, total))
            lines.append(f"{sha256_file(f, sub, cancel, cache)}  {f.relative_to(p).as_posix()}\n")
            done += f.stat().st_size
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    from nodegen.kernel.files import check_regular_file

    check_regular_file(p, "model file")  # /dev/zero or a FIFO would never end
    cache = cache or default_cache()
    hit = cache.get(p)
    if not hit and cache is default_cache():
        hit = _prefetched(p)
    if hit:
        if progress:
            size = p.stat().st_size
            progress(size, size)
        return hit
    st = p.stat()
    limit = st.st_size
    h = hashlib.sha256()
    done = 0
    with open(p, "rb") as f:
        while True:
            if cancel is not None and cancel():
                raise HashCancelled(f"hashing {p} was cancelled")
            chunk = f.read(min(CHUNK, limit - done + 1))
            if not chunk:
                break
            if done + len(chunk) > limit:
                raise ValueError(f"model file {p} grew while it was hashed")
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, st.st_size)
    digest = h.hexdigest()
    after = p.stat()
    if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):  # unchanged while read
        cache.put(p, digest, st.st_size, st.st_mtime_ns)
    return digest


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def submit(path: str | os.PathLike, progress: Progress | None = None,
           cancel: Callable[[], bool] | None = None) -> Future:
    """Hash in a background worker thread; the future's result is the hex digest."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodegen-hash")
    return _pool.submit(sha256_file, path, progress, cancel)


_inflight: dict[tuple[str, int, int], Future] = {}


def prefetch(path: str | os.PathLike) -> Future | None:
    """Hash ``path`` in the background unless its hash is cached or already being computed.
    Returns the future (None when there is nothing to do or the file cannot be read)."""
    p = Path(path)
    try:
        if p.is_dir() or cached_sha256(p) is not None:
            return None
        key = _stat_key(p)
    except OSError:
        return None
    with _pool_lock:
        fut = _inflight.get(key)
        if fut is not None:
            return fut
    fut = submit(p)
    with _pool_lock:
        _inflight[key] = fut
    fut.add_done_callback(lambda _f: _forget(key))
    return fut


def _forget(key: tuple[str, int, int]) -> None:
    with _pool_lock:
        _inflight.pop(key, None)


def _prefetched(path: Path) -> str | None:
    """The digest of a background hash of ``path`` in flight (waiting for it), else None."""
    try:
        key = _stat_key(path)
    except OSError:
        return None
    with _pool_lock:
        fut = _inflight.get(key)
    if fut is None or threading.current_thread().name.startswith("nodegen-hash"):
        return None
    try:
        return fut.result()
    except Exception:  # noqa: BLE001 - the caller hashes it itself
        return None
