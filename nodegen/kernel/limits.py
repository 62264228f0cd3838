"""Run-time limits, checked just before a node runs (the executor calls :func:`check_inputs`).

* Linked values get the same checks as literals (type, min/max, choices): an ``Int`` node feeding
  ``steps = 10**9`` or ``width = 100000`` is refused like the literal would be.
* Text inputs are capped (``NODEGEN_MAX_TEXT``, default 100,000 characters): a 10 MB prompt would
  tokenize for minutes.
* Image-sized work is estimated before anything is allocated: the pixels a node will make
  (``width x height x batch_size``, or its image or latent input scaled by ``scale_by`` or repeated
  ``amount`` times) cost about ``3 * 4 * 16`` bytes each (float32 pixels and the model's working
  copies); more than the limit (``NODEGEN_MAX_MEMORY`` in bytes, default the machine's physical
  memory) is refused with the estimate and the limit.
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
    pixels = _output_pixels(kwargs)
    if pixels is None:
        return
    need = pixels * BYTES_PER_PIXEL
    limit = max_memory()
    if need > limit:
        raise LimitError(f"{_describe(kwargs)} would need about {human(need)} of memory, more than the limit "
                         f"of {human(limit)} (NODEGEN_MAX_MEMORY sets it); use a smaller size or batch")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _input_pixels(kwargs: dict) -> tuple[int, int, int] | None:
    """``(batch, height, width)`` in pixels of the image or latent input, if any."""
    for value in kwargs.values():
        if isinstance(value, dict) and hasattr(value.get("samples"), "shape"):
            latent = tuple(value["samples"].shape)
            if len(latent) == 4:
                return int(latent[0]), int(latent[2]) * 8, int(latent[3]) * 8  # latents are 1/8 of the image
        image = getattr(value, "shape", None)
        if image is not None and len(image) == 4 and image[-1] in (1, 3, 4):
            return int(image[0]), int(image[1]), int(image[2])  # IMAGE [B, H, W, C]
    return None


def _output_pixels(kwargs: dict) -> int | None:
    """Pixels the node will produce: ``width x height x batch_size``, or its input scaled by
    ``scale_by`` or repeated ``amount`` times."""
    w, h = _int(kwargs.get("width")), _int(kwargs.get("height"))
    batch = _int(kwargs.get("batch_size"))
    given = _input_pixels(kwargs)
    if w is not None and h is not None:
        if batch is None:
            batch = given[0] if given else 1
        return max(batch, 1) * max(w, 0) * max(h, 0)
    if given is None:
        return None
    b, gh, gw = given
    scale = kwargs.get("scale_by")
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        return int(b * gh * gw * float(scale) ** 2)
    amount = _int(kwargs.get("amount"))
    if amount is not None:
        return b * gh * gw * max(amount, 1)
    return None


def _describe(kwargs: dict) -> str:
    w, h = kwargs.get("width"), kwargs.get("height")
    if _int(w) is not None and _int(h) is not None:
        return f"{_int(kwargs.get('batch_size')) or 1} image(s) of {w}x{h}"
    if "scale_by" in kwargs:
        return f"scaling by {kwargs['scale_by']}"
    return f"repeating {kwargs.get('amount')} times"
