"""The worker thread of the server: one warm Engine runs the queued jobs in order.

Models stay loaded and node outputs stay cached between jobs, so a job that only changes the seed
runs the sampler and what follows it. Each job writes into its own folder under the output folder
(``OUT/jobs/<id>``), published atomically by :func:`nodegen.runtime.jobs.run_job`: fsynced
before the job is marked done with ``sync=True`` (``serve --fsync``), otherwise made durable a
little later by :class:`nodegen.server.flusher.OutputFlusher`. ``finished(job_id, job)`` is called once a
job's end is recorded, with the job as recorded (the flusher and the waiting clients hear of it).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodegen.kernel.context import CancelToken
from nodegen.runtime.jobs import run_job
from nodegen.server.hub import EventHub
from nodegen.server.queue import JobQueue

log = logging.getLogger("nodegen.server")


def job_folder(out_dir: str | Path, job_id: str) -> Path:
    return Path(out_dir) / "jobs" / job_id


class JobRunner:
    def __init__(self, engine: Any, queue: JobQueue, hub: EventHub, out_dir: str | Path, *,
                 sync: bool = False, finished: Callable[[str, dict | None], None] | None = None,
                 prepare: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self._prepare = prepare
        self.queue = queue
        self.hub = hub
        self.out_dir = Path(out_dir)
        self.sync = sync
        self.finished = finished
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._current: tuple[str, CancelToken] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._job_id: str | None = None
        engine.subscribe(self._on_event, previews=False)  # events go out as JSON: no images

    # -- control -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nodegen-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            if self._current:
                self._current[1].cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """A job was submitted."""
        self._wake.set()

    def cancel_running(self, job_id: str) -> bool:
        with self._lock:
            if self._current and self._current[0] == job_id:
                self._current[1].cancel()
                return True
        return False

    @property
    def running(self) -> str | None:
        with self._lock:
            return self._current[0] if self._current else None

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self.queue.claim()
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                self._prepare_once()  # idle for a while: the server listens by now
                continue
            self._prepare_once()
            self._run(job)

    def _prepare_once(self) -> None:
        """Run ``prepare`` (torch's thread count, which imports torch) once, in this thread: when the
        thread is first idle or before the first job, whichever comes first, so neither the server's
        start nor the first job waits for the import."""
        prepare, self._prepare = self._prepare, None
        if prepare is not None:
            prepare()

    def _on_event(self, event) -> None:
        job_id = self._job_id
        if job_id is not None:
            self.hub.publish(job_id, event.to_json())

    def _run(self, job: dict) -> None:
        job_id = job["id"]
        token = CancelToken()
        with self._lock:
            self._current = (job_id, token)
        self.hub.start(job_id)
        self._job_id = job_id
        folder = job_folder(self.out_dir, job_id)
        try:
            # Claimed once: no earlier attempt published its folder, short of a power loss that
            # kept a folder but lost the claim. Without --fsync such a job runs again anyway;
            # with it, done must mean done across a power loss: look for the folder to adopt.
            outcome = run_job(self.engine, job["workflow"], folder, overrides=job["set"],
                              targets=job["targets"], cancel=token, sync=self.sync,
                              first_attempt=job["attempts"] == 1 and not self.sync)
            status = {"invalid": "failed"}.get(outcome.status, outcome.status)
            result, error = outcome.to_json(), outcome.error
        except Exception as e:  # noqa: BLE001 - recorded on the job, the server goes on
            log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            status, result, error = "failed", None, f"{type(e).__name__}: {e}"
        finally:
            self._job_id = None
            with self._lock:
                self._current = None
        if self._stop.is_set() and status == "cancelled":
            return  # shutting down: the job stays 'running' and is re-queued at the next start
        files = (result or {}).get("files", [])
        self.hub.publish(job_id, {"event": "outputs", "paths": files, "status": status})
        job = self.queue.finish(job_id, status, result, error, self.hub.events(job_id), synced=self.sync)
        self.hub.finish(job_id)
        if self.finished is not None:
            self.finished(job_id, job)
