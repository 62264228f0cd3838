"""A sweep worker: one warm Engine that runs jobs of one workflow, each into its own folder (see
:mod:`nodegen.runtime.jobs`), its images carrying the job's values as provenance. The sweep
command's local worker processes and Ray actors wrap this class; the editor gives it its own
engine, so a sweep shares the editor's cache and loaded models.

Before its first job a worker checks the workflow's recorded model hashes (its ``models``
section) against its own model folders: a missing or different file stops it with a message
naming the file, its hash and the node.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodegen.runtime.jobs import collect, run_job
from nodegen.runtime.sweep.plan import Job

#: Called with each finished job and its outcome (``JobOutcome.to_json()``).
OnResult = Callable[[Job, dict], None]


class ModelMismatch(RuntimeError):
    """This worker's model files are not the ones the workflow records."""


class WorkerFailed(RuntimeError):
    """A worker cannot go on (its models do not match, or it died): the sweep stops, keeping
    every job already finished."""


def failed_outcome(error: str) -> dict:
    """The outcome recorded for a job that raised instead of finishing."""
    return {"status": "failed", "files": [], "seconds": 0.0, "error": error}


def check_models(doc: dict, engine: Any) -> None:
    """Raise :class:`ModelMismatch` naming file, hash and node for each recorded model that is
    missing here or has another SHA-256."""
    from nodegen.sharing.hashing import sha256_file
    from nodegen.sharing.models import find_by_hash, model_inputs

    recorded = {(e.get("kind"), e.get("name")): e for e in doc.get("models") or []
                if isinstance(e, dict) and e.get("sha256")}
    if not recorded:
        return
    problems = []
    seen = set()
    for use in model_inputs(doc, engine.registry):
        entry = recorded.get((use.kind, use.name))
        if entry is None or (use.kind, use.name) in seen:
            continue
        seen.add((use.kind, use.name))
        where = f"node {use.node_id} ({use.title}), input {use.input!r}"
        path = engine.env.resolve_file(use.kind, use.name)
        if path is None:
            if find_by_hash(engine.env.paths, entry["sha256"], entry.get("size"), use.kind) is None:
                problems.append(f"{where}: {use.kind}/{use.name} (sha256 {entry['sha256']}) is not in this "
                                f"worker's model folders ({engine.env.describe_files(use.kind)})")
            continue
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            problems.append(f"{where}: {use.kind}/{use.name} here is {path} with sha256 {digest}, but the "
                            f"workflow records sha256 {entry['sha256']}")
    if problems:
        host = os.uname().nodename if hasattr(os, "uname") else "this machine"
        raise ModelMismatch(f"worker on {host}: the workflow's models do not match:\n  - " + "\n  - ".join(problems))


class SweepWorker:
    """Runs jobs of ``doc`` (a workflow document) with one Engine kept for the whole sweep: its
    own, built from ``models``, ``input_dir`` and ``device``, or ``engine`` when given (the
    editor's)."""

    def __init__(self, doc: dict, *, base_dir: str | None = None, models: list | None = None,
                 input_dir: str = "input", device: str = "auto", threads: int | None = None,
                 engine: Any = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        if engine is None:
            from nodegen.runtime.engine import Engine

            engine = Engine(models=models or None, input_dir=input_dir, device=device)
        self.doc = doc
        self.engine = engine
        if base_dir:
            self.engine.env.workflow_dir = Path(base_dir)
        self._checked = False

    def _check(self) -> None:
        if not self._checked:
            check_models(self.doc, self.engine)
            self._checked = True

    def run(self, values: dict, folder: str | Path, cancel: Any = None) -> dict:
        """Run one job into ``folder`` (published atomically); returns the outcome as JSON. A
        cancelled job (``cancel``, a CancelToken) leaves no folder behind."""
        self._check()
        outcome = run_job(self.engine, self.doc, folder, overrides=values, cancel=cancel)
        return outcome.to_json()

    def run_all(self, jobs: list[Job], out_dir: Path, on_result: OnResult, cancel: Any = None) -> None:
        """Run ``jobs`` one after another in this process, each into ``out_dir/<its folder>``. A
        job that raises is recorded as failed and the others go on; a model mismatch stops the
        sweep (:class:`WorkerFailed`); a cancel stops it after (or inside) the running job, which
        is then not reported."""
        for job in jobs:
            if cancel is not None and cancel.cancelled:
                return
            try:
                outcome = self.run(job.values, out_dir / job.folder, cancel)
            except ModelMismatch as e:
                raise WorkerFailed(str(e)) from None
            except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
                outcome = failed_outcome(f"{type(e).__name__}: {e}")
            stopped = cancel is not None and cancel.cancelled and outcome["status"] != "done"
            if outcome["status"] == "cancelled" or stopped:  # a job cut short is not a result
                return
            on_result(job, outcome)

    def run_remote(self, values: dict, folder_name: str) -> dict:
        """Run one job into a local scratch folder and return its outcome and file bytes (for a
        worker on another machine; the driver writes the files)."""
        self._check()
        scratch = Path(tempfile.mkdtemp(prefix="nodegen-job-"))
        try:
            outcome = run_job(self.engine, self.doc, scratch / folder_name, overrides=values)
            files = collect(scratch / folder_name, outcome) if not outcome.adopted else {}
            return {"outcome": outcome.to_json(), "files": files, "worker": f"{os.uname().nodename}:{os.getpid()}"}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
