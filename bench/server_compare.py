"""The job server's overhead per cached job, this checkout against another one (say, main).

Starts ``python main.py serve`` from both checkouts at once (one torch thread each) and sends
them the same cached job (graphs/txt2img.json, the same values again) in turn, so that both see
the same load on a shared machine. Each checkout is driven by its own ``nodegen.client``: this one
through ``Client.wait``; a checkout whose server does not hold a status request (no long poll) is
polled every millisecond, as ``bench/server_overhead.py`` did before. Reports, per checkout, the
median round trip, the median overhead (round trip - time in nodes) and the server's CPU per job.

    git worktree add --detach /tmp/main-checkout main
    python bench/server_compare.py /tmp/main-checkout [--jobs 60]
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


def start(root: Path, out: Path, inp: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
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


def one_job(client, doc: dict, polls: bool) -> dict:
    job_id = client.submit(doc, set={"Sampler.seed": 0})
    if polls:
        return client.wait(job_id, timeout=120)
    while (job := client.status(job_id))["status"] not in ("done", "failed", "cancelled"):
        time.sleep(0.001)
    return job


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("other", type=Path, help="the other checkout (its main.py and nodegen/)")
    ap.add_argument("--jobs", type=int, default=60)
    args = ap.parse_args()
    roots = {"this": ROOT, "other": args.other.resolve()}
    doc = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    rows: dict[str, list] = {k: [] for k in roots}
    cpu = dict.fromkeys(roots, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny_png(tmp / "in")
        servers = {k: start(r, tmp / k, tmp / "in") for k, r in roots.items()}
        try:
            clients = {k: client_class(roots[k])(url) for k, (_, url) in servers.items()}
            polls = {k: long_polls(c) for k, c in clients.items()}
            for k, c in clients.items():
                one_job(c, doc, polls[k])  # load the model, fill the cache
            for _ in range(args.jobs):
                for k, c in clients.items():
                    pid = servers[k][0].pid
                    c0, t0 = cpu_s(pid), time.perf_counter()
                    job = one_job(c, doc, polls[k])
                    wall = time.perf_counter() - t0
                    cpu[k] += cpu_s(pid) - c0
                    rows[k].append((wall, wall - sum(job["timings"].values())))
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    result = {k: {"checkout": str(roots[k]), "long_poll": polls[k],
                  "round_trip_ms": statistics.median(w for w, _ in v) * 1e3,
                  "overhead_ms": statistics.median(o for _, o in v) * 1e3,
                  "server_cpu_per_job_ms": cpu[k] / args.jobs * 1e3} for k, v in rows.items()}
    result["load_average"] = os.getloadavg()[0]
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
