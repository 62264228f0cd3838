"""What a workflow file or an image holds: :func:`describe` for ``nodegen info``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from nodegen.sharing.models import find_by_hash, human_size, model_inputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read(path: Path) -> tuple[str, dict, dict | None]:
    """``(kind, workflow document, values or None)``."""
    from nodegen.formats.open import document_from_data as parse
    from nodegen.kernel.jsondoc import JsonDocError, loads
    from nodegen.kernel.workflow import WorkflowError, read_bytes

    raw = read_bytes(path)  # a regular file of bounded size (/dev/zero or a FIFO would never end)
    values = None
    if raw[:8] == PNG_MAGIC or raw[:4] + raw[8:12] == b"RIFFWEBP":
        from nodegen.formats import png, webp

        fmt, where, reader = ("PNG", "chunks", png) if raw[:8] == PNG_MAGIC else ("WEBP", "EXIF texts", webp)
        text = png.png_text_bytes(raw, path) if reader is png else webp.webp_text_bytes(raw, path)
        if png.WORKFLOW_KEY in text:
            kind = f"{fmt} image with a nodegen workflow"
        elif "workflow" in text or "prompt" in text:
            chunks = [k for k in ("workflow", "prompt") if k in text]
            kind = f"{fmt} image with a ComfyUI workflow ({' and '.join(chunks)} {where})"
        else:
            raise WorkflowError(f"this {fmt} holds no workflow", path=str(path))
        values = reader.read_values(path)
        data = reader.read_workflow_bytes(raw, path)
    else:
        try:
            data = loads(raw)
        except JsonDocError as e:
            raise WorkflowError(str(e), path=str(path)) from e
        from nodegen.formats import comfy

        doc = parse(data, str(path))  # refuses what is not a workflow, with the file named
        k = comfy.detect(data) if data.get("format") != "nodegen-workflow" else None
        kind = {"ui": "ComfyUI editor workflow (JSON)", "api": "ComfyUI API prompt (JSON)"}.get(
            k, f"nodegen workflow (file format version {data.get('version')})")
        return kind, doc, values
    return kind, parse(data, str(path)), values


def describe(path: str, registry: Any, env: Any) -> dict:
    """A JSON-able summary: kind, metadata, node types, missing types, models and their state."""
    p = Path(path)
    kind, doc, values = _read(p)
    nodes = doc.get("nodes", {})
    meta = doc.get("metadata", {})
    types = Counter(n.get("type") for n in nodes.values())
    placeholders = sorted({str(n.get("type")) for n in nodes.values() if n.get("missing")})
    missing_types = sorted({str(n.get("type")) for n in nodes.values()
                            if not n.get("missing") and registry.get(n.get("type")) is None})
    outputs = [nid for nid, n in nodes.items()
               if (nd := registry.get(n.get("type"))) is not None and nd.output]
    recorded = {(e.get("kind"), e.get("name")): e for e in doc.get("models") or [] if isinstance(e, dict)}
    if values:  # the image's record has the hashes of the files it used
        for m in values.get("models") or []:
            recorded.setdefault((m.get("kind"), m.get("name")), m)
    models = []
    seen: dict[tuple[str, str], dict] = {}
    for use in model_inputs(doc, registry):
        key = (use.kind, use.name)
        if key in seen:
            seen[key]["nodes"].append(use.node_id)
            continue
        entry = recorded.get(key, {})
        item = {"name": use.name, "kind": use.kind, "size": entry.get("size"),
                "sha256": entry.get("sha256"), "nodes": [use.node_id]}
        found = env.resolve_file(use.kind, use.name)
        if found is not None:
            item.update(status="found", path=str(found))
        elif entry.get("sha256"):
            hit = find_by_hash(env.paths, entry["sha256"], entry.get("size"), use.kind)
            if hit:
                item.update(status="found by hash", path=str(hit[2]))
            else:
                item.update(status="missing")
        else:
            item.update(status="missing")
        seen[key] = item
        models.append(item)
    info = {
        "file": str(p), "kind": kind, "name": meta.get("name", ""),
        "description": meta.get("description", ""), "author": meta.get("author", ""),
        "created_with": meta.get("created_with", ""),
        "image_made_with": f"nodegen {values['nodegen_version']}" if values and values.get("nodegen_version") else "",
        "imported_from": (meta.get("import") or {}).get("from", ""),
        "import_notes": (meta.get("import") or {}).get("notes", []),
        "nodes": len(nodes), "node_types": dict(sorted(types.items())),
        "missing_node_types": missing_types, "placeholders": placeholders, "outputs": outputs, "models": models,
    }
    if values:
        info["values"] = {"node_id": values.get("node_id"), "batch_index": values.get("batch_index"),
                          "inputs": values.get("inputs", {})}
        if "frames" in values:  # an animation: the whole batch
            info["values"]["frames"] = values["frames"]
    return info


def format_text(info: dict) -> str:
    lines = [f"{info['file']}: {info['kind']}"]
    for key, label in (("name", "name"), ("description", "description"), ("author", "author"),
                       ("created_with", "workflow made with"), ("image_made_with", "image made with"),
                       ("imported_from", "imported from")):
        if info.get(key):
            lines.append(f"  {label}: {info[key]}")
    types = ", ".join(f"{t} x{c}" if c > 1 else str(t) for t, c in info["node_types"].items())
    lines.append(f"  nodes: {info['nodes']} ({types})")
    if info["placeholders"]:
        lines.append(f"  placeholders (ComfyUI node types with no nodegen equivalent): "
                     f"{', '.join(info['placeholders'])}")
    if info["missing_node_types"]:
        lines.append(f"  node types not installed here: {', '.join(info['missing_node_types'])}")
    if info["outputs"]:
        lines.append(f"  outputs: nodes {', '.join(info['outputs'])}")
    lines.append(f"  models needed: {len(info['models'])}" + ("" if info["models"] else " (none)"))
    for m in info["models"]:
        size = human_size(m["size"]) if m.get("size") is not None else "size not recorded"
        digest = f"sha256 {m['sha256']}" if m.get("sha256") else "no hash recorded"
        where = f" -> {m['path']}" if m.get("path") else ""
        lines.append(f"    [{m['status']}] {m['kind']}/{m['name']} ({size}, {digest}; "
                     f"node {', '.join(m['nodes'])}){where}")
    if info.get("values"):
        v = info["values"]
        which = f"{v['frames']} frames" if "frames" in v else f"image {v['batch_index']}"
        lines.append(f"  values used for this image (saved by node {v['node_id']}, {which}):")
        for nid, ins in v["inputs"].items():
            shown = ", ".join(f"{k}={_short(x)}" for k, x in ins.items())
            lines.append(f"    node {nid}: {shown}")
    for note in info.get("import_notes") or []:
        lines.append(f"  import note: {note}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
