"""Graph utilities: reroute points and notes."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("Reroute", category="utility", description="A wire waypoint: passes its input through.",
      inputs=[Input.link("value", T.ANY)], outputs=[Output("value", T.ANY)], keywords=("wire", "dot"))
def reroute(ctx, value):
    return value


@node("Note", category="utility", description="A text note on the canvas (never runs).",
      inputs=[Input.string("text", "", multiline=True)], keywords=("comment", "text"))
def note(ctx, text):
    return {}
