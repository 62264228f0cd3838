"""PreviewAny: any value shown as text in the editor (ComfyUI's "Preview as Text", which follows
rgthree-comfy's Display Any)."""

from __future__ import annotations

import json
from typing import Any

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


def as_text(source: Any) -> str:
    """ComfyUI's rule: texts as they are, numbers and booleans by str(), other values as indented
    JSON where they have a JSON form, else by str()."""
    if source is None:
        return "None"
    if isinstance(source, str):
        return source
    if isinstance(source, (int, float, bool)):
        return str(source)
    try:
        return json.dumps(source, indent=4)
    except Exception:  # noqa: BLE001 - not JSON: fall back to its str()
        try:
            return str(source)
        except Exception:  # noqa: BLE001
            return "source exists, but could not be serialized."


@node("PreviewAny", category="utility", display_name="Preview as Text", output=True,
      description="Show any value as text in the editor; the text is also an output.",
      inputs=[Input.link("source", T.ANY)], outputs=[Output("text", T.STRING)],
      keywords=("show output", "inspect", "debug", "print value", "show text"))
def preview_any(ctx, source=None):
    value = as_text(source)
    if ctx is not None:
        ctx.ui(text=[value])
    return value
