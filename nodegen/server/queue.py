"""The durable job queue: one SQLite file (standard library ``sqlite3``) next to the outputs.

A job is committed and fsynced (WAL, ``synchronous=FULL`` for that transaction) before the server
answers the submit, so an accepted job survives kill -9 and power loss. Status changes (claim,
finish) commit with ``synchronous=NORMAL``: safe against a killed process; after a power loss the
last of them may be lost, and the job then runs again, which its published folder turns into a
no-op (:func:`nodegen.runtime.jobs.run_job` adopts it). Jobs run in submission order. At startup :meth:`JobQueue.recover`
puts jobs left ``running`` by a crash back to ``queued``: they run again, once (the job folder's
atomic publication, see :mod:`nodegen.runtime.jobs`, keeps their outputs from being written twice).
Finished, failed and cancelled jobs stay in the table with their values, files, timings, errors
and events.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

STATUSES = ("queued", "running", "done", "failed", "cancelled")
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
    events TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
"""


class JobQueue:
    """Thread-safe; one connection guarded by a lock (SQLite serialises writers anyway)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------------------
    def submit(self, workflow: dict, overrides: dict | None = None, targets: list | None = None) -> str:
        job_id = uuid.uuid4().hex[:16]
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")  # an accepted job is on disk
            self._db.execute(
                "INSERT INTO jobs (id, status, workflow, overrides, targets, submitted) VALUES (?,?,?,?,?,?)",
                (job_id, "queued", json.dumps(workflow), json.dumps(overrides or {}),
                 json.dumps(targets) if targets else None, time.time()))
            self._db.execute("PRAGMA synchronous=NORMAL")
        return job_id

    def recover(self) -> int:
        """Jobs a crash left running go back to the queue; returns how many."""
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET status='queued', started=NULL WHERE status='running'")
            return cur.rowcount

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
               events: list[dict] | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status=?, finished=?, outcome=?, error=?, events=? WHERE id=?",
                (status, time.time(), json.dumps(outcome) if outcome is not None else None, error,
                 json.dumps(events) if events is not None else None, job_id))

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
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return self._row(row, full=full) if row else None

    def events(self, job_id: str) -> list[dict] | None:
        with self._lock:
            row = self._db.execute("SELECT events FROM jobs WHERE id=?", (job_id,)).fetchone()
        return json.loads(row["events"]) if row and row["events"] else None

    def list(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
        sql = "SELECT * FROM jobs" + (" WHERE status=?" if status else "") + " ORDER BY seq LIMIT ? OFFSET ?"
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
