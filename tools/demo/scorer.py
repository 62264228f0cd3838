"""Automatic scorer for images of the shapes data set (generated or ground truth).

The background colour is the median of the image border. The shape is the largest connected
region of pixels that differ strongly from it; its colour is the nearest palette colour to the
median of its most distinct pixels. The class comes from two geometric measures of the region:
``fill`` (area over bounding-box area: square ~1, circle ~0.79, triangle ~0.5, star ~0.35) and
``solidity`` (area over convex-hull area: ~1 for the convex shapes, ~0.5 for a star). The
position is the nominal place nearest to the region's centre; the size is the one whose nominal
area for the detected class is nearer (in ratio) to the region's area.

Outlines (the demo LoRA's trait): holes in the region (pixels not reachable from the image border
without crossing it) are filled before the class is measured; ``hole_fraction`` is the share of
the filled region that was hole, and ``hollow`` is true when it exceeds :data:`HOLLOW_MIN`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from tools.demo.shapes import COLORS, POSITIONS, SIZES

_PALETTE_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[c] for c in _PALETTE_NAMES], dtype=np.float32)
#: Minimum RGB distance from the background for a pixel to count as "shape".
_MIN_DIST = 45.0


def _to_uint8_range(image) -> np.ndarray:
    arr = np.asarray(image)
    arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.max() <= 1.0 + 1e-6:
        arr = arr * 255.0
    return arr[..., :3]


def nearest_color(rgb) -> str:
    d = ((_PALETTE - np.asarray(rgb, dtype=np.float32)) ** 2).sum(-1)
    return _PALETTE_NAMES[int(d.argmin())]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        comp, queue = [], deque([(y0, x0)])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            comp.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best, strict=True)
        out[list(ys), list(xs)] = True
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every pixel not connected (4-neighbourhood) to the border through ~mask."""
    h, w = mask.shape
    outside = np.zeros_like(mask)
    queue = deque((y, x) for y in range(h) for x in (0, w - 1) if not mask[y, x])
    queue.extend((y, x) for x in range(w) for y in (0, h - 1) if not mask[y, x])
    for y, x in queue:
        outside[y, x] = True
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w and not mask[ny, nx] and not outside[ny, nx]:
                outside[ny, nx] = True
                queue.append((ny, nx))
    return ~outside


#: Share of a shape's filled area that must be hole for it to count as an outline.
HOLLOW_MIN = 0.08


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D points (Andrew's monotone chain, shoelace formula)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = np.array(lower[:-1] + upper[:-1], dtype=np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def classify_mask(mask: np.ndarray) -> tuple[str, dict]:
    """Shape class of a boolean region, with the features used."""
    ys, xs = np.nonzero(mask)
    area = float(len(ys))
    bbox = float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    # Hull of the pixel squares' corners, so a full rectangle has solidity 1.
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    solidity = area / max(_hull_area(corners), 1.0)
    fill = area / bbox
    if solidity < 0.75:
        label = "star"
    elif fill > 0.89:
        label = "square"
    elif fill > 0.64:
        label = "circle"
    else:
        label = "triangle"
    return label, {"fill": fill, "solidity": solidity, "area": area}


#: Area of each shape class in units of its nominal radius squared (see shapes._polygon).
_AREA_PER_R2 = {"circle": np.pi, "square": 1.7**2, "triangle": 3 * 3**0.5 / 4 * 1.2**2,
                "star": 5 * 1.2**2 * 0.42 * np.sin(np.pi / 5)}


def _position_and_size(region: np.ndarray, label: str) -> tuple[str, str]:
    h, w = region.shape
    ys, xs = np.nonzero(region)
    cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
    pos = min(POSITIONS, key=lambda k: (POSITIONS[k][0] - cx) ** 2 + (POSITIONS[k][1] - cy) ** 2)
    area = region.sum() / float(h * w)
    size = min(SIZES, key=lambda k: abs(np.log(area / (_AREA_PER_R2[label] * SIZES[k] ** 2))))
    return pos, size


def score_image(image) -> dict:
    """Detect the shape in an image: ``{"color", "shape", "background", ...features}``.

    ``color``/``shape`` are ``None`` when no shape region is found.
    """
    img = _to_uint8_range(image)
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3),
                             img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    dist = np.sqrt(((img - bg) ** 2).sum(-1))
    out = {"background": nearest_color(bg), "color": None, "shape": None, "position": None, "size": None,
           "hollow": False, "hole_fraction": 0.0}
    strong = dist > _MIN_DIST
    if strong.sum() < 4:
        return out
    comp = _largest_component(strong)
    d = dist[comp]
    core = img[comp][d >= np.percentile(d, 50)]
    fg = np.median(core, axis=0)
    out["color"] = nearest_color(fg)
    # Soft segmentation: a pixel belongs to the shape when it lies past the midpoint of bg->fg.
    axis = fg - bg
    t = ((img - bg) @ axis) / max(float(axis @ axis), 1e-6)
    region = _largest_component((t > 0.5) & (dist > _MIN_DIST * 0.5))
    if region.sum() < 4:
        region = comp
    filled = fill_holes(region)
    out["hole_fraction"] = 1.0 - float(region.sum()) / float(filled.sum())
    out["hollow"] = out["hole_fraction"] > HOLLOW_MIN
    region = filled
    out["shape"], feats = classify_mask(region)
    out["position"], out["size"] = _position_and_size(region, out["shape"])
    out.update(feats)
    return out


def score(image, attrs: dict) -> dict:
    """Compare a detection with the prompt's attributes: ``{"color_ok", "shape_ok", ...}``."""
    det = score_image(image)
    det["color_ok"] = det["color"] == attrs.get("color")
    det["shape_ok"] = det["shape"] == attrs.get("shape")
    det["position_ok"] = det["position"] == attrs.get("position")
    det["size_ok"] = det["size"] == attrs.get("size")
    return det
