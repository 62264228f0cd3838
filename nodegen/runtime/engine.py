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

from nodegen.diffusion.preview_method import DEFAULT as DEFAULT_PREVIEW
from nodegen.diffusion.preview_method import ENV_VAR as PREVIEW_ENV
from nodegen.diffusion.preview_method import PREVIEW_METHODS, check_preview_method, preview_method_from_env
from nodegen.formats import open_any
from nodegen.kernel.cache import OutputCache
from nodegen.kernel.context import CancelToken
from nodegen.kernel.events import EventBus, Listener
from nodegen.kernel.executor import Executor, RunResult
from nodegen.kernel.plan import Plan, plan
from nodegen.kernel.registry import NodeRegistry, default_registry
from nodegen.kernel.workflow import Workflow
from nodegen.models.paths import ModelPaths, portable_name
from nodegen.runtime import image_paths
from nodegen.runtime.prepare import Prepared, Preparer

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
        #: The samplers' live previews (:mod:`nodegen.diffusion.previewer`): auto, taesd, latent2rgb
        #: or none; :attr:`preview_source` says who chose it ("default", NODEGEN_PREVIEW, "option",
        #: or whoever set it later, e.g. "settings").
        self.preview_method = DEFAULT_PREVIEW
        self.preview_source = "default"

    def resolve_file(self, kind: str | None, name: str) -> Path | None:
        if not isinstance(name, str) or not name:
            return None
        if kind in (None, "image", "input"):
            folder, bare = self._image_folder(portable_name(name))
            if folder is not None:  # ComfyUI's "x.png [output]": that folder only
                return image_paths.resolve_image(bare, [folder.resolve()], False)
            return image_paths.resolve_image(bare, self.image_folders(), self.allow_any_path)
        return self.paths.resolve(kind, name)

    def _image_folder(self, name: str) -> tuple[Path | None, str]:
        """ComfyUI's folder suffix on an image name (``x.png [output]``): the folder it names and
        the bare name; ``[input]`` is where images are looked up anyway."""
        for suffix, folder in ((" [output]", self.output_dir), (" [temp]", self.temp_dir),
                               (" [input]", None)):
            if name.endswith(suffix):
                return (Path(folder) if folder is not None else None), name[: -len(suffix)]
        return None, name

    def image_folders(self) -> list[Path]:
        return image_paths.allowed_folders(self.input_dir, self.workflow_dir, self.image_paths)

    def describe_files(self, kind: str | None) -> str:
        if kind in (None, "image", "input"):
            what = "input files" if kind == "input" else "images"
            return image_paths.describe(self.image_folders(), self.allow_any_path, what)
        return self.paths.describe(kind)

    def describe_missing(self, kind: str | None, name: str) -> str:
        """Where a missing file was looked for, plus the hash and size the workflow records for
        it (set by the model-hash hook in :meth:`Engine.prepare`)."""
        text = self.describe_files(kind)
        if kind not in (None, "image", "input"):
            text += self._nearest_models(kind, name)
        entry = self.missing_models.get((kind, name))
        if entry:
            from nodegen.sharing.models import describe_missing

            text += (f"; the workflow records it as {describe_missing(entry)}, and no file with "
                     f"that hash is in the model folders either")
        return text

    def _nearest_models(self, kind: str, name: str, shown: int = 5) -> str:
        """What to choose instead: the files of the same name in other sub-folders, else the
        first few models of that kind."""
        base = portable_name(name).rsplit("/", 1)[-1].lower()
        names = self.paths.list(kind)
        same = [n for n in names if n.rsplit("/", 1)[-1].lower() == base]
        if same:
            return f"; the same file name is at {', '.join(repr(n) for n in same)}: use that name"
        if not names:
            return ""
        more = f", ... ({len(names)} in all)" if len(names) > shown else ""
        return f"; the {kind} nodegen finds: {', '.join(repr(n) for n in names[:shown])}{more}"

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
                 allow_any_path: bool = False, preview: str | None = None) -> None:
        roots = [] if models is None else ([models] if isinstance(models, (str, os.PathLike)) else list(models))
        self.registry = registry or default_registry()
        self.env = Environment(ModelPaths(roots, extra_model_paths), output_dir, input_dir,
                               allow_any_path=allow_any_path)
        if preview is not None:
            self.set_preview_method(preview, "option")
        elif (from_env := preview_method_from_env()) is not None:
            self.set_preview_method(from_env, PREVIEW_ENV)
        self.events = EventBus()
        self.cache = OutputCache(cache_budgets)
        self._device_name = device
        self._model_manager = model_manager
        self._executor: Executor | None = None
        self._preparer = Preparer(self.registry, self.env)

    @property
    def preview_method(self) -> str:
        """How samplers preview their steps: auto (the default), taesd, latent2rgb or none."""
        return self.env.preview_method

    @staticmethod
    def preview_methods() -> dict[str, str]:
        """``{method: what it shows}`` of every preview method, the default first."""
        return dict(PREVIEW_METHODS)

    def set_preview_method(self, method: str, source: str = "set") -> None:
        """Choose the preview method (for the next sampler steps, also of a run going on); a
        ValueError names the methods when ``method`` is none of them."""
        self.env.preview_method = check_preview_method(method, "preview" if source == "option" else source)
        self.env.preview_source = source

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

    def subscribe(self, listener: Listener, *, previews: bool = True):
        """Listen to run events; ``previews=False`` for a listener that drops progress previews
        (the samplers then skip making them). Returns the function that unsubscribes."""
        return self.events.subscribe(listener, previews=previews)

    # -- workflows -----------------------------------------------------------------------
    @staticmethod
    def load(source: Any) -> Workflow:
        """A workflow from a path (nodegen JSON, ComfyUI JSON, PNG), a dict or a Workflow."""
        return open_any(source)

    def prepare(self, source: Any, set: dict | None = None) -> Workflow:  # noqa: A002
        """Load, check, apply node migrations and ``set`` overrides (``{"node.input": value}``),
        and find recorded models by hash. Returns a Workflow the caller owns."""
        return self._prepared(source, set).workflow()

    def _prepared(self, source: Any, sets: dict | None = None) -> Prepared:
        """The prepared document, shared with later runs (see :mod:`nodegen.runtime.prepare`):
        only what changed since the last run is checked again."""
        prepared = self._preparer.prepare(source, sets)
        if prepared.path is not None:
            self.env.workflow_dir = prepared.path.resolve().parent
        self.env.missing_models = prepared.missing_models
        return prepared

    def validate(self, source: Any, targets: list[str] | None = None, *,
                 keep_going: bool = False) -> Plan:
        """The run's plan; with ``keep_going``, targets whose part has errors are dropped
        (listed in ``plan.skipped``) and the valid ones planned."""
        return plan(self._prepared(source).data, self.registry, targets, self.env, drop_invalid=keep_going)

    def run(self, source: Any, *, set: dict | None = None, targets: list[str] | None = None,  # noqa: A002
            keep_going: bool = False, cancel: CancelToken | None = None) -> RunResult:
        """Run a workflow (path, dict or Workflow), incrementally. The document is checked only
        where it changed since the last run, and is read, never written, while the run lasts:
        a caller that edits a document from another thread passes a copy
        (:meth:`prepare` returns one)."""
        doc = self._prepared(source, set).data
        return self.executor.run(doc, targets, keep_going=keep_going, cancel=cancel)

    def schema(self, category: str | None = None) -> dict:
        return self.registry.schema(self.env, category)
