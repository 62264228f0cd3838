"""The context a node's run function receives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


class RunEnvironment(Protocol):
    """Where a run's files are (the engine's :class:`~nodegen.runtime.engine.Environment`)."""

    paths: Any
    output_dir: str
    input_dir: str
    temp_dir: str

    def resolve_file(self, kind: str | None, name: str) -> Path | None: ...

    def describe_files(self, kind: str | None) -> str: ...


class ModelHost(Protocol):
    """What the kernel knows of the model manager (the library's
    :class:`~nodegen.models.manager.ModelManager`): the device it places weights on. Nodes use the
    rest of its API; the kernel only carries it."""

    device: Any

#: ``progress(node_id, step, total, preview)``: the executor's progress sink.
ProgressSink = Callable[[str, int, int, Any], None]


class Cancelled(Exception):
    """Raised inside a run when the user cancelled it."""


class CancelToken:
    """A thread-safe cancellation flag shared by the caller and the executor."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("run cancelled")

    def reset(self) -> None:
        self._event.clear()


@dataclass
class RunContext:
    """What a node sees of the engine while it runs.

    * ``device``: the compute device (``torch.device``), chosen by the engine.
    * ``progress(step, total, preview=None)``: report progress (and optionally a preview image,
      IMAGE layout or a PIL image); it also checks for cancellation. ``wants_preview`` says whether
      a preview would reach anyone (build one only then: it costs time on every step).
    * ``check_cancelled()``: raise :class:`Cancelled` if the user cancelled.
    * ``models``: the model manager; ``paths``: the model folders.
    * ``output_dir`` / ``input_dir`` / ``temp_dir``: where outputs go, where input images live.
    * ``workflow``: the workflow document being run (a dict), for provenance in saved files.
    * ``ui(**data)``: attach results for the editor (e.g. ``images=[paths]``) to this node.
    * ``node_id``, ``node_title``: which node is running.
    """

    node_id: str
    node_title: str
    device: torch.device | str | None
    models: ModelHost | None
    paths: Any
    output_dir: str
    input_dir: str
    temp_dir: str
    workflow: dict | None
    cancel: CancelToken
    _progress: ProgressSink | None = None
    ui_data: dict[str, Any] = field(default_factory=dict)
    #: The engine environment (file resolution); None in bare executors.
    env: RunEnvironment | None = None
    #: Whether a progress preview would reach a listener now (the executor's event bus has a
    #: subscriber that shows previews); None: assume so whenever there is a progress sink.
    _listening: Callable[[], bool] | None = None

    @property
    def wants_preview(self) -> bool:
        """True when a progress preview would reach a listener."""
        return self._progress is not None and (self._listening is None or self._listening())

    def resolve_file(self, kind: str, name: str) -> Path:
        """The path of a file input (``kind`` "image" or a model folder kind); raises
        FileNotFoundError with where it looked."""
        if self.env is None:
            p = Path(name).expanduser()
            if p.exists():
                return p
            raise FileNotFoundError(f"file {name!r} not found")
        path = self.env.resolve_file(kind, name)
        if path is None:
            raise FileNotFoundError(f"file {name!r} not found ({self.env.describe_files(kind)})")
        return path

    def progress(self, step: int, total: int, preview: Any = None) -> None:
        self.cancel.check()
        if self._progress is not None:
            self._progress(self.node_id, step, total, preview)

    def check_cancelled(self) -> None:
        self.cancel.check()

    def ui(self, **data: Any) -> None:
        for key, value in data.items():
            if isinstance(value, list) and isinstance(self.ui_data.get(key), list):
                self.ui_data[key].extend(value)
            else:
                self.ui_data[key] = value
