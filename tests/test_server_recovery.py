"""The job server's durability levels and what a start repairs.

An accepted job costs one WAL fsync (shared by jobs submitted together); a job's outputs are
published by an atomic rename with no fsync unless ``--fsync``; a background sync marks jobs
whose folders are on disk. At start, a finished job whose outputs were not known to be on disk
and are missing, truncated or without a record (what a power loss can leave) runs again, and a
damaged file is never served or adopted."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from nodegen.kernel import atomic
from nodegen.server.app import ServerConfig, create_app
from nodegen.server.queue import JobQueue
from tests.support.jobs import light_workflow, tiny_png


def wait_done(client, job_id, timeout=30.0) -> dict:
    job = client.get(f"/jobs/{job_id}", params={"wait": timeout}).json()
    assert job["status"] in ("done", "failed", "cancelled"), job
    return job


def serve(root: Path, **kw) -> TestClient:
    return TestClient(create_app(ServerConfig(out_dir=str(root / "out"), input_dir=str(root / "in"), **kw)))


def run_jobs(root: Path, prefixes: list[str], **kw) -> list[dict]:
    with serve(root, **kw) as c:
        ids = [c.post("/jobs", json={"workflow": light_workflow(), "set": {"Save.filename_prefix": p}}).json()["id"]
               for p in prefixes]
        return [wait_done(c, i) for i in ids]


def set_unsynced(root: Path) -> None:
    """What a power loss before the background sync leaves in the queue: no job is marked synced."""
    with sqlite3.connect(root / "out" / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET synced=0")


@pytest.fixture
def root(tmp_path):
    tiny_png(tmp_path / "in")
    return tmp_path


def test_a_clean_shutdown_leaves_every_finished_job_synced(root):
    jobs = run_jobs(root, ["a", "b"])
    with sqlite3.connect(root / "out" / "jobs.sqlite3") as db:
        assert db.execute("SELECT id, synced FROM jobs ORDER BY seq").fetchall() == [(j["id"], 1) for j in jobs]


def test_damaged_outputs_of_unsynced_jobs_are_rerun_at_start(root):
    intact, truncated, no_record, no_folder, emptied = run_jobs(root, ["ok", "trunc", "rec", "gone", "zero"])
    set_unsynced(root)
    jobs_dir = root / "out" / "jobs"
    png = jobs_dir / truncated["id"] / "trunc_00001.png"
    png.write_bytes(png.read_bytes()[:40])
    (jobs_dir / no_record["id"] / "job.json").write_bytes(b"")
    os.rename(jobs_dir / no_folder["id"], jobs_dir / (no_folder["id"] + ".partial"))
    zero = jobs_dir / emptied["id"] / "zero_00001.png"
    zero.write_bytes(b"\0" * zero.stat().st_size)  # right size, wrong bytes: the digest tells
    kept = (jobs_dir / intact["id"] / "ok_00001.png").stat().st_mtime_ns

    with serve(root) as c:
        c.get("/health")  # the repair ran at start, before any request
        after = {j["id"]: wait_done(c, j["id"]) for j in (intact, truncated, no_record, no_folder, emptied)}
        served = c.get(f"/jobs/{truncated['id']}/files/trunc_00001.png").content
    assert after[intact["id"]]["attempts"] == 1
    assert (jobs_dir / intact["id"] / "ok_00001.png").stat().st_mtime_ns == kept  # not re-run
    for job in (truncated, no_record, no_folder, emptied):
        again = after[job["id"]]
        assert again["status"] == "done" and again["attempts"] == 2 and again["files"] == job["files"]
        folder = jobs_dir / job["id"]
        assert sorted(p.name for p in folder.iterdir()) == sorted([*job["files"], "job.json"])
        with Image.open(folder / job["files"][0]) as img:
            img.load()
    assert served == png.read_bytes() and served.startswith(b"\x89PNG") and len(served) > 40
    assert sorted(p.name for p in jobs_dir.iterdir()) == sorted(after)  # no staging folder left


def test_synced_jobs_are_not_reread_at_start(root, monkeypatch):
    (job,) = run_jobs(root, ["s"])
    png = root / "out" / "jobs" / job["id"] / "s_00001.png"
    png.write_bytes(b"damage the disk could not have done: the job was synced")
    from nodegen.server import app as app_module

    checked = []
    monkeypatch.setattr(app_module, "read_record", lambda *a, **k: checked.append(a))
    with serve(root) as c:
        assert c.get(f"/jobs/{job['id']}").json()["attempts"] == 1
    assert checked == []


def test_a_queued_job_adopts_only_an_intact_published_folder(root):
    """A power loss can keep a job's published folder but lose the row saying it finished: the
    re-run adopts the folder when it is intact and runs again when it is not."""
    first, second = run_jobs(root, ["x", "y"])
    with sqlite3.connect(root / "out" / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET status='running', outcome=NULL, synced=0")
    png = root / "out" / "jobs" / second["id"] / "y_00001.png"
    png.write_bytes(png.read_bytes()[:-10])
    kept = (root / "out" / "jobs" / first["id"] / "x_00001.png").stat()
    with serve(root) as c:
        a, b = wait_done(c, first["id"]), wait_done(c, second["id"])
    assert a["status"] == b["status"] == "done" and a["files"] == ["x_00001.png"] and b["files"] == ["y_00001.png"]
    now = (root / "out" / "jobs" / first["id"] / "x_00001.png").stat()
    assert (now.st_ino, now.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)  # adopted, not written again
    with Image.open(png) as img:
        img.load()


def test_outputs_are_fsynced_only_with_the_fsync_option(root, monkeypatch):
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    with serve(root) as c:  # the queue's own start-up fsyncs are not counted below
        for fsync, prefix in ((False, "fast"), (True, "sure")):
            c.app.state.nodegen.runner.sync = fsync
            calls.clear()
            job = wait_done(c, c.post("/jobs", json={"workflow": light_workflow(),
                                                     "set": {"Save.filename_prefix": prefix}}).json()["id"])
            assert job["status"] == "done"
            n = len(calls)
            if not fsync:
                assert n == 1, "one fsync per job: the accepted job in the queue's WAL"
            else:
                assert n == 5, "plus the output, its record, the job folder and the jobs folder"
    assert atomic.syncing()  # deferral is per run, never left on


def test_concurrent_submits_share_fsyncs(tmp_path, monkeypatch):
    queue = JobQueue(tmp_path / "q.sqlite3")
    real = queue._fsync_wal
    syncs = []

    def slow_fsync():  # a slow disk: submits arriving meanwhile wait for the next fsync together
        syncs.append(1)
        time.sleep(0.02)
        real()
    monkeypatch.setattr(queue, "_fsync_wal", slow_fsync)
    ids: list[str] = []
    lock = threading.Lock()

    def submit_many():
        for i in range(10):
            job_id = queue.submit(light_workflow(), {"Save.filename_prefix": f"c{i}"})
            with lock:
                ids.append(job_id)
    threads = [threading.Thread(target=submit_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.close()
    assert len(set(ids)) == 80
    assert len(syncs) <= 30, f"{len(syncs)} fsyncs for 80 concurrent submits"
    with sqlite3.connect(tmp_path / "q.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE status='queued'").fetchone()[0] == 80


def test_a_queue_made_by_an_older_version_gains_the_synced_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
                   "status TEXT NOT NULL, workflow TEXT NOT NULL, overrides TEXT NOT NULL, targets TEXT, "
                   "submitted REAL NOT NULL, started REAL, finished REAL, attempts INTEGER NOT NULL DEFAULT 0, "
                   "outcome TEXT, error TEXT, events TEXT)")
        db.execute("INSERT INTO jobs (id, status, workflow, overrides, submitted, outcome) "
                   "VALUES ('old', 'done', '{}', '{}', 0, ?)", (json.dumps({"files": []}),))
    queue = JobQueue(path)
    assert queue.unsynced() == [1]
    assert queue.recover(lambda job: True) == {"running": 0, "damaged": 0}
    queue.mark_synced([1])
    assert queue.unsynced() == [] and queue.get("old")["status"] == "done"
    queue.close()


def test_finishing_a_job_returns_its_record_committed(tmp_path):
    """``finish`` answers the job as ``get`` then reads it (what the long polls are woken with),
    and the change is committed at once: another connection sees it."""
    queue = JobQueue(tmp_path / "q.sqlite3")
    job_id = queue.submit(light_workflow(), {"Save.filename_prefix": "r"})
    assert queue.claim()["id"] == job_id
    job = queue.finish(job_id, "done", {"files": ["r_00001.png"], "seconds": 0.5, "timings": {"1": 0.1}},
                       events=[{"event": "outputs"}])
    assert job == queue.get(job_id) and job["status"] == "done" and job["files"] == ["r_00001.png"]
    with sqlite3.connect(tmp_path / "q.sqlite3") as other:
        assert other.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()[0] == "done"
        other.execute("UPDATE jobs SET attempts=attempts WHERE id=?", (job_id,))  # no write lock held
    assert queue.finish("nope", "done", None) is None
    queue.close()


def test_a_first_attempt_clears_what_is_in_its_staging_folder(root):
    """A job claimed for the first time skips the search for a published folder, but a staging
    folder found in its way is still emptied: nothing left there reaches the published folder."""
    app = create_app(ServerConfig(out_dir=str(root / "out"), input_dir=str(root / "in")))
    job_id = TestClient(app).post("/jobs", json={"workflow": light_workflow(),
                                                 "set": {"Save.filename_prefix": "f"}}).json()["id"]
    stray = root / "out" / "jobs" / f"{job_id}.partial"
    stray.mkdir(parents=True)
    (stray / "f_00001.png").write_bytes(b"not a png")
    with TestClient(app) as c:  # the runner starts now
        job = wait_done(c, job_id)
    assert job["status"] == "done" and job["attempts"] == 1 and job["files"] == ["f_00001.png"]
    folder = root / "out" / "jobs" / job_id
    assert sorted(p.name for p in folder.iterdir()) == ["f_00001.png", "job.json"] and not stray.exists()
    with Image.open(folder / "f_00001.png") as img:
        img.load()
