"""Values a node gets when the user adds it, so a new graph works without hunting for settings:

* a model-file input (a loader) starts on the first model found: the user's own files first, the
  built-in demo model when there is no other;
* a new empty latent takes the size that suits the checkpoint the graph uses (or the one a new
  loader would pick): 64 px for the demo model, 512 for SD1, 768 for SD2, 1024 for SDXL, read
  from the file's own tensors (family) or its metadata; unknown: the node's default.
"""

from __future__ import annotations

from nodegen.models.native_size import native_size

SIZE_INPUTS = ("width", "height")


def first_model_values(info, inputs: dict) -> dict:
    """Required model-file inputs not given start on the first model found."""
    out = dict(inputs)
    for spec in info.inputs:
        name = spec["name"]
        if (spec.get("widget") == "file" and spec.get("file_kind") not in (None, "image", "input")
                and name not in out and "default" not in spec and spec.get("choices")):
            out[name] = spec["choices"][0]
    return out


def graph_checkpoint(doc: dict, schema) -> str | None:
    """The checkpoint a graph uses: the first loader's file; else what a new loader would pick."""
    first_choice = None
    for n in doc.get("nodes", {}).values():
        info = schema.get(n.get("type", ""))
        for spec in info.inputs if info else []:
            if spec.get("file_kind") == "checkpoints":
                value = (n.get("inputs") or {}).get(spec["name"])
                if isinstance(value, str) and value:
                    return value
    for info in schema.nodes.values():
        for spec in info.inputs:
            if spec.get("file_kind") == "checkpoints" and spec.get("choices"):
                first_choice = first_choice or spec["choices"][0]
    return first_choice


def latent_size_values(info, inputs: dict, doc: dict, schema, env) -> dict:
    """An empty-latent node (width and height widgets, a LATENT output, no linked inputs) gets
    the size of the graph's checkpoint, when known."""
    names = {s["name"] for s in info.inputs}
    if not set(SIZE_INPUTS) <= names or not any(o["type"] == "LATENT" for o in info.outputs):
        return dict(inputs)
    if any(s.get("widget") is None and not s.get("optional") for s in info.inputs):
        return dict(inputs)  # it transforms a latent (needs a link): not an empty one
    name = graph_checkpoint(doc, schema)
    size = native_size(env.resolve_file("checkpoints", name)) if name else None
    out = dict(inputs)
    if size is not None:
        for key in SIZE_INPUTS:
            out.setdefault(key, size)
    return out


def new_node_inputs(info, inputs: dict | None, doc: dict, schema, env) -> dict:
    """The literal inputs a node added by the user starts with."""
    out = first_model_values(info, dict(inputs or {}))
    return latent_size_values(info, out, doc, schema, env)
