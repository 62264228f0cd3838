"""Makes finished jobs' output folders durable in the background, a batch at a time.

Without ``serve --fsync`` the runner publishes a job's folder by an atomic rename and fsyncs
nothing: whole or absent after a killed process, at no cost per job. A power loss, though, can
leave a published folder whose files never reached the disk. This thread closes that window: a
moment after jobs finish it syncs the output folder's file system once (``syncfs`` on Linux, a
``sync`` elsewhere, an fsync per file where neither exists) and then marks those jobs ``synced``
in the queue. At start the queue checks only the jobs not marked (see
:meth:`nodegen.server.queue.JobQueue.recover`), so a start stays quick however many jobs were
kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from pathlib import Path

from nodegen.server.queue import JobQueue

log = logging.getLogger("nodegen.server")

#: Seconds between the first finished job and the sync that covers it (jobs finishing meanwhile
#: share that sync).
DELAY = 2.0


def sync_filesystem(folder: Path) -> None:
    """Flush everything written to the file system that holds ``folder`` to the disk."""
    if _syncfs is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    if hasattr(os, "sync"):
        os.sync()
        return
    for dirpath, _dirs, files in os.walk(folder):  # pragma: no cover - Windows
        for name in files:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDWR)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _load_syncfs():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


class OutputFlusher:
    """``poke()`` after a job is recorded; ``stop()`` flushes what is left."""

    def __init__(self, queue: JobQueue, out_dir: Path, delay: float = DELAY) -> None:
        self.queue = queue
        self.out_dir = out_dir
        self.delay = delay
        self._poked = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._poked.set()  # jobs a previous run left unsynced (checked at start) are synced soon
        self._thread = threading.Thread(target=self._loop, name="nodegen-flush", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._poked.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()

    def flush(self) -> int:
        """Sync the file system and mark the jobs finished before the sync; returns how many."""
        seqs = self.queue.unsynced()  # listed first: their folders were published before the sync
        if seqs:
            sync_filesystem(self.out_dir)
            self.queue.mark_synced(seqs)
        return len(seqs)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._poked.wait()
            self._stop.wait(self.delay)
            self._poked.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the next start re-checks these jobs; the server goes on
                log.exception("could not sync the output folder")
