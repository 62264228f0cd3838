"""Reading workflow JSON faithfully and safely: bounded size and depth, no duplicate keys, no
unencodable text.

``json.loads`` silently keeps the last of two equal keys (so a duplicate node id would vanish, and a
later save would delete it for good), recurses without bound (RecursionError on deep nesting) and
accepts lone surrogates (``"\\ud800"``) that can never be written back as UTF-8. :func:`loads`
refuses all three with a :class:`JsonDocError` that says where.
"""

from __future__ import annotations

import json
import os
from typing import Any

#: Largest workflow file read (bytes); NODEGEN_MAX_WORKFLOW_BYTES overrides it.
MAX_BYTES = 256 << 20
#: Deepest nesting of objects and arrays accepted.
MAX_DEPTH = 100
#: Longest integer literal accepted (digits).
MAX_INT_DIGITS = 100


class JsonDocError(ValueError):
    """The text is not a JSON document this program can read back faithfully."""


def max_bytes() -> int:
    try:
        return int(os.environ.get("NODEGEN_MAX_WORKFLOW_BYTES", MAX_BYTES))
    except ValueError:
        return MAX_BYTES


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise JsonDocError(f"the key {shorten(key)!r} appears twice in one object (a duplicate node "
                               f"id?); every key, and every node id, must be unique")
        out[key] = value
    return out


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonDocError(f"an integer of {len(text)} digits is too long (at most {MAX_INT_DIGITS})")
    return int(text)


def _check_depth(data: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise JsonDocError(f"the JSON is nested more than {MAX_DEPTH} levels deep")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items if isinstance(v, (dict, list)))


def loads(text: str | bytes) -> Any:
    """Decode JSON text (bytes: UTF-8, a BOM allowed) strictly; raises :class:`JsonDocError`."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes():
            raise JsonDocError(f"the file is {len(text)} bytes, more than the {max_bytes()} a workflow may have")
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise JsonDocError(f"not valid JSON: not UTF-8 text ({e})") from e
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_parse_int)
    except JsonDocError:
        raise
    except json.JSONDecodeError as e:
        raise JsonDocError(f"not valid JSON: {e}") from e
    except (RecursionError, ValueError) as e:
        raise JsonDocError(f"not valid JSON: {e}") from e
    check_value(data)
    return data


def check_value(data: Any) -> None:
    """A decoded value must be shallow enough and hold only UTF-8-encodable text."""
    _check_depth(data)
    check_text(data)


def check_text(data: Any, where: str = "") -> None:
    """Every string (keys too) in ``data`` must be encodable as UTF-8 (no lone surrogates)."""
    stack: list[tuple[Any, str]] = [(data, where)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _encodable(value, path)
        elif isinstance(value, dict):
            for k, v in value.items():
                sub = f"{path}/{k}" if isinstance(k, str) else f"{path}/{k!r}"
                if isinstance(k, str):
                    _encodable(k, sub)
                stack.append((v, sub))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{path}/{i}") for i, v in enumerate(value))


def _encodable(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = s[e.start]
        raise JsonDocError(f"at {shorten(path.encode('utf-8', 'backslashreplace').decode()) or '(document)'}: "
                           f"the text holds a lone surrogate (\\u{ord(bad):04x}), which is not a "
                           f"character and cannot be saved as UTF-8; remove it") from None


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis and the full length)."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
