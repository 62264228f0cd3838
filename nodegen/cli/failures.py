"""How the CLI ends a run well: waiting for the worker on Ctrl+C, and reporting node failures as
one paragraph each (the traceback goes to a log file, and to the terminal with ``--debug``).

Waiting matters: returning while the worker thread still runs lets the interpreter shut down under
it (torch then aborts with "terminate called without an active exception", and a file being
written is cut). After the first Ctrl+C the worker is cancelled and waited for; files are written
through a temporary file and a rename, so the one being written is either finished or discarded.
Three more Ctrl+C end the process at once (still leaving no partial PNG).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

FORCE_AFTER = 3


def wait_for_worker(done: threading.Event, cancel) -> bool:
    """Wait until the worker sets ``done``; on Ctrl+C cancel it and keep waiting. True when the run
    was interrupted.

    This waits on an Event, not ``Thread.join``: in CPython up to 3.12 a KeyboardInterrupt that
    lands inside ``join`` can mark a still-running thread as stopped (the bpo-45274 handling in
    ``Thread._wait_for_tstate_lock`` releases the running thread's lock), so a second ``join``
    returns at once and the process exits under the worker."""
    interrupted = 0
    while True:
        try:
            while not done.wait(0.1):
                pass
            return interrupted > 0
        except KeyboardInterrupt:
            interrupted += 1
            cancel.cancel()
            if interrupted == 1:
                print("\nnodegen: cancelling (finishing the current step)...", file=sys.stderr)
            elif interrupted > FORCE_AFTER:
                print("nodegen: stopped at once", file=sys.stderr)
                sys.stderr.flush()
                os._exit(130)
            else:
                print(f"nodegen: still finishing the current step; press Ctrl+C "
                      f"{FORCE_AFTER + 1 - interrupted} more time(s) to stop at once", file=sys.stderr)


def log_dir() -> Path:
    env = os.environ.get("NODEGEN_LOG_DIR")
    if env:
        return Path(env).expanduser()
    from nodegen.sharing.hashing import cache_dir

    return cache_dir() / "logs"


def write_log(text: str) -> Path | None:
    """Write ``text`` to a new log file; its path, or None when no log could be written."""
    from nodegen.kernel.atomic import atomic_write_text

    path = log_dir() / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        atomic_write_text(path, text)
    except OSError:
        return None
    return path


def report_failures(failures: list, debug: bool = False) -> None:
    """One paragraph per failed node; tracebacks to a log file (and here with ``debug``)."""
    if not failures:
        return
    from dataclasses import replace

    from nodegen.kernel.jsondoc import shorten

    failures = [replace(f, title=shorten(f.title), error=shorten(f.error, 4000)) for f in failures]
    log = write_log("\n\n".join(f"{f}\n{f.traceback}" for f in failures))
    for f in failures:
        print(f"\n{f}", file=sys.stderr)
        where = f"the traceback is in {log}" if log else "no log file could be written"
        print(f"  what to do: fix the input or file named above and run again ({where}; "
              f"--debug prints it here)", file=sys.stderr)
        if debug:
            print(f.traceback, file=sys.stderr)
