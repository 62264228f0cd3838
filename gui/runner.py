"""Running graphs without freezing the editor: a run queue served by one worker thread.

The worker calls ``engine.executor.run(doc_copy, cancel=token)``; engine events arrive in the
worker thread (``engine.subscribe``), are turned into plain data plus ``QImage``s there, and reach
the window as Qt signals (queued across threads). The engine, and with it the output cache, lives
as long as the window, so running again re-runs only what changed.

A sweep is one job of the queue: the worker runs it through the shared sweep core
(:class:`nodegen.runtime.sweep.session.Sweep`) on the same engine, one sweep job after another, and
its events (jobs skipped, each job finished) arrive as ``sweepEvent`` signals. Cancelling it stops
the running sweep job; finished jobs stay in its folder and manifest, so running it again resumes.
"""

from __future__ import annotations

import copy
import itertools
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from nodegen.kernel.context import CancelToken
from nodegen.kernel.plan import Plan, plan
from nodegen.kernel.problems import Problem
from nodegen.kernel.workflow import WorkflowError
from nodegen.runtime.jobs import STAGING_SUFFIX
from nodegen.runtime.sweep.session import Sweep
from nodegen.runtime.sweep.worker import SweepWorker


def pil_to_qimage(pil) -> QImage:
    img = pil.convert("RGBA")
    data = img.tobytes("raw", "RGBA")
    return QImage(data, img.width, img.height, img.width * 4, QImage.Format_RGBA8888).copy()


def tensor_to_qimage(t) -> QImage | None:
    """IMAGE tensor [B,H,W,C] (first of the batch) or a PIL image -> QImage."""
    if t is None:
        return None
    if hasattr(t, "convert"):
        return pil_to_qimage(t)
    import numpy as np

    arr = t.detach().float().cpu()
    if arr.ndim == 4:
        arr = arr[0]
    arr = (arr.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = np.ascontiguousarray(arr[..., :3])
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, w * 3, QImage.Format_RGB888).copy()


def _convert(kind: str, data: dict) -> dict:
    out = {k: v for k, v in data.items() if k not in ("preview", "ui")}
    if kind == "node_progress":
        try:
            out["preview"] = tensor_to_qimage(data.get("preview"))
        except Exception:  # noqa: BLE001 - a bad preview must not break the run
            out["preview"] = None
    ui = data.get("ui") or {}
    if ui:
        out["images"] = [pil_to_qimage(p) for p in ui.get("images", []) if hasattr(p, "convert")]
        out["paths"] = list(ui.get("paths", []))
        out["text"] = [str(t) for t in ui.get("text", [])]  # e.g. PreviewAny's value, CLIPScore's summary
    return out


class _Worker(QObject):
    event = Signal(str, object, object)       # kind, node id, data
    finished = Signal(int, str, object)        # job number, status, info
    sweep_event = Signal(int, object)          # job number, sweep event (a dict)

    def __init__(self, engine) -> None:
        super().__init__()
        self.engine = engine
        engine.subscribe(self._on_event)

    def _on_event(self, ev) -> None:
        self.event.emit(ev.kind, ev.node_id, _convert(ev.kind, ev.data))

    @Slot(int, object, object)
    def run(self, number: int, doc: dict, token: CancelToken) -> None:
        try:
            wf = self.engine.prepare(doc)
            result = self.engine.executor.run(wf.data, None, cancel=token)
            status = "cancelled" if token.cancelled and not result.ok else result.status
            info = {"seconds": result.seconds, "executed": list(result.executed),
                    "cached": list(result.cached), "failures": [str(f) for f in result.failures],
                    "problems": [str(p) for p in result.problems]}
        except Exception as e:  # noqa: BLE001 - reported to the user
            status = "cancelled" if token.cancelled else "failed"
            info = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        self.finished.emit(number, status, info)

    @Slot(int, object, object)
    def run_sweep(self, number: int, sweep: Sweep, token: CancelToken) -> None:
        """Run a sweep on this engine: the jobs already done are reported (``jobs_skipped``),
        the others run one by one (``job_finished`` each), then the grid is drawn."""
        def emit(ev: dict) -> None:
            self.sweep_event.emit(number, ev)

        try:
            worker = SweepWorker(sweep.doc, engine=self.engine)
            emit({"event": "jobs_skipped", "records": list(sweep.resume())})
            report = sweep.run(lambda todo, on_result: worker.run_all(todo, sweep.out_dir, on_result, token),
                               emit=emit, backend="the editor's engine")
            try:
                grid = str(sweep.draw_grid())
            except ValueError:  # no job made an image, or more than three inputs
                grid = None
            status = "cancelled" if report.cancelled else ("failed" if report.failed else "ok")
            info = {"sweep": True, "out": str(sweep.out_dir), "grid": grid,  # seconds: the queue's own
                    "manifest": str(sweep.manifest.path), "done": report.done, "failed": report.failed,
                    "skipped": report.skipped, "cancelled": report.cancelled,
                    "failures": [f"job {r['job']} ({r['values']}): {r.get('error', '')}"
                                 for r in report.records if r["status"] != "done"]}
        except Exception as e:  # noqa: BLE001 - reported to the user (a model mismatch, a full disk)
            status = "cancelled" if token.cancelled else "failed"
            info = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(), "sweep": True}
        self.finished.emit(number, status, info)


@dataclass
class Job:
    """One queued run of a copy of the document."""

    number: int
    label: str
    doc: dict
    status: str = "pending"          # pending, running, done, failed, cancelled
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    seconds: float | None = None
    info: dict = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)  # image files written by this job
    token: CancelToken | None = None
    tag: dict = field(default_factory=dict)           # e.g. {"sweep": name, "titles": {...}}
    sweep: Sweep | None = None                        # a sweep job: the planned sweep
    progress: tuple[int, int] | None = None           # a sweep's (jobs finished, jobs to run)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.time() - self.started


def _published(path: str, out_dir: Path) -> str:
    """Where a file a sweep job writes in its staging folder (``OUT/<job>.partial/``) lies once
    the job is published (``OUT/<job>/``). (A sweep job's outputs are those its manifest
    records; this is for the canvas' image viewer.)"""
    try:
        rel = Path(path).resolve().relative_to(out_dir)
    except ValueError:
        return path
    if not rel.parts or not rel.parts[0].endswith(STAGING_SUFFIX):
        return path
    return str(out_dir / rel.parts[0][: -len(STAGING_SUFFIX)] / Path(*rel.parts[1:]))


#: engine statuses -> queue statuses
_STATUS = {"ok": "done", "failed": "failed", "cancelled": "cancelled", "invalid": "failed"}


class RunController(QObject):
    """The run queue. ``submit(doc)`` queues a copy; one run at a time; every job is kept (with
    its status) for the queue panel; one job can be cancelled without touching the others."""

    event = Signal(str, object, object)
    runStarted = Signal(int)
    runFinished = Signal(int, str, object)
    queueChanged = Signal(int)
    #: a job was added, started, finished or cancelled
    jobsChanged = Signal()
    #: an event of a sweep job: (job number, {"event": "jobs_skipped" | "sweep_started" |
    #: "job_finished" | "sweep_finished", ...}); records as in the sweep's manifest
    sweepEvent = Signal(int, object)
    _start = Signal(int, object, object)
    _start_sweep = Signal(int, object, object)

    def __init__(self, engine, parent=None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._thread = QThread(self)
        self._thread.setObjectName("nodegen-run")
        self._worker = _Worker(engine)
        self._worker.moveToThread(self._thread)
        self._start.connect(self._worker.run)
        self._start_sweep.connect(self._worker.run_sweep)
        self._worker.event.connect(self._on_event)
        self._worker.sweep_event.connect(self._on_sweep_event)
        self._worker.finished.connect(self._on_finished)
        self._thread.start()
        self._queue: deque[Job] = deque()
        self._numbers = itertools.count(1)
        self.jobs: dict[int, Job] = {}
        self.current: tuple[int, CancelToken] | None = None

    def validate(self, doc: dict):
        """The plan of a run of ``doc`` (validated as the run will see it: node migrations,
        models found by hash)."""
        try:
            data = self.engine.prepare(copy.deepcopy(doc)).data
        except (WorkflowError, ValueError) as e:
            return Plan([], [], [Problem(None, None, None, "invalid_document", str(e))])
        return plan(data, self.engine.registry, None, self.engine.env)

    @property
    def busy(self) -> bool:
        return self.current is not None

    @property
    def alive(self) -> bool:
        """The run thread is up (not yet shut down)."""
        return self._thread.isRunning()

    @property
    def running_job(self) -> Job | None:
        return self.jobs.get(self.current[0]) if self.current is not None else None

    def pending(self) -> int:
        return len(self._queue)

    def submit(self, doc: dict, label: str = "", tag: dict | None = None, first: bool = False) -> int:
        """Queue a run of ``doc``; ``first``: ahead of the queued ones (ComfyUI's Ctrl+Shift+Enter)."""
        number = next(self._numbers)
        return self._enqueue(Job(number, label or f"run {number}", copy.deepcopy(doc), tag=dict(tag or {})), first)

    def submit_sweep(self, sweep: Sweep, label: str, tag: dict | None = None) -> int:
        """Queue a planned sweep (:meth:`Sweep.prepare`) as one job."""
        return self._enqueue(Job(next(self._numbers), label, sweep.doc, tag=dict(tag or {}), sweep=sweep))

    def _enqueue(self, job: Job, first: bool = False) -> int:
        self.jobs[job.number] = job
        if first:
            self._queue.appendleft(job)
        else:
            self._queue.append(job)
        self.queueChanged.emit(len(self._queue))
        self.jobsChanged.emit()
        self._next()
        return job.number

    def cancel_job(self, number: int) -> bool:
        """Cancel one job: a pending one leaves the queue, the running one stops at its next
        check. The others are untouched."""
        job = self.jobs.get(number)
        if job is None or job.status not in ("pending", "running"):
            return False
        if job.status == "pending":
            self._queue.remove(job)
            job.status = "cancelled"
            self.queueChanged.emit(len(self._queue))
        elif job.token is not None:
            job.token.cancel()
        self.jobsChanged.emit()
        return True

    def cancel_current(self) -> bool:
        return self.current is not None and self.cancel_job(self.current[0])

    def cancel(self) -> None:
        """Cancel the running graph and drop the queued ones."""
        for job in list(self._queue):
            job.status = "cancelled"
        self._queue.clear()
        self.queueChanged.emit(0)
        if self.current is not None:
            self.current[1].cancel()
        self.jobsChanged.emit()

    def _next(self) -> None:
        if self.current is not None or not self._queue:
            return
        job = self._queue.popleft()
        job.token = CancelToken()
        job.status, job.started = "running", time.time()
        self.current = (job.number, job.token)
        self.queueChanged.emit(len(self._queue))
        self.jobsChanged.emit()
        self.runStarted.emit(job.number)
        if job.sweep is not None:
            self._start_sweep.emit(job.number, job.sweep, job.token)
        else:
            self._start.emit(job.number, job.doc, job.token)

    def _on_event(self, kind: str, nid, data: dict) -> None:
        job = self.running_job
        if job is not None and job.sweep is not None and data.get("paths"):
            data = {**data, "paths": [_published(p, job.sweep.out_dir) for p in data["paths"]]}
        elif job is not None and kind in ("node_finished", "node_cached"):  # cached: its files stand
            job.outputs.extend(p for p in data.get("paths") or [] if p not in job.outputs)
        self.event.emit(kind, nid, data)

    def _on_sweep_event(self, number: int, ev: dict) -> None:
        job = self.jobs.get(number)
        if job is not None and job.sweep is not None:
            out = job.sweep.out_dir
            records = ev.get("records", []) if ev["event"] == "jobs_skipped" else (
                [ev] if ev["event"] == "job_finished" else [])
            for rec in records:
                job.outputs.extend(str(out / f) for f in rec.get("files", []) if str(out / f) not in job.outputs)
            if ev["event"] == "sweep_started":
                job.progress = (0, ev["to_run"])
            elif ev["event"] == "job_finished":
                job.progress = (ev["finished"], ev["to_run"])
        self.sweepEvent.emit(number, ev)
        self.jobsChanged.emit()

    def _on_finished(self, number: int, status: str, info: dict) -> None:
        self.current = None
        job = self.jobs.get(number)
        if job is not None:
            job.status = _STATUS.get(status, "failed")
            job.seconds, job.info = info.get("seconds") or job.elapsed(), info
        self.runFinished.emit(number, status, info)
        self.jobsChanged.emit()
        self._next()

    def shutdown(self) -> None:
        self.cancel()
        self._thread.quit()
        self._thread.wait(10000)
