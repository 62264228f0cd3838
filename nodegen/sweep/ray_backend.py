"""Running a sweep on Ray (``--ray local|auto|ADDRESS``; ``pip install "nodegen[ray]"``).

Each worker is a Ray actor holding a warm Engine (models loaded once per actor); it asks for a GPU
when the cluster has them. Ray schedules, restarts actors that die and retries the calls they had
in flight (``max_restarts``, ``max_task_retries``); nodegen writes no scheduler. Actors run a job
into a scratch folder and send the files back; the driver writes each job's folder once (staging,
then rename), keyed by the job's index, so a retried call can never write a second copy.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodegen.runtime.jobs import JobOutcome, publish_files
from nodegen.runtime.sweep.plan import Job, chunks
from nodegen.runtime.sweep.worker import WorkerFailed, failed_outcome

#: Calls kept in flight per actor (one running, one waiting: no idle gap between jobs).
IN_FLIGHT = 2


def connect(address: str, num_cpus: int | None = None) -> None:
    """``local``: start a Ray instance here; ``auto``: join the running cluster; else its address."""
    import ray

    if ray.is_initialized():
        return
    source_root = str(Path(__file__).resolve().parents[2])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        p for p in (source_root, os.environ.get("PYTHONPATH")) if p)}}
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=False)
    else:
        ray.init(address=address, runtime_env=runtime_env if address == "auto" else None,
                 log_to_driver=False)


def _actor_class(gpus_per_worker: float):
    import ray

    from nodegen.runtime.sweep.worker import SweepWorker

    return ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=3, max_task_retries=3)(SweepWorker)


class RaySweep:
    """Runs jobs on ``workers`` actors; :attr:`actors` is public so tests (and operators) can
    see them."""

    def __init__(self, worker_args: dict, workers: int | None = None, gpus_per_worker: float | None = None) -> None:
        import ray

        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if gpus else 0.0
        if workers is None:
            workers = int(gpus / gpus_per_worker) if gpus_per_worker else int(resources.get("CPU", 1))
        args = dict(worker_args)
        args.setdefault("threads", 1 if not gpus_per_worker else None)
        cls = _actor_class(gpus_per_worker)
        self.actors = [cls.remote(**args) for _ in range(max(1, workers))]
        #: ``host:pid`` of every worker process that returned a job (a restarted actor is a new one).
        self.workers_seen: set[str] = set()
        #: The actor (index in :attr:`actors`) that returned the latest result.
        self.last_slot: int | None = None

    def run(self, jobs: list[Job], out_dir: Path, on_result: Callable[[Job, dict], None]) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        pending_chunks = deque(chunks(jobs, len(self.actors)))
        own: dict[int, deque[Job]] = {i: deque() for i in range(len(self.actors))}
        in_flight: dict[Any, tuple[int, Job]] = {}
        retry: deque[Job] = deque()
        published: set[int] = set()
        dead: set[int] = set()

        def next_job(slot: int) -> Job | None:
            if retry:
                return retry.popleft()
            if not own[slot] and pending_chunks:
                own[slot].extend(pending_chunks.popleft())
            return own[slot].popleft() if own[slot] else None

        def feed(slot: int) -> None:
            while slot not in dead and sum(1 for s, _ in in_flight.values() if s == slot) < IN_FLIGHT:
                job = next_job(slot)
                if job is None:
                    return
                ref = self.actors[slot].run_remote.remote(job.values, job.folder)
                in_flight[ref] = (slot, job)

        for slot in range(len(self.actors)):
            feed(slot)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            slot, job = in_flight.pop(ready[0])
            try:
                reply = ray.get(ready[0])
            except RayTaskError as e:
                cause = getattr(e, "cause", None)
                if type(cause).__name__ == "ModelMismatch" or "ModelMismatch" in str(e):
                    raise WorkerFailed(str(cause or e).strip()) from None
                reply = {"outcome": failed_outcome(f"{type(cause or e).__name__}: {cause or e}"), "files": {}}
            except RayActorError:
                # the actor is gone for good (Ray's restarts used up): the others take its jobs
                dead.add(slot)
                retry.append(job)
                retry.extend(own[slot])
                own[slot].clear()
                if len(dead) == len(self.actors):
                    raise WorkerFailed("every Ray worker died; finished jobs are kept, run the "
                                       "same command again to resume") from None
            else:
                self.workers_seen.add(reply.get("worker", "?"))
                self.last_slot = slot
                if job.index not in published:
                    published.add(job.index)
                    outcome = JobOutcome.from_json(reply["outcome"])
                    if outcome.status != "cancelled":
                        outcome = publish_files(out_dir / job.folder, reply["files"], outcome)
                    on_result(job, outcome.to_json())
            for s in range(len(self.actors)):
                feed(s)

    def shutdown(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
