"""Resuming a sweep: which jobs are already done. A job is done when its folder is published
(:mod:`nodegen.runtime.jobs`), holds every file its record lists, and its images record the job's
values as their provenance. A folder that fails the test is set aside, never overwritten.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from nodegen.runtime.jobs import read_record
from nodegen.runtime.sweep.plan import Axis, Job


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


def set_aside(folder: Path) -> None:
    """A published folder that no longer matches (a file deleted or edited) is renamed, never
    overwritten; a failed attempt's folder is removed (the job runs again)."""
    record = read_record(folder)
    if record is None:
        return
    if record.status != "done":
        shutil.rmtree(folder, ignore_errors=True)
        return
    folder.rename(folder.with_name(f"{folder.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}"))
