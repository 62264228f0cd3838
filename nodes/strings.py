"""Text operations."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("StringConcat", category="text", description="Join two texts with a separator.",
      inputs=[Input.string("a", ""), Input.string("b", ""), Input.string("separator", "")],
      outputs=[Output("text", T.STRING)], keywords=("join", "append"))
def string_concat(ctx, a, b, separator):
    return f"{a}{separator}{b}"


@node("StringReplace", category="text", description="Replace every occurrence of a text.",
      inputs=[Input.string("text", "", multiline=True), Input.string("find", ""), Input.string("replace", "")],
      outputs=[Output("text", T.STRING)])
def string_replace(ctx, text, find, replace):
    return text.replace(find, replace) if find else text
