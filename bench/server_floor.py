"""The floor under the job server's overhead: what the framework and the durable queue alone cost.

A minimal app on the same stack (FastAPI on uvicorn, same worker-thread hop, a SQLite WAL insert
fsynced before the 201, a job thread that marks the job done at once, the same long poll), driven
by ``nodegen.client.Client`` exactly as ``bench/server_overhead.py`` drives the real server: submit
the demo workflow, then ``wait``. Whatever the real server's overhead is above this floor is
nodegen's own work (checking the document, staging and publishing the job's folder, the engine's
bookkeeping, the job record).

    python bench/server_floor.py [--jobs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi import FastAPI, Query  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from nodegen.client import Client  # noqa: E402


class MinimalJobs:
    """Submit (insert + fsync of the WAL), a job thread that finishes jobs at once, long polls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT, workflow TEXT, overrides TEXT)")
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.waiting: dict[str, list[asyncio.Future]] = {}
        threading.Thread(target=self._run, daemon=True).start()

    def accept(self, workflow: dict, overrides: dict | None) -> dict:
        job_id = uuid.uuid4().hex[:16]
        with self.lock:
            self.db.execute("INSERT INTO jobs VALUES (?,?,?,?)",
                            (job_id, "queued", json.dumps(workflow), json.dumps(overrides or {})))
        self.wake.set()
        fd = os.open(str(self.path) + "-wal", os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return {"id": job_id, "status": "queued"}

    def get(self, job_id: str) -> dict:
        with self.lock:
            row = self.db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
        return {"id": job_id, "status": row[0], "timings": {}}

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            while True:
                with self.lock:
                    row = self.db.execute("SELECT id FROM jobs WHERE status='queued' LIMIT 1").fetchone()
                    if row is None:
                        break
                    self.db.execute("UPDATE jobs SET status='done' WHERE id=?", (row[0],))
                with self.lock:
                    futures = self.waiting.pop(row[0], [])
                for fut in futures:
                    fut.get_loop().call_soon_threadsafe(lambda f=fut: f.done() or f.set_result(None))


class JobRequest(BaseModel):
    workflow: dict[str, Any]
    set: dict[str, Any] | None = None


def make_app(jobs: MinimalJobs) -> FastAPI:
    app = FastAPI()

    @app.post("/jobs", status_code=201)
    async def submit(body: JobRequest):
        return await run_in_threadpool(jobs.accept, body.workflow, body.set)

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str, wait: float = Query(0)):
        fut = asyncio.get_running_loop().create_future()
        with jobs.lock:
            jobs.waiting.setdefault(job_id, []).append(fut)
        job = jobs.get(job_id)
        if job["status"] != "done" and wait > 0:
            try:
                await asyncio.wait_for(fut, wait)
            except TimeoutError:
                pass
            job = jobs.get(job_id)
        return JSONResponse(job)

    return app


def serve(app, port: int) -> None:
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")).run()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # the server process
    ap.add_argument("--db", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(make_app(MinimalJobs(Path(args.db))), args.serve)
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--db",
                                   str(Path(tmp) / "jobs.sqlite3")])
        try:
            measure(port, args.jobs)
        finally:
            server.terminate()
            server.wait(30)


def measure(port: int, jobs: int) -> None:
    client = Client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while True:
        try:
            client._json("GET", "/openapi.json")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the minimal server did not start") from None
            time.sleep(0.05)
    doc = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    for _ in range(10):
        client.wait(client.submit(doc, set={"Sampler.seed": 0}))
    times = []
    for _ in range(jobs):
        t0 = time.perf_counter()
        client.wait(client.submit(doc, set={"Sampler.seed": 0}))
        times.append(time.perf_counter() - t0)
    print(json.dumps({"floor_round_trip_ms": statistics.median(times) * 1e3, "jobs": jobs,
                      "load_average": os.getloadavg()[0],
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2))


if __name__ == "__main__":
    main()
