"""The engine session: registry + cache + model manager + folders, living as long as the process.

::

    from nodegen.runtime.engine import Engine
    engine = Engine(models="~/models", output_dir="out")
    wf = engine.load("graphs/txt2img.json")
    result = engine.run(wf, set={"Sampler.seed": 3})   # incremental: re-runs only what changed
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from nodegen.formats import open_any
from nodegen.kernel.cache import OutputCache
from nodegen.kernel.context import CancelToken
from nodegen.kernel.events import EventBus, Listener
from nodegen.kernel.executor import Executor, RunResult
from nodegen.kernel.plan import Plan, plan
from nodegen.kernel.registry import NodeRegistry, default_registry
from nodegen.kernel.workflow import Workflow, WorkflowError
from nodegen.models.paths import ModelPaths
from nodegen.runtime import image_paths

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class Environment:
    """Where files are: model folders, the input folder (images), the output folder."""

    def __init__(self, paths: ModelPaths, output_dir: str | os.PathLike, input_dir: str | os.PathLike,
                 temp_dir: str | os.PathLike | None = None, *, allow_any_path: bool = False,
                 image_paths: list | None = None) -> None:
        self.paths = paths
        #: LoadImage may read any path (else only the folders of nodegen.runtime.image_paths).
        self.allow_any_path = allow_any_path
        self.image_paths: list[Path] = [Path(p) for p in (image_paths or [])] + list(
            getattr(paths, "image_paths", []))
        self.output_dir = str(output_dir)
        self.input_dir = str(input_dir)
        self.temp_dir = str(temp_dir or Path(tempfile.gettempdir()) / "nodegen")
        #: The folder of the workflow being run: relative image paths are also looked up there.
        self.workflow_dir: Path | None = None
        #: ``{(kind, name): models-section entry}`` of recorded models not found by name or hash.
        self.missing_models: dict[tuple[str, str], dict] = {}

    def resolve_file(self, kind: str | None, name: str) -> Path | None:
        if not isinstance(name, str) or not name:
            return None
        if kind in (None, "image", "input"):
            return image_paths.resolve_image(name, self.image_folders(), self.allow_any_path)
        return self.paths.resolve(kind, name)

    def image_folders(self) -> list[Path]:
        return image_paths.allowed_folders(self.input_dir, self.workflow_dir, self.image_paths)

    def describe_files(self, kind: str | None) -> str:
        if kind in (None, "image", "input"):
            return image_paths.describe(self.image_folders(), self.allow_any_path)
        return self.paths.describe(kind)

    def describe_missing(self, kind: str | None, name: str) -> str:
        """Where a missing file was looked for, plus the hash and size the workflow records for
        it (set by the model-hash hook in :meth:`Engine.prepare`)."""
        text = self.describe_files(kind)
        entry = self.missing_models.get((kind, name))
        if entry:
            from nodegen.sharing.models import describe_missing

            text += (f"; the workflow records it as {describe_missing(entry)}, and no file with "
                     f"that hash is in the model folders either")
        return text

    def list_images(self) -> list[str]:
        folder = Path(self.input_dir)
        if not folder.is_dir():
            return []
        return sorted(str(p.relative_to(folder)).replace(os.sep, "/") for p in folder.rglob("*")
                      if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def pick_device(device: str = "auto"):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is available")
    return torch.device(device)


class Engine:
    def __init__(self, *, models: str | os.PathLike | list | None = None, output_dir: str | os.PathLike = "output",
                 input_dir: str | os.PathLike = "input", device: str = "auto",
                 registry: NodeRegistry | None = None, cache_budgets: dict[str, int] | None = None,
                 model_manager: Any = None, extra_model_paths: dict | None = None,
                 allow_any_path: bool = False) -> None:
        roots = [] if models is None else ([models] if isinstance(models, (str, os.PathLike)) else list(models))
        self.registry = registry or default_registry()
        self.env = Environment(ModelPaths(roots, extra_model_paths), output_dir, input_dir,
                               allow_any_path=allow_any_path)
        self.events = EventBus()
        self.cache = OutputCache(cache_budgets)
        self._device_name = device
        self._model_manager = model_manager
        self._executor: Executor | None = None

    # -- lazily built parts (torch is imported only when something runs) --------------------
    @property
    def models(self):
        if self._model_manager is None:
            try:
                from nodegen.models.manager import ModelManager
            except ImportError:  # the manager ships with the diffusion library
                return None
            self._model_manager = ModelManager()
        return self._model_manager

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = Executor(self.registry, self.cache, env=self.env,
                                      device=pick_device(self._device_name), models=self.models,
                                      events=self.events)
        return self._executor

    def subscribe(self, listener: Listener):
        return self.events.subscribe(listener)

    # -- workflows -----------------------------------------------------------------------
    @staticmethod
    def load(source: Any) -> Workflow:
        """A workflow from a path (nodegen JSON, ComfyUI JSON, PNG), a dict or a Workflow."""
        return open_any(source)

    def prepare(self, source: Any, set: dict | None = None) -> Workflow:  # noqa: A002
        """Load, apply node migrations and ``set`` overrides (``{"node.input": value}``)."""
        wf = self.load(source)
        if wf.path is not None:
            self.env.workflow_dir = wf.path.resolve().parent
        from nodegen.kernel.migrations import migrate_nodes

        migrate_nodes(wf.data, self.registry)
        for key, value in (set or {}).items():
            try:
                wf.set(key, value)
            except (KeyError, TypeError, ValueError) as e:
                raise WorkflowError(f"cannot set {key!r}: {e.args[0] if e.args else e}") from e
        # models by hash: a model file missing by name is found by its recorded SHA-256 in the
        # model folders and the input is rewritten (wf.model_rewrites); those still missing are
        # kept so validation's missing_file message can give their hash and size.
        from nodegen.sharing.models import resolve_models

        wf.model_rewrites, self.env.missing_models = resolve_models(wf.data, self.registry, self.env)
        return wf

    def validate(self, source: Any, targets: list[str] | None = None) -> Plan:
        wf = self.prepare(source)
        return plan(wf.data, self.registry, targets, self.env)

    def run(self, source: Any, *, set: dict | None = None, targets: list[str] | None = None,  # noqa: A002
            keep_going: bool = False, cancel: CancelToken | None = None) -> RunResult:
        wf = self.prepare(source, set)
        return self.executor.run(wf.data, targets, keep_going=keep_going, cancel=cancel)

    def schema(self, category: str | None = None) -> dict:
        return self.registry.schema(self.env, category)
