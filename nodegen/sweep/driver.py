"""The sweep driver: expand ``--over`` specs into jobs, skip the ones already done, run the rest on
the chosen workers, record each in ``sweep.jsonl``, and draw the grid.

Each job writes into ``OUT/<index>-<hash of its values>/`` (published atomically, see
:mod:`nodegen.runtime.jobs`), its images carrying their provenance (the values used). Running the
same command again resumes: a job whose folder holds its files with matching provenance is
skipped; the values drawn for ``random:N`` are taken from the manifest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegen.runtime.jobs import read_record
from nodegen.runtime.sweep_specs import SpecError, expand, parse_over
from nodegen.sweep.manifest import Manifest
from nodegen.sweep.plan import Axis, Job, expand_jobs, run_order

Emit = Callable[[dict], None]


class SweepError(ValueError):
    """A sweep that cannot start (bad spec, invalid graph): a usage error."""


@dataclass
class SweepOptions:
    graph: str
    overs: list[str]
    zipped: bool = False
    out: str = "output"
    workers: int | None = None
    ray: str | None = None
    grid: bool = False
    models: list[str] = field(default_factory=list)
    input_dir: str = "input"
    device: str = "auto"
    threads: int | None = None
    ray_cpus: int | None = None
    ray_gpus: float | None = None  # GPUs (or a fraction) per Ray actor; default 1 when the cluster has GPUs


@dataclass
class SweepReport:
    jobs: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    grid: str | None = None
    records: list[dict] = field(default_factory=list)


def _planning_engine(opts: SweepOptions):
    from nodegen.runtime.engine import Engine

    return Engine(models=opts.models or None, input_dir=opts.input_dir, output_dir=opts.out, device="cpu")


def make_axes(engine, wf, overs: list[str], manifest: Manifest, graph_key: str) -> tuple[list[Axis], list[dict]]:
    from nodegen.runtime.overrides import OverrideError, parse_text, resolve

    order = {nid: i for i, nid in enumerate(run_order(wf.data))}
    axes: list[Axis] = []
    records: list[dict] = []
    seen: dict[tuple[str, str], str] = {}
    for item in overs:
        try:
            key, spec = parse_over(item)
            target = resolve(engine.registry, wf, key)
        except (SpecError, OverrideError) as e:
            raise SweepError(f"--over {item!r}: {str(e).split(': ', 1)[-1]}") from e
        if (target.node_id, target.input) in seen:
            raise SweepError(f"--over {item!r}: {seen[(target.node_id, target.input)]} already sweeps this input")
        seen[(target.node_id, target.input)] = key
        recorded = manifest.recorded_values(graph_key, key, spec) if spec.strip().startswith("random:") else None
        try:
            texts = recorded if recorded is not None else expand(spec)
        except SpecError as e:
            raise SweepError(f"--over {item!r}: {e}") from e
        values = [parse_text(str(t), target.spec) for t in texts]
        if target.spec is not None:
            for v in values:
                bad = target.spec.check_value(v, engine.env)
                if bad is not None:
                    raise SweepError(f"--over {item!r}: node {target.node_id}, input {target.input!r}: {bad[1]}")
        axes.append(Axis(key, target.node_id, target.input, tuple(values), order.get(target.node_id, 0)))
        records.append({"key": key, "spec": spec, "values": [str(t) for t in texts]})
    return axes, records


def provenance_matches(out_dir: Path, job: Job, axes: list[Axis]) -> bool:
    """The job's folder is published, holds its files, and its images record the job's values."""
    from nodegen.formats.png import PngWorkflowError, read_values

    folder = out_dir / job.folder
    record = read_record(folder)
    if record is None or record.status != "done":
        return False
    paths = [folder / name for name in record.files]
    if not all(p.is_file() for p in paths):
        return False
    for p in paths:
        if p.suffix.lower() != ".png":
            continue
        try:
            values = read_values(p) or {}
        except PngWorkflowError:
            return False
        inputs = values.get("inputs", {})
        for a in axes:
            if inputs.get(a.node_id, {}).get(a.input) != job.values[a.key]:
                return False
    return True


def run_sweep(opts: SweepOptions, emit: Emit | None = None,
              on_job: Callable[[dict, Any], None] | None = None) -> SweepReport:
    """Run (or resume) a sweep; ``emit`` receives the JSON events, ``on_job(record, backend)`` is
    called after each finished job."""
    from nodegen.kernel.plan import plan
    from nodegen.kernel.workflow import WorkflowError

    emit = emit or (lambda _ev: None)
    t0 = time.perf_counter()
    out_dir = Path(opts.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = _planning_engine(opts)
    try:
        wf = engine.prepare(opts.graph)
    except (WorkflowError, ValueError) as e:
        raise SweepError(f"{opts.graph}: {e}") from e
    graph_key = str(Path(opts.graph).resolve())
    manifest = Manifest(out_dir)
    axes, over_records = make_axes(engine, wf, opts.overs, manifest, graph_key)
    try:
        jobs = expand_jobs(axes, opts.zipped)
    except ValueError as e:
        raise SweepError(str(e)) from e
    _validate_first(engine, wf, jobs[0], plan)

    report = SweepReport(jobs=len(jobs))
    todo = []
    for job in jobs:
        if provenance_matches(out_dir, job, axes):
            report.skipped += 1
            rec = read_record(out_dir / job.folder)
            report.records.append(_record(job, rec.to_json() if rec else {}, skipped=True))
        else:
            _set_aside(out_dir / job.folder)
            todo.append(job)
    worker_args = {"doc": wf.data, "base_dir": str(wf.path.resolve().parent) if wf.path else None,
                   "models": [str(Path(m).resolve()) for m in opts.models],
                   "input_dir": str(Path(opts.input_dir).resolve()), "device": opts.device,
                   "threads": opts.threads}
    backend_name = f"ray ({opts.ray})" if opts.ray else f"{opts.workers or 1} local worker(s)"
    manifest.append({"event": "sweep", "graph": graph_key, "over": over_records, "zip": opts.zipped,
                     "jobs": len(jobs), "started": time.time()})
    emit({"event": "sweep_started", "jobs": len(jobs), "to_run": len(todo), "skipped": report.skipped,
          "backend": backend_name, "out": str(out_dir)})
    backend_box: dict[str, Any] = {}

    def on_result(job: Job, outcome: dict) -> None:
        rec = _record(job, outcome)
        manifest.append(rec)
        report.records.append(rec)
        report.done += rec["status"] == "done"
        report.failed += rec["status"] != "done"
        emit({"event": "job_finished", **rec, "finished": report.done + report.failed, "to_run": len(todo)})
        if on_job is not None:
            on_job(rec, backend_box.get("backend"))

    try:
        if todo:
            _run_backend(opts, worker_args, todo, out_dir, on_result, backend_box)
    finally:
        manifest.close()
    if opts.grid:
        report.grid = str(_grid(out_dir, axes, jobs))
    report.seconds = time.perf_counter() - t0
    emit({"event": "sweep_finished", "jobs": report.jobs, "done": report.done, "failed": report.failed,
          "skipped": report.skipped, "seconds": round(report.seconds, 3), "grid": report.grid,
          "manifest": str(manifest.path)})
    return report


def _set_aside(folder: Path) -> None:
    """A published folder that no longer matches (a file deleted or edited) is renamed, never
    overwritten; a failed attempt's folder is removed (the job runs again)."""
    record = read_record(folder)
    if record is None:
        return
    if record.status != "done":
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        return
    folder.rename(folder.with_name(f"{folder.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}"))


def _record(job: Job, outcome: dict, skipped: bool = False) -> dict:
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


def _validate_first(engine, wf, job: Job, plan) -> None:
    from nodegen.runtime.overrides import apply

    trial = wf.copy()
    apply(engine.registry, trial, job.values)
    p = plan(trial.data, engine.registry, None, engine.env)
    if p.problems:
        raise SweepError("the workflow is invalid:\n" + "\n".join(f"  - {x}" for x in p.problems))


def _run_backend(opts, worker_args, todo, out_dir, on_result, backend_box) -> None:
    if opts.ray:
        from nodegen.sweep.ray_backend import RaySweep, connect

        connect(opts.ray, opts.ray_cpus)
        backend = RaySweep(worker_args, workers=opts.workers, gpus_per_worker=opts.ray_gpus)
        backend_box["backend"] = backend
        try:
            backend.run(todo, out_dir, on_result)
        finally:
            backend.shutdown()
        return
    from nodegen.sweep.local import default_workers, run_in_process, run_in_processes

    workers = opts.workers or default_workers()
    if workers <= 1:
        run_in_process(worker_args, todo, out_dir, on_result)
    else:
        run_in_processes(worker_args, todo, out_dir, on_result, workers)


def _grid(out_dir: Path, axes: list[Axis], jobs: list[Job]) -> Path:
    from nodegen.sweep.grid import build_grid, save_atomic

    ordered = sorted(axes, key=lambda a: a.position)
    cells = {}
    for job in jobs:
        rec = read_record(out_dir / job.folder)
        images = [n for n in (rec.files if rec and rec.status == "done" else []) if n.lower().endswith(".png")]
        key = tuple(job.values[a.key] for a in ordered)
        cells[key] = (out_dir / job.folder / images[0]) if images else None
    img = build_grid([(a.key, list(dict.fromkeys(a.values))) for a in ordered], cells)
    return save_atomic(img, out_dir / "grid.png")
