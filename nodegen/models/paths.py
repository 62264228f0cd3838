"""Model folders: where nodegen looks for the files users bring.

A models root holds one folder per kind (``checkpoints/``, ``vae/``, ``loras/``, ``controlnet/``,
``upscale_models/``, ``style_models/``, ``embeddings/``, ``ipadapter/``). Roots come from, in order: ``--models DIR`` (given to
:class:`ModelPaths`), the ``NODEGEN_MODELS`` environment variable (several separated by
``os.pathsep``), and the config file (``NODEGEN_CONFIG`` or ``~/.config/nodegen/config.json``)::

    {"models": ["/data/models"],
     "extra_paths": {"checkpoints": ["/opt/ComfyUI/models/checkpoints"],
                     "loras": ["~/sd/loras"]}}

``extra_paths`` lets users point at the folders they already have for other tools. Built-in
models shipped with the package (the demo model) are registered with :func:`register_builtin`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

KINDS = ("checkpoints", "vae", "loras", "controlnet", "upscale_models", "style_models", "embeddings", "ipadapter")
#: Folder names other tools use for the same kinds (ComfyUI, A1111), also searched in each root.
ALIASES = {
    "checkpoints": ("Stable-diffusion",),
    "loras": ("Lora", "lora"),
    "controlnet": ("ControlNet",),
    "upscale_models": ("ESRGAN", "RealESRGAN"),
    "vae": ("VAE",),
    "ipadapter": ("ip_adapter", "IP-Adapter"),
}
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft")

_BUILTIN: dict[str, dict[str, Path]] = {}


def portable_name(name: str) -> str:
    """A model or image name as this system writes it: workflows made on Windows name files in
    subfolders with backslashes (``SDXL\\model.safetensors``)."""
    return name.replace("\\", "/") if os.sep == "/" else name


def register_builtin(kind: str, name: str, path: str | os.PathLike) -> None:
    """Offer a model shipped with a package (e.g. the demo model) under ``name``."""
    _BUILTIN.setdefault(kind, {})[name] = Path(path)


def builtin_models(kind: str) -> dict[str, Path]:
    return dict(_BUILTIN.get(kind, {}))


def config_file() -> Path:
    env = os.environ.get("NODEGEN_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "nodegen" / "config.json"


def _read_config(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read nodegen config file {path}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"nodegen config file {path} must hold a JSON object")
    return data


class ModelPaths:
    """The model folders in effect for a session."""

    def __init__(self, roots: Iterable[str | os.PathLike] = (), extra: dict | None = None,
                 *, use_env: bool = True, use_config: bool = True) -> None:
        self.roots: list[Path] = [Path(r).expanduser() for r in roots]
        self.extra: dict[str, list[Path]] = {}
        if use_env and os.environ.get("NODEGEN_MODELS"):
            self.roots += [Path(p).expanduser() for p in os.environ["NODEGEN_MODELS"].split(os.pathsep) if p]
        if use_config:
            cfg = _read_config(config_file())
            self.roots += [Path(p).expanduser() for p in cfg.get("models", [])]
            for kind, dirs in (cfg.get("extra_paths") or {}).items():
                self.extra.setdefault(kind, []).extend(Path(d).expanduser() for d in dirs)
        for kind, dirs in (extra or {}).items():
            self.extra.setdefault(kind, []).extend(Path(d).expanduser() for d in dirs)

    def folders(self, kind: str) -> list[Path]:
        """Existing folders searched for ``kind``, in priority order."""
        out: list[Path] = []
        for root in self.roots:
            for name in (kind, *ALIASES.get(kind, ())):
                p = root / name
                if p.is_dir() and p not in out:
                    out.append(p)
        for p in self.extra.get(kind, []):
            if p.is_dir() and p not in out:
                out.append(p)
        return out

    def list(self, kind: str) -> list[str]:
        """Model names for ``kind``: paths relative to their folder (``sub/dir/file.safetensors``),
        then the built-in models, de-duplicated, sorted within each group."""
        names: list[str] = []
        seen: set[str] = set()
        for folder in self.folders(kind):
            found = []
            for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in filenames:
                    if fn.lower().endswith(MODEL_EXTENSIONS):
                        rel = os.path.relpath(os.path.join(dirpath, fn), folder).replace(os.sep, "/")
                        found.append(rel)
                # diffusers-format folders count as one model
                if "model_index.json" in filenames and dirpath != str(folder):
                    rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
                    found = [f for f in found if not f.startswith(rel + "/")]
                    found.append(rel)
                    dirnames[:] = []
            for rel in sorted(found):
                if rel not in seen:
                    seen.add(rel)
                    names.append(rel)
        for name in sorted(builtin_models(kind)):
            if name not in seen:
                seen.add(name)
                names.append(name)
        return names

    def resolve(self, kind: str, name: str) -> Path | None:
        """The file (or diffusers folder) for ``name``: a name from :meth:`list`, or a path."""
        if not name:
            return None
        name = portable_name(name)
        p = Path(name).expanduser()
        if p.is_absolute():
            return p if p.exists() else None
        for folder in self.folders(kind):
            cand = folder / name
            if cand.exists():
                return cand
        builtin = builtin_models(kind).get(name)
        if builtin is not None and builtin.exists():
            return builtin
        if p.exists():  # relative to the working directory
            return p.resolve()
        return None

    def describe(self, kind: str) -> str:
        folders = self.folders(kind)
        if not folders:
            return (f"no '{kind}' folder found (set --models DIR, NODEGEN_MODELS, or "
                    f"'models'/'extra_paths' in {config_file()})")
        return "searched " + ", ".join(str(f) for f in folders)


def _register_demo_model() -> None:
    """The built-in demo model and its Canny ControlNet (trained by the project, see
    tools/train_demo.py and tools/train_demo_controlnet.py) are always offered."""
    assets = Path(__file__).resolve().parents[1] / "assets" / "models"
    for kind, path in (("checkpoints", assets / "nodegen-demo-shapes.safetensors"),
                       ("controlnet", assets / "controlnet" / "nodegen-demo-canny.safetensors")):
        if path.is_file():
            register_builtin(kind, path.name, path)


_register_demo_model()
