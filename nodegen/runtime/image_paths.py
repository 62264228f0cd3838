"""Which input files a workflow may read (LoadImage, LoadImageMask, LoadLatent): the path policy.

By default an image name is looked up only in the input folder, the workflow's own folder and the
extra image folders of the config file (``"image_paths": [...]``); an absolute or ``../`` path is
accepted only when it lies inside one of them (after following symlinks). Anything else needs the
explicit ``--allow-any-path`` flag (``Environment(allow_any_path=True)``). A refused path gets the
same message whether or not it exists, so errors do not reveal which files exist elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from nodegen.kernel.files import NotRegularFile, check_regular_file


def allowed_folders(input_dir: str | os.PathLike, workflow_dir: Path | None, extra: list[Path]) -> list[Path]:
    folders = [Path(input_dir)]
    if workflow_dir is not None:
        folders.append(workflow_dir)
    folders.extend(extra)
    out: list[Path] = []
    for f in folders:
        try:
            r = f.expanduser().resolve()
        except (OSError, RuntimeError):
            continue
        if r not in out:
            out.append(r)
    return out


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def resolve_image(name: str, folders: list[Path], allow_any_path: bool) -> Path | None:
    """The image file for ``name`` under the policy, or None (not found, or not allowed: the
    caller cannot tell which). A file that is found but is not a regular file raises
    :class:`NotRegularFile`."""
    if not isinstance(name, str) or not name or "\0" in name:
        return None
    try:
        p = Path(name).expanduser()
    except RuntimeError:
        return None
    candidates = [p] if p.is_absolute() else [f / p for f in folders]
    if allow_any_path and not p.is_absolute():
        candidates.append(p)
    for cand in candidates:
        try:
            real = cand.resolve()
            if not real.exists():
                continue
        except (OSError, RuntimeError, ValueError):
            continue
        if not allow_any_path and not any(_inside(real, f) for f in folders):
            continue
        check_regular_file(real, "image file")
        return cand
    return None


def describe(folders: list[Path], allow_any_path: bool, what: str = "images") -> str:
    where = ", ".join(str(f) for f in folders) or "(no folder)"
    if allow_any_path:
        return f"looked in {where} and the working directory"
    return (f"{what} are read only from {where} (the input folder, the workflow's folder and the "
            f"config file's 'image_paths'); other paths need --allow-any-path")


__all__ = ["NotRegularFile", "allowed_folders", "describe", "resolve_image"]
