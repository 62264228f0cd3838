"""A seeded, procedural data set of captioned coloured shapes.

Each sample is one shape (circle, square, triangle or star) of one of eight well separated
colours, small or large, at one of five positions, on a plain background of another palette
colour. Captions read like ``"a small red star on a blue background, top left"``.

The 200 evaluation prompts are distinct attribute combinations drawn with their own seed;
:func:`sample_attributes` never returns those combinations (``exclude_eval=True``), so the
evaluation measures composition of attributes the model has seen, never a memorised caption.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
#: Palette colours, chosen far apart in RGB (the closest pair, yellow/orange, is ~90 apart).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (245, 130, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
BACKGROUNDS = tuple(COLORS)
#: Nominal radius as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.17, "large": 0.24}
#: Nominal centre (x, y) as fractions of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.28, 0.28),
    "top right": (0.72, 0.28),
    "bottom left": (0.28, 0.72),
    "bottom right": (0.72, 0.72),
    "center": (0.5, 0.5),
}
KEYS = ("shape", "color", "size", "position", "background")

EVAL_SEED = 20261123
N_EVAL = 200
_JITTER_POS = 0.03
_JITTER_SCALE = 0.1
_SUPERSAMPLE = 4


def _combo(attrs: dict) -> tuple:
    return tuple(attrs[k] for k in KEYS)


def _draw_attributes(rng: np.random.Generator) -> dict:
    color = str(rng.choice(list(COLORS)))
    background = str(rng.choice([c for c in BACKGROUNDS if c != color]))
    return {
        "shape": str(rng.choice(SHAPES)),
        "color": color,
        "size": str(rng.choice(list(SIZES))),
        "position": str(rng.choice(list(POSITIONS))),
        "background": background,
        "dx": float(rng.uniform(-_JITTER_POS, _JITTER_POS)),
        "dy": float(rng.uniform(-_JITTER_POS, _JITTER_POS)),
        "scale": float(rng.uniform(1 - _JITTER_SCALE, 1 + _JITTER_SCALE)),
    }


def sample_attributes(rng: np.random.Generator, exclude_eval: bool = True) -> dict:
    """One random sample's attributes (categorical keys plus jitter ``dx``, ``dy``, ``scale``)."""
    held_out = _eval_combos() if exclude_eval else frozenset()
    while True:
        attrs = _draw_attributes(rng)
        if _combo(attrs) not in held_out:
            return attrs


@functools.lru_cache(maxsize=1)
def _eval_attributes() -> tuple[dict, ...]:
    rng = np.random.default_rng(EVAL_SEED)
    seen: set[tuple] = set()
    out = []
    while len(out) < N_EVAL:
        attrs = _draw_attributes(rng)
        if _combo(attrs) not in seen:
            seen.add(_combo(attrs))
            out.append(attrs)
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _eval_combos() -> frozenset:
    return frozenset(_combo(a) for a in _eval_attributes())


def eval_prompts() -> list[tuple[str, dict]]:
    """The fixed held-out evaluation set: 200 ``(prompt, attributes)`` pairs."""
    return [(caption(a), dict(a)) for a in _eval_attributes()]


def caption(attrs: dict) -> str:
    where = "in the center" if attrs["position"] == "center" else attrs["position"]
    return (
        f"a {attrs['size']} {attrs['color']} {attrs['shape']} "
        f"on {_article(attrs['background'])} {attrs['background']} background, {where}"
    )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


_WORD = re.compile(r"[a-z]+")


def parse_prompt(text: str) -> dict:
    """Attributes named in a prompt (any subset of shape, color, size, position, background)."""
    words = _WORD.findall(text.lower())
    out: dict = {}
    for i, w in enumerate(words):
        if w in SHAPES and "shape" not in out:
            out["shape"] = w
            before = [x for x in words[:i] if x in COLORS]
            if before:
                out["color"] = before[-1]
        elif w in SIZES and "size" not in out:
            out["size"] = w
        elif w == "background" and i > 0 and words[i - 1] in COLORS:
            out["background"] = words[i - 1]
    if "color" not in out:
        cols = [w for i, w in enumerate(words) if w in COLORS and words[i + 1 : i + 2] != ["background"]]
        if cols:
            out["color"] = cols[0]
    vert = next((w for w in words if w in ("top", "bottom")), None)
    horiz = next((w for w in words if w in ("left", "right")), None)
    if vert and horiz:
        out["position"] = f"{vert} {horiz}"
    elif "center" in words or "centre" in words or "middle" in words:
        out["position"] = "center"
    return out


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        rr = r * 1.2
        cy += rr * 0.25  # centre the bounding box rather than the centroid
        return [(cx + rr * math.sin(a), cy - rr * math.cos(a)) for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
    if shape == "star":
        rr, pts = r * 1.2, []
        cy += rr * 0.1
        for k in range(10):
            rad = rr if k % 2 == 0 else rr * 0.42
            a = k * math.pi / 5
            pts.append((cx + rad * math.sin(a), cy - rad * math.cos(a)))
        return pts
    return None


def render(attrs: dict, size: int = 64) -> Image.Image:
    """Render one sample as an RGB ``PIL.Image`` of ``size`` x ``size`` (anti-aliased)."""
    s = size * _SUPERSAMPLE
    img = Image.new("RGB", (s, s), COLORS[attrs["background"]])
    draw = ImageDraw.Draw(img)
    px, py = POSITIONS[attrs["position"]]
    cx, cy = (px + attrs.get("dx", 0.0)) * s, (py + attrs.get("dy", 0.0)) * s
    r = SIZES[attrs["size"]] * attrs.get("scale", 1.0) * s
    fill = COLORS[attrs["color"]]
    poly = _polygon(attrs["shape"], cx, cy, r)
    if poly is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(poly, fill=fill)
    return img.resize((size, size), Image.Resampling.BOX)


def render_array(attrs: dict, size: int = 64) -> np.ndarray:
    """:func:`render` as an ``HxWx3`` uint8 array."""
    return np.asarray(render(attrs, size), dtype=np.uint8)
