"""ComfyUI workflows: import (API "prompt" format, UI "workflow" format, PNG text chunks) and
export back to the API format.

::

    from nodegen.formats import comfy
    doc, notes = comfy.import_comfy(json.load(open("workflow.json")), source="workflow.json")
    api = comfy.export_api(doc)            # only for graphs made of mapped nodes

``doc`` is a nodegen workflow document (plain data, not yet schema-checked; pass it to
:func:`nodegen.kernel.workflow.parse`). ``notes`` lists what the import could not carry over as is
(unmapped node types kept as placeholders, dropped inputs, values moved); the same notes are in
``doc["metadata"]["import"]["notes"]``.
"""

from __future__ import annotations

from typing import Any

from nodegen.formats.comfy.api_format import import_api, looks_like_api
from nodegen.formats.comfy.builder import Builder, ComfyImportError
from nodegen.formats.comfy.export import ComfyExportError, export_api
from nodegen.formats.comfy.ui_format import import_ui, looks_like_ui

__all__ = ["ComfyExportError", "ComfyImportError", "detect", "export_api", "import_comfy",
           "import_png_text"]


def detect(data: Any) -> str | None:
    """``"ui"`` or ``"api"`` for a ComfyUI workflow dict, else None."""
    if looks_like_ui(data):
        return "ui"
    if looks_like_api(data):
        return "api"
    return None


def import_comfy(data: Any, source: str | None = None, name: str | None = None) -> tuple[dict, list[str]]:
    """Convert a ComfyUI workflow (either format, already decoded) to a nodegen document."""
    from nodegen.kernel.workflow import new_document

    kind = detect(data)
    where = f"{source}: " if source else ""
    if kind is None:
        raise ComfyImportError(f"{where}not a ComfyUI workflow (expected the API format "
                               f"{{id: {{class_type, inputs}}}} or the editor format with 'nodes' "
                               f"and 'links')")
    builder = Builder(source or "")
    extras: dict[str, Any] = {}
    try:
        if kind == "ui":
            extras = import_ui(data, builder)
        else:
            import_api(data, builder)
    except ComfyImportError as e:
        raise ComfyImportError(f"{where}{e}") from e
    builder.finish_links()
    if name is None and source:
        from pathlib import Path

        name = Path(source).stem
    doc = new_document(name or "")
    doc["metadata"]["created_with"] = f"ComfyUI (imported by {doc['metadata']['created_with']})"
    doc["metadata"]["import"] = {
        "from": "ComfyUI " + ("editor workflow" if kind == "ui" else "API prompt"),
        "source": source or "", "notes": list(builder.notes),
    }
    doc["nodes"] = builder.nodes
    doc["groups"] = extras.get("groups", [])
    if extras.get("ui"):
        doc["ui"] = extras["ui"]
    return doc, builder.notes


def import_png_text(text: dict[str, str], source: str | None = None) -> dict:
    """The workflow from a ComfyUI PNG's text chunks: the editor ``workflow`` chunk (it keeps
    layout, notes and muted nodes) when it reads, else the API ``prompt`` chunk."""
    errors = []
    for key in ("workflow", "prompt"):
        if key not in text:
            continue
        from nodegen.kernel.jsondoc import JsonDocError, loads

        try:
            data = loads(text[key])
            doc, _notes = import_comfy(data, source=source)
            doc["metadata"]["import"]["chunk"] = key
            return doc
        except (JsonDocError, ComfyImportError) as e:
            errors.append(f"'{key}' chunk: {e}")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
            errors.append(f"'{key}' chunk: malformed ({type(e).__name__}: {str(e)[:200]})")
    raise ComfyImportError(f"{source or 'PNG'}: no readable ComfyUI workflow: " + "; ".join(errors))
