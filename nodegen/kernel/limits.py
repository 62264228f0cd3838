"""Run-time limits, checked just before a node runs (the executor calls :func:`check_inputs`).

* Linked values get the same checks as literals (type, min/max, choices): an ``Int`` node feeding
  ``steps = 10**9`` or ``width = 100000`` is refused like the literal would be.
* Text inputs are capped (``NODEGEN_MAX_TEXT``, default 100,000 characters): a 10 MB prompt would
  tokenize for minutes.
* Image-sized work is estimated before anything is allocated: a node with ``width`` and
  ``height`` (and ``batch_size``) inputs needs about ``batch * width * height * 3 * 4 * 16`` bytes
  (float32 pixels and the model's working copies); more than the limit (``NODEGEN_MAX_MEMORY``
  in bytes, default the machine's physical memory) is refused with the estimate and the limit.
"""

from __future__ import annotations

import os
from typing import Any

MAX_TEXT = 100_000
#: Bytes per output pixel and image, for the estimate (float32 RGB times working copies).
BYTES_PER_PIXEL = 3 * 4 * 16


#: Widgets whose rules need no environment (choices may be computed from the model folders).
_CHECKED = ("int", "float", "seed", "bool", "string", "multiline")


class LimitError(ValueError):
    """A value or an estimated allocation is beyond what this run allows."""


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def max_text() -> int:
    return _env_int("NODEGEN_MAX_TEXT", MAX_TEXT)


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def max_memory() -> int:
    return _env_int("NODEGEN_MAX_MEMORY", physical_memory())


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def check_inputs(nd: Any, kwargs: dict, linked: Any) -> None:
    """Raise :class:`LimitError` naming the input when a value or the work it asks for is too big.
    ``linked`` holds the names of the inputs that came through links."""
    for spec in nd.inputs:
        name = spec.name
        value = kwargs.get(name)
        if name in linked and spec.widget in _CHECKED and value is not None:
            bad = spec.check_value(value)
            if bad is not None:
                raise LimitError(f"input {name!r} (linked): {bad[1]}")
        if isinstance(value, str) and len(value) > max_text():
            raise LimitError(f"input {name!r}: the text is {len(value)} characters, more than the limit of "
                             f"{max_text()} (NODEGEN_MAX_TEXT raises it)")
    _check_size(kwargs)


def _check_size(kwargs: dict) -> None:
    w, h = kwargs.get("width"), kwargs.get("height")
    if not (isinstance(w, int) and isinstance(h, int)) or isinstance(w, bool) or isinstance(h, bool):
        return
    batch = kwargs.get("batch_size", 1)
    batch = batch if isinstance(batch, int) and batch > 0 else 1
    need = batch * max(w, 0) * max(h, 0) * BYTES_PER_PIXEL
    limit = max_memory()
    if need > limit:
        raise LimitError(f"{batch} image(s) of {w}x{h} would need about {human(need)} of memory, more than "
                         f"the limit of {human(limit)} (NODEGEN_MAX_MEMORY sets it); use a smaller size or batch")
