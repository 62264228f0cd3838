"""ComfyUI's API ("prompt") format: ``{node_id: {"class_type", "inputs": {name: value | [src, slot]}}}``.

Inputs are already named; a link is a two-item list ``[source_id, output_slot]``. The format
holds no layout, notes, groups, muted nodes or primitive nodes (ComfyUI writes the primitives'
values straight into the inputs they feed).

Files people share often carry entries that are not nodes next to the nodes (app metadata, an
entry without ``class_type``): the real nodes are imported and each such entry is reported in a note.
"""

from __future__ import annotations

from typing import Any

from nodegen.formats.comfy.builder import Builder, ComfyImportError


def is_api_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int)
            and not isinstance(value[1], bool))


def looks_like_api(data: Any) -> bool:
    if not isinstance(data, dict) or not data:
        return False
    if isinstance(data.get("prompt"), dict) and looks_like_api(data["prompt"]):
        return True
    # some entries may be app metadata; one node is enough to call it a prompt
    return any(isinstance(v, dict) and "class_type" in v for v in data.values())


def import_api(data: dict, builder: Builder) -> None:
    if isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]  # a queued request: {"prompt": {...}, "client_id": ...}
    for raw_id, n in sorted(data.items(), key=lambda kv: _id_key(str(kv[0]))):
        nid = str(raw_id)
        if not isinstance(n, dict) or "class_type" not in n:
            builder.note(f"entry {nid!r} is not a ComfyUI node (no 'class_type'); skipped")
            continue
        ctype = n.get("class_type")
        if not isinstance(ctype, str) or not ctype:
            raise ComfyImportError(f"node {nid}: 'class_type' must be a non-empty string")
        inputs = n.get("inputs")
        inputs = {} if inputs is None else inputs
        if not isinstance(inputs, dict):
            raise ComfyImportError(f"node {nid} ({ctype}): 'inputs' must be an object")
        values: dict[str, Any] = {}
        links: dict[str, tuple[str, int]] = {}
        for name, value in inputs.items():
            if is_api_link(value):
                links[name] = (str(value[0]), int(value[1]))
            else:
                values[name] = value
        title = (n.get("_meta") or {}).get("title") if isinstance(n.get("_meta"), dict) else None
        builder.add(nid, ctype, values, links, original=n,
                    title=title if title and title != ctype else None)


def _id_key(nid: str):
    return (0, int(nid), "") if nid.isdigit() else (1, 0, nid)
