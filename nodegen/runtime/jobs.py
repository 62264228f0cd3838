"""One job: one run of a workflow whose files land in a folder of their own, published atomically.

The job server, the local sweep workers and the Ray actors all run work through :func:`run_job`:

* the run writes into ``FOLDER.partial`` (removed first if a crashed attempt left one);
* when it ends, every file and a ``job.json`` record (status, files, timings, error) are fsynced,
  and the staging folder is renamed to ``FOLDER`` in one step (then the parent is fsynced);
* a folder that already holds a ``job.json`` is a finished job: :func:`run_job` returns its record
  and runs nothing. So a job re-run after a crash (kill -9 between the rename and the caller
  recording it) writes no second copy of anything, and no half-written file is ever visible
  under ``FOLDER``.

Remote workers (Ray) run into a local folder, send the bytes back with :func:`collect`, and the
driver writes them with :func:`publish_files`, which follows the same staging-then-rename rule.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodegen.kernel.atomic import sync_dir

RECORD = "job.json"
STAGING_SUFFIX = ".partial"


@dataclass
class JobOutcome:
    """What a job did. ``status``: done, failed, cancelled or invalid."""

    status: str
    files: list[str] = field(default_factory=list)  # relative to the job folder
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    executed: int = 0
    cached: int = 0
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    adopted: bool = False  # True: the folder was already published; nothing ran

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobOutcome:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class JobInputError(ValueError):
    """The job's overrides or targets do not fit the workflow; ``field`` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def staging_for(folder: Path) -> Path:
    return folder.with_name(folder.name + STAGING_SUFFIX)


def read_record(folder: str | os.PathLike) -> JobOutcome | None:
    """The record of a published job folder, or None when the job has not finished."""
    path = Path(folder) / RECORD
    try:
        return JobOutcome.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def prepare_workflow(engine: Any, doc: Any, overrides: dict | None = None, targets: list | None = None,
                     *, from_text: bool = False):
    """Load ``doc``, apply ``NODE.INPUT`` overrides and resolve ``targets`` (ids or titles).
    Returns ``(workflow, target ids)``; raises :class:`JobInputError` naming the field at fault."""
    from nodegen.kernel.workflow import WorkflowError
    from nodegen.runtime.overrides import OverrideError, apply

    try:
        wf = engine.prepare(doc)
    except (WorkflowError, ValueError) as e:
        raise JobInputError("workflow", str(e)) from e
    try:
        apply(engine.registry, wf, dict(overrides or {}), from_text=from_text)
    except OverrideError as e:
        raise JobInputError(f"set.{e.key}", str(e)) from e
    ids = []
    for i, ref in enumerate(targets or []):
        try:
            ids.append(wf.resolve_node(str(ref)))
        except KeyError as e:
            raise JobInputError(f"targets.{i}", f"target {ref!r}: {e.args[0]}") from e
    return wf, ids or None


def run_job(engine: Any, doc: Any, folder: str | os.PathLike, *, overrides: dict | None = None,
            targets: list | None = None, cancel: Any = None, from_text: bool = False) -> JobOutcome:
    """Run ``doc`` once with its outputs in ``folder`` (see the module doc). A folder already
    published is adopted, not re-run."""
    folder = Path(folder)
    done, staging = _adopt_or_stage(folder)
    if done is not None:
        return done
    t0 = time.perf_counter()
    outcome = _run_into(engine, doc, staging, overrides, targets, cancel, from_text)
    outcome.seconds = time.perf_counter() - t0
    if outcome.status == "cancelled":
        shutil.rmtree(staging, ignore_errors=True)
        return outcome
    publish(staging, folder, outcome)
    return outcome


def _run_into(engine, doc, staging: Path, overrides, targets, cancel, from_text) -> JobOutcome:
    old_out = engine.env.output_dir
    engine.env.output_dir = str(staging)
    try:
        try:
            wf, target_ids = prepare_workflow(engine, doc, overrides, targets, from_text=from_text)
        except JobInputError as e:
            return JobOutcome("invalid", error=str(e), problems=[str(e)])
        result = engine.executor.run(wf.data, target_ids, cancel=cancel)
    finally:
        engine.env.output_dir = old_out
    if result.status == "invalid":
        problems = [str(p) for p in result.problems]
        return JobOutcome("invalid", error="the workflow is invalid: " + "; ".join(problems), problems=problems)
    files = []
    root = staging.resolve()
    for p in result.paths:
        rp = Path(p).resolve()
        if rp.is_relative_to(root):
            files.append(rp.relative_to(root).as_posix())
    status = {"ok": "done"}.get(result.status, result.status)
    error = "\n".join(str(f) for f in result.failures) or None
    return JobOutcome(status, files, timings=dict(result.timings), executed=len(result.executed),
                      cached=len(result.cached), error=error)


def _fsync_tree(folder: Path) -> None:
    for dirpath, _dirs, files in os.walk(folder):
        for fn in files:
            fd = os.open(os.path.join(dirpath, fn), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(Path(dirpath))


def publish(staging: Path, folder: Path, outcome: JobOutcome) -> None:
    """Write the record into ``staging``, fsync it all, rename it to ``folder`` (atomic)."""
    (staging / RECORD).write_text(json.dumps(outcome.to_json(), default=str), encoding="utf-8")
    _fsync_tree(staging)
    if folder.exists():  # an empty or record-less leftover of a crashed attempt: not a result
        shutil.rmtree(folder)
    os.rename(staging, folder)
    sync_dir(folder.parent)


def collect(folder: str | os.PathLike, outcome: JobOutcome) -> dict[str, bytes]:
    """The bytes of a job's files (for a remote worker to send back)."""
    return {name: (Path(folder) / name).read_bytes() for name in outcome.files}


def _adopt_or_stage(folder: Path) -> tuple[JobOutcome | None, Path]:
    """The record of ``folder`` when it is already published (adopted, nothing to do), else a fresh,
    empty staging folder for it."""
    done = read_record(folder)
    if done is not None:
        done.adopted = True
        return done, folder
    staging = staging_for(folder)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return None, staging


def publish_files(folder: str | os.PathLike, files: dict[str, bytes], outcome: JobOutcome) -> JobOutcome:
    """Publish files produced elsewhere into ``folder`` (staging then rename); a folder already
    published is kept as it is and its record returned."""
    folder = Path(folder)
    done, staging = _adopt_or_stage(folder)
    if done is not None:
        return done
    root = staging.resolve()
    for name, data in files.items():
        target = (staging / name).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"a worker sent a file outside its job folder: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    publish(staging, folder, outcome)
    return outcome
