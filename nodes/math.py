"""Arithmetic on integers and floats."""

from __future__ import annotations

import math
import operator

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

_INT_OPS = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul,
    "divide": lambda a, b: _nonzero(b) and a // b, "modulo": lambda a, b: _nonzero(b) and a % b,
    "power": lambda a, b: _bounded_power(a, b),
    "min": min, "max": max,
}
_FLOAT_OPS = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul,
    "divide": lambda a, b: _nonzero(b) and a / b, "power": math.pow, "min": min, "max": max,
    "modulo": lambda a, b: _nonzero(b) and math.fmod(a, b),
}


#: Largest integer result in bits: Python computes any size, so 3 ** 10**9 would run for ever.
MAX_BITS = 4096


def _bounded_power(a: int, b: int) -> int:
    if b < 0:
        _fail("power needs a non-negative exponent")
    if abs(a) > 1 and b * math.log2(abs(a)) > MAX_BITS:
        _fail(f"{a} ** {b} would have about {b * math.log2(abs(a)):.3g} bits, more than {MAX_BITS}")
    return a ** b


def _bounded(result: int) -> int:
    if result.bit_length() > MAX_BITS:
        _fail(f"the result has {result.bit_length()} bits, more than {MAX_BITS}")
    return result


def _fail(msg: str):
    raise ValueError(msg)


def _nonzero(b) -> bool:
    if b == 0:
        raise ZeroDivisionError("input 'b' is zero: cannot divide by zero")
    return True


@node("IntMath", category="math", description="Integer arithmetic: a <op> b.",
      inputs=[Input.int("a", 0), Input.choice("op", list(_INT_OPS), "add"), Input.int("b", 0)],
      outputs=[Output("result", T.INT)], keywords=("add", "multiply", "integer"))
def int_math(ctx, a, op, b):
    return _bounded(int(_INT_OPS[op](a, b)))


@node("FloatMath", category="math", description="Floating point arithmetic: a <op> b.",
      inputs=[Input.float("a", 0.0, step=0.01), Input.choice("op", list(_FLOAT_OPS), "add"),
              Input.float("b", 0.0, step=0.01)],
      outputs=[Output("result", T.FLOAT)], keywords=("add", "multiply", "number"))
def float_math(ctx, a, op, b):
    return float(_FLOAT_OPS[op](float(a), float(b)))


@node("IntToFloat", category="math", description="Convert an integer to a float.",
      inputs=[Input.int("value", 0)], outputs=[Output("value", T.FLOAT)])
def int_to_float(ctx, value):
    return float(value)


@node("FloatToInt", category="math", description="Round a float to an integer.",
      inputs=[Input.float("value", 0.0), Input.choice("rounding", ["round", "floor", "ceil", "truncate"])],
      outputs=[Output("value", T.INT)])
def float_to_int(ctx, value, rounding):
    fn = {"round": round, "floor": math.floor, "ceil": math.ceil, "truncate": math.trunc}[rounding]
    return int(fn(value))
