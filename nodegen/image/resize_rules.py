"""The target sizes of ComfyUI's ResizeImageMaskNode ("Resize Image/Mask",
comfy_extras/nodes_post_processing.py), one rule per ``resize_type``, and the centre crop of its
``common_upscale``. Sizes are ``(width, height)``; ``None`` means "leave the input as it is".
"""

from __future__ import annotations

import math

#: ComfyUI's resize types, in its order, with the settings each one shows.
RESIZE_TYPES: dict[str, tuple[str, ...]] = {
    "scale dimensions": ("width", "height", "crop"),
    "scale by multiplier": ("multiplier",),
    "scale longer dimension": ("longer_size",),
    "scale shorter dimension": ("shorter_size",),
    "scale width": ("width",),
    "scale height": ("height",),
    "scale total pixels": ("megapixels",),
    "match size": ("match", "crop"),
    "scale to multiple": ("multiple",),
}


def scale_dimensions(w: int, h: int, width: int, height: int) -> tuple[int, int] | None:
    if width == 0 and height == 0:
        return None
    if width == 0:
        width = max(1, round(w * height / h))
    elif height == 0:
        height = max(1, round(h * width / w))
    return width, height


def scale_by(w: int, h: int, multiplier: float) -> tuple[int, int]:
    return round(w * multiplier), round(h * multiplier)


def scale_longer(w: int, h: int, size: int) -> tuple[int, int]:
    if h > w:
        return round((w / h) * size), size
    if w > h:
        return size, round((h / w) * size)
    return size, size


def scale_shorter(w: int, h: int, size: int) -> tuple[int, int]:
    if h < w:
        return round((w / h) * size), size
    if w < h:
        return size, round((h / w) * size)
    return size, size


def scale_total_pixels(w: int, h: int, megapixels: float) -> tuple[int, int]:
    factor = math.sqrt(int(megapixels * 1024 * 1024) / (w * h))
    return round(w * factor), round(h * factor)


def multiple_cover(w: int, h: int, multiple: int) -> tuple[tuple[int, int], tuple[int, int, int, int]] | None:
    """Scale to cover the largest size divisible by ``multiple``, then cut it out of the centre:
    ``((scaled_w, scaled_h), (x0, y0, target_w, target_h))``, or None for no change."""
    if multiple <= 1:
        return None
    tw, th = (w // multiple) * multiple, (h // multiple) * multiple
    if tw == 0 or th == 0 or (tw == w and th == h):
        return None
    if tw / w >= th / h:
        sw, sh = tw, max(th, int(math.ceil(h * (tw / w))))
    else:
        sw, sh = max(tw, int(math.ceil(w * (th / h)))), th
    return (sw, sh), ((sw - tw) // 2, (sh - th) // 2, tw, th)


def center_crop_box(w: int, h: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``(x, y, cut_w, cut_h)``: common_upscale's cut to the target's aspect ratio around the centre."""
    old, new = w / h, width / height
    x = y = 0
    if old > new:
        x = round((w - w * (new / old)) / 2)
    elif old < new:
        y = round((h - h * (old / new)) / 2)
    return x, y, w - 2 * x, h - 2 * y
