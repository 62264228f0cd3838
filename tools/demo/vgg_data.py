"""Seeded labelled pictures for the demo style feature network: one demo shape (any place, size
and rotation, filled or outlined) of a palette colour over a background of one of five kinds
(flat, gradient, stripes, checks, smooth noise; tools/demo/sr_data.py) with a few stray lines.

The labels (background kind, shape, colour, outlined) ask the network for both texture and
form, the two things Gatys style transfer reads from its features.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from tools.demo.shapes import COLORS, SHAPES, _polygon
from tools.demo.sr_data import _background, _lines

PALETTE = list(COLORS)
#: (name, number of classes) of each label head, in the order of :func:`labelled`'s columns.
HEADS = (("background", 5), ("shape", len(SHAPES)), ("color", len(PALETTE)), ("outline", 2))


def _kind_background(rng: np.random.Generator, s: int) -> tuple[Image.Image, int]:
    state = rng.bit_generator.state
    kind = int(rng.integers(0, 5))
    rng.bit_generator.state = state  # _background draws the same kind again
    return _background(rng, s), kind


def render(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    s = size * 2
    img, bg = _kind_background(rng, s)
    plain = img.copy()
    draw = ImageDraw.Draw(img)
    _lines(draw, rng, s)
    shape, color, outline = int(rng.integers(0, len(SHAPES))), int(rng.integers(0, len(PALETTE))), int(rng.integers(0, 2))
    cx, cy = rng.uniform(0.25, 0.75, 2) * s
    r = rng.uniform(0.12, 0.3) * s
    rot = rng.uniform(-math.pi, math.pi) if SHAPES[shape] != "circle" else 0.0
    fill = COLORS[PALETTE[color]]

    def poly(rad: float):
        pts = _polygon(SHAPES[shape], cx, cy, rad)
        if pts is None:
            return None
        c, sn = math.cos(rot), math.sin(rot)
        return [(cx + (x - cx) * c - (y - cy) * sn, cy + (x - cx) * sn + (y - cy) * c) for x, y in pts]

    outer = poly(r)
    if outer is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(outer, fill=fill)
    if outline:
        mask = Image.new("L", img.size, 0)
        md = ImageDraw.Draw(mask)
        inner = poly(r * 0.55)
        if inner is None:
            md.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=255)
        else:
            md.polygon(inner, fill=255)
        img.paste(plain, (0, 0), mask)  # the hole shows the background again
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8), (bg, shape, color, outline)


def labelled(seed: int, n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded pictures (uint8 [n, size, size, 3]) and labels (int64 [n, 4])."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for _ in range(n):
        im, lab = render(rng, size)
        imgs.append(im)
        labels.append(lab)
    return np.stack(imgs), np.array(labels, dtype=np.int64)
