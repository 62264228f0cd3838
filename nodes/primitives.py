"""Primitive values: constants that feed literal inputs through links."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("Int", category="primitives", description="An integer constant.",
      inputs=[Input.int("value", 0, min=-(2**63), max=2**63 - 1)], outputs=[Output("value", T.INT)])
def int_constant(ctx, value):
    return value


@node("Float", category="primitives", description="A floating point constant.",
      inputs=[Input.float("value", 0.0, step=0.01)], outputs=[Output("value", T.FLOAT)])
def float_constant(ctx, value):
    return float(value)


@node("String", category="primitives", description="A text constant.",
      inputs=[Input.string("value", "", multiline=True)], outputs=[Output("value", T.STRING)])
def string_constant(ctx, value):
    return value


@node("Boolean", category="primitives", description="A true/false constant.",
      inputs=[Input.bool("value", False)], outputs=[Output("value", T.BOOLEAN)])
def bool_constant(ctx, value):
    return value


@node("Seed", category="primitives",
      description="A seed value (the editor can randomise or increment it after each run).",
      inputs=[Input.seed("seed", 0)], outputs=[Output("seed", T.INT)])
def seed_constant(ctx, seed):
    return seed
