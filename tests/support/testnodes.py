"""A tiny node library for engine tests, with execution counters."""

from __future__ import annotations

import random
from collections import Counter

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.kernel.registry import NodeRegistry

RUNS: Counter = Counter()


@node("Const", category="test", inputs=[Input.int("value", 0, min=-1000, max=10**9)],
      outputs=[Output("value", T.INT)])
def const(ctx, value):
    RUNS["Const"] += 1
    return value


@node("Add", category="test", inputs=[Input.int("a", 0), Input.int("b", 0)],
      outputs=[Output("sum", T.INT)])
def add(ctx, a, b):
    RUNS["Add"] += 1
    return a + b


@node("Mul", category="test", inputs=[Input.float("a", 1.0), Input.float("b", 1.0)],
      outputs=[Output("product", T.FLOAT)])
def mul(ctx, a, b):
    RUNS["Mul"] += 1
    return a * b


@node("Tensor", category="test", inputs=[Input.int("n", 1, min=1, max=10**8), Input.int("fill", 0)],
      outputs=[Output("tensor", T.LATENT)])
def tensor(ctx, n, fill):
    import torch

    RUNS["Tensor"] += 1
    return torch.full((n,), float(fill))


@node("Choose", category="test",
      inputs=[Input.choice("mode", ["first", "second"]), Input.string("text", "", multiline=True),
              Input.link("opt", T.INT, optional=True)],
      outputs=[Output("text", T.STRING)])
def choose(ctx, mode, text, opt):
    RUNS["Choose"] += 1
    return f"{mode}:{text}:{opt}"


@node("Slow", category="test", inputs=[Input.link("x", T.INT), Input.int("steps", 5, min=1, max=1000)],
      outputs=[Output("x", T.INT)])
def slow(ctx, x, steps):
    RUNS["Slow"] += 1
    for i in range(steps):
        ctx.progress(i + 1, steps)
        if ctx.node_id == "cancel-me" and i == 1:
            ctx.cancel.cancel()
    return x


@node("Fail", category="test", inputs=[Input.link("x", T.INT, optional=True)],
      outputs=[Output("x", T.INT)])
def fail(ctx, x):
    RUNS["Fail"] += 1
    raise RuntimeError("boom")


@node("Rand", category="test", deterministic=False, outputs=[Output("value", T.INT)])
def rand(ctx):
    RUNS["Rand"] += 1
    return random.randint(0, 10**9)


@node("Sink", category="test", output=True, inputs=[Input.link("value", T.ANY)])
def sink(ctx, value):
    RUNS["Sink"] += 1
    ctx.ui(values=[value])
    return {}


@node("Pair", category="test", inputs=[Input.link("a", T.INT), Input.link("b", T.INT)],
      outputs=[Output("a", T.INT), Output("b", T.INT)])
def pair(ctx, a, b):
    RUNS["Pair"] += 1
    return a * 10, b * 10


@node("Upgraded", category="test", version=3,
      inputs=[Input.int("amount", 0)], outputs=[Output("value", T.INT)],
      migrations={1: lambda ins: {"count": ins.get("n", 0)},
                  2: lambda ins: {"amount": ins.get("count", 0)}})
def upgraded(ctx, amount):
    return amount


def registry() -> NodeRegistry:
    reg = NodeRegistry()
    import sys

    reg.register_module(sys.modules[__name__], "tests")
    return reg


def doc(nodes: dict) -> dict:
    return {"format": "nodegen-workflow", "version": 1, "nodes": nodes}


def ln(src: str, out: str) -> dict:
    return {"from": [src, out]}
