"""One job: one run of a workflow whose files land in a folder of their own, published atomically.

The job server, the local sweep workers and the Ray actors all run work through :func:`run_job`:

* the run writes into ``FOLDER.partial`` (removed first if a crashed attempt left one);
* when it ends, a ``job.json`` record (status, files with their size and SHA-256, timings, error)
  is written beside the files and the staging folder is renamed to ``FOLDER`` in one step;
* a folder that holds a ``job.json`` whose files are all there with the recorded size and digest
  is a finished job: :func:`run_job` returns its record and runs nothing. So a job re-run after a
  crash (kill -9 between the rename and the caller recording it) writes no second copy of
  anything, and no half-written file is ever visible under ``FOLDER``.

Durability. The rename makes a published folder whole or absent after a killed process, with no
fsync at all. With ``sync=True`` (the default) the files, the record and both folders are also
fsynced before the rename returns, so the folder survives a power loss. With ``sync=False`` the
caller makes the folder durable later (the job server syncs the file system in the background)
and checks folders that may not have reached the disk with :func:`read_record` ``(verify=True)``:
after a power loss a folder may exist with a missing, empty or truncated file, and it then
counts as not finished (the job runs again).

Remote workers (Ray) run into a local folder, send the bytes back with :func:`collect`, and the
driver writes them with :func:`publish_files`, which follows the same staging-then-rename rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodegen.kernel.atomic import deferred_sync, sync_dir

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
    digests: dict[str, dict] = field(default_factory=dict)  # file -> {"size", "sha256"}

    def to_json(self) -> dict:
        out = dict(self.__dict__)  # the fields are JSON values: a shallow copy of each container
        for k in ("files", "problems"):
            out[k] = list(out[k])
        out["timings"] = dict(self.timings)
        out["digests"] = {name: dict(d) for name, d in self.digests.items()}
        return out

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


def read_record(folder: str | os.PathLike, *, verify: bool = False) -> JobOutcome | None:
    """The record of a published job folder, or None when the job has not finished. With
    ``verify``, also None when a file it lists is missing or differs from its recorded size
    and SHA-256 (what a power loss can leave of a folder that was not yet synced)."""
    path = Path(folder) / RECORD
    try:
        outcome = JobOutcome.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if verify and not _files_intact(Path(folder), outcome):
        return None
    return outcome


def digest(path: Path) -> dict:
    """Size and SHA-256 of a file (what :func:`read_record` checks)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def _files_intact(folder: Path, outcome: JobOutcome) -> bool:
    for name in outcome.files:
        path = folder / name
        want = outcome.digests.get(name)
        try:
            if want is None:  # a record written before digests were kept: the file must exist
                if not path.is_file():
                    return False
            elif path.stat().st_size != want.get("size") or digest(path) != want:
                return False
        except OSError:
            return False
    return True


def prepare_workflow(engine: Any, doc: Any, overrides: dict | None = None, targets: list | None = None,
                     *, from_text: bool = False):
    """Load ``doc``, apply ``NODE.INPUT`` overrides and resolve ``targets`` (ids or titles).
    Returns ``(workflow, target ids)``; raises :class:`JobInputError` naming the field at fault.

    The workflow's document shares its unchanged nodes with the engine's prepared copy (see
    :mod:`nodegen.runtime.prepare`: a document seen before is not checked or copied again); the
    nodes the overrides touch are copied first. Read it, never modify it."""
    from nodegen.kernel.workflow import Workflow, WorkflowError
    from nodegen.runtime.overrides import OverrideError, apply, resolve

    try:
        prepared = engine._prepared(doc)  # shared and read-only: nodes are copied before a change
    except (WorkflowError, ValueError) as e:
        raise JobInputError("workflow", str(e)) from e
    nodes = dict(prepared.data["nodes"])
    wf = Workflow({**prepared.data, "nodes": nodes}, prepared.path)
    wf.model_rewrites = prepared.model_rewrites  # type: ignore[attr-defined]
    try:
        for key in overrides or {}:
            nid = resolve(engine.registry, wf, key).node_id
            nodes[nid] = {**nodes[nid], "inputs": dict(nodes[nid].get("inputs") or {})}
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
            targets: list | None = None, cancel: Any = None, from_text: bool = False,
            sync: bool = True, first_attempt: bool = False) -> JobOutcome:
    """Run ``doc`` once with its outputs in ``folder`` (see the module doc). A folder already
    published (and intact) is adopted, not re-run. ``sync``: fsync the folder before returning
    (power-loss durable); otherwise it is only safe against a killed process. ``first_attempt``:
    the caller knows no attempt ran before (a job queued once, claimed once), so there is no
    published folder to look for; a leftover staging folder is still cleared."""
    folder = Path(folder)
    done, staging = _fresh_stage(folder) if first_attempt else _adopt_or_stage(folder)
    if done is not None:
        return done
    t0 = time.perf_counter()
    with deferred_sync():  # the nodes' own per-file fsyncs: publish() syncs the folder once
        outcome = _run_into(engine, doc, staging, overrides, targets, cancel, from_text)
    outcome.seconds = time.perf_counter() - t0
    if outcome.status == "cancelled":
        shutil.rmtree(staging, ignore_errors=True)
        return outcome
    publish(staging, folder, outcome, sync=sync)
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
    root = os.path.realpath(staging) + os.sep
    for p in result.paths:
        rp = os.path.realpath(p)
        if rp.startswith(root):
            files.append(Path(rp[len(root):]).as_posix())
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


def publish(staging: Path, folder: Path, outcome: JobOutcome, *, sync: bool = True) -> None:
    """Write the record (with each file's digest) into ``staging``, rename it to ``folder``
    (atomic); with ``sync``, fsync it all first and the parent folder after."""
    outcome.digests = {name: digest(staging / name) for name in outcome.files}
    (staging / RECORD).write_text(json.dumps(outcome.to_json(), default=str), encoding="utf-8")
    if sync:
        _fsync_tree(staging)
    if folder.exists():  # a leftover of a crashed attempt that is not an intact result
        shutil.rmtree(folder)
    os.rename(staging, folder)
    if sync:
        sync_dir(folder.parent)


def collect(folder: str | os.PathLike, outcome: JobOutcome) -> dict[str, bytes]:
    """The bytes of a job's files (for a remote worker to send back)."""
    return {name: (Path(folder) / name).read_bytes() for name in outcome.files}


def _adopt_or_stage(folder: Path) -> tuple[JobOutcome | None, Path]:
    """The record of ``folder`` when it is already published (adopted, nothing to do), else a fresh,
    empty staging folder for it."""
    done = read_record(folder, verify=True)
    if done is not None:
        done.adopted = True
        return done, folder
    staging = staging_for(folder)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return None, staging


def _fresh_stage(folder: Path) -> tuple[None, Path]:
    """A staging folder for a job that never ran: created at once (two fewer file-system lookups
    than :func:`_adopt_or_stage`), cleared only if something is unexpectedly there."""
    staging = staging_for(folder)
    try:
        staging.mkdir(parents=True)
    except FileExistsError:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    return None, staging


def publish_files(folder: str | os.PathLike, files: dict[str, bytes], outcome: JobOutcome, *,
                  sync: bool = True) -> JobOutcome:
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
    publish(staging, folder, outcome, sync=sync)
    return outcome
