"""Math Expression: a formula over up to ten numbers, as ComfyUI's ComfyMathExpression
(comfy_extras/nodes_math.py, which evaluates with simpleeval): the inputs are named ``a`` ... ``j``
(ComfyUI's "autogrow" ``values.a`` ...; it allows up to ``z``), ``values`` is the list of those given,
and the functions are ComfyUI's (sum, min, max, abs, round, pow, sqrt, ceil, floor, log, log2, log10,
sin, cos, tan, int, float). The formula is parsed and walked here, never run as Python code: only
numbers, the names, arithmetic, comparisons, ``and`` / ``or`` / ``not``, ``x if c else y``,
indexing ``values`` and those functions are allowed. The result must be a finite number; it comes
out as a float and as an int (truncated, as ``int()``)."""

from __future__ import annotations

import ast
import math
import operator
import string

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

NAMES = tuple(string.ascii_lowercase[:10])
#: simpleeval's limit on either side of ``**`` / pow's exponent in ComfyUI.
MAX_POWER = 4_000_000
MAX_EXPONENT = 4000
#: Integer powers beyond this many bits are refused before they are computed: the result must end
#: as a finite float (under 2**1024) anyway, and a server must not spend minutes on 3999999 ** 3999999.
MAX_INT_BITS = 4096


def _check_int_power(a, b) -> None:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and b * math.log2(abs(a)) > MAX_INT_BITS:
        raise ValueError(f"{a} ** {b} is too large to compute")


def _power(a, b):
    if abs(a) > MAX_POWER or abs(b) > MAX_POWER:
        raise ValueError(f"{a} ** {b} is too large to compute")
    _check_int_power(a, b)
    return a ** b


def _pow(base, exp):
    if abs(exp) > MAX_EXPONENT:
        raise ValueError(f"Exponent {exp} exceeds maximum allowed ({MAX_EXPONENT})")
    _check_int_power(base, exp)
    return pow(base, exp)


def _sum(*args):
    return sum(args[0]) if len(args) == 1 and hasattr(args[0], "__iter__") else sum(args)


FUNCTIONS = {"sum": _sum, "min": min, "max": max, "abs": abs, "round": round, "pow": _pow, "sqrt": math.sqrt,
             "ceil": math.ceil, "floor": math.floor, "log": math.log, "log2": math.log2, "log10": math.log10,
             "sin": math.sin, "cos": math.cos, "tan": math.tan, "int": int, "float": float}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}


def evaluate(expression: str, names: dict):
    """The value of ``expression`` with ``names`` (see the module doc for what is allowed)."""
    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.Name):
            if n.id not in names:
                raise ValueError(f"'{n.id}' is not defined (connect input '{n.id}', or use one of "
                                 f"{', '.join(sorted(names)) or 'no names'})")
            return names[n.id]
        if isinstance(n, ast.BinOp) and type(n.op) in _BINARY:
            left, right = ev(n.left), ev(n.right)
            if isinstance(left, list) or isinstance(right, list):  # [1] * 10**9 would fill the memory
                raise ValueError(f"{ast.unparse(n)!r}: lists go into functions (sum, min, max) or [index] only")
            return _BINARY[type(n.op)](left, right)
        if isinstance(n, ast.UnaryOp) and type(n.op) in _UNARY:
            return _UNARY[type(n.op)](ev(n.operand))
        if isinstance(n, ast.BoolOp):
            value = ev(n.values[0])
            for v in n.values[1:]:
                if (not value) if isinstance(n.op, ast.And) else value:
                    return value
                value = ev(v)
            return value
        if isinstance(n, ast.Compare) and all(type(o) in _COMPARE for o in n.ops):
            left = ev(n.left)
            for o, c in zip(n.ops, n.comparators, strict=True):
                right = ev(c)
                if not _COMPARE[type(o)](left, right):
                    return False
                left = right
            return True
        if isinstance(n, ast.IfExp):
            return ev(n.body) if ev(n.test) else ev(n.orelse)
        if isinstance(n, ast.Subscript):
            return ev(n.value)[ev(n.slice)]
        if isinstance(n, (ast.List, ast.Tuple)):
            return [ev(e) for e in n.elts]
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and not n.keywords:
            if n.func.id not in FUNCTIONS:
                raise ValueError(f"unknown function {n.func.id!r}; use one of {', '.join(FUNCTIONS)}")
            return FUNCTIONS[n.func.id](*(ev(a) for a in n.args))
        raise ValueError(f"{ast.unparse(n)!r} is not allowed in a math expression")

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not a formula: {e.msg}") from None
    return ev(tree.body)


@node("ComfyMathExpression", category="math", display_name="Math Expression",
      description="A formula over the connected numbers a ... j (e.g. 'a * b + 8', 'max(values)'); a float and an "
                  "int result.",
      inputs=[Input.string("expression", "a + b", multiline=True, description="The formula"),
              *(Input.link(n, T.FLOAT, optional=True, description=f"The value of '{n}'") for n in NAMES)],
      outputs=[Output("float", T.FLOAT), Output("int", T.INT)], keywords=("expression", "formula", "calculate"))
def math_expression(ctx, expression="a + b", **values):
    if not str(expression).strip():
        raise ValueError("ComfyMathExpression: input 'expression' is empty")
    given = {k: values[k] for k in NAMES if values.get(k) is not None}
    try:
        result = evaluate(str(expression), {**given, "values": list(given.values())})
    except (ValueError, TypeError, ArithmeticError, IndexError) as e:
        why = "the result is too large" if isinstance(e, OverflowError) else str(e)
        raise ValueError(f"ComfyMathExpression: input 'expression' {expression!r}: {why}") from None
    if isinstance(result, bool) or not isinstance(result, (int, float)):
        raise ValueError(f"ComfyMathExpression: input 'expression' {expression!r} must give a number, "
                         f"got {type(result).__name__}: {result!r}")
    if not math.isfinite(result):
        raise ValueError(f"ComfyMathExpression: input 'expression' {expression!r} gave {result}")
    return {"float": float(result), "int": int(result)}
