"""Seeded training pictures for the demo upscaler: shapes, textures and edges, and the usual
Real-ESRGAN-style degradation (blur, 4x downscale, noise, JPEG) that makes the low-resolution input.

Each high-resolution picture mixes a background (flat, gradient, stripes, checks, smooth noise),
a few filled or outlined polygons and ellipses (the demo shapes among them), straight lines of
several widths and small-scale textures, all drawn 2x supersampled so edges are anti-aliased.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SCALE = 4


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _background(rng: np.random.Generator, s: int) -> Image.Image:
    kind = rng.integers(0, 5)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    a, b = np.array(_color(rng), np.float32), np.array(_color(rng), np.float32)
    if kind == 0:
        t = np.zeros_like(xx)
    elif kind == 1:  # linear gradient
        ang = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(ang) + yy * math.sin(ang))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 2:  # stripes
        ang, period = rng.uniform(0, math.pi), rng.uniform(0.03, 0.25)
        t = ((xx * math.cos(ang) + yy * math.sin(ang)) / period % 1.0 > 0.5).astype(np.float32)
    elif kind == 3:  # checks
        period = rng.uniform(0.04, 0.2)
        t = (((xx // period) + (yy // period)) % 2).astype(np.float32)
    else:  # smooth value noise
        n = int(rng.integers(3, 12))
        grid = rng.random((n, n)).astype(np.float32)
        t = np.asarray(Image.fromarray((grid * 255).astype(np.uint8)).resize((s, s), Image.Resampling.BICUBIC),
                       np.float32) / 255.0
    img = a * (1 - t[..., None]) + b * t[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, s: int) -> None:
    cx, cy = rng.uniform(0, s, 2)
    r = rng.uniform(0.05, 0.35) * s
    fill = _color(rng)
    outline_only = rng.random() < 0.3
    width = int(rng.integers(1, max(2, int(r * 0.3))))
    kind = rng.integers(0, 3)
    if kind == 0:
        box = [cx - r, cy - r * rng.uniform(0.5, 1.0), cx + r, cy + r * rng.uniform(0.5, 1.0)]
        if outline_only:
            draw.ellipse(box, outline=fill, width=width)
        else:
            draw.ellipse(box, fill=fill)
        return
    k = int(rng.integers(3, 8))
    rot = rng.uniform(0, 2 * math.pi)
    star = kind == 2
    pts = []
    for i in range(2 * k if star else k):
        rad = r if not star or i % 2 == 0 else r * rng.uniform(0.35, 0.6)
        a = rot + i * math.pi * 2 / (2 * k if star else k)
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    if outline_only:
        draw.line(pts + [pts[0]], fill=fill, width=width, joint="curve")
    else:
        draw.polygon(pts, fill=fill)


def _lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, s: int) -> None:
    for _ in range(int(rng.integers(0, 4))):
        p = rng.uniform(0, s, 4)
        draw.line([tuple(p[:2]), tuple(p[2:])], fill=_color(rng), width=int(rng.integers(1, 9)))


def render_hr(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """One high-resolution picture, ``size`` x ``size`` x 3 uint8."""
    s = size * 2
    img = _background(rng, s)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 5))):
        _shape(draw, rng, s)
    _lines(draw, rng, s)
    img = img.resize((size, size), Image.Resampling.BOX)
    if rng.random() < 0.3:  # some soft pictures too (like decoded diffusion images)
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    return np.asarray(img, dtype=np.uint8)


def degrade(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The low-resolution input for ``hr``: blur, 4x downscale, Gaussian noise, JPEG."""
    img = Image.fromarray(hr)
    if rng.random() < 0.7:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 2.0))))
    h, w = hr.shape[:2]
    mode = [Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.BOX][int(rng.integers(0, 3))]
    img = img.resize((w // SCALE, h // SCALE), mode)
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.5:
        arr = arr + rng.normal(0.0, rng.uniform(1.0, 8.0), arr.shape)
    img = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
    if rng.random() < 0.7:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(50, 96)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def pairs(seed: int, n: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded (low, high) pairs: uint8 arrays [n, size/4, size/4, 3] and [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    hrs, lrs = [], []
    for _ in range(n):
        hr = render_hr(rng, size)
        hrs.append(hr)
        lrs.append(degrade(hr, rng))
    return np.stack(lrs), np.stack(hrs)
