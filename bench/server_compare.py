"""The job server's overhead per job, this checkout against another one (say, main).

Starts ``python main.py serve`` from both checkouts at once (one torch thread each) and sends
them the same jobs in turn, so that both see the same load on a shared machine: a cached job
(graphs/txt2img.json, the same values again) and, with ``--seed``, a seed-only job after each
(a new seed: sampler, decode and save run). Each checkout is driven by its own ``nodegen.client``: this one
through ``Client.wait``; a checkout whose server does not hold a status request (no long poll) is
polled every millisecond, as ``bench/server_overhead.py`` did before. Reports, per checkout, the
median round trip, the median overhead (round trip - time in nodes) and the server's CPU per job.

    git worktree add --detach /tmp/main-checkout main
    python bench/server_compare.py /tmp/main-checkout [--jobs 60] [--seed]

``--run this|other|both``: that side submits and waits in one request (``Client.run``).
``--env-this K=V`` / ``--env-other K=V`` set environment variables for one side's server only (to
compare settings on one checkout: pass this checkout as the other).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.jobs import tiny_png  # noqa: E402


def client_class(root: Path):
    spec = importlib.util.spec_from_file_location(f"nodegen_client_{abs(hash(str(root)))}",
                                                  root / "nodegen" / "client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Client


def start(root: Path, out: Path, inp: Path, extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}
    proc = subprocess.Popen([sys.executable, "main.py", "serve", "--port", "0", "--out", str(out), "--input",
                             str(inp), "--device", "cpu", "--threads", "1"], cwd=root, env=env,
                            stdout=subprocess.PIPE, text=True)
    while not (line := proc.stdout.readline()).startswith("nodegen server:"):
        if not line:
            raise SystemExit(f"the server in {root} did not start")
    return proc, line.split()[2]


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def long_polls(client) -> bool:
    """Whether the server holds ``GET /jobs/{id}?wait=S`` (its OpenAPI page lists ``wait``)."""
    api = client._json("GET", "/openapi.json")
    params = api["paths"]["/jobs/{job_id}"]["get"].get("parameters", [])
    return any(p.get("name") == "wait" for p in params)


def one_job(client, doc: dict, polls: bool, seed: int = 0, one_request: bool = False) -> dict:
    if one_request:
        return client.run(doc, set={"Sampler.seed": seed}, timeout=120)
    job_id = client.submit(doc, set={"Sampler.seed": seed})
    if polls:
        return client.wait(job_id, timeout=120)
    while (job := client.status(job_id))["status"] not in ("done", "failed", "cancelled"):
        time.sleep(0.001)
    return job


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("other", type=Path, help="the other checkout (its main.py and nodegen/)")
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--seed", action="store_true", help="also a seed-only job after each cached one")
    ap.add_argument("--env-this", action="append", default=[], metavar="K=V")
    ap.add_argument("--env-other", action="append", default=[], metavar="K=V")
    ap.add_argument("--run", choices=("this", "other", "both"), default=None,
                    help="which side submits and waits in one request (Client.run) instead of "
                         "Client.submit then Client.wait (pass this checkout as the other to compare the two)")
    args = ap.parse_args()
    extra = {"this": dict(kv.split("=", 1) for kv in args.env_this),
             "other": dict(kv.split("=", 1) for kv in args.env_other)}
    kinds = {"cached": lambda i: 0, **({"seed-only": lambda i: 1000 + i} if args.seed else {})}
    roots = {"this": ROOT, "other": args.other.resolve()}
    doc = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    rows: dict[tuple[str, str], list] = {(k, kind): [] for k in roots for kind in kinds}
    cpu = dict.fromkeys(roots, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny_png(tmp / "in")
        servers = {k: start(r, tmp / k, tmp / "in", extra[k]) for k, r in roots.items()}
        try:
            clients = {k: client_class(roots[k])(url) for k, (_, url) in servers.items()}
            polls = {k: long_polls(c) for k, c in clients.items()}
            for k, c in clients.items():
                one_job(c, doc, polls[k])  # load the model, fill the cache
            for i in range(args.jobs):
                for kind, seed in kinds.items():
                    order = list(clients.items())  # who goes first alternates: neither always
                    for k, c in (order if i % 2 else order[::-1]):  # follows the other's jobs
                        pid = servers[k][0].pid
                        c0, t0 = cpu_s(pid), time.perf_counter()
                        job = one_job(c, doc, polls[k], seed(i), args.run in (k, "both"))
                        wall = time.perf_counter() - t0
                        if kind == "cached":
                            cpu[k] += cpu_s(pid) - c0
                        rows[k, kind].append((wall, wall - sum(job["timings"].values())))
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    result: dict = {k: {"checkout": str(roots[k]), "env": extra[k], "long_poll": polls[k],
                        "one_request": args.run in (k, "both"),
                        "server_cpu_per_cached_job_ms": cpu[k] / args.jobs * 1e3} for k in roots}
    for (k, kind), v in rows.items():
        result[k][kind] = {"round_trip_ms": statistics.median(w for w, _ in v) * 1e3,
                           "overhead_ms": statistics.median(o for _, o in v) * 1e3}
    if args.seed:  # paired: the same job, one right after the other
        result["seed-only overhead, this - other (median of pairs, ms)"] = statistics.median(
            (a[1] - b[1]) * 1e3 for a, b in zip(rows["this", "seed-only"], rows["other", "seed-only"], strict=True))
    result["cached overhead, this - other (median of pairs, ms)"] = statistics.median(
        (a[1] - b[1]) * 1e3 for a, b in zip(rows["this", "cached"], rows["other", "cached"], strict=True))
    result["load_average"] = os.getloadavg()[0]
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
