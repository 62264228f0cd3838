"""The images a sweep made, read from its output folder's ``sweep.jsonl`` (format: the writer,
:mod:`nodegen.sweep.manifest`).

Each finished job's line is ``{"job", "folder", "values", "files", "status", ...}`` with files
relative to the sweep folder. A job may have several lines (a failed attempt, then a resumed run
that finished it): the last line of a job counts. Only jobs whose last line says ``done`` give
images; a line cut by a crash is skipped, as the writer's own reader does. A file named by the
manifest must lie inside the sweep folder (a copied or edited manifest cannot make a reader open
files elsewhere).

Used by the LoadSweepImages node and the ``rank`` command (one reader for both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "sweep.jsonl"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class SweepFolderError(ValueError):
    """Not a sweep folder, or a manifest naming files it cannot have made."""


@dataclass(frozen=True)
class SweepImage:
    job: int
    values: dict[str, Any]
    file: str  # relative to the sweep folder, '/'-separated

    def label(self) -> str:
        """``KSampler.seed=5, Prompt.text=a star`` (or ``job 3`` when nothing was swept)."""
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or f"job {self.job}"


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST


def manifest_records(path: Path) -> list[dict]:
    """Every whole JSON object in a ``sweep.jsonl``, in order (a line cut by a crash is skipped).
    The one reader of the file: the sweep itself (resume, random values) and the images' readers."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_sweep_images(folder: str | Path) -> list[SweepImage]:
    """The images of the sweep in ``folder``, in job order (then file order within a job)."""
    folder = Path(folder)
    path = manifest_path(folder)
    try:
        records = manifest_records(path)
    except FileNotFoundError:
        raise SweepFolderError(f"{folder}: no {MANIFEST} here (not a sweep output folder)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepFolderError(f"{path}: cannot be read ({e})") from e
    last: dict[int, dict] = {}
    for rec in records:
        if isinstance(rec.get("job"), int):
            last[rec["job"]] = rec
    root = folder.resolve()
    out = []
    for job in sorted(last):
        rec = last[job]
        if rec.get("status") != "done":
            continue
        values = rec.get("values") if isinstance(rec.get("values"), dict) else {}
        for name in rec.get("files") or []:
            if isinstance(name, str) and name.lower().endswith(IMAGE_SUFFIXES):
                _check_inside(root, name, path)
                out.append(SweepImage(job, dict(values), name))
    return out


def _check_inside(root: Path, name: str, manifest: Path) -> None:
    p = Path(name)
    if p.is_absolute() or not (root / p).resolve().is_relative_to(root):
        raise SweepFolderError(f"{manifest}: file {name!r} lies outside the sweep folder")
