"""The job server's overhead per job, and a 1,000-job flood.

Starts ``python main.py serve`` in a subprocess (one torch thread) and talks to it over HTTP with
``nodegen.client.Client``, the way a script would:

1. Overhead per job with the demo model (graphs/txt2img.json): submit -> done as the client sees it,
   minus the time the engine spent in nodes, two ways: ``Client.submit`` then ``Client.wait`` (a
   long poll the server answers when the job ends) and ``Client.run`` (submit and wait in one
   request, ``POST /jobs?wait=S``). Two kinds of job, each right after a sampling job (as in a
   mixed queue): *cached* (the same values again: only SaveImage runs) and *seed-only* (a new
   seed: sampler, decode and save run); then cached jobs one after another. Median of REPEAT
   jobs each. Target: under 5 ms.
2. Flood: 1,000 light jobs (a tiny image, inverted and saved) submitted at once by 8 client
   threads (their acceptances share fsyncs); all must be
   accepted, run and recorded; the server's resident memory after the first 100 and after all.

    python bench/server_overhead.py [--repeat 30] [--flood 1000] [--fsync] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodegen.client import Client  # noqa: E402
from tests.support.jobs import light_workflow, tiny_png  # noqa: E402

CLIENTS = 8  # threads submitting the flood


def start(out: Path, inp: Path, fsync: bool = False) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "main.py", "serve", "--port", "0", "--out", str(out), "--input",
                             str(inp), "--device", "cpu", "--threads", "1", *(["--fsync"] if fsync else [])],
                            cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    while not (line := proc.stdout.readline()).startswith("nodegen server:"):
        if not line:
            raise SystemExit("the server did not start")
    return proc, line.split()[2]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed_job(c: Client, doc: dict, values: dict, one_request: bool = False) -> tuple[float, dict]:
    t0 = time.perf_counter()
    job = c.run(doc, set=values, timeout=120) if one_request else c.wait(c.submit(doc, set=values), timeout=120)
    wall = time.perf_counter() - t0
    assert job["status"] == "done", job
    return wall, job


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used: unlike wall time, hardly changed by other
    processes competing for the cores."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def overhead(c: Client, repeat: int, pid: int) -> dict:
    doc = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    timed_job(c, doc, {"Sampler.seed": 0})  # load the model, fill the cache
    rows: dict[str, list] = {}
    for i in range(repeat):  # each kind right after a sampling job, as in a mixed queue
        for how, one in (("submit+wait", False), ("run", True)):
            wall, job = timed_job(c, doc, {"Sampler.seed": 0}, one)
            rows.setdefault(f"cached, {how}", []).append((wall, sum(job["timings"].values()), 0.0))
            wall, job = timed_job(c, doc, {"Sampler.seed": 1000 + 2 * i + one}, one)
            rows.setdefault(f"seed-only, {how}", []).append(
                (wall, sum(job["timings"].values()), job["timings"].get("5", 0.0)))
    cpu0, nodes, n = cpu_s(pid), 0.0, max(repeat * 5, 100)
    for i in range(n):  # cached jobs one after another; the server's CPU per job outside the nodes
        how, one = ("submit+wait", False) if i % 2 else ("run", True)
        wall, job = timed_job(c, doc, {"Sampler.seed": 0}, one)
        nodes += sum(job["timings"].values())
        rows.setdefault(f"cached in a row, {how}", []).append((wall, sum(job["timings"].values()), 0.0))
    out: dict = {"server_cpu_per_cached_job_ms": (cpu_s(pid) - cpu0) / n * 1e3,
                 "of_which_nodes_ms": nodes / n * 1e3}
    for kind, samples in rows.items():
        out[kind] = {
            "round_trip_ms": statistics.median(w for w, _, _ in samples) * 1e3,
            "nodes_ms": statistics.median(n for _, n, _ in samples) * 1e3,
            "minus_sampler_ms": statistics.median(w - s for w, _, s in samples) * 1e3,
            "overhead_ms": statistics.median(w - n for w, n, _ in samples) * 1e3,
        }
    return out


def flood(c: Client, pid: int, n: int) -> dict:
    """``n`` light jobs submitted at once by CLIENTS threads: a first tenth, then the rest; the
    server's resident memory once each part has run."""
    from concurrent.futures import ThreadPoolExecutor

    doc = light_workflow()
    first = max(1, n // 10)
    rss, ids = {}, []
    t0 = time.perf_counter()
    accepted = 0.0
    with ThreadPoolExecutor(CLIENTS) as pool:
        for part in (range(first), range(first, n)):
            t = time.perf_counter()
            ids += pool.map(lambda i: c.submit(doc, set={"Save.filename_prefix": f"f{i}"}), part)
            accepted += time.perf_counter() - t
            c.wait(ids[-1], timeout=600)
            rss[len(ids)] = rss_mib(pid)
    total = time.perf_counter() - t0
    statuses = [c.status(i)["status"] for i in ids]
    return {"jobs": n, "clients": CLIENTS, "accepted_s": accepted, "all_done_s": total,
            "done": statuses.count("done"), "rss_mib": rss}


def fsync_ms(folder: Path, n: int = 30) -> float:
    """What one fsync of a small new file costs on this disk (the server pays one per accepted job,
    shared by jobs submitted together; with --fsync four more: output file, record, two folders)."""
    times = []
    for i in range(n):
        path = folder / f"probe{i}"
        with open(path, "wb") as f:
            f.write(b"x" * 1024)
            f.flush()
            t = time.perf_counter()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--flood", type=int, default=1000)
    ap.add_argument("--fsync", action="store_true", help="start the server with --fsync")
    ap.add_argument("--dir", default=None, metavar="DIR",
                    help="where the server's output folder (and queue) goes: a temporary folder inside "
                         "DIR (default: the system's; /dev/shm shows the path without the disk's fsync)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        tiny_png(tmp / "in")
        proc, url = start(tmp / "out", tmp / "in", args.fsync)
        try:
            c = Client(url)
            result = {"overhead": overhead(c, args.repeat, proc.pid), "flood": flood(c, proc.pid, args.flood),
                      "fsync_ms": fsync_ms(tmp)}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
