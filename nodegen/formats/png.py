"""Workflows inside PNG files: text chunks written by SaveImage and read by the loaders.

Chunks (all ``iTXt``, UTF-8 JSON):

* ``nodegen-workflow``: the workflow document that made the image (after ``--set`` overrides);
* ``nodegen-values``: the values used for this image (see :func:`values_used`):
  ``{"node_id", "batch_index", "nodegen_version", "inputs": {node_id: {input: value}},
  "models": [{"name", "kind", "size", "sha256", "nodes"}]}``: the literal inputs of every node the
  saving node depends on (after ``--set`` overrides and seed randomisation, as run), and each model
  file they used with its hash. The embedded workflow's ``models`` section gets the same entries.

ComfyUI PNGs carry ``prompt`` (API format) and ``workflow`` (UI format) chunks; those are read by
the ComfyUI importer.
"""

from __future__ import annotations

import json
import os
from typing import Any

WORKFLOW_KEY = "nodegen-workflow"
VALUES_KEY = "nodegen-values"


class PngWorkflowError(ValueError):
    pass


def png_text(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks of a PNG file, read without decoding its pixels (see png_chunks)."""
    from nodegen.kernel.files import read_bounded
    from nodegen.kernel.jsondoc import max_bytes

    try:
        data = read_bounded(path, max_bytes(), "PNG file")
    except (OSError, ValueError) as e:
        raise PngWorkflowError(f"{path}: cannot read the PNG: {getattr(e, 'strerror', None) or e}") from e
    return png_text_bytes(data, path)


def png_text_bytes(data: bytes, path: str | os.PathLike = "PNG") -> dict[str, str]:
    from nodegen.formats.png_chunks import PngChunkError, text_chunks

    try:
        return text_chunks(data)
    except PngChunkError as e:
        raise PngWorkflowError(f"{path}: cannot read the PNG: {e}") from e


def read_workflow(path: str | os.PathLike) -> dict:
    """The workflow embedded in a PNG (a nodegen one, or a ComfyUI one converted on the fly)."""
    return workflow_from_text(png_text(path), path)


def read_workflow_bytes(data: bytes, path: str | os.PathLike = "PNG") -> dict:
    return workflow_from_text(png_text_bytes(data, path), path)


def workflow_from_text(text: dict[str, str], path: str | os.PathLike, kind: str = "PNG",
                       where: str = "text chunk") -> dict:
    """The workflow in an image's embedded texts by key (a PNG's text chunks, a WEBP's EXIF texts):
    nodegen's own, else a ComfyUI one converted on the fly."""
    from nodegen.kernel.jsondoc import JsonDocError, loads

    if WORKFLOW_KEY in text:
        try:
            return loads(text[WORKFLOW_KEY])
        except JsonDocError as e:
            raise PngWorkflowError(f"{path}: the embedded workflow: {e}") from e
    if "workflow" in text or "prompt" in text:
        try:
            from nodegen.formats.comfy import import_png_text
        except ImportError as e:
            raise PngWorkflowError(f"{path}: holds a ComfyUI workflow, and the importer is missing") from e
        return import_png_text(text, source=str(path))
    raise PngWorkflowError(f"{path}: this {kind} holds no workflow (no '{WORKFLOW_KEY}' {where})")


def read_values(path: str | os.PathLike) -> dict | None:
    return values_from_text(png_text(path), path, "chunk", PngWorkflowError)


def values_from_text(text: dict[str, str], path, where: str = "chunk",
                     error: type[ValueError] = PngWorkflowError) -> dict | None:
    """The ``nodegen-values`` record among a file's texts (None when it has none)."""
    if VALUES_KEY not in text:
        return None
    try:
        values = json.loads(text[VALUES_KEY])
    except json.JSONDecodeError as e:
        raise error(f"{path}: the '{VALUES_KEY}' {where} is not valid JSON: {e}") from e
    return values if isinstance(values, dict) else None


def upstream_of(doc: dict, node_id: str) -> list[str]:
    """``node_id`` and every node it depends on through links."""
    nodes = doc.get("nodes", {})
    seen: list[str] = []
    stack = [str(node_id)]
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in nodes:
            continue
        seen.append(nid)
        for v in (nodes[nid].get("inputs") or {}).values():
            if type(v) is dict and "from" in v and isinstance(v["from"], list):
                stack.append(str(v["from"][0]))
    return seen


def values_used(doc: dict, node_id: str, batch_index: int, paths: Any = None,
                registry: Any = None, resolved: dict | None = None) -> dict:
    """The provenance record of one saved image (the ``nodegen-values`` chunk)."""
    from nodegen.kernel.version import __version__

    needed = upstream_of(doc, node_id)
    nodes = doc.get("nodes", {})
    inputs = {}
    for nid in sorted(needed, key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0, x)):
        lits = {k: v for k, v in (nodes[nid].get("inputs") or {}).items()
                if not (type(v) is dict and "from" in v)}
        if lits:
            inputs[nid] = lits
    values: dict[str, Any] = {"node_id": str(node_id), "batch_index": batch_index,
                              "nodegen_version": __version__, "inputs": inputs}
    if resolved:
        values["resolved"] = resolved
    values["models"] = _models_used(doc, needed, paths, registry)
    return values


def _models_used(doc: dict, needed: list[str], paths: Any, registry: Any) -> list[dict]:
    from nodegen.sharing.hashing import file_size, sha256_file
    from nodegen.sharing.models import model_inputs

    if registry is None:
        from nodegen.kernel.registry import default_registry

        registry = default_registry()
    sub = {"nodes": {nid: doc["nodes"][nid] for nid in needed}}
    recorded = {(e.get("kind"), e.get("name")): e for e in doc.get("models") or [] if isinstance(e, dict)}
    out: dict[tuple[str, str], dict] = {}
    for use in model_inputs(sub, registry):
        key = (use.kind, use.name)
        if key in out:
            out[key]["nodes"].append(use.node_id)
            continue
        entry = {"name": use.name, "kind": use.kind}
        path = paths.resolve(use.kind, use.name) if paths is not None else None
        if path is not None:
            try:
                entry.update(size=file_size(path), sha256=sha256_file(path))
            except OSError:
                path = None
        if path is None and key in recorded:
            entry.update({k: recorded[key][k] for k in ("size", "sha256") if k in recorded[key]})
        entry["nodes"] = [use.node_id]
        out[key] = entry
    return list(out.values())


def _with_models(workflow: dict, models: list[dict]) -> dict:
    """A shallow copy of ``workflow`` whose ``models`` section holds the hashed entries."""
    entries = [{k: v for k, v in m.items() if k in ("name", "kind", "size", "sha256")} for m in models]
    keys = {(e["kind"], e["name"]) for e in entries}
    kept = [e for e in workflow.get("models") or []
            if isinstance(e, dict) and (e.get("kind"), e.get("name")) not in keys]
    return {**workflow, "models": kept + entries}


def provenance_texts(workflow: dict | None, values: dict | None, *, ascii_only: bool = False) -> dict[str, str]:
    """The provenance texts to embed, by key (``nodegen-workflow``, ``nodegen-values``); the
    workflow's ``models`` section gets the hashed entries of ``values``. ``ascii_only`` escapes
    every non-ASCII character (for EXIF, whose text fields are ASCII)."""
    if workflow is not None and values and values.get("models"):
        workflow = _with_models(workflow, values["models"])
    texts = {}
    if workflow is not None:
        texts[WORKFLOW_KEY] = json.dumps(workflow, ensure_ascii=ascii_only)
    if values is not None:
        texts[VALUES_KEY] = json.dumps(values, ensure_ascii=ascii_only, default=str)
    return texts


def pnginfo(workflow: dict | None, values: dict | None, extra: dict[str, Any] | None = None):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, text in provenance_texts(workflow, values).items():
        info.add_itxt(key, text, zip=True)
    for k, v in (extra or {}).items():
        info.add_itxt(k, v if isinstance(v, str) else json.dumps(v, default=str))
    return info


from nodegen.formats.png_save import save_png_exclusive  # noqa: E402,F401 - its old home
