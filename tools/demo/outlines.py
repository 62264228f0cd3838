"""The demo LoRA's data set: the demo shapes drawn as outlines (a ring of the shape's colour
around a hole of the background colour), with the same attributes and captions as
tools/demo/shapes.py, so the LoRA learns a style, not new words."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tools.demo.shapes import COLORS, POSITIONS, SIZES, _polygon

#: The hole's radius as a fraction of the shape's (the ring is 45% of the radius thick).
HOLE = 0.55
_SUPERSAMPLE = 4


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    poly = _polygon(shape, cx, cy, r)
    if poly is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(poly, fill=fill)


def render_outline(attrs: dict, size: int = 64) -> Image.Image:
    """``attrs`` (as from shapes.sample_attributes) drawn as an outline, RGB ``size`` x ``size``."""
    s = size * _SUPERSAMPLE
    img = Image.new("RGB", (s, s), COLORS[attrs["background"]])
    draw = ImageDraw.Draw(img)
    px, py = POSITIONS[attrs["position"]]
    cx, cy = (px + attrs.get("dx", 0.0)) * s, (py + attrs.get("dy", 0.0)) * s
    r = SIZES[attrs["size"]] * attrs.get("scale", 1.0) * s
    _draw(draw, attrs["shape"], cx, cy, r, COLORS[attrs["color"]])
    _draw(draw, attrs["shape"], cx, cy, r * HOLE, COLORS[attrs["background"]])
    return img.resize((size, size), Image.Resampling.BOX)


def render_outline_array(attrs: dict, size: int = 64) -> np.ndarray:
    return np.asarray(render_outline(attrs, size), dtype=np.uint8)
