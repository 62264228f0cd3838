"""One entry point for every file a workflow comes in: :func:`open_any`.

It detects nodegen workflow JSON, ComfyUI workflows (the editor format and the API prompt) and PNG
and WEBP images that embed either, and returns a :class:`~nodegen.kernel.workflow.Workflow`. The kernel's
workflow module reads only nodegen's own format; conversions live here, in the formats layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nodegen.kernel import jsondoc
from nodegen.kernel.workflow import FORMAT, Workflow, WorkflowError, parse, read_bytes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: What a converter raises on data of the wrong shape.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError, OverflowError)


def document_from_data(data: Any, path: str | None = None) -> dict:
    """A checked, migrated nodegen document from decoded JSON: nodegen's own format, or a ComfyUI
    workflow in either format, converted on the fly."""
    try:
        jsondoc.check_value(data)
    except jsondoc.JsonDocError as e:
        raise WorkflowError(str(e), path=path) from e
    if isinstance(data, dict) and data.get("format") != FORMAT:
        from nodegen.formats import comfy

        try:
            if comfy.detect(data) is not None:
                data, _notes = comfy.import_comfy(data, source=path)
        except comfy.ComfyImportError as e:
            raise WorkflowError(f"cannot import this ComfyUI workflow: {e}", path=path) from e
        except MALFORMED as e:  # a damaged file must give an error, never a traceback
            raise WorkflowError(f"cannot import this ComfyUI workflow: the file is malformed "
                                f"({type(e).__name__}: {jsondoc.shorten(str(e))})", path=path) from e
    return parse(data, path)


def read_data(path: str | os.PathLike) -> Any:
    """The decoded workflow data a file holds: a PNG's or WEBP's embedded workflow, or the JSON itself."""
    path = Path(path)
    raw = read_bytes(path)
    if raw[:8] == PNG_MAGIC:
        from nodegen.formats import png

        try:
            return png.read_workflow_bytes(raw, str(path))
        except jsondoc.JsonDocError as e:
            raise WorkflowError(f"the embedded workflow: {e}", path=str(path)) from e
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        from nodegen.formats import webp

        try:
            return webp.read_workflow_bytes(raw, str(path))
        except jsondoc.JsonDocError as e:
            raise WorkflowError(f"the embedded workflow: {e}", path=str(path)) from e
    try:
        return jsondoc.loads(raw)
    except jsondoc.JsonDocError as e:
        raise WorkflowError(str(e), path=str(path)) from e


def open_any(source: Any) -> Workflow:
    """A :class:`Workflow` from a path (nodegen JSON, ComfyUI JSON, PNG), a decoded document (dict)
    or a Workflow (returned as it is). The workflow's ``path`` is the file it came from (relative
    image names resolve beside it); :func:`is_native` tells whether saving back there is safe."""
    if isinstance(source, Workflow):
        return source
    if isinstance(source, dict):
        return Workflow(document_from_data(source))
    path = Path(source)
    return Workflow(document_from_data(read_data(path), str(path)), path)


def is_native(path: str | os.PathLike) -> bool:
    """True when ``path`` is a nodegen workflow JSON file (not a PNG or WEBP, not a ComfyUI file)."""
    try:
        data = read_data(path)
    except WorkflowError:
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT and Path(path).suffix.lower() not in (".png", ".webp")
