"""Events a run emits, delivered to subscribers in the thread that runs the graph.

Kinds: ``run_started``, ``node_started``, ``node_cached``, ``node_progress``, ``node_finished``,
``node_failed``, ``node_skipped``, ``run_finished``. ``data`` holds the details (see
:class:`nodegen.kernel.executor.Executor` for each kind's keys).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EVENT_KINDS = ("run_started", "node_started", "node_cached", "node_progress", "node_finished",
               "node_failed", "node_skipped", "run_finished")


@dataclass
class Event:
    kind: str
    run_id: int
    node_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        """A JSON-able view (tensors and images are left out)."""
        out = {"event": self.kind, "run_id": self.run_id, "time": round(self.time, 4)}
        if self.node_id is not None:
            out["node_id"] = self.node_id
        for k, v in self.data.items():
            if k == "preview":
                continue
            if isinstance(v, (str, int, float, bool)) or v is None:
                out[k] = v
            elif isinstance(v, (list, tuple, dict)) and (j := _jsonable(v)) is not _LEFT_OUT:
                out[k] = j
        return out


#: What :func:`_jsonable` returns for images and tensors (left out, not written as their repr).
_LEFT_OUT = object()


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        items = {str(k): _jsonable(x) for k, x in v.items()}
        return {k: x for k, x in items.items() if x is not _LEFT_OUT}
    if isinstance(v, (list, tuple)):
        kept = [x for x in map(_jsonable, v) if x is not _LEFT_OUT]
        return _LEFT_OUT if v and not kept else kept
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if _is_data(v):
        return _LEFT_OUT
    return str(v)


def _is_data(v: Any) -> bool:
    """A tensor, an array or a PIL image (duck-typed: the kernel imports neither torch nor PIL)."""
    return (hasattr(v, "shape") and hasattr(v, "dtype")) or (hasattr(v, "getpixel") and hasattr(v, "mode"))


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._blind: list[Listener] = []  # listeners that said they drop previews

    def subscribe(self, fn: Listener, *, previews: bool = True) -> Callable[[], None]:
        """Add a listener; returns the function that removes it. ``previews=False``: it drops the
        preview images of ``node_progress`` events (a job server, a progress bar), so nodes need
        not make them for it (:attr:`wants_previews`)."""
        self._listeners.append(fn)
        if not previews:
            self._blind.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)
            if fn in self._blind:
                self._blind.remove(fn)
        return unsubscribe

    @property
    def active(self) -> bool:
        return bool(self._listeners)

    @property
    def wants_previews(self) -> bool:
        """Whether a progress preview would reach a listener that shows it."""
        return len(self._listeners) > len(self._blind)

    def emit(self, event: Event) -> None:
        for fn in list(self._listeners):
            fn(event)
