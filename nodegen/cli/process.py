"""What a nodegen process of its own sets up before anything heavy is imported."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def setup_process() -> None:
    """OpenMP threads that sleep when idle (see :mod:`nodegen.runtime.threads`) and lean imports
    of diffusers (see :mod:`nodegen.compat.lean_imports`)."""
    from nodegen.compat import lean_imports
    from nodegen.runtime.threads import setup_own_process

    setup_own_process()
    lean_imports.enable()


def finish_process(code: int) -> NoReturn:
    """End the process with ``code`` the way Python would, less the interpreter's final teardown.

    After the last atexit handler Python tears down every module and object it holds; with torch
    and diffusers loaded that is about a second of CPU (measured: 1.0-1.3 s) that no one waits for
    the result of. So: flush the standard streams, join non-daemon threads and run the atexit
    handlers (logging's flush, the hash pool, temp cleanup: everything Python would run), then
    leave with ``os._exit``. ``NODEGEN_FULL_EXIT=1`` keeps the normal teardown."""
    if os.environ.get("NODEGEN_FULL_EXIT") == "1":
        sys.exit(code)
    shutdown_threads = getattr(threading, "_shutdown", None)  # what Python runs first at exit
    try:
        if shutdown_threads is not None:
            shutdown_threads()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
