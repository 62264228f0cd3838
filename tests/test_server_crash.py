"""Kill -9 the server with one job running and others queued: after a restart every accepted job
finishes exactly once (the interrupted one re-runs), with no duplicate and no half-written file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from nodegen.client import Client
from tests.support.jobs import light_workflow, slow_workflow, tiny_png

ROOT = Path(__file__).resolve().parents[1]


def start_server(out: Path, inp: Path) -> tuple[subprocess.Popen, str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "main.py", "serve", "--port", "0", "--out", str(out),
                             "--input", str(inp), "--device", "cpu"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    while not (line := proc.stdout.readline()).startswith("nodegen server: http://"):
        seen.append(line)
        assert line, "the server exited:\n" + "".join(seen)
    return proc, line.split()[2], time.monotonic() - t0


def db_status(out: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(out / "jobs.sqlite3") as db:
        return {i: (s, a) for i, s, a in db.execute("SELECT id, status, attempts FROM jobs")}


def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path):
    out, inp = tmp_path / "out", tmp_path / "in"
    tiny_png(inp)
    proc, url, _ = start_server(out, inp)  # start time is a benchmark figure, not a test
    try:
        c = Client(url)
        slow = c.submit(slow_workflow(size=3072))
        light = [c.submit(light_workflow(), set={"Save.filename_prefix": f"q{i}"}) for i in range(3)]
        deadline = time.monotonic() + 60
        while c.status(slow)["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    before = db_status(out)
    assert before[slow] == ("running", 1), "the kill must land while the slow job runs"
    assert all(before[j][0] == "queued" for j in light)
    assert not (out / "jobs" / slow).exists()  # only its staging folder, never a partial result

    proc, url, _ = start_server(out, inp)
    try:
        c = Client(url)
        jobs = {j: c.wait(j, timeout=120) for j in [slow, *light]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert all(job["status"] == "done" for job in jobs.values()), jobs
    assert jobs[slow]["attempts"] == 2 and all(jobs[j]["attempts"] == 1 for j in light)
    assert jobs[slow]["files"] == ["slow_00001.png"]
    assert [jobs[j]["files"] for j in light] == [[f"q{i}_00001.png"] for i in range(3)]
    folders = sorted(p.name for p in (out / "jobs").iterdir())
    assert folders == sorted([slow, *light])  # no staging folder left, no extra job
    for job_id, job in jobs.items():
        on_disk = sorted(p.name for p in (out / "jobs" / job_id).iterdir())
        assert on_disk == sorted([*job["files"], "job.json"])
        for name in job["files"]:
            with Image.open(out / "jobs" / job_id / name) as img:
                img.load()  # complete, readable PNG
        record = json.loads((out / "jobs" / job_id / "job.json").read_text())
        assert record["status"] == "done"
    assert (Image.open(out / "jobs" / slow / "slow_00001.png").size) == (3072, 3072)
