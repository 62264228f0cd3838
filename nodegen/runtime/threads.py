"""How many CPU threads torch gets, so that a busy machine does not make a run collapse.

Measured on the shared 2-core build machines (bench/RESULTS.md): with OpenMP's default wait
policy, idle worker threads spin; when another process holds a core, torch's default of one
thread per core made the demo's 64x64 txt2img run take 40.7 s instead of 5.9 s (one thread).
With ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of spinning) the same two-thread run took
7.1 s. So a nodegen process sets that policy before torch starts, and by default uses the cores
that are idle (cores minus the load average, at least one). ``--threads`` and ``NODEGEN_THREADS``
always win.
"""

from __future__ import annotations

import os
import sys

#: True in nodegen's own processes (the command line, the editor): only there does the default
#: policy change torch's thread count; a program using nodegen as a library keeps its own.
own_process = False


def setup_own_process() -> bool:
    """At the start of a nodegen process: the passive wait policy and the default thread policy."""
    global own_process
    own_process = True
    return passive_wait_policy()


def passive_wait_policy() -> bool:
    """Ask OpenMP to let idle threads sleep; only possible before torch is imported (the
    variable is read when the OpenMP runtime starts). A value the user set is kept."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """Threads for this process: the idle cores (cores minus the 1-minute load average,
    rounded), at least 1 and at most the cores."""
    cores = cpu_count() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cores, round(cores - load)))


def requested_threads(explicit: int | None) -> int | None:
    """``--threads`` if given, else ``NODEGEN_THREADS``, else None. Raises ValueError (with what
    is wrong) for a value that is not a whole number from 1 to 4x the CPU count."""
    if explicit is not None:
        raw: int | str = explicit
    else:
        raw = os.environ.get("NODEGEN_THREADS", "").strip()
        if raw in ("", "0"):  # unset, or 0: the default policy
            return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a whole number") from None
    top = 4 * cpu_count()
    if not 1 <= value <= top:
        raise ValueError(f"must be between 1 and {top} (4x this machine's {cpu_count()} CPUs), got {value}")
    return value


def apply_threads(explicit: int | None = None) -> int:
    """Set torch's thread count: explicit, else NODEGEN_THREADS, else (in nodegen's own
    processes) :func:`default_threads`. Returns the count in effect."""
    import torch

    n = requested_threads(explicit) or (default_threads() if own_process else None)
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()
