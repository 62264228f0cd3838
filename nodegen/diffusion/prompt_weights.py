"""Prompt weighting syntax (A1111 / ComfyUI style).

* ``(text:1.3)``: weight 1.3; ``(text)``: weight 1.1; ``[text]``: weight 1/1.1.
* Nesting multiplies: ``((text))`` = 1.21, ``((text):1.5)`` = 1.65.
* ``\\(``, ``\\)``, ``\\[``, ``\\]``, ``\\\\`` are literal characters.
* An unmatched opening bracket is kept as literal text; an unmatched closing one too.

:func:`parse_weights` returns ``[(text, weight), ...]`` with neighbouring pieces of equal
weight merged. A prompt without any weighting gives ``[(prompt, 1.0)]`` exactly (so its
tokenization equals the plain tokenization).
"""

from __future__ import annotations

import re

ROUND_UP = 1.1
SQUARE_DOWN = 1 / 1.1

_WEIGHT_RE = re.compile(r"^(.*):\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$", re.S)


def _find_close(s: str, i: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one at ``s[i]``, or -1."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def _parse(s: str, weight: float, out: list[tuple[str, float]]) -> None:
    buf: list[str] = []

    def flush() -> None:
        if buf:
            out.append(("".join(buf), weight))
            buf.clear()

    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            buf.append(s[i + 1])
            i += 2
            continue
        if c in "([":
            close_ch = ")" if c == "(" else "]"
            j = _find_close(s, i, c, close_ch)
            if j < 0:  # unmatched: literal
                buf.append(c)
                i += 1
                continue
            inner = s[i + 1 : j]
            flush()
            if c == "(":
                m = _WEIGHT_RE.match(inner)
                # the weight belongs to this group only if the colon is not inside a nested group
                if m and _balanced(m.group(1)):
                    _parse(m.group(1), weight * float(m.group(2)), out)
                else:
                    _parse(inner, weight * ROUND_UP, out)
            else:
                _parse(inner, weight * SQUARE_DOWN, out)
            i = j + 1
            continue
        buf.append(c)
        i += 1
    flush()


def _balanced(s: str) -> bool:
    depth = 0
    i = 0
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] in "([":
            depth += 1
        elif s[i] in ")]":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


def parse_weights(prompt: str) -> list[tuple[str, float]]:
    """Split ``prompt`` into ``(text, weight)`` pieces."""
    if not any(ch in prompt for ch in "()[]\\"):
        return [(prompt, 1.0)]
    pieces: list[tuple[str, float]] = []
    _parse(prompt, 1.0, pieces)
    merged: list[tuple[str, float]] = []
    for text, w in pieces:
        if not text:
            continue
        if merged and merged[-1][1] == w:
            merged[-1] = (merged[-1][0] + text, w)
        else:
            merged.append((text, w))
    return merged or [("", 1.0)]


def is_weighted(pieces: list[tuple[str, float]]) -> bool:
    return any(w != 1.0 for _, w in pieces)

