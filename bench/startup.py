"""Start-up of nodegen's commands in fresh processes: ``main.py nodes``, ``main.py nodes --json`` and
``main.py serve`` until it prints its address.

Each command runs REPEAT times at one torch thread; with ``--compare DIR`` (another checkout, e.g. the
main branch's) the two checkouts alternate, run by run. Wall time, and CPU time of the process (user +
system: from ``wait4`` for the listing commands, from ``/proc/PID/stat`` at the moment the server
printed its address).

    python bench/startup.py [--repeat 3] [--compare /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTING = {"nodes": ["nodes"], "nodes --json": ["nodes", "--json"]}


def _env(checkout: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def time_listing(checkout: Path, args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``main.py ARGS`` run to its end."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "main.py", *args], cwd=checkout, env=_env(checkout),
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"main.py {' '.join(args)} failed in {checkout} (exit {proc.returncode})")
    return wall, usage.ru_utime + usage.ru_stime


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_serve(checkout: Path) -> tuple[float, float]:
    """(wall, CPU) seconds from starting ``main.py serve`` to the line with its address."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "main.py", "serve", "--port", "0", "--out", out,
                                 "--device", "cpu", "--threads", "1"], cwd=checkout, env=_env(checkout),
                                stdout=subprocess.PIPE, text=True)
        try:
            while not (line := proc.stdout.readline()).startswith("nodegen server:"):
                if not line:
                    raise SystemExit(f"the server in {checkout} did not start")
            wall = time.perf_counter() - t0
            return wall, _cpu_seconds(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", type=Path, default=None, metavar="DIR", help="another checkout to alternate with")
    args = ap.parse_args()
    checkouts = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs, one torch thread, {args.repeat} runs each")
    commands = [*((name, lambda c, a=a: time_listing(c, a)) for name, a in LISTING.items()),
                ("serve (to its address)", time_serve)]
    for name, measure in commands:
        results: dict[Path, list[tuple[float, float]]] = {c: [] for c in checkouts}
        for _ in range(args.repeat):
            for c in checkouts:
                results[c].append(measure(c))
        for c in checkouts:
            walls = ", ".join(f"{w:.2f}" for w, _ in results[c])
            cpus = ", ".join(f"{u:.2f}" for _, u in results[c])
            print(f"  {name:<24} {str(c):<20} wall {walls} s; CPU {cpus} s")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
