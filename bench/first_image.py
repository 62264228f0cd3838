"""Time to the first image in a fresh process: ``main.py run graphs/txt2img.json --threads 1`` (the
demo model, 64x64), and how much of its CPU time goes to imports.

Each run is a fresh interpreter at one torch thread; with ``--compare DIR`` (another checkout, e.g.
the main branch's) the two checkouts alternate, run by run. Reported per run: wall time and the
process's CPU time (user + system, from ``wait4``). Then one more run per checkout with an import
profiler: every module's own CPU time while it executes (its imports of other modules excluded),
summed per top-level package (torch, diffusers, transformers, nodegen, ...), and whether
transformers was imported at all. ``python -X importtime`` gives the same split in wall time,
which on a busy machine mostly measures the wait for a core.

    python bench/first_image.py [--repeat 3] [--compare /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRAPH = "graphs/txt2img.json"

#: Runs main.py with a profiler of module execution; prints a JSON line to stderr at exit.
PROFILED = r"""
import atexit, collections, importlib._bootstrap as boot, json, resource, runpy, sys, time
own, stack, original = collections.Counter(), [], boot._load_unlocked

def load(spec):
    start = time.process_time()
    stack.append(0.0)
    try:
        return original(spec)
    finally:
        spent, inner = time.process_time() - start, stack.pop()
        own[spec.name.partition(".")[0]] += spent - inner
        if stack:
            stack[-1] += spent

def report():
    use = resource.getrusage(resource.RUSAGE_SELF)
    print("PROFILE " + json.dumps({"cpu": use.ru_utime + use.ru_stime, "imports": sum(own.values()),
                                   "packages": dict(own.most_common(8)),
                                   "transformers": "transformers" in sys.modules}), file=sys.stderr)

boot._load_unlocked = load
atexit.register(report)
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""


def _env(checkout: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _args(out: str) -> list[str]:
    return ["run", GRAPH, "--threads", "1", "--out", out]


def time_run(checkout: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one first image."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "main.py", *_args(out)], cwd=checkout, env=_env(checkout),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"main.py run failed in {checkout}")
    return wall, usage.ru_utime + usage.ru_stime


def profile_run(checkout: Path) -> dict:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, "-c", PROFILED, *_args(out)], cwd=checkout, env=_env(checkout),
                              capture_output=True, text=True)
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("PROFILE ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"profiled run failed in {checkout}: {proc.stderr[-2000:]}")
    return json.loads(line.removeprefix("PROFILE "))


def _git(checkout: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", type=Path, help="another checkout to alternate with")
    args = ap.parse_args()
    checkouts = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}, "
          f"{' vs '.join(f'{c} ({_git(c)})' for c in checkouts)}")
    times: dict[Path, list[tuple[float, float]]] = {c: [] for c in checkouts}
    for _ in range(args.repeat):
        for c in checkouts:
            times[c].append(time_run(c))
    for c in checkouts:
        walls, cpus = [w for w, _ in times[c]], [u for _, u in times[c]]
        print(f"{c.name}: wall {min(walls):.2f}-{max(walls):.2f} s, CPU {min(cpus):.2f}-{max(cpus):.2f} s")
    for c in checkouts:
        p = profile_run(c)
        top = ", ".join(f"{k} {v:.2f}" for k, v in p["packages"].items())
        print(f"{c.name}: imports {p['imports']:.2f} s of {p['cpu']:.2f} s CPU ({top}); "
              f"transformers imported: {p['transformers']}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
