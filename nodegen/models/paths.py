"""Model folders: where nodegen looks for the files users bring.

A models root holds one folder per kind (``checkpoints/``, ``vae/``, ``loras/``, ``controlnet/``,
``upscale_models/``, ``style_models/``, ``embeddings/``, ``ipadapter/``, ``diffusion_models/`` (or
ComfyUI's older ``unet/``) and ``text_encoders/`` (or ``clip/``) for SD3 / Flux files, ``clip/``
(full CLIPs for scoring and guidance), ``clip_vision/`` (CLIP image towers), ``vae_approx/`` (TAESD
tiny autoencoders, searched with the VAEs), ``diffusers/``
(diffusers-format model folders, ComfyUI's DiffusersLoader), ``gligen/`` (GLIGEN box models) and
``photomaker/`` (PhotoMaker id encoders)). Roots come
from, in order: ``--models DIR`` (given to
:class:`ModelPaths`), the ``NODEGEN_MODELS`` environment variable (several separated by
``os.pathsep``), and the config file (``NODEGEN_CONFIG`` or ``~/.config/nodegen/config.json``)::

    {"models": ["/data/models"],
     "extra_paths": {"checkpoints": ["/opt/ComfyUI/models/checkpoints"],
                     "loras": ["~/sd/loras"]}}

``extra_paths`` lets users point at the folders they already have for other tools. Built-in
models shipped with the package (the demo models) are registered with :func:`register_builtin`;
:func:`register_auto` offers a name that stands for the user's own file when one is found and for
a built-in model otherwise (``auto`` for style models: a VGG-19, else nodegen-demo-vgg).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

KINDS = ("checkpoints", "vae", "loras", "controlnet", "upscale_models", "style_models", "embeddings", "ipadapter",
         "diffusion_models", "text_encoders", "clip", "clip_vision", "hypernetworks", "diffusers",
         "gligen", "photomaker")
#: Folder names other tools use for the same kinds (ComfyUI, A1111), also searched in each root.
ALIASES = {
    "checkpoints": ("Stable-diffusion",),
    "loras": ("Lora", "lora"),
    "controlnet": ("ControlNet", "t2i_adapter"),
    "upscale_models": ("ESRGAN", "RealESRGAN"),
    "vae": ("VAE", "vae_approx"),
    "ipadapter": ("ip_adapter", "IP-Adapter"),
    "diffusion_models": ("unet",),
    "text_encoders": ("clip",),
    "clip_vision": ("CLIPVision", "clip_vision_models"),
    "hypernetworks": ("hypernetwork",),
}
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft")

_BUILTIN: dict[str, dict[str, Path]] = {}
#: kind -> name -> pattern: names that stand for a user's file whose name matches (ComfyUI's
#: ``taesd`` for ``vae_approx/taesd_decoder.pth``), listed only while such a file is there
_MATCHED: dict[str, dict[str, re.Pattern]] = {}
#: ComfyUI's names for madebyollin's tiny autoencoders in ``vae_approx/`` (VAELoader loads the
#: ``NAME_decoder`` file and the ``NAME_encoder`` beside it)
TAESD_NAMES = ("taesd", "taesdxl", "taesd3", "taef1")
#: kind -> name -> (pattern a user's file name matches, built-in name used when none does)
_AUTO: dict[str, dict[str, tuple[re.Pattern, str]]] = {}


def portable_name(name: str) -> str:
    """A model or image name as this system writes it: workflows made on Windows name files in
    subfolders with backslashes (``SDXL\\model.safetensors``)."""
    return name.replace("\\", "/") if os.sep == "/" else name


def register_builtin(kind: str, name: str, path: str | os.PathLike) -> None:
    """Offer a model shipped with a package (e.g. the demo model) under ``name``."""
    _BUILTIN.setdefault(kind, {})[name] = Path(path)


def builtin_models(kind: str) -> dict[str, Path]:
    return dict(_BUILTIN.get(kind, {}))


def register_auto(kind: str, name: str, prefer: str, fallback: str) -> None:
    """Offer ``name`` for ``kind``: the first user file (in :meth:`ModelPaths.list` order) whose
    file name matches the regular expression ``prefer`` (case-insensitive), else the built-in
    model ``fallback``."""
    _AUTO.setdefault(kind, {})[name] = (re.compile(prefer, re.IGNORECASE), fallback)


def register_matched(kind: str, name: str, pattern: str) -> None:
    """Offer ``name`` for ``kind`` while a user file whose file name matches the regular
    expression ``pattern`` exists; ``name`` stands for the first such file."""
    _MATCHED.setdefault(kind, {})[name] = re.compile(pattern)


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
    except (UnicodeDecodeError, RecursionError, ValueError) as e:
        raise ValueError(f"cannot read nodegen config file {path}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"nodegen config file {path} must hold a JSON object")
    _check_config(data, path)
    return data


def _check_config(data: dict, path: Path) -> None:
    """Wrong value types in the config file are a clear error, not a crash later."""
    def folder_list(value, where: str) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) and v and "\0" not in v for v in value):
            raise ValueError(f"nodegen config file {path}: {where} must be a list of folder paths (text)")

    for key in ("models", "image_paths"):
        if key in data:
            folder_list(data[key], f"'{key}'")
    extra = data.get("extra_paths")
    if extra is not None:
        if not isinstance(extra, dict):
            raise ValueError(f"nodegen config file {path}: 'extra_paths' must be an object "
                             f"mapping a model kind to a list of folders")
        for kind, dirs in extra.items():
            folder_list(dirs, f"'extra_paths' / {kind!r}")


class ModelPaths:
    """The model folders in effect for a session."""

    def __init__(self, roots: Iterable[str | os.PathLike] = (), extra: dict | None = None,
                 *, use_env: bool = True, use_config: bool = True) -> None:
        self.roots: list[Path] = [Path(r).expanduser() for r in roots]
        #: Extra folders LoadImage may read (config ``image_paths``).
        self.image_paths: list[Path] = []
        self.extra: dict[str, list[Path]] = {}
        if use_env and os.environ.get("NODEGEN_MODELS"):
            self.roots += [Path(p).expanduser() for p in os.environ["NODEGEN_MODELS"].split(os.pathsep) if p]
        if use_config:
            cfg = _read_config(config_file())
            self.roots += [Path(p).expanduser() for p in cfg.get("models", [])]
            self.image_paths = [Path(p).expanduser() for p in cfg.get("image_paths", [])]
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

    def list(self, kind: str, extensions: tuple[str, ...] = MODEL_EXTENSIONS) -> list[str]:
        """Model names for ``kind``: paths relative to their folder (``sub/dir/file.safetensors``,
        files ending in one of ``extensions``), then the built-in models, de-duplicated, sorted
        within each group."""
        names: list[str] = []
        seen: set[str] = set()
        for folder in self.folders(kind):
            found = []
            for dirpath, dirnames, filenames in walk(folder):
                for fn in filenames:
                    if fn.lower().endswith(extensions):
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
        for name, pattern in _MATCHED.get(kind, {}).items():
            if name not in seen and any(pattern.search(Path(n).name) for n in names):
                seen.add(name)
                names.append(name)
        for name in [*sorted(_AUTO.get(kind, {})), *sorted(builtin_models(kind))]:
            if name not in seen:
                seen.add(name)
                names.append(name)
        return names

    def resolve(self, kind: str, name: str) -> Path | None:
        """The file (or diffusers folder) for ``name``: a name from :meth:`list`, or a path."""
        if not name:
            return None
        if not isinstance(name, str) or "\0" in name:
            return None
        name = portable_name(name)
        p = Path(name).expanduser()
        if p.is_absolute():
            return _model_path(p)
        for folder in self.folders(kind):
            found = _model_path(folder / name)
            if found is not None:
                return found
        pattern = _MATCHED.get(kind, {}).get(name)
        if pattern is not None:
            return next((self.resolve(kind, n) for n in self.list(kind)
                         if n not in _MATCHED[kind] and pattern.search(Path(n).name)), None)
        builtin = builtin_models(kind).get(name)
        if builtin is not None and builtin.exists():
            return builtin
        auto = _AUTO.get(kind, {}).get(name)
        if auto is not None:
            return self._resolve_auto(kind, *auto)
        found = _model_path(p)  # relative to the working directory
        return found.resolve() if found is not None else None

    def _resolve_auto(self, kind: str, prefer: re.Pattern, fallback: str) -> Path | None:
        builtins = builtin_models(kind)
        for name in self.list(kind):
            if name not in builtins and name not in _AUTO.get(kind, {}) and prefer.search(Path(name).name):
                found = self.resolve(kind, name)
                if found is not None:
                    return found
        path = builtins.get(fallback)
        return path if path is not None and path.exists() else None

    def describe(self, kind: str) -> str:
        folders = self.folders(kind)
        if not folders:
            return (f"no '{kind}' folder found (set --models DIR, NODEGEN_MODELS, or "
                    f"'models'/'extra_paths' in {config_file()})")
        return "searched " + ", ".join(str(f) for f in folders)


def _model_path(p: Path) -> Path | None:
    """``p`` when it is a model: a regular file, or a diffusers folder (with model_index.json or
    config.json). None when nothing is there; :class:`NotRegularFile` for a device, FIFO, socket
    or plain folder, so that the error names what is wrong instead of "not found"."""
    from nodegen.kernel.files import NotRegularFile, kind_of

    try:
        st = os.stat(p)
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(st.st_mode):
        return p
    if stat.S_ISDIR(st.st_mode) and any((p / f).is_file() for f in ("model_index.json", "config.json")):
        return p
    raise NotRegularFile(f"model file {str(p)!r} is not a regular file (it is {kind_of(st.st_mode)})")


#: Most entries a walk of one model folder visits (a bound against huge or looping trees).
MAX_WALK_ENTRIES = 200_000


def walk(folder: str | os.PathLike, max_entries: int = MAX_WALK_ENTRIES):
    """``os.walk`` following symlinked folders, but each real folder once (symlink loops end),
    hidden folders skipped, and at most ``max_entries`` entries in all."""
    seen: set[tuple[int, int]] = set()
    count = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            dirnames[:] = []
            continue
        seen.add(key)
        count += len(dirnames) + len(filenames)
        if count > max_entries:
            return
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, dirnames, filenames


#: The name that stands for the user's VGG-19 when there is one, else the built-in feature network.
AUTO_STYLE_MODEL = "auto"


def _register_demo_model() -> None:
    """The built-in demo models (trained by the project, see tools/train_demo*.py and their model
    cards in nodegen/assets/models) are always offered: the demo checkpoint, its Canny
    ControlNet, its outline LoRA, a 4x upscaler, a VGG-style feature network for style
    transfer (chosen by ``auto`` when the user has no VGG-19 file) and the demo CLIP (offered as a
    full CLIP and as a CLIP-vision model)."""
    assets = Path(__file__).resolve().parents[1] / "assets" / "models"
    for kind, path in (("checkpoints", assets / "nodegen-demo-shapes.safetensors"),
                       ("controlnet", assets / "controlnet" / "nodegen-demo-canny.safetensors"),
                       ("loras", assets / "lora" / "nodegen-demo-outlines.safetensors"),
                       ("upscale_models", assets / "upscale_models" / "nodegen-demo-esrgan-x4.safetensors"),
                       ("style_models", assets / "style_models" / "nodegen-demo-vgg.safetensors"),
                       ("clip", assets / "clip" / "nodegen-demo-clip.safetensors"),
                       ("clip_vision", assets / "clip" / "nodegen-demo-clip.safetensors")):
        if path.is_file():
            register_builtin(kind, path.name, path)
    register_auto("style_models", AUTO_STYLE_MODEL, r"vgg[-_ ]?19", "nodegen-demo-vgg.safetensors")
    for name in TAESD_NAMES:
        register_matched("vae", name, rf"^{name}_decoder\.(pth|safetensors|pt|bin)$")


_register_demo_model()
