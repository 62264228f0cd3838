"""Running sweep jobs on this machine: in this process (one worker), or on N worker processes,
each with its own warm Engine (one per GPU by default when the machine has several).

Jobs go out in runs of consecutive jobs (see :func:`nodegen.runtime.sweep.plan.chunks`) so each worker's
cache stays useful; results come back as each job finishes. Worker processes ignore Ctrl+C: the
driver stops them and keeps everything already finished.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import traceback
from pathlib import Path
from typing import Any

from nodegen.runtime.sweep.plan import Job, chunks
from nodegen.runtime.sweep.worker import ModelMismatch, OnResult, SweepWorker, WorkerFailed, failed_outcome

__all__ = ["WorkerFailed", "default_workers", "failed_outcome", "run_in_process", "run_in_processes"]


def cuda_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_in_process(worker_args: dict, jobs: list[Job], out_dir: Path, on_result: OnResult) -> None:
    SweepWorker(**worker_args).run_all(jobs, out_dir, on_result)


def _worker_main(worker_args: dict, tasks, results) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = SweepWorker(**worker_args)
    except Exception as e:  # noqa: BLE001 - sent to the driver
        results.put(("fatal", None, f"{type(e).__name__}: {e}"))
        return
    while True:
        chunk = tasks.get()
        if chunk is None:
            return
        for index, values, folder in chunk:
            try:
                outcome = worker.run(values, folder)
            except ModelMismatch as e:
                results.put(("fatal", index, str(e)))
                return
            except Exception as e:  # noqa: BLE001
                outcome = failed_outcome(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
            results.put(("done", index, outcome))


def run_in_processes(worker_args: dict, jobs: list[Job], out_dir: Path, on_result: OnResult,
                     workers: int) -> None:
    ctx = mp.get_context("spawn")
    if not worker_args.get("threads"):  # share the cores instead of each worker taking them all
        worker_args = {**worker_args, "threads": max(1, (os.cpu_count() or 1) // workers)}
    tasks, results = ctx.Queue(), ctx.Queue()
    for chunk in chunks(jobs, workers):
        tasks.put([(j.index, j.values, str(out_dir / j.folder)) for j in chunk])
    gpus = cuda_count() if worker_args.get("device", "auto") in ("auto", "cuda") else 0
    procs = []
    for _ in range(workers):
        tasks.put(None)  # one stop sign per worker, after every chunk
    for i in range(workers):
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus > 1:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        try:
            p = ctx.Process(target=_worker_main, args=(worker_args, tasks, results), daemon=True,
                            name=f"nodegen-sweep-{i}")
            p.start()
        finally:
            if gpus > 1:
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved
        procs.append(p)
    by_index = {j.index: j for j in jobs}
    remaining = set(by_index)
    try:
        while remaining:
            try:
                kind, index, payload = results.get(timeout=1.0)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs):
                    raise WorkerFailed(f"every worker process stopped with {len(remaining)} job(s) "
                                       f"left (exit codes {[p.exitcode for p in procs]})") from None
                continue
            if kind == "fatal":
                raise WorkerFailed(payload)
            remaining.discard(index)
            on_result(by_index[index], payload)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)


def default_workers() -> int:
    n = cuda_count()
    return n if n > 1 else 1


def describe(worker_args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in worker_args.items() if k != "doc")
