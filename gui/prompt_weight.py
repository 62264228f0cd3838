"""Ctrl+Up / Ctrl+Down in a prompt: raise or lower the weight of the selected words, written as
``(words:1.05)``. The behaviour follows ComfyUI's "edit attention" (itself after the AUTOMATIC1111
web UI's): with nothing selected it takes the ``( )`` group around the cursor, else the phrase
between commas (or other punctuation) around it; ``(words)`` counts as weight 1.1."""

from __future__ import annotations

from nodegen.diffusion.prompt_weights import ROUND_UP  # what "(words)" weighs in the sampler

#: how much one key press changes the weight (ComfyUI's default)
STEP = 0.05
#: characters that end the phrase around the cursor
DELIMITERS = set(".,\\/!?%^*;:{}=`~()\r\n\t")
#: what bare parentheses weigh


def enclosing_group(text: str, cursor: int) -> tuple[int, int] | None:
    """The inside of the innermost balanced ``( )`` around ``cursor``, or None."""
    depth, start = 0, cursor - 1
    while start >= 0:
        if text[start] == ")":
            depth += 1
        elif text[start] == "(":
            if depth == 0:
                break
            depth -= 1
        start -= 1
    if start < 0:
        return None
    depth, end = 0, cursor
    while end < len(text):
        if text[end] == "(":
            depth += 1
        elif text[end] == ")":
            if depth == 0:
                return start + 1, end
            depth -= 1
        end += 1
    return None


def phrase_around(text: str, cursor: int) -> tuple[int, int]:
    """The phrase between delimiters around ``cursor``, without its outer spaces."""
    start, end = cursor, cursor
    while start > 0 and text[start - 1] not in DELIMITERS:
        start -= 1
    while end < len(text) and text[end] not in DELIMITERS:
        end += 1
    while start < end and text[start] == " ":
        start += 1
    while end > start and text[end - 1] == " ":
        end -= 1
    return start, end


def _format(weight: float) -> str:
    return f"{round(max(0.0, weight), 2):g}"


def reweighted(text: str, start: int, end: int, up: bool, step: float = STEP) -> tuple[int, int, str] | None:
    """The edit that moves the weight of ``text[start:end]`` (the selection; empty: the group or
    phrase at ``start``) one step up or down: ``(from, to, replacement)`` for ``text[from:to]``,
    or None when there is nothing there to weigh."""
    if start == end:
        start, end = enclosing_group(text, start) or phrase_around(text, start)
    if start == end:
        return None
    if start > 0 and end < len(text) and text[start - 1] == "(" and text[end] == ")":
        start, end = start - 1, end + 1
    chosen = text[start:end]
    delta = step if up else -step
    if len(chosen) >= 2 and chosen[0] == "(" and chosen[-1] == ")":
        inner = chosen[1:-1]
        content, _, weight = inner.rpartition(":")
        try:
            value = float(weight) if content else ROUND_UP
        except ValueError:
            content, value = inner, ROUND_UP
        return start, end, f"({content or inner}:{_format(value + delta)})"
    return start, end, f"({chosen}:{_format(1.0 + delta)})"
