"""The sweep command's driver: plan the sweep with the shared core
(:class:`nodegen.runtime.sweep.session.Sweep`: job order, resume, manifest, grid), and run the jobs
still to do on the chosen workers: in this process, on N local worker processes
(:mod:`nodegen.sweep.local`) or on Ray actors (:mod:`nodegen.sweep.ray_backend`).

Each job writes into ``OUT/<index>-<hash of its values>/`` (published atomically, see
:mod:`nodegen.runtime.jobs`), its images carrying their provenance (the values used). Running the
same command again resumes: a job whose folder holds its files with matching provenance is
skipped; the values drawn for ``random:N`` are taken from the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegen.runtime.sweep.axes import SweepError
from nodegen.runtime.sweep.plan import Job
from nodegen.runtime.sweep.session import Emit, Sweep, SweepReport
from nodegen.runtime.sweep.worker import OnResult

__all__ = ["SweepError", "SweepOptions", "SweepReport", "run_sweep"]


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


def _planning_engine(opts: SweepOptions):
    from nodegen.runtime.engine import Engine

    return Engine(models=opts.models or None, input_dir=opts.input_dir, output_dir=opts.out, device="cpu")


def run_sweep(opts: SweepOptions, emit: Emit | None = None,
              on_job: Callable[[dict, Any], None] | None = None) -> SweepReport:
    """Run (or resume) a sweep; ``emit`` receives the JSON events, ``on_job(record, backend)`` is
    called after each finished job."""
    sweep = Sweep.prepare(_planning_engine(opts), opts.graph, opts.overs, opts.out, zipped=opts.zipped)
    worker_args = {"doc": sweep.doc, "base_dir": sweep.base_dir,
                   "models": [str(Path(m).resolve()) for m in opts.models],
                   "input_dir": str(Path(opts.input_dir).resolve()), "device": opts.device,
                   "threads": opts.threads}
    backend_box: dict[str, Any] = {}

    def execute(todo: list[Job], on_result: OnResult) -> None:
        _run_backend(opts, worker_args, todo, sweep.out_dir, on_result, backend_box)

    return sweep.run(execute, emit=emit, grid=opts.grid,
                     on_job=None if on_job is None else (lambda rec: on_job(rec, backend_box.get("backend"))),
                     backend=f"ray ({opts.ray})" if opts.ray else f"{opts.workers or 1} local worker(s)")


def _run_backend(opts: SweepOptions, worker_args: dict, todo: list[Job], out_dir: Path, on_result: OnResult,
                 backend_box: dict) -> None:
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
