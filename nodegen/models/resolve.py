"""Model-file helpers shared by the loader nodes of the upscale, style and ControlNet families:
choices (the files found for a kind), resolution with a clear error, and the fingerprint
(resolved path + size + mtime) that makes a loader re-run when its file changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _paths_of(env: Any):
    paths = getattr(env, "paths", None)
    if paths is None:
        from nodegen.models.paths import ModelPaths

        paths = ModelPaths()
    return paths


def choices_for(kind: str, extensions: tuple[str, ...] | None = None):
    """A ``choices`` callable for ``Input.file``: the model names found for ``kind`` (files ending in
    one of ``extensions``; default: the usual model files)."""

    def choices(env: Any = None) -> list[str]:
        return _paths_of(env).list(kind) if extensions is None else _paths_of(env).list(kind, extensions)

    return choices


def resolve_model(paths: Any, kind: str, name: str, node: str, input_name: str) -> Path:
    """The file for ``name``, or a ValueError naming the node, the input and where we looked."""
    if paths is None:
        paths = _paths_of(None)
    p = paths.resolve(kind, name)
    if p is None:
        raise ValueError(f"{node}: {input_name} {name!r} was not found among the {kind} models "
                         f"({paths.describe(kind)})")
    return Path(p)


def fingerprint_for(kind: str, input_name: str):
    """A ``fingerprint`` hook: (resolved path, size, mtime_ns) of the chosen file."""

    def fingerprint(inputs: dict, env: Any) -> Any:
        name = inputs.get(input_name)
        if not isinstance(name, str) or not name:
            return None
        p = _paths_of(env).resolve(kind, name)
        if p is None:
            return ("missing", name)
        from nodegen.models.manager import file_key

        return file_key(p)

    return fingerprint


def load_model_file(ctx: Any, kind: str, name: str, node: str, input_name: str, load,
                    errors: tuple[type[BaseException], ...] = (ValueError, RuntimeError, OSError, KeyError)) -> Any:
    """The ``kind`` model ``name`` loaded by ``load(path, manager)``, once per version of the file
    (the run's model manager keeps it between runs; without one it is loaded each time); a file that
    cannot be read is a ValueError naming the node, the input and the name."""
    from nodegen.models.manager import file_key

    path = resolve_model(ctx.paths, kind, name, node, input_name)
    mgr = getattr(ctx, "models", None)
    try:
        if mgr is None:
            return load(path, None)
        return mgr.cached((kind, *file_key(path)), lambda: load(path, mgr))
    except errors as e:
        raise ValueError(f"{node}: {input_name} {name!r}: {e}") from e
