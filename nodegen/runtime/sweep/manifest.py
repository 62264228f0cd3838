"""``sweep.jsonl``: the sweep's record in its output folder, one JSON object per line.

The first line of each run is ``{"event": "sweep", "graph", "over": [{"key", "spec", "values"}],
"zip", "jobs", "started"}``; then one line per finished job: ``{"job", "folder", "values", "files",
"seconds", "status", "error"}`` (files relative to the output folder). Lines are appended and
fsynced one by one, so an interrupted sweep loses no finished job. A resumed sweep reuses the values
recorded for ``random:N`` specs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from nodegen.formats.sweep_results import MANIFEST as NAME
from nodegen.formats.sweep_results import manifest_records


class Manifest:
    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] | None = None

    def read(self) -> list[dict]:
        try:
            return manifest_records(self.path)
        except (OSError, UnicodeDecodeError):
            return []

    def recorded_values(self, graph: str, key: str, spec: str) -> list | None:
        """The values an earlier run of this sweep drew for ``key=spec`` (for random specs)."""
        for rec in reversed(self.read()):
            if rec.get("event") == "sweep" and rec.get("graph") == graph:
                for over in rec.get("over", []):
                    if over.get("key") == key and over.get("spec") == spec:
                        return over.get("values")
        return None

    def append(self, record: dict[str, Any]) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the sweep
        f = self._f
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
