"""Workflows inside PNG files: text chunks written by SaveImage and read by the loaders.

Chunks (all ``iTXt``, UTF-8 JSON):

* ``nodegen-workflow``: the workflow document that made the image (after ``--set`` overrides);
* ``nodegen-values``: the values used for this image: ``{"node_id": ..., "batch_index": ...,
  "inputs": {node_id: {input: value}}, "models": [...]}`` (seeds after randomisation etc.).

ComfyUI PNGs carry ``prompt`` (API format) and ``workflow`` (UI format) chunks; those are read by
the ComfyUI importer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

WORKFLOW_KEY = "nodegen-workflow"
VALUES_KEY = "nodegen-values"


class PngWorkflowError(ValueError):
    pass


def png_text(path: str | os.PathLike) -> dict[str, str]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            text = dict(getattr(img, "text", {}) or {})
            for k, v in img.info.items():
                if isinstance(v, str) and k not in text:
                    text[k] = v
    except OSError as e:
        raise PngWorkflowError(f"{path}: cannot read the PNG: {e}") from e
    return text


def read_workflow(path: str | os.PathLike) -> dict:
    """The workflow embedded in a PNG (a nodegen one, or a ComfyUI one converted on the fly)."""
    text = png_text(path)
    if WORKFLOW_KEY in text:
        try:
            return json.loads(text[WORKFLOW_KEY])
        except json.JSONDecodeError as e:
            raise PngWorkflowError(f"{path}: the embedded workflow is not valid JSON: {e}") from e
    if "workflow" in text or "prompt" in text:
        try:
            from nodegen.formats.comfy import import_png_text
        except ImportError as e:
            raise PngWorkflowError(f"{path}: holds a ComfyUI workflow, and the importer is missing") from e
        return import_png_text(text, source=str(path))
    raise PngWorkflowError(f"{path}: this PNG holds no workflow (no '{WORKFLOW_KEY}' text chunk)")


def read_values(path: str | os.PathLike) -> dict | None:
    text = png_text(path)
    if VALUES_KEY not in text:
        return None
    return json.loads(text[VALUES_KEY])


def pnginfo(workflow: dict | None, values: dict | None, extra: dict[str, Any] | None = None):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if workflow is not None:
        info.add_itxt(WORKFLOW_KEY, json.dumps(workflow, ensure_ascii=False))
    if values is not None:
        info.add_itxt(VALUES_KEY, json.dumps(values, ensure_ascii=False, default=str))
    for k, v in (extra or {}).items():
        info.add_itxt(k, v if isinstance(v, str) else json.dumps(v, default=str))
    return info


def save_png_exclusive(img, folder: str | os.PathLike, prefix: str, info=None, digits: int = 5) -> Path:
    """Save ``img`` as ``folder/prefix_00001.png`` with the next free counter; never overwrites
    (the file is created with O_EXCL). ``prefix`` may contain sub-folders but must stay inside
    ``folder``."""
    folder = Path(folder).resolve()
    if not prefix or prefix.strip() in (".", ".."):
        raise ValueError("the file name prefix is empty")
    if os.path.isabs(prefix) or prefix.startswith("~"):
        raise ValueError(f"the file name prefix {prefix!r} must be relative to the output folder")
    target_dir = (folder / prefix).parent.resolve()
    if target_dir != folder and folder not in target_dir.parents:
        raise ValueError(f"the file name prefix {prefix!r} leads outside the output folder {folder}")
    stem = Path(prefix).name
    target_dir.mkdir(parents=True, exist_ok=True)
    existing = [p.name for p in target_dir.glob(f"{stem}_*.png")]
    counter = 1
    for name in existing:
        tail = name[len(stem) + 1:-4]
        if tail.isdigit():
            counter = max(counter, int(tail) + 1)
    while True:
        path = target_dir / f"{stem}_{counter:0{digits}d}.png"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            counter += 1
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                img.save(f, format="PNG", pnginfo=info, compress_level=4)
        except BaseException:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        return path
