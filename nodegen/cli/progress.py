"""Terminal progress for runs: one line per node, a step bar for long nodes; or JSON lines."""

from __future__ import annotations

import json
import sys
import time

from nodegen.kernel.events import Event
from nodegen.kernel.jsondoc import shorten


class TerminalProgress:
    def __init__(self, stream=None, total: int = 0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.index = 0
        self._bar_open = False
        self._last_bar = 0.0

    def __call__(self, ev: Event) -> None:
        k = ev.kind
        if k == "run_started":
            self.total = ev.data.get("nodes", 0)
        elif k == "node_started":
            self.index += 1
            self._line(f"[{self.index}/{self.total}] {shorten(ev.data['title'])} (node {ev.node_id}) ...")
        elif k == "node_cached":
            self.index += 1
            self._line(f"[{self.index}/{self.total}] {shorten(ev.data['title'])} (node {ev.node_id}): cached")
        elif k == "node_progress":
            self._bar(ev.data["step"], ev.data["total"])
        elif k == "node_finished":
            self._line(f"      done in {ev.data['seconds']:.2f}s")
        elif k == "node_failed":
            self._line(f"      FAILED: {ev.data['error']}")
        elif k == "node_skipped":
            self._line(f"      node {ev.node_id} skipped: {ev.data['reason']}")

    def _line(self, text: str) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self, step: int, total: int) -> None:
        total = max(total, 1)
        now = time.monotonic()
        if not self.tty:
            if step == total or now - self._last_bar > 2.0:
                self._line(f"      step {step}/{total}")
                self._last_bar = now
            return
        width = 30
        filled = int(width * step / total)
        self.stream.write(f"\r      [{'#' * filled}{'.' * (width - filled)}] {step}/{total}")
        self.stream.flush()
        self._bar_open = True
        if step >= total:
            self.stream.write("\n")
            self._bar_open = False


class JsonProgress:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, ev: Event) -> None:
        self.stream.write(json.dumps(ev.to_json(), default=str) + "\n")
        self.stream.flush()
