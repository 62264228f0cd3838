"""A sweep worker: one warm Engine that runs jobs of one workflow. Local worker processes and Ray
actors both wrap this class.

Before its first job a worker checks the workflow's recorded model hashes (its ``models``
section) against its own model folders: a missing or different file stops it with a message
naming the file, its hash and the node.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nodegen.runtime.jobs import collect, run_job


class ModelMismatch(RuntimeError):
    """This worker's model files are not the ones the workflow records."""


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
    """Runs jobs of ``doc`` (a workflow document) with one Engine kept for the whole sweep."""

    def __init__(self, doc: dict, *, base_dir: str | None = None, models: list | None = None,
                 input_dir: str = "input", device: str = "auto", threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from nodegen.runtime.engine import Engine

        self.doc = doc
        self.engine = Engine(models=models or None, input_dir=input_dir, device=device)
        if base_dir:
            self.engine.env.workflow_dir = Path(base_dir)
        self._checked = False

    def _check(self) -> None:
        if not self._checked:
            check_models(self.doc, self.engine)
            self._checked = True

    def run(self, values: dict, folder: str | Path) -> dict:
        """Run one job into ``folder`` (published atomically); returns the outcome as JSON."""
        self._check()
        outcome = run_job(self.engine, self.doc, folder, overrides=values)
        return outcome.to_json()

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
