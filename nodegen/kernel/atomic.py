"""Atomic file writes: a file is either its old or its new content, never half of one.

Every write goes to a temporary file in the target's folder (``.NAME.PID.RANDOM.tmp``), is flushed
and fsync'ed, then renamed over the target (:func:`atomic_write_bytes`) or hard-linked to a name
that must not exist yet (:func:`write_new_file`, never overwrites). A process killed mid-write
leaves only its temporary file; the next write into that folder removes temporary files whose
process is gone (:func:`clean_stale_temps`).

The rename alone makes a write atomic for readers and safe against a killed process; the fsyncs
make it survive a power loss too. A caller that makes its files durable in another way (the job
server publishes a whole job folder, then syncs the file system in the background and checks
unsynced folders at start) can skip the per-file fsyncs for the writes of one thread with
``with deferred_sync(): ...`` (:func:`syncing` says whether they are on).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO

_TEMP = re.compile(r"^\..*\.(\d+)\.[A-Za-z0-9_]+\.tmp$")
_SYNC: ContextVar[bool] = ContextVar("nodegen_atomic_sync", default=True)


@contextmanager
def deferred_sync() -> Iterator[None]:
    """Writes in this context (this thread) are atomic renames without fsync: whole or absent
    after a killed process, but not guaranteed on disk after a power loss until the caller
    syncs them."""
    token = _SYNC.set(False)
    try:
        yield
    finally:
        _SYNC.reset(token)


def syncing() -> bool:
    """Whether writes here fsync their file and folder (False inside :func:`deferred_sync`)."""
    return _SYNC.get()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text (UTF-8, ``\\n`` line ends) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to a temporary file in the same folder, fsync it, then rename it over ``path``."""
    path = Path(path)
    with _temp_file(path, lambda f: f.write(data)) as tmp:
        if path.exists():
            try:
                os.chmod(tmp, path.stat().st_mode & 0o777)
            except OSError:
                pass
        os.replace(tmp, path)
    if syncing():
        sync_dir(path.parent)


def write_new_file(names: Iterator[Path], write: Callable[[BinaryIO], object]) -> Path:
    """Write once into a temporary file, then give it the first name from ``names`` that does
    not exist (a hard link, so an existing file is never replaced and no reader ever sees a
    partial file). All names must be in one folder. Returns the name used."""
    first = next(names)
    with _temp_file(first, write) as tmp:
        for name in _chain(first, names):
            try:
                os.link(tmp, name)
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # no hard links here (some network or FAT file systems): reserve, then rename over
                try:
                    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                except FileExistsError:
                    continue
                os.replace(tmp, name)
            if syncing():
                sync_dir(name.parent)
            return name
    raise FileExistsError("no free file name")  # pragma: no cover - names is endless in practice


def _chain(first: Path, rest: Iterator[Path]) -> Iterator[Path]:
    yield first
    yield from rest


class _temp_file:  # noqa: N801 - used as a context manager
    """A written, fsync'ed temporary file beside ``target``; removed on exit unless renamed."""

    def __init__(self, target: Path, write: Callable[[BinaryIO], object]) -> None:
        self.target = target
        self.write = write
        self.path = ""

    def __enter__(self) -> str:
        folder = self.target.parent
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(folder)
        short = self.target.name[:40]
        fd, self.path = tempfile.mkstemp(prefix=f".{short}.{os.getpid()}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                self.write(f)
                f.flush()
                if syncing():
                    os.fsync(f.fileno())
            os.chmod(self.path, 0o644)
        except BaseException:
            self._remove()
            raise
        return self.path

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


def sync_dir(folder: Path) -> None:
    """fsync a folder, so a rename inside it survives a crash (best effort where not supported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike[str]) -> list[str]:
    """Remove this module's temporary files in ``folder`` whose writing process is gone."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(str(entry.name))
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(str(entry.path))
        except OSError:
            pass
    return removed
