"""One sweep, from its ``NODE.INPUT=SPEC`` items to its manifest: the jobs of a workflow in cache
order, those already done skipped, the rest run through the runner a front end gives, each
recorded in ``sweep.jsonl`` as it finishes, and the grid drawn.

Front ends choose only where the jobs run: the sweep command on local worker processes or Ray
actors (:mod:`nodegen.sweep`), the editor on its own engine in its run thread
(:meth:`~nodegen.runtime.sweep.worker.SweepWorker.run_all`). Job order, job folders, provenance,
resume, the manifest's lines and the events are this module's, so an output folder looks the same
whichever front end made it, and either can resume what the other started.

::

    sweep = Sweep.prepare(engine, "graphs/txt2img.json", ["Sampler.seed=1..4"], "out")
    worker = SweepWorker(sweep.doc, engine=engine)
    report = sweep.run(lambda todo, on_result: worker.run_all(todo, sweep.out_dir, on_result), grid=True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegen.runtime.jobs import read_record
from nodegen.runtime.sweep import grid as grid_image
from nodegen.runtime.sweep.axes import SweepError, make_axes
from nodegen.runtime.sweep.manifest import Manifest
from nodegen.runtime.sweep.plan import Axis, Job, expand_jobs
from nodegen.runtime.sweep.resume import provenance_matches, set_aside
from nodegen.runtime.sweep.worker import OnResult

Emit = Callable[[dict], None]
#: Runs the jobs still to do, calling ``on_result(job, outcome)`` as each finishes.
Execute = Callable[[list[Job], OnResult], None]


@dataclass
class SweepReport:
    jobs: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0  # jobs left unrun because the runner stopped early (the editor's cancel)
    seconds: float = 0.0
    grid: str | None = None
    records: list[dict] = field(default_factory=list)


def job_record(job: Job, outcome: dict, skipped: bool = False) -> dict:
    """The manifest line of a job: index, folder, values, files (relative to the output folder),
    seconds, status (done or failed), error and timings when there are."""
    rec = {"job": job.index, "folder": job.folder, "values": job.values,
           "files": [f"{job.folder}/{name}" for name in outcome.get("files", [])],
           "seconds": round(float(outcome.get("seconds") or 0.0), 4),
           "status": {"invalid": "failed"}.get(outcome.get("status", "failed"), outcome.get("status", "failed"))}
    if outcome.get("error"):
        rec["error"] = outcome["error"]
    if outcome.get("timings"):
        rec["timings"] = outcome["timings"]
    if skipped:
        rec["skipped"] = True
    return rec


@dataclass
class Sweep:
    """A planned sweep; :meth:`prepare` makes one, :meth:`run` runs it."""

    engine: Any
    wf: Any  # the prepared Workflow
    graph_key: str
    out_dir: Path
    axes: list[Axis]
    over_records: list[dict]
    jobs: list[Job]
    zipped: bool
    manifest: Manifest
    started: float = field(default_factory=time.perf_counter)
    todo: list[Job] | None = None  # set by resume()
    skipped: list[dict] = field(default_factory=list)

    @classmethod
    def prepare(cls, engine: Any, source: Any, overs: list[str], out_dir: str | os.PathLike, *,
                zipped: bool = False, graph_key: str | None = None) -> Sweep:
        """Plan the sweep of ``source`` (a path, a document or a Workflow) on ``engine``:
        resolve and expand ``overs``, order the jobs, and validate the first job's graph.
        ``graph_key`` names the graph in the manifest (default: the file's absolute path).
        Raises :class:`SweepError`."""
        from nodegen.kernel.workflow import WorkflowError

        started = time.perf_counter()
        is_path = isinstance(source, (str, os.PathLike))
        out = Path(out_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        try:
            wf = engine.prepare(source)
        except (WorkflowError, ValueError) as e:
            raise SweepError(f"{source if is_path else graph_key or 'the workflow'}: {e}") from e
        key = graph_key or (str(Path(source).resolve()) if is_path else str(wf.path or "untitled"))
        manifest = Manifest(out)
        axes, over_records = make_axes(engine, wf, overs, manifest, key)
        try:
            jobs = expand_jobs(axes, zipped)
        except ValueError as e:
            raise SweepError(str(e)) from e
        sweep = cls(engine, wf, key, out, axes, over_records, jobs, zipped, manifest, started)
        sweep._validate_first()
        return sweep

    @property
    def doc(self) -> dict:
        """The prepared document every job runs (with the job's values set)."""
        return self.wf.data

    @property
    def base_dir(self) -> str | None:
        """The workflow file's folder (relative image paths are looked up there), if it has one."""
        return str(self.wf.path.resolve().parent) if self.wf.path else None

    def _validate_first(self) -> None:
        from nodegen.kernel.plan import plan
        from nodegen.runtime.overrides import apply

        trial = self.wf.copy()
        apply(self.engine.registry, trial, self.jobs[0].values)
        p = plan(trial.data, self.engine.registry, None, self.engine.env)
        if p.problems:
            raise SweepError("the workflow is invalid:\n" + "\n".join(f"  - {x}" for x in p.problems))

    def resume(self) -> list[dict]:
        """Find the jobs already done (their records, marked ``skipped``); set aside folders
        that no longer match; :attr:`todo` is the rest. Run once; :meth:`run` calls it."""
        if self.todo is not None:
            return self.skipped
        self.todo = []
        for job in self.jobs:
            if provenance_matches(self.out_dir, job, self.axes):
                rec = read_record(self.out_dir / job.folder)
                self.skipped.append(job_record(job, rec.to_json() if rec else {}, skipped=True))
            else:
                set_aside(self.out_dir / job.folder)
                self.todo.append(job)
        return self.skipped

    def run(self, execute: Execute, *, emit: Emit | None = None, on_job: Callable[[dict], None] | None = None,
            backend: str = "", grid: bool = False) -> SweepReport:
        """Run the jobs not done yet through ``execute``; ``emit`` receives the JSON events
        (sweep_started, job_finished, sweep_finished), ``on_job`` each finished job's record.
        With ``grid``, draw ``grid.png`` (a ValueError when no job made an image)."""
        emit = emit or (lambda _ev: None)
        self.resume()
        todo = self.todo or []
        report = SweepReport(jobs=len(self.jobs), skipped=len(self.skipped), records=list(self.skipped))
        self.manifest.append({"event": "sweep", "graph": self.graph_key, "over": self.over_records,
                              "zip": self.zipped, "jobs": len(self.jobs), "started": time.time()})
        emit({"event": "sweep_started", "jobs": len(self.jobs), "to_run": len(todo), "skipped": report.skipped,
              "backend": backend, "out": str(self.out_dir)})

        def on_result(job: Job, outcome: dict) -> None:
            rec = job_record(job, outcome)
            self.manifest.append(rec)
            report.records.append(rec)
            report.done += rec["status"] == "done"
            report.failed += rec["status"] != "done"
            emit({"event": "job_finished", **rec, "finished": report.done + report.failed, "to_run": len(todo)})
            if on_job is not None:
                on_job(rec)

        try:
            if todo:
                execute(todo, on_result)
        finally:
            self.manifest.close()
        report.cancelled = len(todo) - report.done - report.failed
        if grid:
            report.grid = str(self.draw_grid())
        report.seconds = time.perf_counter() - self.started
        finished = {"event": "sweep_finished", "jobs": report.jobs, "done": report.done, "failed": report.failed,
                    "skipped": report.skipped, "seconds": round(report.seconds, 3), "grid": report.grid,
                    "manifest": str(self.manifest.path)}
        if report.cancelled:
            finished["cancelled"] = report.cancelled
        emit(finished)
        return report

    def draw_grid(self) -> Path:
        """``grid.png`` in the output folder, from the jobs' published folders."""
        return grid_image.draw(self.out_dir, self.axes, self.jobs)
