"""The durable job queue: one SQLite file (standard library ``sqlite3``) next to the outputs.

Durability, exactly:

* **Accepting a job**: the row is committed in WAL mode, then the WAL file is fsynced before
  :meth:`JobQueue.submit` returns (before the server answers 201). An accepted job survives a
  killed process and a power loss. The fsync is a group commit: submits that arrive while one
  fsync runs share the next one, so many concurrent submits cost about one fsync per batch.
  The commit itself (``synchronous=NORMAL``) is already safe against a killed process, so the
  runner may start the job while its acceptance is being fsynced.
* **Status changes** (claim, finish, cancel) commit with ``synchronous=NORMAL``: safe against a
  killed process; after a power loss the last of them may be lost, and the job then runs again,
  which its published folder turns into a no-op (:func:`nodegen.runtime.jobs.run_job` adopts an
  intact folder) or a re-run (a folder that did not reach the disk whole).
* **Outputs**: a job's folder is published by an atomic rename; whether it is fsynced before the
  job is marked done is the runner's choice (``serve --fsync``). Rows whose outputs are not known
  to be on disk have ``synced = 0`` until the background flusher (:mod:`nodegen.server.flusher`)
  has synced the file system; :meth:`JobQueue.recover` checks those at start.

Jobs run in submission order. At startup :meth:`JobQueue.recover` puts jobs left ``running`` by a
crash back to ``queued`` (they run again, once) and re-queues finished jobs whose unsynced output
folder is missing or damaged. Finished, failed and cancelled jobs stay in the table with their
values, files, timings, errors and events.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nodegen.kernel.atomic import sync_dir

STATUSES = ("queued", "running", "done", "failed", "cancelled")
#: The columns a job's status is made of (:meth:`JobQueue._row`): not its workflow or events.
_JOB = "id, status, overrides, targets, submitted, started, finished, attempts, outcome, error"
FINAL = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    workflow TEXT NOT NULL,
    overrides TEXT NOT NULL,
    targets TEXT,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    error TEXT,
    events TEXT,
    synced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
"""
_UNSYNCED_INDEX = "CREATE INDEX IF NOT EXISTS jobs_unsynced ON jobs(synced, status)"


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


class JobQueue:
    """Thread-safe; one connection guarded by a lock (SQLite serialises writers anyway)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._wal = Path(str(self.path) + "-wal")
        self._written = 0  # commits that must reach the disk (submits), counted
        self._synced = 0  # ... and how many of them have
        self._syncing = False
        self._sync_cond = threading.Condition()
        with self._lock:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            # without WAL (a file system that cannot share memory), every commit is fsynced itself
            self._wal_mode = str(mode).lower() == "wal"
            self._db.execute("PRAGMA synchronous=" + ("NORMAL" if self._wal_mode else "FULL"))
            self._db.executescript(_SCHEMA)
            columns = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "synced" not in columns:  # a queue made by an older version
                self._db.execute("ALTER TABLE jobs ADD COLUMN synced INTEGER NOT NULL DEFAULT 0")
            self._db.execute(_UNSYNCED_INDEX)
        self._fsync_wal()
        sync_dir(self.path.parent)  # the database and its WAL file exist after a power loss

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction (the caller holds the lock)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- durability --------------------------------------------------------------------------
    def _fsync_wal(self) -> None:
        """fsync the WAL file: every transaction committed before this call is on disk (what
        ``synchronous=FULL`` does at each commit, here once for a batch). Without a WAL file the
        last checkpoint has moved everything into the database file and synced it."""
        for path in (self._wal, self.path):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return

    def _make_durable(self, commit: int) -> None:
        """Return once commit number ``commit`` is on disk (group commit): one thread at a time
        fsyncs, covering every commit made before it began; the others wait for the fsync that
        covers them instead of running their own."""
        if not self._wal_mode:
            return  # synchronous=FULL: the commit was fsynced
        with self._sync_cond:
            while self._synced < commit:
                if self._syncing:
                    self._sync_cond.wait()
                    continue
                self._syncing = True
                upto = self._written  # every commit up to this one has been written to the WAL
                self._sync_cond.release()
                try:
                    self._fsync_wal()
                finally:
                    self._sync_cond.acquire()
                    self._syncing = False
                    self._sync_cond.notify_all()
                self._synced = max(self._synced, upto)

    # -- writing ---------------------------------------------------------------------------
    def submit(self, workflow: dict, overrides: dict | None = None, targets: list | None = None,
               committed: Callable[[], None] | None = None, job_id: str | None = None) -> str:
        """Add a job; returns its id once the job is on disk. ``committed`` is called as soon as
        the job is visible to :meth:`claim` (safe against a killed process), before the fsync.
        ``job_id``: one made by :func:`new_job_id` beforehand (to wait for the job's end before
        it can start); a new one by default."""
        job_id = job_id or new_job_id()
        row = (job_id, "queued", json.dumps(workflow), json.dumps(overrides or {}),
               json.dumps(targets) if targets else None, time.time())
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, status, workflow, overrides, targets, submitted) VALUES (?,?,?,?,?,?)", row)
            self._written += 1
            commit = self._written
        if committed is not None:
            committed()
        self._make_durable(commit)
        return job_id

    def recover(self, intact: Callable[[dict], bool] | None = None) -> dict[str, int]:
        """At start: jobs a crash left running go back to the queue, and so do finished jobs
        whose outputs were not yet known to be on disk (``synced = 0``) when ``intact(job)``
        says their output folder is missing or damaged. Returns ``{"running": n, "damaged": m}``."""
        with self._lock:
            running = self._db.execute(
                "UPDATE jobs SET status='queued', started=NULL WHERE status='running'").rowcount
            rows = self._db.execute("SELECT * FROM jobs WHERE synced=0 AND status IN ('done','failed') "
                                    "AND outcome IS NOT NULL ORDER BY seq").fetchall()
        damaged = [r["seq"] for r in rows if intact is not None and not intact(self._row(r))]
        with self._lock:
            with self._transaction():
                self._db.executemany("UPDATE jobs SET status='queued', started=NULL, finished=NULL, "
                                     "outcome=NULL, error=NULL, events=NULL WHERE seq=?", [(s,) for s in damaged])
            self._written += 1
            commit = self._written
        self._make_durable(commit)
        return {"running": running, "damaged": len(damaged)}

    def unsynced(self) -> list[int]:
        """Finished jobs whose output folders are not yet known to be on disk (their ``seq``)."""
        with self._lock:
            rows = self._db.execute("SELECT seq FROM jobs WHERE synced=0 AND status IN ('done','failed')")
            return [r["seq"] for r in rows]

    def mark_synced(self, seqs: list[int]) -> None:
        """The output folders of these jobs are on disk (the file system was synced after they
        were published)."""
        with self._lock, self._transaction():
            self._db.executemany("UPDATE jobs SET synced=1 WHERE seq=?", [(s,) for s in seqs])

    def claim(self) -> dict | None:
        """The oldest queued job, marked running (its workflow included), or None."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT * FROM jobs WHERE status='queued' ORDER BY seq LIMIT 1").fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                now = time.time()
                self._db.execute("UPDATE jobs SET status='running', started=?, attempts=attempts+1 "
                                 "WHERE seq=?", (now, row["seq"]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        job = self._row(row, full=True)
        job.update(status="running", started=now, attempts=job["attempts"] + 1)
        return job

    def finish(self, job_id: str, status: str, outcome: dict | None, error: str | None = None,
               events: list[dict] | None = None, synced: bool = False) -> dict | None:
        """Record how a job ended; ``synced``: its output folder is already on disk. Returns the
        job as :meth:`get` now would (None: no such job)."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET status=?, finished=?, outcome=?, error=?, events=?, synced=? WHERE id=? "
                "RETURNING " + _JOB,
                (status, time.time(), json.dumps(outcome) if outcome is not None else None, error,
                 json.dumps(events) if events is not None else None, int(synced), job_id)).fetchall()
        return self._row(row[0]) if row else None  # fetched to the end: the statement is done, committed

    def cancel_queued(self, job_id: str) -> str | None:
        """Cancel a job that has not started; returns the job's status afterwards (None: no job)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET status='cancelled', finished=? WHERE id=? AND status='queued'",
                             (time.time(), job_id))
            row = self._db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row["status"] if row else None

    # -- reading ---------------------------------------------------------------------------
    def get(self, job_id: str, *, full: bool = False) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_JOB}{', workflow' if full else ''} FROM jobs WHERE id=?",
                                   (job_id,)).fetchone()
        return self._row(row, full=full) if row else None

    def events(self, job_id: str) -> list[dict] | None:
        with self._lock:
            row = self._db.execute("SELECT events FROM jobs WHERE id=?", (job_id,)).fetchone()
        return json.loads(row["events"]) if row and row["events"] else None

    def list(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
        sql = f"SELECT {_JOB} FROM jobs" + (" WHERE status=?" if status else "") + " ORDER BY seq LIMIT ? OFFSET ?"
        args: tuple = ((status,) if status else ()) + (limit, offset)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        out = dict.fromkeys(STATUSES, 0)
        out.update({r["status"]: r["n"] for r in rows})
        return out

    @staticmethod
    def _row(row: sqlite3.Row, full: bool = False) -> dict[str, Any]:
        outcome = json.loads(row["outcome"]) if row["outcome"] else None
        job: dict[str, Any] = {
            "id": row["id"], "status": row["status"], "set": json.loads(row["overrides"]),
            "targets": json.loads(row["targets"]) if row["targets"] else None,
            "submitted": row["submitted"], "started": row["started"], "finished": row["finished"],
            "attempts": row["attempts"], "error": row["error"],
            "files": (outcome or {}).get("files", []),
            "seconds": (outcome or {}).get("seconds"),
            "timings": (outcome or {}).get("timings", {}),
            "problems": (outcome or {}).get("problems", []),
        }
        if full:
            job["workflow"] = json.loads(row["workflow"])
        return job
